#include "engine/core/listener_request.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "engine/core/control_data.h"
#include "engine/core/unix_address.h"

namespace sbx {
namespace {

constexpr unsigned char kMagic[4] = {'S', 'B', 'X', 'R'};
constexpr uint8_t kVersion = 1;

void EncodeHeader(uint8_t kind, unsigned char out[kListenerMessageBytes]) {
  std::memset(out, 0, kListenerMessageBytes);
  std::memcpy(out, kMagic, sizeof kMagic);
  out[4] = kind;
  out[5] = kVersion;
}

bool HeaderIs(const unsigned char* data, uint8_t kind) {
  return std::memcmp(data, kMagic, sizeof kMagic) == 0 && data[4] == kind && data[5] == kVersion &&
         data[6] == 0 && data[7] == 0 && data[12] == 0 && data[13] == 0 && data[14] == 0 &&
         data[15] == 0;
}

}  // namespace

void EncodeListenerRequest(uint32_t flags, unsigned char out[kListenerMessageBytes]) {
  EncodeHeader(kListenerRequestKind, out);
  out[8] = static_cast<unsigned char>(flags >> 24);
  out[9] = static_cast<unsigned char>(flags >> 16);
  out[10] = static_cast<unsigned char>(flags >> 8);
  out[11] = static_cast<unsigned char>(flags);
}

bool IsListenerRequest(const unsigned char* data, size_t len, uint32_t* flags) {
  if (len < kListenerMessageBytes || !HeaderIs(data, kListenerRequestKind)) return false;
  *flags = static_cast<uint32_t>(data[8]) << 24 | static_cast<uint32_t>(data[9]) << 16 |
           static_cast<uint32_t>(data[10]) << 8 | data[11];
  return (*flags & ~kRequestReplyChannelOnly) == 0;
}

size_t EncodeRelayedReply(const unsigned char reply[kReceiverMessageBytes], const sockaddr_un& to,
                          socklen_t to_len, unsigned char out[kRelayedReplyMaxBytes]) {
  constexpr size_t kPathOffset = offsetof(sockaddr_un, sun_path);
  if (to_len <= kPathOffset || to_len > sizeof(sockaddr_un)) return 0;
  const size_t name = to_len - kPathOffset;
  std::memcpy(out, reply, kReceiverMessageBytes);
  std::memcpy(out + kReceiverMessageBytes, to.sun_path, name);
  return kReceiverMessageBytes + name;
}

bool DecodeRelayedReply(const unsigned char* data, size_t len, ReceiverMessage* reply,
                        std::string_view* sender) {
  if (len <= kReceiverMessageBytes || len > kRelayedReplyMaxBytes ||
      !DecodeReceiverMessage(data, kReceiverMessageBytes, reply)) {
    return false;
  }
  *sender = std::string_view(reinterpret_cast<const char*>(data) + kReceiverMessageBytes,
                             len - kReceiverMessageBytes);
  return true;
}

void EncodeListenerAnswer(uint32_t status, unsigned char out[kListenerMessageBytes]) {
  EncodeHeader(kListenerAnswerKind, out);
  out[8] = static_cast<unsigned char>(status >> 24);
  out[9] = static_cast<unsigned char>(status >> 16);
  out[10] = static_cast<unsigned char>(status >> 8);
  out[11] = static_cast<unsigned char>(status);
}

bool DecodeListenerAnswer(const unsigned char* data, size_t len, uint32_t* status) {
  if (len != kListenerMessageBytes || !HeaderIs(data, kListenerAnswerKind)) return false;
  *status = static_cast<uint32_t>(data[8]) << 24 | static_cast<uint32_t>(data[9]) << 16 |
            static_cast<uint32_t>(data[10]) << 8 | data[11];
  return true;
}

const char* ListenerSocketPath() {
  const char* env = std::getenv(kListenerSocketEnv);
  return env != nullptr && env[0] != '\0' ? env : kDefaultListenerSocket;
}

namespace {

// Both requests: the listener (flags 0) or the channel alone.
SysResult<TakenListener> Request(int receiving_socket, const char* engine_path,
                                 const char* path_hint, int timeout_ms, uint32_t flags) {
  SysResult<UnixAddress> engine = MakeUnixAddress(engine_path);
  if (!engine.ok()) return SysResult<TakenListener>::Error(engine.error());
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return SysResult<TakenListener>::FromErrno();
  }
  UniqueFd ours(pair[0]), theirs(pair[1]);
  UniqueFd sender(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sender) return SysResult<TakenListener>::FromErrno();

  unsigned char request[kListenerMessageBytes + sizeof(sockaddr_un::sun_path)];
  EncodeListenerRequest(flags, request);
  size_t len = kListenerMessageBytes;
  if (path_hint != nullptr) {
    const size_t hint = std::min(std::strlen(path_hint), sizeof(sockaddr_un::sun_path));
    // Without its terminator: the datagram's length ends the hint.
    std::memcpy(request + len, path_hint, hint);  // NOLINT(bugprone-not-null-terminated-result)
    len += hint;
  }
  iovec iov{request, len};
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(2 * sizeof(int))]{};
  msghdr msg{};
  msg.msg_name = const_cast<sockaddr_un*>(&engine->addr);
  msg.msg_namelen = engine->len;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(2 * sizeof(int));
  const int fds[2] = {receiving_socket, theirs.get()};
  std::memcpy(CMSG_DATA(c), fds, sizeof fds);
  // Blocking, within the timeout: the engine's socket queues few requests,
  // and a flood of bogus ones from others must delay a real one, not make
  // it fail at once.
  const timeval send_timeout{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(sender.get(), SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
  const auto started = std::chrono::steady_clock::now();
  if (::sendmsg(sender.get(), &msg, MSG_NOSIGNAL) < 0) {
    return SysResult<TakenListener>::Error(errno == EWOULDBLOCK ? ETIMEDOUT : errno);
  }
  const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now() - started)
                         .count();
  timeout_ms = static_cast<int>(std::max<int64_t>(timeout_ms - spent, 0));
  theirs.Reset();  // the engine holds it now: its closing is the engine's answer too

  pollfd p{ours.get(), POLLIN, 0};
  const int ready = ::poll(&p, 1, timeout_ms);
  if (ready < 0) return SysResult<TakenListener>::FromErrno();
  if (ready == 0) return SysResult<TakenListener>::Error(ETIMEDOUT);

  unsigned char answer[kListenerMessageBytes + 1];
  iovec in{answer, sizeof answer};
  alignas(cmsghdr) unsigned char in_control[CMSG_SPACE(sizeof(int))]{};
  msghdr reply{};
  reply.msg_iov = &in;
  reply.msg_iovlen = 1;
  reply.msg_control = in_control;
  reply.msg_controllen = sizeof in_control;
  const ssize_t n = ::recvmsg(ours.get(), &reply, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (n < 0) return SysResult<TakenListener>::FromErrno();
  UniqueFd listener;
  ForEachReceivedFd(&reply, [&](int fd) {
    if (!listener) {
      listener.Reset(fd);
    } else {
      ::close(fd);
    }
  });
  uint32_t status = 0;
  if (n == 0) return SysResult<TakenListener>::Error(ECONNRESET);  // the engine hung up
  if (!DecodeListenerAnswer(answer, static_cast<size_t>(n), &status) ||
      (reply.msg_flags & MSG_CTRUNC) != 0) {
    return SysResult<TakenListener>::Error(EPROTO);
  }
  if (status != 0) return SysResult<TakenListener>::Error(static_cast<int>(status));
  if ((flags & kRequestReplyChannelOnly) != 0) {
    if (listener) return SysResult<TakenListener>::Error(EPROTO);
    return TakenListener{UniqueFd(), std::move(ours)};
  }
  int type = 0, listening = 0;
  socklen_t type_len = sizeof type, listening_len = sizeof listening;
  if (!listener || ::getsockopt(listener.get(), SOL_SOCKET, SO_TYPE, &type, &type_len) != 0 ||
      ::getsockopt(listener.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &listening_len) != 0 ||
      type != SOCK_STREAM || listening == 0) {
    return SysResult<TakenListener>::Error(EPROTO);
  }
  return TakenListener{std::move(listener), std::move(ours)};
}

}  // namespace

SysResult<TakenListener> RequestListener(int receiving_socket, const char* engine_path,
                                         const char* path_hint, int timeout_ms) {
  return Request(receiving_socket, engine_path, path_hint, timeout_ms, 0);
}

SysResult<UniqueFd> RequestReplyChannel(int receiving_socket, const char* engine_path,
                                        const char* path_hint, int timeout_ms) {
  SysResult<TakenListener> taken =
      Request(receiving_socket, engine_path, path_hint, timeout_ms, kRequestReplyChannelOnly);
  if (!taken.ok()) return SysResult<UniqueFd>::Error(taken.error());
  return std::move(taken->channel);
}

}  // namespace sbx
