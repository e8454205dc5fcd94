// Environment parsing and port filters, driven through the real functions.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "preload/env_config.h"
#include "preload/port_filter.h"

namespace sbx::preload {
namespace {

// An environ-style array built from "NAME=VALUE" strings.
class Env {
 public:
  Env(std::initializer_list<const char*> vars) : strings_(vars.begin(), vars.end()) {
    for (auto& s : strings_) pointers_.push_back(s.c_str());
    pointers_.push_back(nullptr);
  }
  const char* const* get() const { return pointers_.data(); }

 private:
  std::vector<std::string> strings_;
  std::vector<const char*> pointers_;
};

std::unique_ptr<Config> Parse(std::initializer_list<const char*> vars) {
  Env env(vars);
  auto config = std::make_unique<Config>();
  ParseConfig(env.get(), config.get());
  return config;
}

TEST(PortFilterTest, DefaultIpv6FilterPassesPortsBelow1024) {
  const auto c = Parse({});
  const PortFilter& f = c->filter_ipv6.filter;
  EXPECT_TRUE(f.Passes(1));
  EXPECT_TRUE(f.Passes(80));
  EXPECT_TRUE(f.Passes(1023));
  EXPECT_FALSE(f.Passes(1024));
  EXPECT_FALSE(f.Passes(8080));
  EXPECT_FALSE(f.Passes(0));
}

TEST(PortFilterTest, OtherFiltersPassNothingByDefault) {
  const auto c = Parse({});
  for (int p : {1, 80, 443, 1023, 65535}) {
    const auto port = static_cast<uint16_t>(p);
    EXPECT_FALSE(c->filter_ipv4.filter.Passes(port));
    EXPECT_FALSE(c->filter_ipv6_wildcard.filter.Passes(port));
    EXPECT_FALSE(c->filter_ipv4_wildcard.filter.Passes(port));
  }
}

TEST(PortFilterTest, OddEvenLimitsAndListedPorts) {
  const auto parsed = ParsePortFilter("100,2000,8443,9000");
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(parsed->plain_decimal);
  const PortFilter& f = parsed->filter;
  EXPECT_TRUE(f.Passes(99));    // odd, below 100
  EXPECT_FALSE(f.Passes(101));  // odd, not below 100
  EXPECT_TRUE(f.Passes(1998));  // even, below 2000
  EXPECT_FALSE(f.Passes(2000));
  EXPECT_TRUE(f.Passes(8443));  // listed
  EXPECT_TRUE(f.Passes(9000));  // listed
  EXPECT_FALSE(f.Passes(9001));
  EXPECT_FALSE(f.Passes(0));  // never
}

TEST(PortFilterTest, SingleValueSetsBothLimits) {
  const auto parsed = ParsePortFilter("81");
  ASSERT_TRUE(parsed);
  const PortFilter& f = parsed->filter;
  EXPECT_TRUE(f.Passes(79));
  EXPECT_TRUE(f.Passes(80));
  EXPECT_FALSE(f.Passes(81));
  EXPECT_FALSE(f.Passes(82));
}

TEST(PortFilterTest, EveryPortWith65536) {
  const auto parsed = ParsePortFilter("65536,65536");
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(parsed->filter.Passes(65535));
  EXPECT_TRUE(parsed->filter.Passes(65534));
  EXPECT_FALSE(parsed->filter.Passes(0));
}

TEST(PortFilterTest, ThirtyListedPortsAtMost) {
  std::string text = "0,0";
  for (int i = 1; i <= 30; ++i) text += "," + std::to_string(1000 + i);
  ASSERT_TRUE(ParsePortFilter(text));
  EXPECT_TRUE(ParsePortFilter(text)->filter.Passes(1030));
  EXPECT_FALSE(ParsePortFilter(text + ",2000"));
}

// Issue 20 item 4: the original read each number with strtoul(text, NULL,
// 0) and so took hex, octal and trailing junk; such texts are read the same
// way, and flagged as not plain decimal (the caller warns).
TEST(PortFilterTest, NumbersReadAsTheOriginalsStrtoul) {
  struct Case {
    const char* text;
    uint32_t odd, even;
  };
  for (const Case& c :
       {Case{"0x400", 1024, 1024}, Case{"0X400", 1024, 1024}, Case{"1024x", 1024, 1024},
        Case{"010", 8, 8}, Case{"08", 0, 0}, Case{"0x", 0, 0}, Case{"0xg", 0, 0}, Case{"abc", 0, 0},
        Case{" 80", 80, 80}, Case{"+80", 80, 80}, Case{"-0", 0, 0}, Case{"80 ", 80, 80},
        Case{"1024,abc", 1024, 0}, Case{"1024,,2000", 1024, 2000}, Case{",1024", 1024, 1024},
        Case{"1024,", 1024, 1024}, Case{"1;2", 1, 1}, Case{"0x10,0x20", 16, 32},
        Case{"00", 0, 0}}) {
    const auto parsed = ParsePortFilter(c.text);
    ASSERT_TRUE(parsed) << "'" << c.text << "'";
    EXPECT_FALSE(parsed->plain_decimal) << "'" << c.text << "'";
    EXPECT_EQ(parsed->filter.odd_limit, c.odd) << "'" << c.text << "'";
    EXPECT_EQ(parsed->filter.even_limit, c.even) << "'" << c.text << "'";
  }
  const auto listed = ParsePortFilter("0,0,0x1bb,8080junk");
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->filter.Passes(443));
  EXPECT_TRUE(listed->filter.Passes(8080));
}

TEST(PortFilterTest, PlainDecimalIsNotFlagged) {
  for (const char* text : {"0", "1024", "1024,1024", "0,0,80,443", "65536"}) {
    const auto parsed = ParsePortFilter(text);
    ASSERT_TRUE(parsed) << text;
    EXPECT_TRUE(parsed->plain_decimal) << text;
  }
}

// Commas only: the original found no field and used the default.
TEST(PortFilterTest, NoFieldAtAll) {
  for (const char* text : {"", ",", ",,"}) {
    const auto parsed = ParsePortFilter(text);
    ASSERT_TRUE(parsed) << "'" << text << "'";
    EXPECT_EQ(parsed->fields, 0) << "'" << text << "'";
  }
}

// What the original refused (it aborted the program) stays malformed.
TEST(PortFilterTest, MalformedTexts) {
  for (const char* bad : {"-1", "65537", "0x10001", "99999999999999999999999", "1,2,0", "1,2,65536",
                          "1,2,x", "1,2,-5", "1,-2"}) {
    EXPECT_FALSE(ParsePortFilter(bad)) << "'" << bad << "'";
  }
}

TEST(EnvConfigTest, Defaults) {
  const auto c = Parse({});
  EXPECT_FALSE(c->directory_root.set);
  EXPECT_FALSE(c->directory_root2.set);
  EXPECT_EQ(c->connect_level, 0);
  EXPECT_FALSE(c->connect_ipv4);
  EXPECT_FALSE(c->stealth);
  EXPECT_FALSE(c->clear_scope_id);
  EXPECT_EQ(c->getpeername_protection, 2);
  EXPECT_FALSE(c->accept_stream);
  EXPECT_TRUE(c->block_listen);
  EXPECT_EQ(c->strict, StrictLevel::kStreamInetUnix);
  EXPECT_FALSE(c->sched_yield);
  EXPECT_FALSE(c->debug);
  EXPECT_FALSE(c->acknowledge);
  EXPECT_EQ(c->problems.count, 0);
}

TEST(EnvConfigTest, EverySettingRead) {
  const auto c =
      Parse({"SKBOX_DIRECTORY_ROOT=/run/sb", "SKBOX_DIRECTORY_ROOT2=/run/sb2",
             "SKBOX_PORT_FILTER_IPV6=2000,2000", "SKBOX_PORT_FILTER_IPV4=1024,1024",
             "SKBOX_PORT_FILTER_IPV6_WILDCARD=1,1,80", "SKBOX_PORT_FILTER_IPV4_WILDCARD=1,1,443",
             "SKBOX_ENABLE_CONNECT=b2", "SKBOX_STEALTH_MODE=1", "SKBOX_CLEAR_SCOPE_ID=1",
             "SKBOX_GETPEERNAME_PROTECTION=1", "SKBOX_ACCEPT_STREAM=1",
             "SKBOX_BLOCK_LISTEN_EMPTY_ADDR=0", "SKBOX_STRICT_STREAM_MODE=0", "SKBOX_SCHED_YIELD=1",
             "SKBOX_DEBUG=1", "SKBOX_ACKNOWLEDGE=1"});
  EXPECT_STREQ(c->directory_root.path, "/run/sb");
  EXPECT_STREQ(c->directory_root2.path, "/run/sb2");
  EXPECT_TRUE(c->filter_ipv6.filter.Passes(1999));
  EXPECT_TRUE(c->filter_ipv4.filter.Passes(80));
  EXPECT_TRUE(c->filter_ipv6_wildcard.filter.Passes(80));
  EXPECT_FALSE(c->filter_ipv6_wildcard.filter.Passes(443));
  EXPECT_TRUE(c->filter_ipv4_wildcard.filter.Passes(443));
  EXPECT_EQ(c->connect_level, 2);
  EXPECT_TRUE(c->connect_ipv4);
  EXPECT_TRUE(c->stealth);
  EXPECT_TRUE(c->clear_scope_id);
  EXPECT_EQ(c->getpeername_protection, 1);
  EXPECT_TRUE(c->accept_stream);
  EXPECT_FALSE(c->block_listen);
  EXPECT_EQ(c->strict, StrictLevel::kAny);
  EXPECT_TRUE(c->sched_yield);
  EXPECT_TRUE(c->debug);
  EXPECT_TRUE(c->acknowledge);
  EXPECT_EQ(c->problems.count, 0);
}

TEST(EnvConfigTest, HighLevelsActAsTheHighestAndAreReported) {
  const auto c = Parse({"SKBOX_STRICT_STREAM_MODE=7", "SKBOX_GETPEERNAME_PROTECTION=9"});
  EXPECT_EQ(c->strict, StrictLevel::kStreamInetUnix);
  EXPECT_EQ(c->getpeername_protection, 2);
  ASSERT_EQ(c->problems.count, 2);
  EXPECT_STREQ(c->problems.lines[0],
               "SKBOX_GETPEERNAME_PROTECTION=\"9\" is malformed: expected 0, 1 or 2");
  EXPECT_STREQ(c->problems.lines[1],
               "SKBOX_STRICT_STREAM_MODE=\"7\" is malformed: expected 0, 1 or 2");
}

TEST(EnvConfigTest, BareBIsReportedAndLeavesConnectOff) {
  const auto c = Parse({"SKBOX_ENABLE_CONNECT=b"});
  EXPECT_EQ(c->connect_level, 0);
  EXPECT_FALSE(c->connect_ipv4);
  ASSERT_EQ(c->problems.count, 1);
  EXPECT_NE(std::string(c->problems.lines[0]).find("SKBOX_ENABLE_CONNECT"), std::string::npos);
}

TEST(EnvConfigTest, MalformedValuesAreReportedOnceEachAndKeepDefaults) {
  const auto c = Parse({"SKBOX_STEALTH_MODE=yes", "SKBOX_ENABLE_CONNECT=2x",
                        "SKBOX_GETPEERNAME_PROTECTION=-1", "SKBOX_STRICT_STREAM_MODE=strict",
                        "SKBOX_PORT_FILTER_IPV6=1024,99999", "SKBOX_BLOCK_LISTEN_EMPTY_ADDR=no"});
  EXPECT_EQ(c->problems.count, 6);
  EXPECT_FALSE(c->stealth);
  EXPECT_EQ(c->connect_level, 0);
  EXPECT_EQ(c->getpeername_protection, 2);
  EXPECT_EQ(c->strict, StrictLevel::kStreamInetUnix);
  EXPECT_TRUE(c->filter_ipv6.broken);
  EXPECT_TRUE(c->block_listen);
  for (int i = 0; i < c->problems.count; ++i) {
    EXPECT_NE(std::string(c->problems.lines[i]).find("malformed"), std::string::npos);
  }
}

// A value is shown escaped: a newline (or an escape sequence) in it must not
// start a line of its own on the program's stderr, which would forge a log
// line. Long values are shortened, with their length.
TEST(EnvConfigTest, MalformedValuesAreShownEscaped) {
  const auto c = Parse({"SKBOX_STEALTH_MODE=1\nsocketbox-preload[1]: all is well",
                        "SKBOX_SENDER_UIDS=0\x1b[2J\\", "SKBOX_ACKNOWLEDGE=\xff",
                        "SKBOX_PORT_FILTER_IPV4=\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n"
                        "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n"});
  ASSERT_EQ(c->problems.count, 4);
  EXPECT_STREQ(
      c->problems.lines[0],
      "SKBOX_PORT_FILTER_IPV4=\""
      "\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a"
      "\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a"
      "\\x0a\\x0a\\x0a\\x0a\\x0a\\x0a...(46 bytes)\" is not plain decimal; read as the "
      "original read it (C strtoul, base 0): odd ports below 0, even ports below 0, 0 listed");
  EXPECT_STREQ(c->problems.lines[1],
               "SKBOX_STEALTH_MODE=\"1\\x0asocketbox-preload[1]: all is well\" is malformed: "
               "expected 0 or 1");
  EXPECT_STREQ(c->problems.lines[2], "SKBOX_ACKNOWLEDGE=\"\\xff\" is malformed: expected 0 or 1");
  EXPECT_NE(std::string(c->problems.lines[3]).find("SKBOX_SENDER_UIDS=\"0\\x1b[2J\\x5c\""),
            std::string::npos)
      << c->problems.lines[3];
  for (int i = 0; i < c->problems.count; ++i) {
    EXPECT_EQ(std::string(c->problems.lines[i]).find_first_of("\n\r\x1b"), std::string::npos);
  }
}

TEST(EnvConfigTest, AcknowledgeIsAFlag) {
  EXPECT_FALSE(Parse({"SKBOX_ACKNOWLEDGE=0"})->acknowledge);
  const auto c = Parse({"SKBOX_ACKNOWLEDGE=2"});
  EXPECT_FALSE(c->acknowledge);
  ASSERT_EQ(c->problems.count, 1);
  EXPECT_STREQ(c->problems.lines[0], "SKBOX_ACKNOWLEDGE=\"2\" is malformed: expected 0 or 1");
}

TEST(EnvConfigTest, TooLongDirectoryIsBroken) {
  const std::string var = "SKBOX_DIRECTORY_ROOT2=/" + std::string(PATH_MAX, 'a');
  const auto c = Parse({var.c_str()});
  EXPECT_TRUE(c->directory_root2.set);
  EXPECT_TRUE(c->directory_root2.broken);
  EXPECT_EQ(c->problems.count, 1);
}

TEST(EnvConfigTest, EmptyValuesAreUnset) {
  const auto c = Parse({"SKBOX_DIRECTORY_ROOT=", "SKBOX_STEALTH_MODE=", "SKBOX_ENABLE_CONNECT="});
  EXPECT_FALSE(c->directory_root.set);
  EXPECT_FALSE(c->stealth);
  EXPECT_EQ(c->problems.count, 0);
}

// Issue 20 item 3: an empty filter is unset, as in the original (it was
// reported as malformed, and every bind in its class failed with EINVAL).
TEST(EnvConfigTest, EmptyPortFiltersAreUnset) {
  const auto c = Parse({"SKBOX_PORT_FILTER_IPV6=", "SKBOX_PORT_FILTER_IPV4=",
                        "SKBOX_PORT_FILTER_IPV6_WILDCARD=", "SKBOX_PORT_FILTER_IPV4_WILDCARD="});
  EXPECT_EQ(c->problems.count, 0);
  for (const FilterSetting* s :
       {&c->filter_ipv6, &c->filter_ipv4, &c->filter_ipv6_wildcard, &c->filter_ipv4_wildcard}) {
    EXPECT_FALSE(s->broken);
  }
  EXPECT_TRUE(c->filter_ipv6.filter.Passes(1023));  // the default, below 1024
  EXPECT_FALSE(c->filter_ipv6.filter.Passes(1024));
  EXPECT_FALSE(c->filter_ipv4_wildcard.filter.Passes(80));  // none
}

// Issue 20 item 4: read as the original read it, with one warning naming
// the variable, the value and how it was read.
TEST(EnvConfigTest, PortFilterNotPlainDecimalIsReadAndWarned) {
  const auto c = Parse({"SKBOX_PORT_FILTER_IPV6=0x400", "SKBOX_PORT_FILTER_IPV4=1024x",
                        "SKBOX_PORT_FILTER_IPV4_WILDCARD=,", "SKBOX_PORT_FILTER_IPV6_WILDCARD=80"});
  EXPECT_FALSE(c->filter_ipv6.broken);
  EXPECT_TRUE(c->filter_ipv6.filter.Passes(1023));
  EXPECT_FALSE(c->filter_ipv6.filter.Passes(1024));
  EXPECT_TRUE(c->filter_ipv4.filter.Passes(1023));
  EXPECT_FALSE(c->filter_ipv4_wildcard.filter.Passes(1));
  ASSERT_EQ(c->problems.count, 3);
  EXPECT_STREQ(c->problems.lines[0],
               "SKBOX_PORT_FILTER_IPV6=\"0x400\" is not plain decimal; read as the original "
               "read it (C strtoul, base 0): odd ports below 1024, even ports below 1024, 0 "
               "listed");
  EXPECT_STREQ(c->problems.lines[1],
               "SKBOX_PORT_FILTER_IPV4=\"1024x\" is not plain decimal; read as the original "
               "read it (C strtoul, base 0): odd ports below 1024, even ports below 1024, 0 "
               "listed");
  EXPECT_STREQ(c->problems.lines[2],
               "SKBOX_PORT_FILTER_IPV4_WILDCARD=\",\" is not plain decimal; read as the "
               "original read it (C strtoul, base 0): the default, as if unset");
}

TEST(EnvConfigTest, SimilarNamesDoNotMatch) {
  const auto c = Parse({"SKBOX_STEALTH_MODEX=1", "XSKBOX_STEALTH_MODE=1", "SKBOX_STEALTH_MODE"});
  EXPECT_FALSE(c->stealth);
}

TEST(ConfigTest, KernelDispatchSettings) {
  const auto d = Parse({});
  EXPECT_TRUE(d->kernel_dispatch);
  EXPECT_EQ(d->kernel_dispatch_timeout_ms, 200);
  EXPECT_STREQ(d->listener_socket, "/run/socketbox/listeners.sock");
  EXPECT_EQ(d->problems.count, 0);

  const auto c = Parse({"SKBOX_KERNEL_DISPATCH=0", "SKBOX_KERNEL_DISPATCH_TIMEOUT_MS=1500",
                        "SKBOX_LISTENER_SOCKET=/run/other/listeners.sock"});
  EXPECT_FALSE(c->kernel_dispatch);
  EXPECT_EQ(c->kernel_dispatch_timeout_ms, 1500);
  EXPECT_STREQ(c->listener_socket, "/run/other/listeners.sock");
  EXPECT_EQ(c->problems.count, 0);

  // Malformed: reported once each, the defaults kept.
  const auto bad = Parse({"SKBOX_KERNEL_DISPATCH=yes", "SKBOX_KERNEL_DISPATCH_TIMEOUT_MS=0"});
  EXPECT_TRUE(bad->kernel_dispatch);
  EXPECT_EQ(bad->kernel_dispatch_timeout_ms, 200);
  EXPECT_EQ(bad->problems.count, 2);

  // A path that cannot be a Unix socket address turns it off, and says so.
  const std::string long_path = "SKBOX_LISTENER_SOCKET=/" + std::string(120, 'x');
  const auto too_long = Parse({long_path.c_str()});
  EXPECT_FALSE(too_long->kernel_dispatch);
  ASSERT_EQ(too_long->problems.count, 1);
  EXPECT_NE(std::string(too_long->problems.lines[0]).find("SKBOX_LISTENER_SOCKET"),
            std::string::npos);
}

}  // namespace
}  // namespace sbx::preload
