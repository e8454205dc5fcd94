#include "inetd/options.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace sbx::inetd {
namespace {

using Args = std::vector<std::string>;

TEST(InetdOptions, OriginalCommandLineKeepsItsMeaning) {
  auto o = ParseInetdOptions(Mode::kDatagram, {"/run/s.sock", "/usr/sbin/sshd", "-i"}, nullptr);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->socket_path, "/run/s.sock");
  EXPECT_EQ(o->program, (Args{"/usr/sbin/sshd", "-i"}));
  EXPECT_EQ(o->max_children, 0u);
  EXPECT_EQ(o->source_prefix6, 128);
  EXPECT_EQ(o->spawn_method, SpawnMethod::kPosixSpawn);
  EXPECT_TRUE(o->set_environment);
  EXPECT_EQ(o->strict, StrictLevel::kStreamInetUnix);
}

TEST(InetdOptions, OptionsStopAtFirstNonOption) {
  auto o = ParseInetdOptions(
      Mode::kDatagram,
      {"-c", "4", "-C", "2", "-L", "64", "-m", "fork", "-E", "s", "prog", "-c", "9"}, "1");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->max_children, 4u);
  EXPECT_EQ(o->max_per_source, 2u);
  EXPECT_EQ(o->source_prefix6, 64);
  EXPECT_EQ(o->spawn_method, SpawnMethod::kFork);
  EXPECT_FALSE(o->set_environment);
  EXPECT_EQ(o->strict, StrictLevel::kStream);
  EXPECT_EQ(o->program, (Args{"prog", "-c", "9"}));
}

// The options are read by getopt (engine/core/option_table.h): letters may
// be joined and values attached, "--" ends the options, and a word that
// starts with a dash but is no option is refused whole.
TEST(InetdOptions, GetoptConventions) {
  auto o = ParseInetdOptions(Mode::kDatagram, {"-Ec5", "-C2", "--", "-s", "prog"}, nullptr);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->set_environment);
  EXPECT_EQ(o->max_children, 5u);
  EXPECT_EQ(o->max_per_source, 2u);
  EXPECT_EQ(o->socket_path, "-s");
  EXPECT_EQ(o->program, (Args{"prog"}));
  // "-" alone is a word (a path), as any word that is not an option.
  o = ParseInetdOptions(Mode::kDatagram, {"-", "prog", "-E"}, nullptr);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->socket_path, "-");
  EXPECT_TRUE(o->set_environment);
  const std::pair<Args, std::string> bad[] = {
      {{"-Ex", "s", "p"}, "unknown option '-Ex'"},
      {{"-c", "5", "-xE", "s", "p"}, "unknown option '-xE'"},
      {{"-Exc", "s", "p"}, "unknown option '-Exc'"},
      {{"--children=4", "s", "p"}, "unknown option '--children=4'"},
      {{"-E", "-c"}, "option -c needs a value"},
      {{"-Ec"}, "option -c needs a value"},
  };
  for (const auto& [args, message] : bad) {
    auto b = ParseInetdOptions(Mode::kDatagram, args, nullptr);
    ASSERT_FALSE(b.ok()) << args[0];
    EXPECT_EQ(b.status().message(), message);
  }
}

// The usage: the synopsis, then a line for each option (from the table).
TEST(InetdOptions, UsageListsEveryOption) {
  for (Mode mode : {Mode::kDatagram, Mode::kRegistration}) {
    const std::string usage = InetdUsage(mode);
    EXPECT_EQ(usage.rfind(mode == Mode::kDatagram ? "usage: socketbox-inetd [-c MAX_CHILDREN]"
                                                  : "usage: socketbox-inetd-p [-c MAX_CHILDREN]",
                          0),
              0u)
        << usage;
    for (const char* option : {"-c N", "-C N", "-L LEN", "-m fork|spawn", "-E "}) {
      EXPECT_NE(usage.find(std::string("\n  ") + option), std::string::npos) << option;
    }
    EXPECT_NE(usage.back(), '\n');
  }
}

TEST(InetdOptions, RegistrationModeReadsGroup) {
  auto o = ParseInetdOptions(Mode::kRegistration, {"/ctl", "0x10", "prog"}, nullptr);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->group, 16u);
  o = ParseInetdOptions(Mode::kRegistration, {"/ctl", "0", "prog"}, nullptr);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->group, 0u);
  // strtoul(GROUP, NULL, 0), as the original: a leading 0 is octal.
  o = ParseInetdOptions(Mode::kRegistration, {"/ctl", "010", "prog"}, nullptr);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->group, 8u);
  o = ParseInetdOptions(Mode::kRegistration, {"--", "/ctl", "4294967295", "prog"}, nullptr);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->group, 4294967295u);
}

struct BadCase {
  Mode mode;
  Args args;
  const char* strict_env;
  const char* message_part;
};

TEST(InetdOptions, BadCommandLinesSayWhatIsWrong) {
  const BadCase cases[] = {
      {Mode::kDatagram, {}, nullptr, "missing SOCKPATH"},
      {Mode::kDatagram, {"s"}, nullptr, "missing SOCKPATH or PROG"},
      {Mode::kDatagram, {"-c"}, nullptr, "-c needs a value"},
      {Mode::kDatagram, {"-c", "abc", "s", "p"}, nullptr, "-c 'abc'"},
      {Mode::kDatagram, {"-c", "-1", "s", "p"}, nullptr, "-c '-1'"},
      {Mode::kDatagram, {"-C", "99999999999", "s", "p"}, nullptr, "-C '99999999999'"},
      {Mode::kDatagram, {"-m", "clone", "s", "p"}, nullptr, "-m 'clone'"},
      {Mode::kDatagram, {"-L", "0", "s", "p"}, nullptr, "-L '0'"},
      {Mode::kDatagram, {"-L", "129", "s", "p"}, nullptr, "-L '129'"},
      {Mode::kDatagram, {"-x", "s", "p"}, nullptr, "unknown option '-x'"},
      {Mode::kDatagram, {"", "p"}, nullptr, "empty socket path"},
      {Mode::kDatagram, {"s", ""}, nullptr, "empty PROG"},
      {Mode::kDatagram, {"s", "p"}, "3", "SKBOX_STRICT_STREAM_MODE='3'"},
      {Mode::kDatagram, {"s", "p"}, "", "SKBOX_STRICT_STREAM_MODE=''"},
      {Mode::kRegistration, {"/ctl", "prog"}, nullptr, "missing CTLPATH, GROUP or PROG"},
      {Mode::kRegistration, {"/ctl", "g1", "prog"}, nullptr, "GROUP 'g1'"},
      {Mode::kRegistration, {"/ctl", "4294967296", "prog"}, nullptr, "GROUP '4294967296'"},
      {Mode::kRegistration, {"/ctl", "0x", "prog"}, nullptr, "GROUP '0x'"},
      {Mode::kRegistration, {"/ctl", "0x1g", "prog"}, nullptr, "GROUP '0x1g'"},
      {Mode::kRegistration, {"/ctl", "08", "prog"}, nullptr, "GROUP '08'"},
      // Values are shown escaped: a newline cannot start a forged log line.
      {Mode::kDatagram,
       {"-c", "1\nsocketbox-inetd: forged", "s", "p"},
       nullptr,
       "-c '1\\x0asocketbox-inetd: forged'"},
      {Mode::kDatagram, {"s", "p"}, "2\n", "SKBOX_STRICT_STREAM_MODE='2\\x0a'"},
      {Mode::kRegistration, {"/ctl", "1\r\n", "prog"}, nullptr, "GROUP '1\\x0d\\x0a'"},
  };
  for (const BadCase& c : cases) {
    auto o = ParseInetdOptions(c.mode, c.args, c.strict_env);
    ASSERT_FALSE(o.ok()) << testing::PrintToString(c.args);
    EXPECT_NE(std::string(o.status().message()).find(c.message_part), std::string::npos)
        << o.status() << " should mention " << c.message_part;
  }
}

TEST(InetdOptions, AcknowledgeVariable) {
  const Args args = {"s", "p"};
  EXPECT_FALSE(ParseInetdOptions(Mode::kDatagram, args, nullptr)->acknowledge);
  EXPECT_FALSE(ParseInetdOptions(Mode::kDatagram, args, nullptr, nullptr, "0")->acknowledge);
  EXPECT_TRUE(ParseInetdOptions(Mode::kDatagram, args, nullptr, nullptr, "1")->acknowledge);
  for (const char* bad : {"", "2", "yes", "1 ", "01"}) {
    auto o = ParseInetdOptions(Mode::kDatagram, args, nullptr, nullptr, bad);
    ASSERT_FALSE(o.ok()) << bad;
    EXPECT_NE(std::string(o.status().message()).find("SKBOX_ACKNOWLEDGE='"), std::string::npos)
        << o.status();
  }
  auto o = ParseInetdOptions(Mode::kDatagram, args, nullptr, nullptr, "1\nforged");
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(std::string(o.status().message()).find('\n'), std::string::npos) << o.status();
  o = ParseInetdOptions(Mode::kDatagram, args, nullptr, "0,\n1");
  ASSERT_FALSE(o.ok());
  EXPECT_NE(std::string(o.status().message()).find("SKBOX_SENDER_UIDS='0,\\x0a1'"),
            std::string::npos)
      << o.status();
}

TEST(InetdOptions, TakeListenerVariable) {
  const Args args = {"s", "p"};
  EXPECT_FALSE(ParseInetdOptions(Mode::kDatagram, args, nullptr)->take_listener);
  EXPECT_FALSE(
      ParseInetdOptions(Mode::kDatagram, args, nullptr, nullptr, nullptr, "0")->take_listener);
  EXPECT_TRUE(
      ParseInetdOptions(Mode::kDatagram, args, nullptr, nullptr, nullptr, "1")->take_listener);
  for (const char* bad : {"", "2", "yes", "1 ", "01"}) {
    auto o = ParseInetdOptions(Mode::kDatagram, args, nullptr, nullptr, nullptr, bad);
    ASSERT_FALSE(o.ok()) << bad;
    EXPECT_NE(std::string(o.status().message()).find("SKBOX_TAKE_LISTENER='"), std::string::npos)
        << o.status();
  }
}

}  // namespace
}  // namespace sbx::inetd
