// DispatchScheduler without a ring: a transport that records what it is
// asked, a clock the test moves, real receiving sockets as backends and
// real fds as connections.
#include "engine/dispatch/dispatch_scheduler.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/daemon_test_support.h"

namespace sbx {
namespace {

using testing::FakeClock;
using testing::NewConnectionFd;

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kTimeout = 100 * kMs;

class RecordingTransport : public DispatchTransport {
 public:
  struct Send {
    uint32_t slot;
    int fd;
    Backend* backend;
    bool keep_open;
  };
  void StartSend(uint32_t slot, int conn_fd, Backend* b, bool keep_open) override {
    sends.push_back({slot, conn_fd, b, keep_open});
  }
  void CloseConnection(int conn_fd) override {
    closed.push_back(conn_fd);
    ::close(conn_fd);
  }
  void WatchWritable(Backend* b) override { watches.push_back(b); }
  void ForcedPeerGone() override { ++forced_gone; }
  // Returns the answers the test queued, as a drain of the socket would.
  void FinishReceiver(Backend*, std::vector<ReceiverMessage>* answers) override {
    ++finished;
    answers->insert(answers->end(), queued_answers.begin(), queued_answers.end());
    queued_answers.clear();
  }
  int Probe(Backend*) override {
    ++probes;
    return probe_result;
  }

  std::vector<ReceiverMessage> queued_answers;
  int finished = 0;
  int probes = 0;
  int probe_result = 0;
  std::vector<Send> sends;
  std::vector<int> closed;
  std::vector<Backend*> watches;
  int forced_gone = 0;
};

class DispatchSchedulerTest : public ::testing::Test {
 protected:
  explicit DispatchSchedulerTest(uint32_t slots = 8, uint64_t timeout = kTimeout,
                                 bool forced = false, size_t max_substituted = 1024,
                                 uint16_t max_fds = 1, uint32_t share = 16384)
      : table_(&stats_, max_substituted) {
    DispatchScheduler::Config config;
    config.slots = slots;
    config.backend_share = share;
    config.fds_per_message = max_fds;
    config.timeout_ns = timeout;
    config.forced_fd = forced;
    scheduler_ = std::make_unique<DispatchScheduler>(config, &transport_, &table_, &worker(),
                                                     [this] { return clock_.now; });
  }
  ~DispatchSchedulerTest() override {
    // Connections the test left with the scheduler's transport are real fds.
    for (const auto& s : transport_.sends) ::close(s.fd);
  }

  WorkerStats& worker() { return stats_.worker(0); }
  uint64_t dropped(DropReason r) { return worker().dropped[static_cast<int>(r)].load(); }

  // A backend whose receiving socket exists.
  Backend* Up(const std::string& name) {
    receivers_.push_back(testing::BindReceiver(dir_.File(name)));
    return table_.ForPath(dir_.File(name), dir_.File(name), clock_.now);
  }
  // Dispatches a new connection; returns its fd.
  int Dispatch(Backend* b) {
    const int fd = NewConnectionFd();
    scheduler_->Dispatch(fd, b);
    return fd;
  }
  // Completes the send of connection `fd` with `res`.
  void Complete(int fd, int res) {
    for (size_t i = 0; i < transport_.sends.size(); ++i) {
      if (transport_.sends[i].fd != fd) continue;
      const uint32_t slot = transport_.sends[i].slot;
      const bool keep_open = transport_.sends[i].keep_open;
      transport_.sends.erase(transport_.sends.begin() + static_cast<long>(i));
      // The transport closes a delivered connection unless it is held.
      if (res >= 0 && !keep_open) ::close(fd);
      scheduler_->OnSendResult(slot, res);
      return;
    }
    ADD_FAILURE() << "no send of fd " << fd;
  }
  std::vector<int> SentFds() const {
    std::vector<int> fds;
    for (const auto& s : transport_.sends) fds.push_back(s.fd);
    return fds;
  }

  testing::TempDir dir_;
  std::vector<UniqueFd> receivers_;
  FakeClock clock_;
  StatsRegistry stats_{1};
  BackendTable table_;
  RecordingTransport transport_;
  std::unique_ptr<DispatchScheduler> scheduler_;
};

TEST_F(DispatchSchedulerTest, DeliveredConnectionFreesItsSlotAndIsCounted) {
  Backend* b = Up("a");
  const int fd = Dispatch(b);
  ASSERT_EQ(SentFds(), std::vector<int>{fd});
  EXPECT_FALSE(scheduler_->idle());
  Complete(fd, 1);
  EXPECT_TRUE(scheduler_->idle());
  EXPECT_EQ(worker().dispatched.load(), 1u);
  EXPECT_EQ(b->delivered->load(), 1u);
  EXPECT_TRUE(transport_.closed.empty());  // a delivered connection is the transport's to close
}

TEST_F(DispatchSchedulerTest, FullQueueAsksForOneWatchAndKeepsDispatchOrder) {
  Backend* b = Up("a");
  const int c1 = Dispatch(b);
  const int c2 = Dispatch(b);  // sent before the first result is known
  Complete(c1, -EAGAIN);
  Complete(c2, -ECANCELED);  // its chain failed before it: not tried
  Dispatch(b);               // queues behind the waiting ones
  Dispatch(b);
  EXPECT_TRUE(SentFds().empty());
  ASSERT_EQ(transport_.watches, std::vector<Backend*>{b});  // one, not one per connection
  EXPECT_EQ(scheduler_->waiting(), 4u);
  EXPECT_EQ(scheduler_->NextTimer(clock_.now, 10 * kTimeout), clock_.now + kTimeout);
}

TEST_F(DispatchSchedulerTest, WritableBackendIsPumpedInOrderWithGrowingBursts) {
  Backend* b = Up("a");
  const int c1 = Dispatch(b);
  const int c2 = Dispatch(b);
  Complete(c1, -EAGAIN);
  Complete(c2, -ECANCELED);
  const int c3 = Dispatch(b);
  const int c4 = Dispatch(b);
  scheduler_->OnWritable(b);
  ASSERT_EQ(SentFds(), std::vector<int>{c1});  // first burst: one
  Complete(c1, 1);
  EXPECT_EQ(scheduler_->NextTimer(clock_.now, kTimeout), clock_.now);  // more to pump now
  scheduler_->RunTimers();
  ASSERT_EQ(SentFds(), (std::vector<int>{c2, c3}));  // one went through: two now
  Complete(c2, 1);
  Complete(c3, 1);
  scheduler_->RunTimers();
  ASSERT_EQ(SentFds(), std::vector<int>{c4});
  Complete(c4, 1);
  EXPECT_TRUE(scheduler_->idle());
  EXPECT_EQ(worker().dispatched.load(), 4u);
  EXPECT_EQ(worker().TotalDropped(), 0u);
}

TEST_F(DispatchSchedulerTest, WaitingPastTheDeadlineIsClosedAndCountedAsTimeout) {
  Backend* b = Up("a");
  const int c1 = Dispatch(b);
  Complete(c1, -EAGAIN);
  EXPECT_EQ(scheduler_->NextTimer(clock_.now, 10 * kTimeout), clock_.now + kTimeout);
  clock_.now += kTimeout;
  scheduler_->RunTimers();
  EXPECT_EQ(dropped(DropReason::kTimeout), 1u);
  EXPECT_EQ(transport_.closed, std::vector<int>{c1});
  EXPECT_TRUE(scheduler_->idle());
}

class ZeroTimeoutTest : public DispatchSchedulerTest {
 protected:
  ZeroTimeoutTest() : DispatchSchedulerTest(8, 0) {}
};

TEST_F(ZeroTimeoutTest, FullQueueDropsAtOnce) {
  Backend* b = Up("a");
  const int c1 = Dispatch(b);
  Complete(c1, -EAGAIN);
  EXPECT_EQ(dropped(DropReason::kTimeout), 1u);
  EXPECT_TRUE(transport_.watches.empty());
  EXPECT_TRUE(scheduler_->idle());
}

TEST_F(DispatchSchedulerTest, BackendThatWentAwayIsReconnectedWhileConnectionsWait) {
  Backend* b = Up("a");
  const int c1 = Dispatch(b);
  receivers_.clear();
  ::unlink(dir_.File("a").c_str());
  Complete(c1, -ECONNREFUSED);
  EXPECT_TRUE(b->down);
  scheduler_->RunTimers();  // retry at once: still missing, backs off
  EXPECT_TRUE(SentFds().empty());
  const uint64_t retry = scheduler_->NextTimer(clock_.now, 10 * kTimeout);
  EXPECT_GT(retry, clock_.now);
  EXPECT_LT(retry, clock_.now + kTimeout);
  receivers_.push_back(testing::BindReceiver(dir_.File("a")));
  clock_.now = retry;
  scheduler_->RunTimers();
  EXPECT_FALSE(b->down);
  ASSERT_EQ(SentFds(), std::vector<int>{c1});
  Complete(c1, 1);
  EXPECT_EQ(worker().TotalDropped(), 0u);
}

TEST_F(DispatchSchedulerTest, BackendAwayUntilTheDeadlineCountsBackendDown) {
  Backend* b = Up("a");
  const int c1 = Dispatch(b);
  receivers_.clear();
  ::unlink(dir_.File("a").c_str());
  Complete(c1, -ECONNREFUSED);
  const int c2 = Dispatch(b);  // waits behind c1 while down
  EXPECT_TRUE(SentFds().empty());
  clock_.now += kTimeout;
  scheduler_->RunTimers();
  EXPECT_EQ(dropped(DropReason::kBackendDown), 2u);
  EXPECT_EQ(transport_.closed, (std::vector<int>{c1, c2}));
}

TEST_F(DispatchSchedulerTest, OtherSendErrorsCloseAndCount) {
  Backend* b = Up("a");
  const int c1 = Dispatch(b);
  Complete(c1, -EBADF);
  EXPECT_EQ(dropped(DropReason::kSendError), 1u);
  EXPECT_EQ(transport_.closed, std::vector<int>{c1});
  EXPECT_EQ(transport_.forced_gone, 0);
}

class ForcedFdTest : public DispatchSchedulerTest {
 protected:
  ForcedFdTest() : DispatchSchedulerTest(8, kTimeout, /*forced=*/true) {}
};

TEST_F(ForcedFdTest, PeerOfTheForcedFdGoneEndsTheDaemon) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair), 0);
  Backend* b = table_.ForFd(pair[0]);
  const int c1 = Dispatch(b);
  Complete(c1, -EPIPE);  // a borrowed fd is never reconnected
  EXPECT_EQ(transport_.forced_gone, 1);
  EXPECT_EQ(dropped(DropReason::kSendError), 1u);
  ::close(pair[0]);
  ::close(pair[1]);
}

class FewSlotsTest : public DispatchSchedulerTest {
 protected:
  FewSlotsTest() : DispatchSchedulerTest(2) {}
};

TEST_F(FewSlotsTest, NoFreeSlotClosesAndCountsOverload) {
  Backend* b = Up("a");
  Dispatch(b);
  Dispatch(b);
  const int c3 = Dispatch(b);
  EXPECT_EQ(scheduler_->free_slots(), 0u);
  EXPECT_EQ(dropped(DropReason::kOverload), 1u);
  EXPECT_EQ(transport_.closed, std::vector<int>{c3});
}

TEST_F(DispatchSchedulerTest, NextTimerIsTheIdleWakeWithNothingToDo) {
  EXPECT_EQ(scheduler_->NextTimer(clock_.now, 5 * kMs), clock_.now + 5 * kMs);
}

// Acknowledged delivery (receiver protocol): held connections.

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

TEST_F(DispatchSchedulerTest, AcknowledgingReceiverGetsConnectionsHeldUntilItsAck) {
  Backend* b = Up("a");
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(1, true));
  const int c1 = Dispatch(b);
  const int c2 = Dispatch(b);
  const int c3 = Dispatch(b);
  ASSERT_TRUE(transport_.sends[0].keep_open);
  Complete(c1, 1);
  Complete(c2, 1);
  Complete(c3, 1);
  EXPECT_EQ(scheduler_->held(), 3u);
  EXPECT_FALSE(scheduler_->idle());  // held connections keep their slots
  EXPECT_EQ(worker().dispatched.load(), 0u);
  EXPECT_TRUE(IsOpen(c1) && IsOpen(c2) && IsOpen(c3));
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Ack(2));
  EXPECT_EQ(transport_.closed, (std::vector<int>{c1, c2}));  // the oldest two: FIFO
  EXPECT_EQ(worker().dispatched.load(), 2u);
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Ack(1));
  EXPECT_TRUE(scheduler_->idle());
  EXPECT_EQ(b->delivered->load(), 3u);
  EXPECT_EQ(worker().unconfirmed.load(), 0u);
}

TEST_F(DispatchSchedulerTest, AcksCountConnectionsSentBeforeTheHello) {
  Backend* b = Up("a");
  const int c1 = Dispatch(b);  // before the hello: not held, but acked later
  Complete(c1, 1);
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(1, true));
  const int c2 = Dispatch(b);
  Complete(c2, 1);
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Ack(1));  // confirms c1 only
  EXPECT_EQ(scheduler_->held(), 1u);
  EXPECT_TRUE(IsOpen(c2));
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Ack(1));
  EXPECT_TRUE(scheduler_->idle());
  EXPECT_EQ(worker().dispatched.load(), 2u);
}

TEST_F(DispatchSchedulerTest, AckReadBeforeTheSendResultReleasesAtOnce) {
  Backend* b = Up("a");
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(1, true));
  const int c1 = Dispatch(b);
  scheduler_->OnReceiverMessage(b,
                                ReceiverMessage::Ack(1));  // answers are handled first in a batch
  Complete(c1, 1);
  EXPECT_TRUE(scheduler_->idle());
  EXPECT_EQ(transport_.closed, std::vector<int>{c1});
}

TEST_F(DispatchSchedulerTest, LostReceiverGetsWhatItHadNotTakenSentAgain) {
  Backend* b = Up("a");
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(1, true));
  const int c1 = Dispatch(b);
  const int c2 = Dispatch(b);
  const int c3 = Dispatch(b);
  Complete(c1, 1);
  Complete(c2, 1);
  // The receiver took c1 and said so, but its ack is still on the socket
  // when the next send finds the socket gone.
  transport_.queued_answers.push_back(ReceiverMessage::Ack(1));
  Complete(c3, -ECONNREFUSED);
  EXPECT_EQ(transport_.finished, 1);
  EXPECT_EQ(transport_.closed, std::vector<int>{c1});  // confirmed by the drained ack
  EXPECT_EQ(worker().redelivered.load(), 1u);          // c2 went down with the queue
  EXPECT_TRUE(b->down);
  EXPECT_FALSE(b->receiver.acks);  // a new socket must hear a new hello
  clock_.now += 2 * kMs;           // the path is bound again: reconnect and resend
  scheduler_->RunTimers();
  EXPECT_EQ(SentFds(), (std::vector<int>{c2, c3}));  // dispatch order
  EXPECT_FALSE(transport_.sends[0].keep_open);
  Complete(c3, 1);
  Complete(c2, 1);
  EXPECT_TRUE(scheduler_->idle());
  EXPECT_EQ(worker().dispatched.load(), 3u);
  EXPECT_EQ(worker().TotalDropped(), 0u);
}

TEST_F(DispatchSchedulerTest, SilentReceiverIsProbedAndLossFoundThatWay) {
  Backend* b = Up("a");
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(1, true));
  const int c1 = Dispatch(b);
  Complete(c1, 1);
  EXPECT_LE(scheduler_->NextTimer(clock_.now, 10 * kTimeout), clock_.now + 20 * kMs);
  clock_.now += 20 * kMs;
  scheduler_->RunTimers();  // alive (the probe went out): the silence allowed doubles
  EXPECT_EQ(transport_.probes, 1);
  EXPECT_EQ(scheduler_->held(), 1u);
  clock_.now += 20 * kMs;
  scheduler_->RunTimers();
  EXPECT_EQ(transport_.probes, 1);
  clock_.now += 20 * kMs;
  transport_.probe_result = -ECONNREFUSED;
  scheduler_->RunTimers();
  EXPECT_EQ(transport_.probes, 2);
  EXPECT_EQ(worker().redelivered.load(), 1u);
  EXPECT_EQ(scheduler_->held(), 0u);
}

TEST_F(DispatchSchedulerTest, HeldPastTheAckTimeoutIsReleasedUnconfirmed) {
  Backend* b = Up("a");
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(1, true));
  const int c1 = Dispatch(b);
  Complete(c1, 1);
  for (int i = 0; i < 60; ++i) {  // probes keep finding it there
    clock_.now += 100 * kMs;
    scheduler_->RunTimers();
  }
  EXPECT_TRUE(scheduler_->idle());
  EXPECT_EQ(worker().unconfirmed.load(), 1u);
  EXPECT_EQ(worker().dispatched.load(), 1u);
}

// A redelivery keeps the deadline set at accept: a receiver that loses
// its socket again and again (re-binding its path) cannot make the engine
// hold a connection for ever.
TEST_F(DispatchSchedulerTest, RedeliveryKeepsTheDeadlineSetAtAccept) {
  Backend* b = Up("a");
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(1, true));
  const int c1 = Dispatch(b);  // deadline: now + 100 ms
  Complete(c1, 1);
  clock_.now += 60 * kMs;
  ::unlink(dir_.File("a").c_str());         // gone, and not back
  transport_.probe_result = -ECONNREFUSED;  // the probe finds out: c1 waits to go again
  scheduler_->RunTimers();
  EXPECT_EQ(worker().redelivered.load(), 1u);
  EXPECT_EQ(scheduler_->waiting(), 1u);
  clock_.now += 39 * kMs;  // 99 ms after accept: still waiting
  scheduler_->RunTimers();
  EXPECT_EQ(scheduler_->waiting(), 1u);
  clock_.now += 2 * kMs;  // 101 ms: its deadline, not a fresh one, has come
  scheduler_->RunTimers();
  EXPECT_TRUE(scheduler_->idle());
  EXPECT_EQ(dropped(DropReason::kBackendDown), 1u);
}

// Held, a connection is released (unconfirmed) at its deadline at the
// latest: shutdown and upgrades wait for held ones.
TEST_F(DispatchSchedulerTest, HeldIsReleasedAtItsDeadline) {
  Backend* b = Up("a");
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(1, true));
  const int c1 = Dispatch(b);
  Complete(c1, 1);
  EXPECT_LE(scheduler_->NextTimer(clock_.now, 10 * kTimeout), clock_.now + kTimeout);
  clock_.now += kTimeout;
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(1, true));  // it is there
  scheduler_->RunTimers();
  EXPECT_TRUE(scheduler_->idle());
  EXPECT_EQ(worker().unconfirmed.load(), 1u);
}

TEST_F(DispatchSchedulerTest, ReceiverLostPastTheDeadlineCountsBackendLost) {
  Backend* b = Up("a");
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(1, true));
  const int c1 = Dispatch(b);
  const int c2 = Dispatch(b);
  Complete(c1, 1);
  clock_.now += 100 * kMs;  // c1's deadline has come when c2's send finds the socket gone
  Complete(c2, -ECONNREFUSED);
  EXPECT_EQ(dropped(DropReason::kBackendLost), 1u);  // c1: no deadline left to send it again
  EXPECT_EQ(worker().redelivered.load(), 0u);
}

// One backend holds at most its share of the slots.
class ShareTest : public DispatchSchedulerTest {
 protected:
  ShareTest() : DispatchSchedulerTest(8, kTimeout, false, 1024, 1, 3) {}
};

TEST_F(ShareTest, NeverAckingBackendGivesUpItsOldestHeldSlot) {
  Backend* b = Up("a");
  Backend* good = Up("good");
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(1, true));
  std::vector<int> conns;
  for (int i = 0; i < 3; ++i) {
    conns.push_back(Dispatch(b));
    Complete(conns.back(), 1);
  }
  EXPECT_EQ(scheduler_->held(), 3u);
  const int c4 = Dispatch(b);  // the share is full of held ones: the oldest goes
  EXPECT_EQ(transport_.closed, std::vector<int>{conns[0]});
  EXPECT_EQ(worker().unconfirmed.load(), 1u);
  Complete(c4, 1);
  EXPECT_EQ(scheduler_->held(), 3u);
  EXPECT_EQ(scheduler_->free_slots(), 5u);
  for (int i = 0; i < 5; ++i) Complete(Dispatch(good), 1);  // the others' slots are intact
  EXPECT_EQ(good->delivered->load(), 5u);
  EXPECT_EQ(worker().TotalDropped(), 0u);
}

TEST_F(ShareTest, WhatWaitedPastTheShareIsNotHeldOnceSent) {
  Backend* b = Up("a");
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(1, true));
  const int c1 = Dispatch(b);
  Complete(c1, -EAGAIN);  // its queue is full: the next four wait behind c1
  std::vector<int> conns = {c1};
  for (int i = 0; i < 4; ++i) conns.push_back(Dispatch(b));
  scheduler_->OnWritable(b);  // room again: all five go, in growing bursts
  for (int turn = 0; turn < 10 && !SentFds().empty(); ++turn) {
    for (const int fd : SentFds()) Complete(fd, 1);
    scheduler_->RunTimers();
  }
  EXPECT_EQ(scheduler_->waiting(), 0u);
  EXPECT_EQ(scheduler_->held(), 3u);  // the share
  EXPECT_EQ(worker().unconfirmed.load(), 2u);
  EXPECT_EQ(transport_.closed, (std::vector<int>{conns[0], conns[1]}));
}

TEST_F(ShareTest, BackendThatDoesNotReadWaitsUntilItsDeadline) {
  Backend* b = Up("a");
  const int c1 = Dispatch(b);
  Complete(c1, -EAGAIN);                    // its queue is full: c1 waits, so do the next
  for (int i = 0; i < 4; ++i) Dispatch(b);  // past its share: nothing held to give up
  EXPECT_EQ(scheduler_->waiting(), 5u);
  EXPECT_EQ(worker().TotalDropped(), 0u);
  clock_.now += kTimeout;
  scheduler_->RunTimers();
  EXPECT_EQ(dropped(DropReason::kTimeout), 5u);
  EXPECT_TRUE(scheduler_->idle());
}

TEST_F(DispatchSchedulerTest, HelloWithoutAcksReleasesWhatWasHeld) {
  Backend* b = Up("a");
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(1, true));
  Complete(Dispatch(b), 1);
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(8, false));
  EXPECT_TRUE(scheduler_->idle());
  EXPECT_EQ(worker().unconfirmed.load(), 1u);
  EXPECT_EQ(b->receiver.max_fds, 1u);  // this scheduler packs one: bounded by its config
}

TEST_F(DispatchSchedulerTest, BackendIsListedOnceWhileAcksAndSendsAlternate) {
  Backend* b = Up("a");
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(1, true));
  for (int turn = 0; turn < 5; ++turn) {
    // An ack empties what is held, then a send fills it again, before the
    // turn's timers run: the backend must stay listed once.
    if (turn > 0) scheduler_->OnReceiverMessage(b, ReceiverMessage::Ack(1));
    Complete(Dispatch(b), 1);
    scheduler_->RunTimers();
  }
  EXPECT_EQ(scheduler_->held(), 1u);  // counted once: listed once
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Ack(1));
  scheduler_->RunTimers();
  EXPECT_TRUE(scheduler_->idle());
  EXPECT_FALSE(b->dispatch.busy());
}

TEST_F(DispatchSchedulerTest, SendInFlightWhenAcksAreWithdrawnIsNotHeld) {
  Backend* b = Up("a");
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(1, true));
  const int c1 = Dispatch(b);  // held on success, as things stand
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(1, false));
  Complete(c1, 1);
  EXPECT_TRUE(scheduler_->idle());
  EXPECT_EQ(transport_.probes, 0);
  EXPECT_EQ(worker().unconfirmed.load(), 1u);
}

TEST_F(DispatchSchedulerTest, FailureFromAReplacedSocketLeavesTheNewOneAlone) {
  Backend* b = Up("a");
  const int c1 = Dispatch(b);
  const int c2 = Dispatch(b);
  Complete(c1, -ECONNREFUSED);  // the socket goes; the path is bound again
  clock_.now += 2 * kMs;
  scheduler_->RunTimers();  // reconnected: c1 goes out on the new socket
  ASSERT_FALSE(b->down);
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(4, true));
  Complete(c2, -ECONNREFUSED);  // c2 had gone out on the old one
  EXPECT_FALSE(b->down);
  EXPECT_TRUE(b->receiver.acks);  // the new receiver's hello still stands
  EXPECT_EQ(transport_.finished, 1);
}

class PackingTest : public DispatchSchedulerTest {
 protected:
  PackingTest() : DispatchSchedulerTest(512, kTimeout, false, 1024, /*max_fds=*/8) {}
};

TEST_F(PackingTest, PumpBurstsGrowPastSixteenForAReceiverThatPacks) {
  // This scheduler packs up to 8 (its config bounds the hello's 16): a
  // burst may be 16 messages of 8, and grows by doubling.
  Backend* b = Up("a");
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(16, false));
  const int first = Dispatch(b);
  scheduler_->RunTimers();   // sent at the turn's end
  Complete(first, -EAGAIN);  // congested: the rest wait in line
  std::vector<int> waiting{first};
  for (int i = 0; i < 199; ++i) waiting.push_back(Dispatch(b));
  scheduler_->OnWritable(b);
  std::vector<size_t> bursts;
  while (!transport_.sends.empty()) {
    bursts.push_back(transport_.sends.size());
    for (int fd : SentFds()) Complete(fd, 1);
    scheduler_->RunTimers();
  }
  EXPECT_EQ(bursts, (std::vector<size_t>{1, 2, 4, 8, 16, 32, 64, 73}));
  EXPECT_TRUE(scheduler_->idle());
}

TEST_F(PackingTest, ConnectionsOfOneTurnGoOutGroupedByBackend) {
  Backend* a = Up("a");
  Backend* b = Up("b");
  Backend* plain = Up("plain");  // never said it packs: sent at once
  scheduler_->OnReceiverMessage(a, ReceiverMessage::Hello(8, false));
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(8, false));
  const int a1 = Dispatch(a);
  const int b1 = Dispatch(b);
  const int p1 = Dispatch(plain);
  const int a2 = Dispatch(a);
  const int b2 = Dispatch(b);
  EXPECT_EQ(SentFds(), std::vector<int>{p1});
  EXPECT_EQ(scheduler_->NextTimer(clock_.now, kTimeout), clock_.now);
  scheduler_->RunTimers();
  // Back to back per backend, in dispatch order: the transport packs them.
  EXPECT_EQ(SentFds(), (std::vector<int>{p1, a1, a2, b1, b2}));
  for (int fd : SentFds()) Complete(fd, 1);
  EXPECT_TRUE(scheduler_->idle());
  EXPECT_EQ(worker().dispatched.load(), 5u);
}

class NoDeadlineTest : public DispatchSchedulerTest {
 protected:
  NoDeadlineTest() : DispatchSchedulerTest(8, /*timeout=*/0) {}
};

TEST_F(NoDeadlineTest, LostReceiverWithoutADeadlineCountsItsConnectionsAsLost) {
  Backend* b = Up("a");
  scheduler_->OnReceiverMessage(b, ReceiverMessage::Hello(1, true));
  const int c1 = Dispatch(b);
  const int c2 = Dispatch(b);
  Complete(c1, 1);
  Complete(c2, -ECONNREFUSED);
  EXPECT_EQ(dropped(DropReason::kBackendLost), 1u);
  EXPECT_EQ(dropped(DropReason::kBackendDown), 1u);
  EXPECT_TRUE(scheduler_->idle());
}

class SmallCacheTest : public DispatchSchedulerTest {
 protected:
  SmallCacheTest() : DispatchSchedulerTest(8, kTimeout, false, /*max_substituted=*/2) {}
  // A -U backend: its path differs from the configured one.
  Backend* Substituted(const std::string& name) {
    receivers_.push_back(testing::BindReceiver(dir_.File(name)));
    return table_.ForPath(dir_.File(name), dir_.File("#//P_"), clock_.now);
  }
};

// The sequence of issue 9: a pump expires every waiter of a -U backend, a
// later route in the same turn fills the cache, and the timers then look
// at the backend. It must still exist until the scheduler lets go of it.
TEST_F(SmallCacheTest, ListedBackendOutlivesCacheEviction) {
  Backend* x = Substituted("x");
  const int c1 = Dispatch(x);
  Complete(c1, -EAGAIN);
  clock_.now += kTimeout;
  scheduler_->OnWritable(x);  // the pump finds c1 expired
  EXPECT_EQ(dropped(DropReason::kTimeout), 1u);
  EXPECT_FALSE(x->dispatch.congested);
  for (const char* name : {"y1", "y2", "y3", "y4"}) Substituted(name);
  ASSERT_TRUE(table_.Holds(dir_.File("x")));
  scheduler_->RunTimers();  // reads x: a use after free if it had been evicted
  EXPECT_FALSE(x->dispatch.busy());
  for (const char* name : {"z1", "z2", "z3", "z4"}) Substituted(name);
  EXPECT_FALSE(table_.Holds(dir_.File("x")));  // idle now: evictable as before
}

TEST_F(SmallCacheTest, BackendWithAWatchOrASendIsNeverEvicted) {
  Backend* x = Substituted("x");
  Backend* y = Substituted("y");
  const int cx = Dispatch(x);
  const int cy = Dispatch(y);
  Complete(cx, -EAGAIN);  // x: a watch armed and a waiter; y: a send in flight
  for (const char* name : {"a", "b", "c", "d", "e"}) Substituted(name);
  EXPECT_TRUE(table_.Holds(dir_.File("x")));
  EXPECT_TRUE(table_.Holds(dir_.File("y")));
  Complete(cy, 1);
  scheduler_->OnWritable(x);
  Complete(cx, 1);
  EXPECT_TRUE(scheduler_->idle());
}

}  // namespace
}  // namespace sbx
