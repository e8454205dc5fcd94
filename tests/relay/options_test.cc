// socketbox-relay's command line: the original's options keep their
// meaning; what the original read with atoi is now an error naming it; what
// it only warned about (a bad -c or -P, extra words) still only warns.
#include "relay/options.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace sbx::relay {
namespace {

absl::StatusOr<RelayOptions> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "socketbox-relay");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return ParseRelayOptions(static_cast<int>(args.size()), argv.data());
}

TEST(RelayOptions, DefaultsAreTheOriginals) {
  auto o = Parse({});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->source, SourceKind::kListener);
  EXPECT_EQ(o->source_fd, 0);
  EXPECT_EQ(FormatHostPort(o->target.tcp), "[::1]:80");
  EXPECT_FALSE(o->target.is_unix);
  EXPECT_EQ(o->proxy, ProxyVersion::kNone);
  EXPECT_EQ(o->target.nat64_prefix, *ParseIp6("64:ff9b::"));
}

TEST(RelayOptions, OriginalCommandLines) {
  auto o = Parse({"-s", "/run/sb/relay", "-c", "::ffff:127.0.0.1", "-p", "8080", "-i"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->source, SourceKind::kReceiverPath);
  EXPECT_EQ(o->receiver_path, "/run/sb/relay");
  EXPECT_EQ(FormatHostPort(o->target.tcp), "[::ffff:127.0.0.1]:8080");
  EXPECT_EQ(o->proxy, ProxyVersion::kV1);

  o = Parse({"-l", "3", "-e", "-u", "@backend"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->source, SourceKind::kReceiver);
  EXPECT_EQ(o->source_fd, 3);
  EXPECT_TRUE(o->target.is_unix);
  EXPECT_EQ(o->target.unix_path, "@backend");

  o = Parse({"-N", "-x", "-P", "2001:db8:1::", "-c", "2001:db8:aa::", "-p", "0", "-n", "2"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->target.nat64);
  EXPECT_TRUE(o->target.nat64_prefix64);
  EXPECT_EQ(o->target.tcp.port, 0);
  EXPECT_EQ(o->target.tcp.scope_id, 2u);
}

TEST(RelayOptions, LongOptions) {
  auto o = Parse({"--proxy-v2", "--metrics-listen", "[::1]:9100", "--workers", "2", "--buffer-size",
                  "131072", "--copy", "splice", "--connect-timeout", "3", "--idle-timeout", "60",
                  "--drain-timeout", "5", "--max-connections", "100", "--quiet",
                  "--refuse-unix-clients"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->proxy, ProxyVersion::kV2);
  ASSERT_TRUE(o->metrics_listen);
  EXPECT_EQ(o->metrics_listen->port, 9100);
  EXPECT_EQ(o->workers, 2);
  EXPECT_EQ(o->buffer_size, 131072u);
  EXPECT_EQ(o->copy, CopyMode::kSplice);
  EXPECT_EQ(o->connect_timeout_s, 3u);
  EXPECT_EQ(o->idle_timeout_s, 60u);
  EXPECT_EQ(o->drain_timeout_s, 5u);
  EXPECT_EQ(o->max_connections, 100u);
  EXPECT_FALSE(o->log_connections);
  EXPECT_TRUE(o->refuse_unix_clients);
  EXPECT_FALSE(Parse({})->refuse_unix_clients);
}

TEST(RelayOptions, RegisterSource) {
  auto o = Parse({"--register", "7:/run/sb/ctl"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->source, SourceKind::kRegistration);
  EXPECT_EQ(o->register_group, 7u);
  EXPECT_EQ(o->receiver_path, "/run/sb/ctl");
}

struct BadCase {
  std::vector<std::string> args;
  const char* mentions;
};

TEST(RelayOptions, BadInputNamesTheOption) {
  const BadCase cases[] = {
      {{"-p", "abc"}, "-p 'abc'"},
      {{"-p", "70000"}, "-p '70000'"},
      {{"-p", "0"}, "-p 0"},
      {{"-n", "-1"}, "-n '-1'"},
      {{"-l", "x"}, "-l 'x'"},
      {{"-I", "no-such-interface0"}, "-I 'no-such-interface0'"},
      {{"-u", std::string(120, 'a')}, "-u '"},
      {{"-s", "/x", "-l", "3"}, "exclude"},
      {{"--copy", "zero"}, "--copy 'zero'"},
      {{"--workers", "0"}, "--workers '0'"},
      {{"--buffer-size", "10"}, "--buffer-size '10'"},
      {{"--metrics-listen", "nowhere"}, "--metrics-listen 'nowhere'"},
      {{"-z"}, "unknown option -z"},
      {{"-p"}, "missing value for -p"},
      {{"--log-format", "json"}, "--log-format 'json'"},
      {{"--register", "x:/p"}, "--register 'x:/p'"},
      {{"--register", "7"}, "--register '7'"},
      {{"--register", "7:/p", "-l", "3"}, "exclude"},
      {{"--metrics-listen", "[::1]:1", "--metrics-listen", "[::1]:2"},
       "--metrics-listen '[::1]:2': given twice (already [::1]:1)"},
      // Values are shown escaped: a newline cannot start a forged line.
      {{"-p", "8\nsocketbox-relay: forged"}, "-p '8\\x0asocketbox-relay: forged'"},
      {{"--copy", "a\x1b[2Jb"}, "--copy 'a\\x1b[2Jb'"},
      {{"--weird\r"}, "unknown option --weird\\x0d"},
  };
  for (const BadCase& c : cases) {
    auto o = Parse(c.args);
    ASSERT_FALSE(o.ok()) << c.args[0];
    EXPECT_NE(std::string(o.status().message()).find(c.mentions), std::string::npos)
        << o.status().message();
  }
}

// The usage comes from the option table: every option has its line, and
// --help answers it (main prints it on stdout, exit 0).
TEST(RelayOptions, HelpListsEveryOption) {
  auto help = Parse({"--help"});
  ASSERT_TRUE(absl::IsCancelled(help.status())) << help.status();
  const std::string usage = RelayUsage();
  EXPECT_EQ(help.status().message(), usage);
  EXPECT_EQ(usage.rfind("usage: socketbox-relay [-s PATH | -l FD [-e]]", 0), 0u) << usage;
  EXPECT_NE(usage.back(), '\n');
  for (const char* option : {"-s PATH",
                             "-l FD",
                             "-e ",
                             "-c ADDR",
                             "-p PORT",
                             "-I IFNAME",
                             "-n ID",
                             "-u PATH",
                             "-N ",
                             "-P PREFIX",
                             "-x ",
                             "-i ",
                             "--proxy-v2",
                             "--metrics-listen ADDR:PORT",
                             "--workers N",
                             "--buffer-size BYTES",
                             "--copy buffer|splice",
                             "--connect-timeout S",
                             "--idle-timeout S",
                             "--drain-timeout S",
                             "--max-connections N",
                             "--backlog N",
                             "--quiet",
                             "--log-format FORMAT",
                             "--proxy-to-unix",
                             "--refuse-unix-clients",
                             "--register GROUP:CTLPATH",
                             "--help"}) {
    // Its own help line: long names in the column after the short ones.
    const std::string line_start = option[1] == '-' ? "\n      " : "\n  ";
    EXPECT_NE(usage.find(line_start + option), std::string::npos) << option;
  }
  // Options after --help are not read.
  EXPECT_TRUE(absl::IsCancelled(Parse({"--help", "-z"}).status()));
}

// Getopt's faults: the option as written (short in a cluster, long whole,
// an ambiguous abbreviation as given), then the usage.
TEST(RelayOptions, FaultsNameTheOptionThenTheUsage) {
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"-iz"}, "unknown option -z"},
      {{"--copy"}, "missing value for --copy"},
      {{"-ip"}, "missing value for -p"},
      {{"--pro"}, "unknown option --pro"},
      {{"--weird=1"}, "unknown option --weird=1"},
      {{"--quiet=1"}, "unknown option --quiet=1"},
  };
  for (const auto& [args, first_line] : cases) {
    auto o = Parse(args);
    ASSERT_FALSE(o.ok()) << args[0];
    EXPECT_EQ(o.status().message(), first_line + "\n" + RelayUsage());
  }
  // An abbreviation that names one option is that option (getopt_long).
  auto o = Parse({"--wor", "3"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->workers, 3);
}

// Issue 20 item 7: the original's getopt permuted and ignored words that are
// not options; the relay runs, with a warning naming them.
TEST(RelayOptions, ExtraWordsWarnAndOptionsAfterThemStillCount) {
  auto o = Parse({"-s", "/run/sb/relay", "extra", "-p", "8080", "more\n"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->target.tcp.port, 8080);
  ASSERT_EQ(o->warnings.size(), 1u);
  EXPECT_EQ(o->warnings[0], "ignoring extra argument(s) after the options: 'extra' 'more\\x0a'");
  EXPECT_TRUE(Parse({"-p", "8080"})->warnings.empty());
}

// Issue 20 item 8: the original printed a message for a bad -c or -P and
// went on with the value it had.
TEST(RelayOptions, BadAddressOrPrefixWarnsAndKeepsTheValueBefore) {
  auto o = Parse({"-c", "not-an-address"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(FormatHostPort(o->target.tcp), "[::1]:80");
  ASSERT_EQ(o->warnings.size(), 1u);
  EXPECT_EQ(o->warnings[0],
            "-c 'not-an-address': not an IPv6 address (write IPv4 as ::ffff:a.b.c.d); keeping ::1");

  o = Parse({"-c", "2001:db8::7", "-c", "nowhere"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(FormatIp6(o->target.tcp.ip), "2001:db8::7");

  o = Parse({"-N", "-P", "64:ff9b::/48", "-P", "zz/64"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->target.nat64_prefix, *ParseIp6("64:ff9b::"));
  EXPECT_FALSE(o->target.nat64_prefix64);  // the bad "/64" one changed nothing
  ASSERT_EQ(o->warnings.size(), 2u);
  EXPECT_EQ(o->warnings[0],
            "-P '64:ff9b::/48': the prefix length must be 96 (or 64, like -x); keeping "
            "64:ff9b::/96");
  EXPECT_EQ(o->warnings[1], "-P 'zz/64': not an IPv6 prefix; keeping 64:ff9b::/96");
}

// Issue 20 item 6: the original never sent -i's header to a Unix target.
TEST(RelayOptions, ProxyHeaderGoesToUnixTargetsOnlyWhenAsked) {
  auto o = Parse({"-s", "/run/sb/relay", "-u", "/run/backend.sock", "-i"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->proxy, ProxyVersion::kNone);
  EXPECT_TRUE(o->warnings.empty());  // the original's line: nothing new to say

  o = Parse({"-u", "/run/backend.sock", "--proxy-v2"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->proxy, ProxyVersion::kNone);
  ASSERT_EQ(o->warnings.size(), 1u);
  EXPECT_NE(o->warnings[0].find("--proxy-to-unix"), std::string::npos);

  o = Parse({"-u", "/run/backend.sock", "-i", "--proxy-to-unix"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->proxy, ProxyVersion::kV1);
  o = Parse({"-u", "@backend", "--proxy-v2", "--proxy-to-unix"});
  EXPECT_EQ(o->proxy, ProxyVersion::kV2);
  EXPECT_EQ(Parse({"-p", "8080", "-i"})->proxy, ProxyVersion::kV1);  // TCP: as before
}

// Issue 20 item 9: the original's log line by default, the richer on request.
TEST(RelayOptions, LogFormat) {
  EXPECT_EQ(Parse({})->log_format, LogFormat::kOriginal);
  EXPECT_EQ(Parse({"--log-format", "detailed"})->log_format, LogFormat::kDetailed);
  EXPECT_EQ(Parse({"--log-format", "original"})->log_format, LogFormat::kOriginal);
}

}  // namespace
}  // namespace sbx::relay
