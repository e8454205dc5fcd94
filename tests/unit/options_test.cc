// The daemon's command line: the original's options and defaults, the
// added ones, and an error naming option and value for every bad input.
#include "engine/daemon/options.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sbx {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<Options> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "socketbox");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return ParseOptions(static_cast<int>(args.size()), argv.data());
}

TEST(OptionsTest, DefaultsAreTheOriginals) {
  auto o = Parse({});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->config_path, "/etc/socketbox.conf");
  EXPECT_EQ(FormatHostPort(o->address), "[::]:80");
  EXPECT_TRUE(o->reuseaddr);
  EXPECT_FALSE(o->reuseport);
  EXPECT_EQ(o->backlog, 4096);
  EXPECT_EQ(o->inherited_fd, -1);
  EXPECT_EQ(o->io, IoMode::kUring);
  EXPECT_EQ(o->mode, RunMode::kDaemon);
}

TEST(OptionsTest, OriginalOptions) {
  auto o = Parse({"-f", "/x.conf", "-l", "2001:db8::1", "-p", "443", "-t", "-F", "-R", "-r", "-b",
                  "128", "-z", "-U", "-k", "-d", "-x", "/jail"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->config_path, "/x.conf");
  EXPECT_EQ(FormatHostPort(o->address), "[2001:db8::1]:443");
  EXPECT_TRUE(o->transparent && o->freebind && o->reuseport && o->clear_transparent &&
              o->substitute && o->keep_groups && o->daemonize);
  EXPECT_FALSE(o->reuseaddr);
  EXPECT_EQ(o->backlog, 128);
  EXPECT_EQ(o->chroot_dir, "/jail");
}

TEST(OptionsTest, ListenAddressForms) {
  EXPECT_EQ(FormatHostPort(Parse({"-l", "192.0.2.1", "-p", "25"})->address), "192.0.2.1:25");
  EXPECT_EQ(Parse({"-l", "::ffff:192.0.2.1"})->address.family, AF_INET6);
  EXPECT_EQ(Parse({"-l", "fe80::1%lo"})->address.scope_id, 1u);
  auto many = Parse({"--listen", "[::]:80", "--listen", "198.51.100.1:8080"});
  ASSERT_TRUE(many.ok());
  ASSERT_EQ(many->listen.size(), 2u);
  EXPECT_FALSE(many->address_given);
}

TEST(OptionsTest, LastForcedActionWins) {
  auto o = Parse({"-S", "/run/a.sock", "-i", "5"});
  ASSERT_TRUE(o.ok());
  EXPECT_FALSE(o->forced_path.has_value());
  EXPECT_EQ(o->forced_fd, 5);
  o = Parse({"-i", "5", "-S", "/run/a.sock"});
  EXPECT_EQ(o->forced_path, "/run/a.sock");
  EXPECT_FALSE(o->forced_fd.has_value());
}

TEST(OptionsTest, ExecTakesTheRestUnparsed) {
  auto o = Parse({"-p", "80", "-e", "prog", "-p", "--weird"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->exec_mode);
  EXPECT_EQ(o->exec_argv, (std::vector<std::string>{"prog", "-p", "--weird"}));
}

TEST(OptionsTest, RegistrationAndAdded) {
  auto o = Parse({"-P", "7:/run/ctl.sock", "--threads", "3", "--io", "sync", "--dispatch-timeout",
                  "0", "--stats-interval", "5", "--exact-listeners", "0"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->registration->group, 7u);
  EXPECT_EQ(o->registration->path, "/run/ctl.sock");
  EXPECT_EQ(o->threads, 3);
  EXPECT_EQ(o->io, IoMode::kSync);
  EXPECT_EQ(o->dispatch_timeout_ms, 0);
  EXPECT_EQ(o->stats_interval_s, 5);
  EXPECT_EQ(o->exact_listeners, 0);
}

TEST(OptionsTest, UserNameBringsItsGroupUnlessGroupGiven) {
  auto o = Parse({"-u", "nobody"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->uid.has_value());
  EXPECT_TRUE(o->gid.has_value());
  auto with_group = Parse({"-g", "0", "-u", "nobody"});
  EXPECT_EQ(with_group->gid, 0u);
  // A numeric uid with a passwd entry takes that entry's gid, never root's.
  auto numeric = Parse({"-u", std::to_string(*o->uid)});
  ASSERT_TRUE(numeric.ok());
  EXPECT_EQ(numeric->gid, o->gid);
}

// The original's getopt stopped at the first non-option and ignored the
// rest; such command lines keep working, with a warning.
TEST(OptionsTest, ExtraWordsAreIgnoredWithAWarning) {
  auto o = Parse({"-f", "conf", "extra", "words"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->config_path, "conf");
  EXPECT_TRUE(o->exec_argv.empty());
  ASSERT_EQ(o->warnings.size(), 1u);
  EXPECT_THAT(o->warnings[0],
              HasSubstr("ignoring extra argument(s) after the options: 'extra' 'words'"));
}

// Numbers in -u, -g, -G and -P are read as the original's strtoll(.., 0):
// a leading 0 is octal, 0x is hex.
TEST(OptionsTest, NumbersFollowCBase0Rules) {
  auto o = Parse({"-u", "010", "-g", "0x10", "-G", "010,0x11,9", "-P", "010:/ctl"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->uid, 8u);
  EXPECT_EQ(o->gid, 16u);
  EXPECT_EQ(o->groups, (std::vector<gid_t>{8, 17, 9}));
  EXPECT_EQ(o->registration->group, 8u);
  o = Parse({"-P", "0x10:/ctl"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->registration->group, 16u);
  for (const char* bad : {"08", "0x", "0xg", "1a"}) {
    EXPECT_FALSE(Parse({"-g", bad}).ok()) << bad;
    EXPECT_FALSE(Parse({"-P", std::string(bad) + ":/ctl"}).ok()) << bad;
  }
}

// -G as the original reads it (strtok on ","): empty elements are skipped
// and an empty list clears the supplementary groups. Still accepted (the
// original's command lines must keep working), with a warning naming them.
TEST(OptionsTest, EmptyGroupElementsAreSkippedWithAWarning) {
  struct Case {
    const char* value;
    std::vector<gid_t> groups;
    const char* warning;
  };
  const Case cases[] = {
      {"", {}, "option -G '': an empty list: no supplementary groups"},
      {",,,", {}, "option -G ',,,': no group in it, only commas"},
      {"1,,2", {1, 2}, "option -G '1,,2': element(s) 2 of 3 empty, skipped"},
      {",1,2,", {1, 2}, "option -G ',1,2,': element(s) 1, 4 of 4 empty, skipped"},
  };
  for (const Case& c : cases) {
    auto o = Parse({"-G", c.value});
    ASSERT_TRUE(o.ok()) << c.value << ": " << o.status();
    EXPECT_EQ(o->groups, c.groups) << c.value;
    ASSERT_EQ(o->warnings.size(), 1u) << c.value;
    EXPECT_THAT(o->warnings[0], HasSubstr(c.warning));
  }
  auto o = Parse({"-G", "1,2"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->warnings.empty());
}

struct BadCase {
  std::vector<std::string> args;
  const char* message;
};

TEST(OptionsTest, BadInputNamesOptionAndValue) {
  const BadCase cases[] = {
      {{"-p", "abc"}, "option -p 'abc': must be a port number from 0 to 65535"},
      {{"-p", "65536"}, "option -p '65536'"},
      {{"-p", "-1"}, "option -p '-1'"},
      {{"-l", "1.2.3"}, "option -l '1.2.3': invalid IP address"},
      {{"-l", "fe80::1%nosuchif"}, "invalid IP address or scope"},
      {{"-s", "x"}, "option -s 'x'"},
      {{"-i", "99999999999"}, "option -i '99999999999'"},
      {{"-b", "0"}, "option -b '0'"},
      {{"-S", ""}, "option -S '': a Unix socket path of 1 to 107 bytes"},
      {{"-S", std::string(108, 'a')}, "a Unix socket path of 1 to 107 bytes"},
      {{"-P", "/run/ctl"}, "expected GROUP:PATH"},
      {{"-P", "1:"}, "expected GROUP:PATH"},
      {{"-u", "no-such-user-x"}, "option -u 'no-such-user-x': no such user"},
      {{"-u", "4000000000"}, "option -u '4000000000': uid has no passwd entry; give -g GROUP too"},
      {{"-g", "no-such-group-x"}, "option -g 'no-such-group-x': no such group"},
      {{"-G", "root,no-such-group-x"}, "option -G 'no-such-group-x': no such group"},
      {{"--threads", "0"}, "option --threads '0'"},
      {{"--io", "epoll"}, "expected uring or sync"},
      {{"--listen", "[::1]"}, "option --listen '[::1]'"},
      {{"--dispatch-timeout", "1s"}, "option --dispatch-timeout '1s'"},
      {{"-e"}, "-e needs a program"},
      {{"-Q"}, "unknown option -Q"},
      {{"--nope"}, "unknown option '--nope'"},
      {{"-f"}, "option '-f' needs a value"},
      {{"-P", "1:/x", "-s", "3"}, "-P receives sockets; it cannot be combined with -s or -e"},
      // The original called chroot("") and failed after binding.
      {{"-x", ""}, "option -x '': an empty directory"},
      {{"--metrics-listen", "[::1]:9100", "--metrics-listen", "[::1]:9101"},
       "option --metrics-listen '[::1]:9101': given twice (already [::1]:9100)"},
      // Values are shown escaped: a newline cannot start a forged log line.
      {{"-p", "80\nsocketbox: forged"}, "option -p '80\\x0asocketbox: forged'"},
      {{"-G", "root,x\ny"}, "option -G 'x\\x0ay': no such group"},
      {{"-u", "\x1b[31mroot"}, "option -u '\\x1b[31mroot': no such user"},
      {{"--bad\noption"}, "unknown option '--bad\\x0aoption'"},
      {{"--listen", std::string(100, 'a') + "\n"}, "...(101 bytes)"},
  };
  for (const BadCase& c : cases) {
    auto o = Parse(c.args);
    ASSERT_FALSE(o.ok()) << c.args[0];
    EXPECT_THAT(std::string(o.status().message()), HasSubstr(c.message)) << c.args[0];
    EXPECT_EQ(std::string(o.status().message()).find('\n'), std::string::npos) << c.args[0];
  }
}

}  // namespace
}  // namespace sbx
