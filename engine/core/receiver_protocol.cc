#include "engine/core/receiver_protocol.h"

#include <cerrno>
#include <cstring>

#include "engine/core/listener_request.h"

namespace sbx {
namespace {

constexpr unsigned char kMagic[4] = {'S', 'B', 'X', 'R'};
constexpr unsigned char kVersion = 1;
constexpr uint32_t kAcksFlag = 1;

void PutBig16(unsigned char* p, uint16_t v) {
  p[0] = static_cast<unsigned char>(v >> 8);
  p[1] = static_cast<unsigned char>(v);
}
void PutBig32(unsigned char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (24 - 8 * i));
}
uint16_t GetBig16(const unsigned char* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t GetBig32(const unsigned char* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

}  // namespace

void EncodeReceiverMessage(const ReceiverMessage& m, unsigned char out[kReceiverMessageBytes]) {
  std::memset(out, 0, kReceiverMessageBytes);
  std::memcpy(out, kMagic, sizeof(kMagic));
  out[4] = static_cast<unsigned char>(m.kind);
  out[5] = kVersion;
  if (m.kind == ReceiverMessageKind::kHello) {
    PutBig16(out + 6, m.max_fds);
    PutBig32(out + 8, m.acks ? kAcksFlag : 0);
  } else {
    PutBig32(out + 8, m.count);
  }
}

bool DecodeReceiverMessage(const unsigned char* data, size_t len, ReceiverMessage* out) {
  if (len != kReceiverMessageBytes || std::memcmp(data, kMagic, sizeof(kMagic)) != 0 ||
      data[5] != kVersion) {
    return false;
  }
  for (size_t i = 12; i < kReceiverMessageBytes; ++i) {
    if (data[i] != 0) return false;
  }
  ReceiverMessage m;
  const uint16_t word = GetBig16(data + 6);
  const uint32_t value = GetBig32(data + 8);
  switch (data[4]) {
    case static_cast<unsigned char>(ReceiverMessageKind::kHello):
      if (word < 1 || word > kMaxFdsPerMessage || (value & ~kAcksFlag) != 0) return false;
      m.kind = ReceiverMessageKind::kHello;
      m.max_fds = word;
      m.acks = (value & kAcksFlag) != 0;
      break;
    case static_cast<unsigned char>(ReceiverMessageKind::kAck):
      if (word != 0 || value == 0) return false;
      m.kind = ReceiverMessageKind::kAck;
      m.count = value;
      break;
    default:
      return false;
  }
  *out = m;
  return true;
}

SenderReplies::Sender* SenderReplies::Find(const sockaddr_un& from, socklen_t from_len) {
  // A new sender takes the least recently used entry that owes no ack, or
  // failing that the least recently used one. Acks an evicted entry still
  // owed are lost to its engine, whose count of what was taken then stays
  // behind by that much for the socket (docs/receiver-protocol.md).
  Sender* oldest = &senders_[0];
  Sender* oldest_settled = nullptr;
  for (Sender& s : senders_) {
    if (s.len == from_len && std::memcmp(&s.address, &from, from_len) == 0) return &s;
    if (s.last_use < oldest->last_use) oldest = &s;
    if (s.unacked == 0 && (oldest_settled == nullptr || s.last_use < oldest_settled->last_use)) {
      oldest_settled = &s;
    }
  }
  Sender* entry = oldest_settled != nullptr ? oldest_settled : oldest;
  *entry = Sender{};
  std::memcpy(&entry->address, &from, from_len);
  entry->len = from_len;
  return entry;
}

bool SenderReplies::Reply(int channel, Sender& s, const ReceiverMessage& message) {
  unsigned char bytes[kReceiverMessageBytes];
  EncodeReceiverMessage(message, bytes);
  const int saved = errno;  // callers (the preload) must see their own errno
  bool sent;
  if (s.relayed && relay_ >= 0) {
    sent = Relay(s, bytes);
  } else {
    ssize_t n;
    do {
      n = ::sendto(channel, bytes, sizeof(bytes), MSG_DONTWAIT | MSG_NOSIGNAL,
                   reinterpret_cast<const sockaddr*>(&s.address), s.len);
    } while (n < 0 && errno == EINTR);
    sent = n == static_cast<ssize_t>(sizeof(bytes));
    // The name is not in this network namespace: the channel crosses.
    if (!sent && errno == ECONNREFUSED && relay_ >= 0) {
      s.relayed = true;
      sent = Relay(s, bytes);
    }
  }
  errno = saved;
  return sent;
}

bool SenderReplies::Relay(const Sender& s, const unsigned char* bytes) {
  unsigned char relayed[kRelayedReplyMaxBytes];
  const size_t len = EncodeRelayedReply(bytes, s.address, s.len, relayed);
  ssize_t n;
  do {
    n = ::send(relay_, relayed, len, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(len);
}

void SenderReplies::OnMessage(int channel, const sockaddr_un& from, socklen_t from_len,
                              size_t fds) {
  // An unnamed sender (from_len covers the family only, or nothing) cannot
  // be answered.
  if (!capabilities_.active() || from_len <= sizeof(sa_family_t) ||
      from_len > sizeof(sockaddr_un) || from.sun_family != AF_UNIX) {
    return;
  }
  Sender* s = Find(from, from_len);
  s->last_use = ++clock_;
  if (capabilities_.acks) s->unacked += static_cast<uint32_t>(fds);
  if (!s->greeted) {
    s->greeted =
        Reply(channel, *s, ReceiverMessage::Hello(capabilities_.max_fds, capabilities_.acks));
  }
  // Acks only after the hello: the engine takes none from a receiver it has
  // not heard declare them. Nothing is lost meanwhile: the count waits.
  if (s->greeted && s->unacked > 0) {
    if (Reply(channel, *s, ReceiverMessage::Ack(s->unacked))) s->unacked = 0;
  }
}

}  // namespace sbx
