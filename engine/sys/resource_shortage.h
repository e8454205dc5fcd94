// Errors that say the process itself is short of fds or memory, not that
// the peer it was dealing with failed: a listener pauses on them, a backend
// is not taken for dead because of them.
#ifndef SBX_ENGINE_SYS_RESOURCE_SHORTAGE_H_
#define SBX_ENGINE_SYS_RESOURCE_SHORTAGE_H_

#include <cerrno>

namespace sbx {

// EMFILE, ENFILE, ENOMEM or ENOBUFS.
inline bool IsResourceShortage(int err) {
  return err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOBUFS;
}

}  // namespace sbx

#endif  // SBX_ENGINE_SYS_RESOURCE_SHORTAGE_H_
