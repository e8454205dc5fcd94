#include "engine/core/receiver_socket.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "absl/status/status.h"
#include "engine/core/diagnostic.h"
#include "engine/core/sender_filter.h"
#include "engine/core/str_cat.h"
#include "engine/core/unix_address.h"

namespace sbx {
namespace {

// A path as messages show it: escaped (Printable), so that a path from the
// command line cannot start a log line of its own.
std::string Shown(const std::string& path) { return Printable(path); }

// "WHAT: strerror" (ErrnoToStatus adds the error's text itself).
absl::Status ErrnoStatus(int err, const std::string& what) {
  return absl::ErrnoToStatus(err, what);
}

// Whether some process is bound to the socket file at `address`: a connect
// reaches it. ECONNREFUSED means nobody is (stale file); EPROTOTYPE means it
// is of another type, so try that one.
bool SomeoneListens(const UnixAddress& address) {
  for (int type : {SOCK_DGRAM, SOCK_STREAM, SOCK_SEQPACKET}) {
    UniqueFd probe(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!probe) return false;
    if (::connect(probe.get(), address.sockaddr_ptr(), address.len) == 0) return true;
    // A listening stream socket with a full backlog is alive too.
    if (errno == EAGAIN) return true;
    if (errno != EPROTOTYPE) return false;
  }
  return false;
}

absl::Status CheckExisting(const std::string& path, const UnixAddress& address) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, StrCat("stat ", Shown(path)));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::AlreadyExistsError(
        StrCat(Shown(path), " exists and is not a socket; not replacing it"));
  }
  if (SomeoneListens(address)) {
    return ErrnoStatus(EADDRINUSE, StrCat(Shown(path), " is in use by a running process"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<BoundSocket> BindReceiverSocket(const std::string& path, mode_t mode,
                                               bool sender_credentials) {
  auto address = MakeUnixAddress(path);
  if (!address.ok()) return ErrnoStatus(address.error(), StrCat("socket path '", Shown(path), "'"));
  if (absl::Status s = CheckExisting(path, *address); !s.ok()) return s;

  const std::string temp = StrCat(path, ".tmp", static_cast<long>(::getpid()));
  auto temp_address = MakeUnixAddress(temp);
  if (!temp_address.ok()) {
    return ErrnoStatus(temp_address.error(), StrCat("temporary socket path '", Shown(temp), "'"));
  }
  BoundSocket bound;
  bound.path = path;
  bound.fd.Reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!bound.fd) return ErrnoStatus(errno, "socket(AF_UNIX, SOCK_DGRAM)");
  if (sender_credentials && EnableSenderCredentials(bound.fd.get()) != 0) {
    return ErrnoStatus(errno, "SO_PASSCRED");
  }
  ::unlink(temp.c_str());  // left by a crashed earlier run with our pid
  if (::bind(bound.fd.get(), temp_address->sockaddr_ptr(), temp_address->len) != 0) {
    return ErrnoStatus(errno, StrCat("bind ", Shown(temp)));
  }
  struct stat st {};
  if (::chmod(temp.c_str(), mode) != 0 || ::lstat(temp.c_str(), &st) != 0 ||
      ::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    return ErrnoStatus(err, StrCat("chmod/rename ", Shown(temp), " to ", Shown(path)));
  }
  bound.dev = st.st_dev;
  bound.ino = st.st_ino;
  return bound;
}

void RemoveIfStillOurs(const BoundSocket& bound) {
  struct stat st {};
  if (::lstat(bound.path.c_str(), &st) == 0 && st.st_dev == bound.dev && st.st_ino == bound.ino) {
    ::unlink(bound.path.c_str());
  }
}

}  // namespace sbx
