// Which socket an fd names: its device and inode. The preload does not see
// close(), so its per-fd tables check an entry against this before trusting
// it (the fd may since name another file).
#ifndef SBX_PRELOAD_SOCKET_IDENTITY_H_
#define SBX_PRELOAD_SOCKET_IDENTITY_H_

#include <sys/stat.h>

namespace sbx::preload {

// False if `fd` is not an open socket.
inline bool IdentifySocket(int fd, dev_t* dev, ino_t* ino) {
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  *dev = st.st_dev;
  *ino = st.st_ino;
  return true;
}

}  // namespace sbx::preload

#endif  // SBX_PRELOAD_SOCKET_IDENTITY_H_
