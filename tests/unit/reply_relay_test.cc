// ReplyRelay (engine/kernel/reply_relay.h): answers relayed from receivers in
// other network namespaces reach the worker whose sending socket has the
// name they answered, and nothing else.
#include "engine/kernel/reply_relay.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace sbx {
namespace {

class ReplyRelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<UniqueFd> wake;
    for (int w = 0; w < 2; ++w) {
      wakes_.emplace_back(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
      wake.emplace_back(::dup(wakes_.back().get()));
    }
    relay_ = std::make_unique<ReplyRelay>(std::move(wake));
    EncodeReceiverMessage(ReceiverMessage::Ack(3), ack_);
  }
  // Wake-ups worker `w` got since the last call.
  uint64_t Wakes(int w) {
    uint64_t n = 0;
    return ::read(wakes_[w].get(), &n, sizeof n) == sizeof n ? n : 0;
  }

  std::vector<UniqueFd> wakes_;
  std::unique_ptr<ReplyRelay> relay_;
  unsigned char ack_[kReceiverMessageBytes];
};

TEST_F(ReplyRelayTest, AnswerGoesToTheWorkerThatHasTheName) {
  relay_->Name(1, std::string_view("\0abcde", 6));
  EXPECT_EQ(relay_->Deliver("/b.sock", std::string_view("\0abcde", 6), ack_),
            ReplyRelay::Delivery::kQueued);
  EXPECT_EQ(relay_->Deliver("/b.sock", std::string_view("\0abcde", 6), ack_),
            ReplyRelay::Delivery::kQueued);
  EXPECT_FALSE(relay_->HasPending(0));
  EXPECT_EQ(Wakes(0), 0u);
  ASSERT_TRUE(relay_->HasPending(1));
  EXPECT_EQ(Wakes(1), 1u);  // one wake-up for the batch
  std::vector<RelayedReply> got;
  relay_->TakePending(1, &got);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].path, "/b.sock");
  EXPECT_EQ(got[0].sender, std::string("\0abcde", 6));
  ReceiverMessage m;
  ASSERT_TRUE(DecodeReceiverMessage(got[0].message, kReceiverMessageBytes, &m));
  EXPECT_EQ(m.count, 3u);
  EXPECT_FALSE(relay_->HasPending(1));
  EXPECT_EQ(relay_->relayed(), 2u);
}

TEST_F(ReplyRelayTest, UnknownOrRetiredNameIsCountedAndDropped) {
  EXPECT_EQ(relay_->Deliver("/b.sock", "nobody", ack_), ReplyRelay::Delivery::kUnknownSender);
  relay_->Name(0, "x");
  relay_->Unname("x");
  EXPECT_EQ(relay_->Deliver("/b.sock", "x", ack_), ReplyRelay::Delivery::kUnknownSender);
  EXPECT_EQ(relay_->unknown(), 2u);
  EXPECT_FALSE(relay_->HasPending(0));
}

TEST_F(ReplyRelayTest, QueueIsBoundedAndSaysSoBeforeItIsFull) {
  relay_->Name(0, "x");
  for (size_t i = 0; i < ReplyRelay::kMaxPending; ++i) {
    ASSERT_EQ(relay_->Deliver("/b.sock", "x", ack_), ReplyRelay::Delivery::kQueued);
    if (i + 16 < ReplyRelay::kMaxPending) {
      ASSERT_TRUE(relay_->HasRoom(16));
    }
  }
  EXPECT_FALSE(relay_->HasRoom(1));
  EXPECT_EQ(relay_->Deliver("/b.sock", "x", ack_), ReplyRelay::Delivery::kFull);
  std::vector<RelayedReply> got;
  relay_->TakePending(0, &got);
  EXPECT_EQ(got.size(), ReplyRelay::kMaxPending);
  EXPECT_TRUE(relay_->HasRoom(ReplyRelay::kMaxPending));
}

}  // namespace
}  // namespace sbx
