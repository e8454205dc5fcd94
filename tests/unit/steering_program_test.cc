// The steering program decides as RouteTable::Lookup does: thousands of
// random configurations (random_config.h, as the route property test) are
// compiled into the real program's maps in the kernel, and each random
// tuple is run through the program (BPF_PROG_TEST_RUN). A tuple whose end is
// a backend with a listener must come back with that listener's cookie;
// every other tuple must be passed on. Needs root (CAP_BPF); skipped
// otherwise, with the reason.
#include "engine/kernel/steering_program.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <map>
#include <memory>
#include <string>

#include "engine/core/config_parser.h"
#include "engine/core/route_table.h"
#include "engine/kernel/steering_image.h"
#include "engine/sys/unique_fd.h"
#include "gtest/gtest.h"
#include "tests/unit/random_config.h"

namespace sbx {
namespace {

using testing_support::RandomConfig;

// A TCP listener on [::]:0 (what a sockmap takes), and its cookie.
struct Listener {
  UniqueFd fd;
  uint64_t cookie = 0;
};

Listener MakeListener() {
  Listener l;
  l.fd.Reset(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in6 any{};
  any.sin6_family = AF_INET6;
  EXPECT_EQ(::bind(l.fd.get(), reinterpret_cast<sockaddr*>(&any), sizeof any), 0);
  EXPECT_EQ(::listen(l.fd.get(), 4), 0);
  socklen_t len = sizeof l.cookie;
  EXPECT_EQ(::getsockopt(l.fd.get(), SOL_SOCKET, SO_COOKIE, &l.cookie, &len), 0);
  return l;
}

class SteeringProgramTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loaded = SteeringProgram::Load();
    if (!loaded.ok()) GTEST_SKIP() << "the kernel refused the program: " << loaded.status();
    program_ = std::move(*loaded);
    for (uint16_t port : testing_support::kPorts) {
      sockaddr_storage any{};
      auto& a6 = reinterpret_cast<sockaddr_in6&>(any);
      a6.sin6_family = AF_INET6;
      a6.sin6_port = htons(port);
      ASSERT_TRUE(program_->AddListenAddress(any, /*takes_ipv4=*/true).ok());
    }
  }

  std::unique_ptr<SteeringProgram> program_;
};

TEST_F(SteeringProgramTest, DecidesAsTheRouteTableOnRandomConfigurations) {
  // Slot i is path /run/bi's; /run/b3 never gets a listener (passed on).
  std::map<std::string, Listener> listeners;
  for (const char* path : {"/run/b0", "/run/b1", "/run/b2"}) listeners[path] = MakeListener();
  std::map<std::string, uint32_t> slots;
  for (const auto& [path, l] : listeners) {
    slots[path] = static_cast<uint32_t>(slots.size());
    ASSERT_TRUE(program_->SetListener(slots[path], l.fd.get()).ok());
  }
  slots["/run/b3"] = 3;

  int checked = 0, steered = 0;
  for (uint32_t seed = 1; seed <= 3000; ++seed) {
    RandomConfig gen(seed);
    const std::string text = gen.Generate();
    const ParseOutcome parsed = ParseConfig(text, "random.conf");
    ASSERT_TRUE(parsed.ok()) << text;
    const RouteTable table = RouteTable::Build(parsed.model, "random.conf", nullptr);
    std::string error;
    auto image = BuildSteeringImage(
        table,
        [&](uint32_t i) -> std::optional<uint32_t> { return slots.at(table.unix_paths()[i]); },
        /*substitute=*/false, &error);
    ASSERT_TRUE(image) << error;
    ASSERT_TRUE(program_->Publish(*image).ok());
    for (int i = 0; i < 40; ++i) {
      const ConnTuple t = gen.Tuple();
      const Action expected = table.Lookup(t);
      uint64_t want = 0;
      if (expected.kind == ActionKind::kUnix) {
        auto it = listeners.find(table.unix_paths()[expected.arg]);
        if (it != listeners.end()) want = it->second.cookie;
      }
      auto got = program_->TestRun(t);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_EQ(*got, want) << "seed " << seed << " tuple [" << FormatIp6(t.local)
                            << "]:" << t.lport << " <- [" << FormatIp6(t.remote) << "]:" << t.rport
                            << "\n"
                            << text;
      ++checked;
      if (want != 0) ++steered;
    }
  }
  // The corpus must steer a fair share, not only pass everything on.
  EXPECT_GT(steered, checked / 10) << steered << " of " << checked;
}

TEST_F(SteeringProgramTest, OnlyTheEnginesListeningPortsAreSteered) {
  Listener l = MakeListener();
  ASSERT_TRUE(program_->SetListener(0, l.fd.get()).ok());
  const ParseOutcome parsed =
      ParseConfig("max-rules:1\nrule-set:0 size:1\ndefault jump-unix:/b\n", "c");
  ASSERT_TRUE(parsed.ok());
  const RouteTable table = RouteTable::Build(parsed.model, "c", nullptr);
  std::string error;
  auto image = BuildSteeringImage(
      table, [](uint32_t) -> std::optional<uint32_t> { return 0; }, false, &error);
  ASSERT_TRUE(program_->Publish(*image).ok());
  ConnTuple t{*ParseIp6("2001:db8::1"), *ParseIp6("2001:db8::2"), 80, 4000};
  EXPECT_EQ(*program_->TestRun(t), l.cookie);
  t.lport = 81;  // not a port the engine listens on
  EXPECT_EQ(*program_->TestRun(t), 0u);
  EXPECT_EQ(program_->Counters()[SBX_COUNT_NOT_OURS], 1u);
}

TEST_F(SteeringProgramTest, AGuardedPortIsRefused) {
  ASSERT_TRUE(program_->GuardPort(40000).ok());
  ConnTuple t{*ParseIp6("2001:db8::1"), *ParseIp6("2001:db8::2"), 40000, 4000};
  EXPECT_EQ(*program_->TestRun(t), SteeringProgram::kRefused);
  EXPECT_EQ(program_->Counters()[SBX_COUNT_GUARDED], 1u);
}

TEST_F(SteeringProgramTest, AnEmptyImageStillPassesEverything) {
  ASSERT_TRUE(program_->Publish(SteeringImage{}).ok());
  ConnTuple t{*ParseIp6("2001:db8::1"), *ParseIp6("2001:db8::2"), 80, 4000};
  EXPECT_EQ(*program_->TestRun(t), 0u);  // rule-set 0 missing: no decision
}

}  // namespace
}  // namespace sbx
