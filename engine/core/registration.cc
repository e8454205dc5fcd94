#include "engine/core/registration.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>

#include "engine/core/sender_filter.h"
#include "engine/core/unix_address.h"

namespace sbx {
namespace {

// True once `fd` is readable (or has an error or EOF to report); false with
// errno set, ETIMEDOUT when `timeout_ms` passed first.
bool WaitReadable(int fd, int timeout_ms) {
  using std::chrono::steady_clock;
  const auto deadline = steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
  errno = ETIMEDOUT;
  return false;
}

}  // namespace

std::array<uint8_t, kRegisterRequestSize> EncodeRegisterRequest(uint32_t group) {
  return {kRegisterCommand,
          0,
          0,
          0,
          static_cast<uint8_t>(group >> 24),
          static_cast<uint8_t>(group >> 16),
          static_cast<uint8_t>(group >> 8),
          static_cast<uint8_t>(group)};
}

std::optional<uint32_t> DecodeRegisterRequest(const uint8_t* data, size_t size) {
  if (data == nullptr || size != kRegisterRequestSize) return std::nullopt;
  if (data[0] != kRegisterCommand || data[1] != 0 || data[2] != 0 || data[3] != 0) {
    return std::nullopt;
  }
  return static_cast<uint32_t>(data[4]) << 24 | static_cast<uint32_t>(data[5]) << 16 |
         static_cast<uint32_t>(data[6]) << 8 | static_cast<uint32_t>(data[7]);
}

std::array<uint8_t, kRegisterResponseSize> EncodeRegisterResponse(bool success) {
  return {static_cast<uint8_t>(success ? kRegisterSuccess : 0), 0, 0, 0};
}

std::optional<bool> DecodeRegisterResponse(const uint8_t* data, size_t size) {
  if (data == nullptr || size < kRegisterResponseSize) return std::nullopt;
  return data[0] == kRegisterSuccess;
}

SysResult<UniqueFd> RegisterWithServer(std::string_view path, uint32_t group, int timeout_ms,
                                       bool sender_credentials) {
  using Result = SysResult<UniqueFd>;
  auto address = MakeUnixAddress(path);
  if (!address.ok()) return Result::Error(address.error());
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) return Result::FromErrno();
  if (sender_credentials && EnableSenderCredentials(fd.get()) != 0) return Result::FromErrno();
  while (::connect(fd.get(), address->sockaddr_ptr(), address->len) != 0) {
    if (errno != EINTR) return Result::FromErrno();
  }
  const auto request = EncodeRegisterRequest(group);
  ssize_t n;
  while ((n = ::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL)) < 0) {
    if (errno != EINTR) return Result::FromErrno();
  }
  if (static_cast<size_t>(n) != request.size()) return Result::Error(EPROTO);
  if (!WaitReadable(fd.get(), timeout_ms)) return Result::FromErrno();
  uint8_t response[kRegisterResponseSize + 16];
  while ((n = ::recv(fd.get(), response, sizeof(response), MSG_DONTWAIT)) < 0) {
    if (errno != EINTR) return Result::FromErrno();
  }
  auto accepted = DecodeRegisterResponse(response, static_cast<size_t>(n));
  if (!accepted) return Result::Error(EPROTO);
  if (!*accepted) return Result::Error(EACCES);
  return fd;
}

}  // namespace sbx
