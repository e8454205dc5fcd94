#include "engine/sys/fd_channel_check.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

namespace sbx {
namespace {

std::string Fd(int fd) { return "fd " + std::to_string(fd); }

const char* FileKind(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFIFO:
      return "a pipe";
    case S_IFREG:
      return "a regular file";
    case S_IFDIR:
      return "a directory";
    case S_IFCHR:
      return "a character device";
    case S_IFBLK:
      return "a block device";
    case S_IFLNK:
      return "a symbolic link";
    default:
      return "a special fd (an eventfd, epoll, io_uring, ...)";
  }
}

std::string FamilyName(int family) {
  switch (family) {
    case AF_INET:
      return "AF_INET";
    case AF_INET6:
      return "AF_INET6";
    case AF_NETLINK:
      return "AF_NETLINK";
    case AF_PACKET:
      return "AF_PACKET";
    default:
      return "family " + std::to_string(family);
  }
}

const char* TypeName(int type) {
  switch (type) {
    case SOCK_STREAM:
      return "stream";
    case SOCK_DGRAM:
      return "datagram";
    case SOCK_SEQPACKET:
      return "seqpacket";
    default:
      return nullptr;
  }
}

int IntOption(int fd, int name, int* value) {
  socklen_t len = sizeof(*value);
  return ::getsockopt(fd, SOL_SOCKET, name, value, &len) == 0 ? 0 : errno;
}

}  // namespace

std::string FdChannelProblem(int fd) {
  if (fd < 0) return Fd(fd) + " is not a file descriptor";
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return errno == EBADF ? Fd(fd) + " is not open" : Fd(fd) + ": fstat: " + std::strerror(errno);
  }
  if (!S_ISSOCK(st.st_mode)) return Fd(fd) + " is " + FileKind(st.st_mode) + ", not a socket";
  int family = 0, type = 0, listening = 0;
  if (int err = IntOption(fd, SO_DOMAIN, &family); err != 0) {
    return Fd(fd) + ": getsockopt(SO_DOMAIN): " + std::strerror(err);
  }
  if (family != AF_UNIX)
    return Fd(fd) + " is an " + FamilyName(family) + " socket, not a Unix socket";
  if (int err = IntOption(fd, SO_TYPE, &type); err != 0) {
    return Fd(fd) + ": getsockopt(SO_TYPE): " + std::strerror(err);
  }
  const char* type_name = TypeName(type);
  if (type_name == nullptr) {
    return Fd(fd) + " is a Unix socket of type " + std::to_string(type) +
           ", which cannot carry SCM_RIGHTS";
  }
  if (IntOption(fd, SO_ACCEPTCONN, &listening) == 0 && listening != 0) {
    return Fd(fd) + " is a listening Unix " + type_name + " socket, not a connected one";
  }
  sockaddr_un peer{};
  socklen_t len = sizeof(peer);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) {
    if (errno == ENOTCONN)
      return Fd(fd) + " is a Unix " + type_name + " socket that is not connected";
    return Fd(fd) + ": getpeername: " + std::strerror(errno);
  }
  return {};
}

}  // namespace sbx
