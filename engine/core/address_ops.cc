#include "engine/core/address_ops.h"

#include <sys/socket.h>

#include <cerrno>

#include "engine/core/unix_address.h"

namespace sbx {
namespace {

template <typename Fn>
SysResult<SocketAddress> AddressOf(int fd, Fn fn) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (fn(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return SysResult<SocketAddress>::FromErrno();
  }
  auto address = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  if (!address) return SysResult<SocketAddress>::Error(EAFNOSUPPORT);
  return *address;
}

}  // namespace

SysResult<SocketAddress> LocalAddressOf(int fd) { return AddressOf(fd, ::getsockname); }
SysResult<SocketAddress> PeerAddressOf(int fd) { return AddressOf(fd, ::getpeername); }

SysResult<UniqueFd> ConnectUnixDatagram(std::string_view path) {
  auto address = MakeUnixAddress(path);
  if (!address.ok()) return SysResult<UniqueFd>::Error(address.error());
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return SysResult<UniqueFd>::FromErrno();
  if (::connect(fd.get(), address->sockaddr_ptr(), address->len) != 0) {
    return SysResult<UniqueFd>::FromErrno();
  }
  return fd;
}

}  // namespace sbx
