// The receiver protocol: this project's extension of the "A" protocol
// (fd_passing.h), by which a receiver tells the engine what more it can do.
// Nothing changes for a receiver that does not speak it: the engine sends it
// one fd per message, as the original does, and never anything else.
//
// Receiver -> sender: 16-byte datagrams, sent on the receiving socket to the
// address a received message came from (msg_name; the engine's sending
// sockets are autobound for this). A sender without an address gets none.
//
//   bytes 0-3    'S' 'B' 'X' 'R'
//   byte  4      kind: 1 hello, 2 ack
//   byte  5      version: 1
//   bytes 6-7    hello: the most fds the receiver takes in one message
//                (big-endian, 1..kMaxFdsPerMessage); ack: 0
//   bytes 8-11   hello: flags (bit 0: this receiver acknowledges);
//                ack: how many fds it received from this sender since
//                its previous ack (big-endian)
//   bytes 12-15  0
//
// hello  once per sender address, after the first message from it;
//        repeated by every process that reads the socket (harmless).
// ack    after every message that carried fds: the number of fds it
//        carried (all of them, also any the receiver closed unused),
//        counted per sender; a count that could not be sent (EAGAIN) is
//        added to the next. Counts are increments, so several processes
//        reading one socket can each acknowledge what they took; the
//        socket's queue is FIFO, so the engine knows the first N fds it
//        sent were taken, however they were packed into messages.
//
// Sender -> receiver: besides fd messages, a probe (payload 'S' 'B' 'X'
// 'P', no fd), sent only to receivers that acknowledge, to find out whether
// their socket is still there; receivers skip it (it carries no fd).
//
// Free of abseil and exceptions: the preload library uses it too.
#ifndef SBX_ENGINE_CORE_RECEIVER_PROTOCOL_H_
#define SBX_ENGINE_CORE_RECEIVER_PROTOCOL_H_

#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdint>

namespace sbx {

inline constexpr size_t kReceiverMessageBytes = 16;
// The most fds a receiver may ask for in one message. SCM_MAX_FD is 253;
// past a few dozen the per-fd cost no longer falls (bench/hop_benchmark).
inline constexpr uint16_t kMaxFdsPerMessage = 64;
inline constexpr unsigned char kProbePayload[4] = {'S', 'B', 'X', 'P'};

enum class ReceiverMessageKind : uint8_t { kHello = 1, kAck = 2 };

struct ReceiverMessage {
  ReceiverMessageKind kind = ReceiverMessageKind::kHello;
  uint16_t max_fds = 1;  // hello
  bool acks = false;     // hello
  uint32_t count = 0;    // ack

  static ReceiverMessage Hello(uint16_t max_fds, bool acks) {
    return {ReceiverMessageKind::kHello, max_fds, acks, 0};
  }
  static ReceiverMessage Ack(uint32_t count) {
    return {ReceiverMessageKind::kAck, 0, false, count};
  }
};

void EncodeReceiverMessage(const ReceiverMessage& message,
                           unsigned char out[kReceiverMessageBytes]);
// False for anything that is not exactly a well-formed message (length,
// magic, kind, version, max_fds range, reserved bytes).
bool DecodeReceiverMessage(const unsigned char* data, size_t len, ReceiverMessage* out);

// What a receiver declares in its hello.
struct ReceiverCapabilities {
  uint16_t max_fds = 1;  // 1..kMaxFdsPerMessage
  bool acks = false;
  bool active() const { return max_fds > 1 || acks; }
};

// The receiving side's bookkeeping: a hello per sender address, and acks.
// Non-blocking (MSG_DONTWAIT); a reply that cannot be sent now is retried
// with the next message. A small fixed table of recent senders (no
// allocation); a sender evicted from it gets a fresh hello later. Not
// thread-safe: one per receiving socket per thread, or locked by the caller.
class SenderReplies {
 public:
  explicit SenderReplies(ReceiverCapabilities capabilities) : capabilities_(capabilities) {}

  // After a message from `from` (msg_name as recvmsg returned it) arrived on
  // the datagram socket `channel`. No-op when capabilities are inactive or
  // the sender has no address.
  void OnMessage(int channel, const sockaddr_un& from, socklen_t from_len, size_t fds);

  const ReceiverCapabilities& capabilities() const { return capabilities_; }

  // A kernel dispatch channel (listener_request.h; borrowed, -1 for none):
  // answers a sender's name cannot take (ECONNREFUSED: it is in another
  // network namespace) go there as relayed replies, and so do all later
  // answers to that sender.
  void set_relay(int channel) { relay_ = channel; }

 private:
  struct Sender {
    sockaddr_un address{};
    socklen_t len = 0;
    bool greeted = false;
    bool relayed = false;  // answered over the relay
    uint32_t unacked = 0;
    uint64_t last_use = 0;
  };
  static constexpr size_t kSenders = 8;

  Sender* Find(const sockaddr_un& from, socklen_t from_len);
  bool Reply(int channel, Sender& s, const ReceiverMessage& message);
  bool Relay(const Sender& s, const unsigned char* bytes);

  ReceiverCapabilities capabilities_;
  Sender senders_[kSenders];
  uint64_t clock_ = 0;
  int relay_ = -1;
};

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_RECEIVER_PROTOCOL_H_
