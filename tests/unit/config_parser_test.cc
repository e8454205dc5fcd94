// Every token of the configuration language and every error message.
#include "engine/core/config_parser.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sbx {
namespace {

using ::testing::HasSubstr;

ConnTuple Tuple(const char* local, uint16_t lport, const char* remote, uint16_t rport) {
  return {*ParseIp6(local), *ParseIp6(remote), lport, rport};
}

TEST(ConfigParserTest, OriginalSample) {
  const ParseOutcome out = ParseConfig(
      "max-maps:100\n"
      "max-rules:100\n"
      "rule-set:0 size:100\n"
      "ip:2001:db8::1 jump-unix:test0001\n"
      "ip:2001:db8::2 jump-unix:run/test2.sock\n"
      "ip:2001:db8::3 port:80 jump-fd:200\n",
      "sample.conf");
  ASSERT_TRUE(out.ok()) << JoinDiagnostics(out.errors);
  EXPECT_TRUE(out.warnings.empty()) << JoinDiagnostics(out.warnings);
  ASSERT_EQ(out.model.rule_sets.size(), 100u);
  ASSERT_EQ(out.model.map_sets.size(), 100u);
  const RuleSetModel& set = out.model.rule_sets[0];
  EXPECT_EQ(set.capacity, 100u);
  ASSERT_EQ(set.entries.size(), 3u);
  EXPECT_EQ(set.entries[0].action, (Action{ActionKind::kUnix, 0}));
  EXPECT_EQ(set.entries[1].action, (Action{ActionKind::kUnix, 1}));
  EXPECT_EQ(set.entries[2].action, (Action{ActionKind::kFd, 200}));
  EXPECT_EQ(set.entries[2].line, 6);
  EXPECT_EQ(out.model.unix_paths, (std::vector<std::string>{"test0001", "run/test2.sock"}));
  // port:80 in a rule-set makes the port part of the match.
  const ConnTuple mask = set.entries[2].mask.ToConnTuple();
  EXPECT_EQ(mask.lport, 0xffff);
  EXPECT_EQ(mask.rport, 0);
  EXPECT_EQ(FormatIp6(mask.local), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
  EXPECT_TRUE(mask.remote.IsUnspecified());
}

TEST(ConfigParserTest, EveryTokenHasItsMeaning) {
  const ParseOutcome out = ParseConfig(
      "# comment\n"
      "max-rules:3\n"
      "max-maps:2\n"
      "\n"
      "rule-set:0\tsize:10\n"
      "ip:2001:db8::/32\trip:2001:db8:ffff::/ffff:ffff:0:0:0:0:0:1 rport:1234 jump-map:1\r\n"
      "port:22 jump-rule:2\n"
      "fail\n"
      "default jump-unix:/run/def.sock\n"
      "map-set:1 size:5 match-lip:64 match-rip:16 match-lport match-rport\n"
      "ip:2001:db8:1:2::9 rip:2001:: port:80 rport:9 jump-fd:7\n"
      "default\n"
      "jump-rule:2\n"
      "rule-set:2 size:1\n"
      "default fail\n",
      "all.conf");
  ASSERT_TRUE(out.ok()) << JoinDiagnostics(out.errors);
  const auto& r0 = out.model.rule_sets[0];
  ASSERT_EQ(r0.entries.size(), 3u);
  const ConnTuple p0 = r0.entries[0].pattern.ToConnTuple();
  const ConnTuple m0 = r0.entries[0].mask.ToConnTuple();
  EXPECT_EQ(FormatIp6(m0.local), "ffff:ffff::");
  EXPECT_EQ(FormatIp6(m0.remote), "ffff:ffff::1");
  EXPECT_EQ(FormatIp6(p0.remote), "2001:db8:ffff::");
  EXPECT_EQ(p0.rport, 1234);
  EXPECT_EQ(m0.rport, 0xffff);
  EXPECT_EQ(m0.lport, 0);
  EXPECT_EQ(r0.entries[0].action, (Action{ActionKind::kJumpMap, 1}));
  EXPECT_EQ(r0.entries[1].action, (Action{ActionKind::kJumpRule, 2}));
  EXPECT_EQ(r0.entries[2].action, (Action{ActionKind::kFail, 0}));
  EXPECT_EQ(r0.entries[2].mask, PackedTuple{});  // matches anything
  EXPECT_EQ(r0.default_action, (Action{ActionKind::kUnix, 0}));
  EXPECT_EQ(r0.default_line, 9);

  const auto& m1 = out.model.map_sets[1];
  ASSERT_EQ(m1.entries.size(), 1u);
  const ConnTuple mask = m1.mask.ToConnTuple();
  EXPECT_EQ(FormatIp6(mask.local), "ffff:ffff:ffff:ffff::");
  EXPECT_EQ(FormatIp6(mask.remote), "ffff::");
  EXPECT_EQ(mask.lport, 0xffff);
  EXPECT_EQ(mask.rport, 0xffff);
  EXPECT_EQ(m1.entries[0].key.ToConnTuple(), Tuple("2001:db8:1:2::9", 80, "2001::", 9));
  EXPECT_EQ(m1.entries[0].action, (Action{ActionKind::kFd, 7}));
  EXPECT_EQ(m1.default_action, (Action{ActionKind::kJumpRule, 2}));
  EXPECT_EQ(out.model.rule_sets[2].default_action, (Action{ActionKind::kFail, 0}));
}

TEST(ConfigParserTest, SetsCanBeReopened) {
  const ParseOutcome out = ParseConfig(
      "max-rules:2\nrule-set:0 size:3\nip:::1 fail\nrule-set:1 size:1\nfail\n"
      "rule-set:0\nip:::2 jump-fd:3\n",
      "f");
  ASSERT_TRUE(out.ok()) << JoinDiagnostics(out.errors);
  EXPECT_EQ(out.model.rule_sets[0].entries.size(), 2u);
}

TEST(ConfigParserTest, MapWithoutMaskDefaultsToAllZero) {
  const ParseOutcome out = ParseConfig("max-maps:1\nmap-set:0 size:2\nip:::1 fail\n", "f");
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out.model.map_sets[0].mask, PackedTuple{});
}

TEST(ConfigParserTest, ValueOnValuelessTokenWarns) {
  const ParseOutcome out = ParseConfig("max-rules:1\nrule-set:0 size:1\nfail:now\n", "f");
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out.warnings.size(), 1u);
  EXPECT_THAT(out.warnings[0].ToString(), HasSubstr("'fail' takes no value"));
}

TEST(ConfigParserTest, SecondActionOnALineWarns) {
  const ParseOutcome out =
      ParseConfig("max-rules:1\nrule-set:0 size:1\nip:::1 jump-fd:3 jump-fd:4\n", "f");
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out.warnings.size(), 1u);
  EXPECT_EQ(out.model.rule_sets[0].entries[0].action, (Action{ActionKind::kFd, 4}));
}

struct ErrorCase {
  const char* name;
  const char* text;
  int line;
  const char* token;
  const char* message;
};

constexpr char kHead[] = "max-rules:2\nmax-maps:2\nrule-set:0 size:2\n";  // 3 lines

const ErrorCase kErrorCases[] = {
    {"UnknownToken", "bogus", 4, "bogus", "unknown token 'bogus'"},
    {"Abbreviation", "r:1", 4, "r:1",
     "abbreviations are not accepted (write one of: rip, rport, rule-set)"},
    {"AbbreviationNoColon", "def", 4, "def", "write one of: default"},
    {"InlineComment", "ip:::1 #x", 4, "#x", "'#' starts a comment only at the beginning"},
    {"IndentedComment", "  # x", 4, "#", "'#' starts a comment only"},
    {"MissingValue", "ip", 4, "ip", "'ip' needs a value: ip:ADDRESS[/LEN|/MASK]"},
    {"MaxRulesTwice", "max-rules:3", 4, "max-rules:3", "'max-rules' given twice"},
    {"MaxMapsZero", "", 1, "max-maps:0", "'max-maps' must be a number from 1 to 1000"},
    {"MaxRulesTooBig", "", 1, "max-rules:1001", "'max-rules' must be a number from 1 to 1000"},
    {"MaxRulesNotNumber", "", 1, "max-rules:12abc", "must be a number from 1 to 1000"},
    {"RuleSetBeforeMax", "", 1, "rule-set:0", "'rule-set' before 'max-rules'"},
    {"MapSetBeforeMax", "", 1, "map-set:0", "'map-set' before 'max-maps'"},
    {"RuleSetOutOfRange", "rule-set:2", 4, "rule-set:2",
     "rule-set 2 does not exist (max-rules:2 allows 0 to 1)"},
    {"MapSetOutOfRange", "map-set:7", 4, "map-set:7", "map-set 7 does not exist"},
    {"RuleSetNegative", "rule-set:-1", 4, "rule-set:-1", "'rule-set' needs a set number"},
    {"SetAfterEntry", "ip:::1 rule-set:1", 4, "rule-set:1",
     "'rule-set' cannot follow an entry on the same line"},
    {"SizeTwice", "size:3", 4, "size:3", "'size' given twice for rule-set 0"},
    {"SizeZero", "rule-set:1 size:0", 4, "size:0", "'size' must be a number from 1 to 1000"},
    {"SizeTooBig", "rule-set:1 size:1001", 4, "size:1001",
     "'size' must be a number from 1 to 1000"},
    {"SizeAfterDefault", "rule-set:1 default size:1", 4, "size:1",
     "'size' must come before 'default'"},
    {"MissingSize", "rule-set:1\nip:::1", 5, "ip:::1", "rule-set 1 has no size (write size:N"},
    {"MissingSizeMap", "map-set:0\nfail", 5, "fail", "map-set 0 has no size"},
    {"SetFull", "fail\nfail\nfail", 6, "fail", "rule-set 0 is full (size:2)"},
    {"DefaultAfterEntry", "ip:::1 default", 4, "default", "'default' cannot follow an entry"},
    {"DefaultTwice", "default\ndefault", 5, "default", "'default' given twice"},
    {"EntryAfterDefault", "default\nip:::1", 5, "ip:::1",
     "'ip' is an entry token and cannot follow 'default'"},
    {"BadAddress", "ip:2001:db8::zz", 4, "ip:2001:db8::zz",
     "'2001:db8::zz' is not an IPv6 address"},
    {"Ipv4Address", "rip:192.0.2.1", 4, "rip:192.0.2.1",
     "write IPv4 addresses as ::ffff:192.0.2.1"},
    {"PrefixTooLong", "ip:::1/129", 4, "ip:::1/129",
     "prefix length '129' must be a number from 0 to 128"},
    {"PrefixNotNumber", "ip:::1/x", 4, "ip:::1/x", "prefix length 'x'"},
    {"PrefixEmpty", "ip:::1/", 4, "ip:::1/", "prefix length ''"},
    {"BadMaskLiteral", "ip:::1/ffff:::zz", 4, "ip:::1/ffff:::zz",
     "mask 'ffff:::zz' is not an IPv6 address"},
    {"MapAddressWithMask", "map-set:0 size:1\nip:::1/64", 5, "ip:::1/64",
     "map-set entries take a plain address without a mask (use match-lip"},
    {"PortTooBig", "port:65536", 4, "port:65536", "'port' must be a number from 0 to 65535"},
    {"PortNotNumber", "rport:http", 4, "rport:http", "'rport' must be a number from 0 to 65535"},
    {"EmptyPath", "jump-unix:", 4, "jump-unix:", "'jump-unix' needs a socket path"},
    {"FdNegative", "jump-fd:-1", 4, "jump-fd:-1", "value must be a number from 0 to 2147483647"},
    {"JumpRuleHuge", "jump-rule:99999999999", 4, "jump-rule:99999999999",
     "value must be a number from 0 to 4294967295"},
    {"MatchLipInRuleSet", "match-lip:64", 4, "match-lip:64",
     "'match-lip' belongs in a map-set, before 'default'"},
    {"MatchLipAfterDefault", "map-set:0 size:1 default\nmatch-lip:64", 5, "match-lip:64",
     "belongs in a map-set"},
    {"MatchRipTooBig", "map-set:0 size:1 match-rip:200", 4, "match-rip:200",
     "'match-rip' must be a prefix length from 0 to 128"},
    {"MatchLportInRuleSet", "match-lport", 4, "match-lport", "'match-lport' belongs in a map-set"},
    {"EntryOutsideSet", "", 1, "ip:::1", "'ip' outside a set"},
    {"ActionOutsideSet", "", 1, "fail", "action outside a set"},
    {"SizeOutsideSet", "", 1, "size:1", "'size' outside a set"},
    {"DefaultOutsideSet", "", 1, "default", "'default' outside a set"},
};

class ConfigErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ConfigErrorTest, NamesLineTokenAndReason) {
  const ErrorCase& c = GetParam();
  // Cases with line 1 stand alone (their token is the whole file); the rest
  // follow a valid head.
  const std::string text = c.line == 1 ? std::string(c.token) : std::string(kHead) + c.text;
  const ParseOutcome out = ParseConfig(text, "t.conf");
  ASSERT_FALSE(out.ok()) << text;
  const Diagnostic& d = out.errors.front();
  EXPECT_EQ(d.file, "t.conf");
  EXPECT_EQ(d.line, c.line) << d.ToString();
  EXPECT_EQ(d.token, c.token) << d.ToString();
  EXPECT_THAT(d.message, HasSubstr(c.message)) << d.ToString();
  EXPECT_THAT(d.ToString(), HasSubstr("t.conf:" + std::to_string(c.line) + ": error: near '"));
}

INSTANTIATE_TEST_SUITE_P(AllErrors, ConfigErrorTest, ::testing::ValuesIn(kErrorCases),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(ConfigParserTest, PathLongerThanSunPath) {
  const std::string ok_path(107, 'a');
  EXPECT_TRUE(ParseConfig(std::string(kHead) + "jump-unix:" + ok_path, "f").ok());
  const ParseOutcome out = ParseConfig(std::string(kHead) + "jump-unix:" + ok_path + "b", "f");
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(out.errors[0].message,
              HasSubstr("path is 108 bytes; a Unix socket path holds at most 107"));
}

TEST(ConfigParserTest, PathWithNulByte) {
  const ParseOutcome out = ParseConfig(std::string(kHead) + std::string("jump-unix:a\0b", 13), "f");
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(out.errors[0].ToString(), HasSubstr("near 'jump-unix:a\\x00b'"));
}

TEST(ConfigParserTest, ReportsSeveralErrorsAndSkipsRestOfLine) {
  const ParseOutcome out = ParseConfig(std::string(kHead) + "bogus ip:zz\nport:x\nfail", "f");
  ASSERT_EQ(out.errors.size(), 2u) << JoinDiagnostics(out.errors);
  EXPECT_EQ(out.errors[0].line, 4);
  EXPECT_EQ(out.errors[1].line, 5);
}

TEST(ConfigParserTest, StopsAfterTooManyErrors) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "bogus\n";
  const ParseOutcome out = ParseConfig(text, "f");
  EXPECT_EQ(out.errors.size(), kMaxErrors + 1);
  EXPECT_THAT(out.errors.back().message, HasSubstr("too many errors"));
}

TEST(ConfigParserTest, CrLfAndTabsEverywhere) {
  const ParseOutcome out = ParseConfig(
      "max-rules:1\r\nrule-set:0\tsize:2\r\nip:::1\tport:80\tjump-unix:/a\r\n\t\r\n", "f");
  ASSERT_TRUE(out.ok()) << JoinDiagnostics(out.errors);
  EXPECT_EQ(out.model.unix_paths, std::vector<std::string>{"/a"});
}

}  // namespace
}  // namespace sbx
