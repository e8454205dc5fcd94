// The receiver protocol (engine/core/receiver_protocol.h): the wire format
// as a table, and SenderReplies between real datagram sockets: a receiver
// bound to a path and senders autobound (as the engine's are) and connected
// to it, which read back what the receiver answered.
#include "engine/core/receiver_protocol.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/fd_passing.h"
#include "engine/core/listener_request.h"
#include "gtest/gtest.h"
#include "tests/unit/fd_test_support.h"

namespace sbx {
namespace {

using Bytes = std::vector<unsigned char>;

Bytes Encode(const ReceiverMessage& m) {
  Bytes out(kReceiverMessageBytes);
  EncodeReceiverMessage(m, out.data());
  return out;
}

TEST(ReceiverMessageTest, WireFormat) {
  EXPECT_EQ(Encode(ReceiverMessage::Hello(64, true)),
            (Bytes{'S', 'B', 'X', 'R', 1, 1, 0, 64, 0, 0, 0, 1, 0, 0, 0, 0}));
  EXPECT_EQ(Encode(ReceiverMessage::Hello(1, false)),
            (Bytes{'S', 'B', 'X', 'R', 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(Encode(ReceiverMessage::Ack(0x01020304)),
            (Bytes{'S', 'B', 'X', 'R', 2, 1, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0}));
}

TEST(ReceiverMessageTest, DecodeRoundTrip) {
  const ReceiverMessage cases[] = {
      ReceiverMessage::Hello(1, false), ReceiverMessage::Hello(1, true),
      ReceiverMessage::Hello(2, false), ReceiverMessage::Hello(kMaxFdsPerMessage, true),
      ReceiverMessage::Ack(1),          ReceiverMessage::Ack(0xffffffff)};
  for (const ReceiverMessage& m : cases) {
    const Bytes bytes = Encode(m);
    ReceiverMessage got;
    ASSERT_TRUE(DecodeReceiverMessage(bytes.data(), bytes.size(), &got));
    EXPECT_EQ(got.kind, m.kind);
    if (m.kind == ReceiverMessageKind::kHello) {
      EXPECT_EQ(got.max_fds, m.max_fds);
      EXPECT_EQ(got.acks, m.acks);
    } else {
      EXPECT_EQ(got.count, m.count);
    }
  }
}

TEST(ReceiverMessageTest, DecodeRejects) {
  const Bytes hello = Encode(ReceiverMessage::Hello(4, true));
  const Bytes ack = Encode(ReceiverMessage::Ack(3));
  struct Case {
    const char* what;
    Bytes base;
    size_t offset;
    unsigned char value;
  };
  const Case cases[] = {
      {"bad magic", hello, 0, 'T'},
      {"bad magic (last byte)", ack, 3, 'P'},
      {"kind 0", hello, 4, 0},
      {"kind 3", ack, 4, 3},
      {"version 0", hello, 5, 0},
      {"version 2", ack, 5, 2},
      {"hello max_fds 0", hello, 7, 0},
      {"hello max_fds past the limit", hello, 7, kMaxFdsPerMessage + 1},
      {"hello max_fds high byte", hello, 6, 1},
      {"hello unknown flag", hello, 11, 3},
      {"hello flags high byte", hello, 8, 0x80},
      {"ack count 0", ack, 11, 0},
      {"ack with a max_fds word", ack, 7, 1},
      {"reserved byte 12", hello, 12, 1},
      {"reserved byte 15", ack, 15, 0xff},
  };
  for (const Case& c : cases) {
    Bytes bytes = c.base;
    bytes[c.offset] = c.value;
    ReceiverMessage got;
    EXPECT_FALSE(DecodeReceiverMessage(bytes.data(), bytes.size(), &got)) << c.what;
  }
  ReceiverMessage got;
  EXPECT_FALSE(DecodeReceiverMessage(hello.data(), hello.size() - 1, &got)) << "short";
  Bytes longer = hello;
  longer.push_back(0);
  EXPECT_FALSE(DecodeReceiverMessage(longer.data(), longer.size(), &got)) << "long";
}

// A receiver's datagram socket at a path, and senders connected to it.
class SenderRepliesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(::mkdtemp(dir_), nullptr);
    path_ = std::string(dir_) + "/receiver.sock";
    receiver_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    address_ = MakeUnixAddress(path_).value();
    ASSERT_EQ(::bind(receiver_.get(), address_.sockaddr_ptr(), address_.len), 0);
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(dir_);
  }

  // Autobound (an abstract name the kernel picks) like the engine's sending
  // sockets, or unnamed.
  UniqueFd NewSender(bool named = true) {
    UniqueFd s(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sa_family_t family = AF_UNIX;
    if (named) {
      EXPECT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&family), sizeof(family)), 0);
    }
    EXPECT_EQ(::connect(s.get(), address_.sockaddr_ptr(), address_.len), 0);
    return s;
  }

  static ReceiveOptions Answering(SenderReplies& replies) {
    ReceiveOptions options;
    options.replies = &replies;
    options.recv_flags = MSG_DONTWAIT;
    return options;
  }

  // Sends one fd (a fresh connection stand-in) and has the receiver take it.
  void Deliver(int sender, SenderReplies& replies) {
    Pair conn = SocketPair(SOCK_STREAM);
    ASSERT_TRUE(SendFd(sender, conn.a.get()).ok());
    auto got = ReceiveFd(receiver_.get(), Answering(replies));
    ASSERT_TRUE(got.ok()) << strerror(got.error());
  }

  // Everything the receiver sent back to `sender`, decoded (a datagram that
  // does not decode fails the test).
  static std::vector<ReceiverMessage> Replies(int sender) {
    std::vector<ReceiverMessage> out;
    unsigned char buf[64];
    ssize_t n;
    while ((n = ::recv(sender, buf, sizeof(buf), MSG_DONTWAIT)) >= 0) {
      ReceiverMessage m;
      EXPECT_TRUE(DecodeReceiverMessage(buf, static_cast<size_t>(n), &m)) << n << " bytes";
      out.push_back(m);
    }
    EXPECT_EQ(errno, EAGAIN);
    return out;
  }
  static int CountHellos(const std::vector<ReceiverMessage>& replies) {
    int n = 0;
    for (const ReceiverMessage& m : replies) n += m.kind == ReceiverMessageKind::kHello;
    return n;
  }
  static uint32_t SumAcks(const std::vector<ReceiverMessage>& replies) {
    uint32_t n = 0;
    for (const ReceiverMessage& m : replies) {
      if (m.kind == ReceiverMessageKind::kAck) n += m.count;
    }
    return n;
  }

  char dir_[32] = "/tmp/sbx-replies-XXXXXX";
  std::string path_;
  UnixAddress address_;
  UniqueFd receiver_;
};

TEST_F(SenderRepliesTest, ReceiverThatDeclaresNothingSendsNothing) {
  SenderReplies replies(ReceiverCapabilities{});
  UniqueFd sender = NewSender();
  Deliver(sender.get(), replies);
  Deliver(sender.get(), replies);
  EXPECT_TRUE(Replies(sender.get()).empty());
}

TEST_F(SenderRepliesTest, OneHelloPerSenderThenAnAckPerMessage) {
  SenderReplies replies(ReceiverCapabilities{8, true});
  UniqueFd a = NewSender();
  UniqueFd b = NewSender();
  for (int i = 0; i < 3; ++i) Deliver(a.get(), replies);
  Deliver(b.get(), replies);
  const auto to_a = Replies(a.get());
  ASSERT_EQ(to_a.size(), 4u);
  EXPECT_EQ(to_a[0].kind, ReceiverMessageKind::kHello);  // before any ack
  EXPECT_EQ(to_a[0].max_fds, 8);
  EXPECT_TRUE(to_a[0].acks);
  EXPECT_EQ(CountHellos(to_a), 1);
  EXPECT_EQ(SumAcks(to_a), 3u);
  const auto to_b = Replies(b.get());
  EXPECT_EQ(CountHellos(to_b), 1);
  EXPECT_EQ(SumAcks(to_b), 1u);
}

TEST_F(SenderRepliesTest, MaxFdsWithoutAcksSendsOnlyTheHello) {
  SenderReplies replies(ReceiverCapabilities{4, false});
  UniqueFd sender = NewSender();
  for (int i = 0; i < 3; ++i) Deliver(sender.get(), replies);
  const auto got = Replies(sender.get());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].kind, ReceiverMessageKind::kHello);
  EXPECT_EQ(got[0].max_fds, 4);
  EXPECT_FALSE(got[0].acks);
}

// The engine's probe carries no fd: ReceiveFd skips it and it is not
// counted, so acks still say how many fds-carrying messages arrived.
TEST_F(SenderRepliesTest, ProbeIsSkippedAndNotAcknowledged) {
  SenderReplies replies(ReceiverCapabilities{1, true});
  UniqueFd sender = NewSender();
  ASSERT_EQ(::send(sender.get(), kProbePayload, sizeof(kProbePayload), 0),
            static_cast<ssize_t>(sizeof(kProbePayload)));
  Deliver(sender.get(), replies);  // reads the probe, then the fd
  ASSERT_EQ(::send(sender.get(), kProbePayload, sizeof(kProbePayload), 0),
            static_cast<ssize_t>(sizeof(kProbePayload)));
  EXPECT_EQ(ReceiveFd(receiver_.get(), Answering(replies)).error(), EAGAIN);
  const auto got = Replies(sender.get());
  EXPECT_EQ(CountHellos(got), 1);
  EXPECT_EQ(SumAcks(got), 1u);
}

// A message whose fd the strict level rejects was still taken off the
// socket: it is acknowledged (the engine must not send it again).
TEST_F(SenderRepliesTest, RejectedFdIsStillAcknowledged) {
  SenderReplies replies(ReceiverCapabilities{1, true});
  UniqueFd sender = NewSender();
  Pair dgram = SocketPair(SOCK_DGRAM);
  ASSERT_TRUE(SendFd(sender.get(), dgram.a.get()).ok());
  Deliver(sender.get(), replies);
  EXPECT_EQ(SumAcks(Replies(sender.get())), 2u);
}

// While the sender's queue is full the ack cannot go out (MSG_DONTWAIT);
// its count is added to the next one, so the total stays exact.
TEST_F(SenderRepliesTest, AckThatHitsEagainIsCarriedIntoTheNext) {
  SenderReplies replies(ReceiverCapabilities{1, true});
  UniqueFd sender = NewSender();
  Deliver(sender.get(), replies);
  ASSERT_EQ(SumAcks(Replies(sender.get())), 1u);

  // Fill the way back with filler: what the sender has not read stays
  // charged to the receiver's SO_SNDBUF (a connected sender is spared the
  // max_dgram_qlen check), so sends to it soon fail with EAGAIN.
  sockaddr_un name{};
  socklen_t name_len = sizeof(name);
  ASSERT_EQ(::getsockname(sender.get(), reinterpret_cast<sockaddr*>(&name), &name_len), 0);
  const char filler = 'f';
  int sent = 0;
  while (::sendto(receiver_.get(), &filler, 1, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&name),
                  name_len) == 1) {
    ASSERT_LT(++sent, 1000000);
  }
  ASSERT_EQ(errno, EAGAIN);
  Deliver(sender.get(), replies);
  Deliver(sender.get(), replies);

  // Drain the filler: nothing but filler was queued (the acks failed).
  char buf[64];
  for (int i = 0; i < sent; ++i) {
    ASSERT_EQ(::recv(sender.get(), buf, sizeof(buf), MSG_DONTWAIT), 1);
  }
  EXPECT_EQ(::recv(sender.get(), buf, sizeof(buf), MSG_DONTWAIT), -1);
  Deliver(sender.get(), replies);
  const auto got = Replies(sender.get());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].kind, ReceiverMessageKind::kAck);
  EXPECT_EQ(got[0].count, 3u);
}

TEST_F(SenderRepliesTest, UnnamedSenderGetsNoReply) {
  SenderReplies replies(ReceiverCapabilities{4, true});
  UniqueFd sender = NewSender(/*named=*/false);
  Deliver(sender.get(), replies);
  EXPECT_TRUE(Replies(sender.get()).empty());
  // A socketpair's end has no name either.
  Pair pair = SocketPair(SOCK_DGRAM);
  Pair conn = SocketPair(SOCK_STREAM);
  ASSERT_TRUE(SendFd(pair.a.get(), conn.a.get()).ok());
  ASSERT_TRUE(ReceiveFd(pair.b.get(), Answering(replies)).ok());
  EXPECT_TRUE(Replies(pair.a.get()).empty());
}

// The table of senders keeps the most recently heard: the one evicted is the
// least recently used, and it is greeted again when it comes back.
TEST_F(SenderRepliesTest, LeastRecentlyUsedSenderIsEvicted) {
  SenderReplies replies(ReceiverCapabilities{1, true});
  constexpr int kTable = 8;  // SenderReplies::kSenders
  std::vector<UniqueFd> senders;
  for (int i = 0; i <= kTable; ++i) senders.push_back(NewSender());
  for (int i = 0; i < kTable; ++i) Deliver(senders[i].get(), replies);
  Deliver(senders[0].get(), replies);       // 0 is recent again: 1 is the oldest
  Deliver(senders[kTable].get(), replies);  // takes 1's place
  for (UniqueFd& s : senders) ASSERT_EQ(CountHellos(Replies(s.get())), 1);

  Deliver(senders[0].get(), replies);
  Deliver(senders[2].get(), replies);
  EXPECT_EQ(CountHellos(Replies(senders[0].get())), 0);
  EXPECT_EQ(CountHellos(Replies(senders[2].get())), 0);
  Deliver(senders[1].get(), replies);
  const auto back = Replies(senders[1].get());
  EXPECT_EQ(CountHellos(back), 1);
  EXPECT_EQ(SumAcks(back), 1u);
}

// A sender the receiver cannot reach (here: gone; in life: in another network
// namespace, where its abstract name does not exist) is answered over the
// relay, with its name, and so is every later answer to it.
TEST_F(SenderRepliesTest, UnreachableSenderIsAnsweredOverTheRelay) {
  SenderReplies replies(ReceiverCapabilities{8, true});
  Pair relay = SocketPair(SOCK_SEQPACKET);
  replies.set_relay(relay.a.get());
  UniqueFd sender = NewSender();
  sockaddr_un name{};
  socklen_t name_len = sizeof name;
  ASSERT_EQ(::getsockname(sender.get(), reinterpret_cast<sockaddr*>(&name), &name_len), 0);
  const std::string sender_name(name.sun_path, name_len - offsetof(sockaddr_un, sun_path));
  for (int i = 0; i < 2; ++i) {
    Pair conn = SocketPair(SOCK_STREAM);
    ASSERT_TRUE(SendFd(sender.get(), conn.a.get()).ok());
  }
  sender.Reset();  // its name is gone: a direct answer is refused
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(ReceiveFd(receiver_.get(), Answering(replies)).ok());
  std::vector<ReceiverMessage> relayed;
  unsigned char buf[kRelayedReplyMaxBytes + 1];
  ssize_t n;
  while ((n = ::recv(relay.b.get(), buf, sizeof buf, MSG_DONTWAIT)) > 0) {
    ReceiverMessage m;
    std::string_view from;
    ASSERT_TRUE(DecodeRelayedReply(buf, static_cast<size_t>(n), &m, &from)) << n << " bytes";
    EXPECT_EQ(from, sender_name);
    relayed.push_back(m);
  }
  ASSERT_EQ(relayed.size(), 3u);
  EXPECT_EQ(relayed[0].kind, ReceiverMessageKind::kHello);
  EXPECT_EQ(relayed[0].max_fds, 8);
  EXPECT_EQ(SumAcks(relayed), 2u);
}

TEST(RelayedReplyTest, WireFormat) {
  unsigned char hello[kReceiverMessageBytes];
  EncodeReceiverMessage(ReceiverMessage::Hello(4, true), hello);
  sockaddr_un to{};
  to.sun_family = AF_UNIX;
  std::memcpy(to.sun_path, "\0abcde", 6);
  unsigned char out[kRelayedReplyMaxBytes];
  const size_t len = EncodeRelayedReply(hello, to, offsetof(sockaddr_un, sun_path) + 6, out);
  ASSERT_EQ(len, kReceiverMessageBytes + 6);
  EXPECT_EQ(std::memcmp(out, hello, kReceiverMessageBytes), 0);
  ReceiverMessage m;
  std::string_view from;
  ASSERT_TRUE(DecodeRelayedReply(out, len, &m, &from));
  EXPECT_EQ(from, std::string_view("\0abcde", 6));
  // No name, a name too long, or no valid message first: not a relayed reply.
  EXPECT_EQ(EncodeRelayedReply(hello, to, sizeof(sa_family_t), out), 0u);
  EXPECT_FALSE(DecodeRelayedReply(out, kReceiverMessageBytes, &m, &from));
  EXPECT_FALSE(DecodeRelayedReply(out, kRelayedReplyMaxBytes + 1, &m, &from));
  out[4] = 9;  // kind
  EXPECT_FALSE(DecodeRelayedReply(out, len, &m, &from));
}

}  // namespace
}  // namespace sbx
