// Garbage in: random bytes, huge numbers, huge sets, very long lines and
// paths. The parser must neither crash nor read out of bounds (this suite
// also runs in the address+undefined sanitizer build) and must answer with
// diagnostics, not silence.
#include <iterator>
#include <random>
#include <string>

#include "engine/core/config_loader.h"
#include "engine/core/config_parser.h"
#include "gtest/gtest.h"
#include "tests/unit/config_properties.h"

namespace sbx {
namespace {

TEST(ConfigGarbageTest, RandomBytes) {
  // Random bytes and random lines of tokens: every diagnostic has the
  // FILE:LINE: form and names a line that exists, and whatever parses
  // decides like the reference evaluator (config_properties.h).
  const char* const kTokens[] = {
      "max-rules:3",    "max-maps:2",    "rule-set:0",  "rule-set:1", "map-set:0",        "size:2",
      "ip:2001:db8::1", "port:80",       "jump-rule:1", "jump-map:0", "jump-unix:/run/x", "fail",
      "default",        "match-lip:128", "\xff",        "#"};
  std::mt19937 rng(42);
  int parsed_ok = 0;
  int with_errors = 0;
  for (int round = 0; round < 4000; ++round) {
    std::string text;
    if (round % 2 == 0) {
      text.resize(std::uniform_int_distribution<size_t>(0, 400)(rng));
      for (char& c : text) c = static_cast<char>(rng());
    } else {
      for (int i = std::uniform_int_distribution<int>(0, 30)(rng); i > 0; --i) {
        text += kTokens[rng() % std::size(kTokens)];
        text += "\n \t"[rng() % 3];
      }
    }
    const ParseOutcome out = ParseConfig(text, "random.bin");
    const std::string bad = testing_support::CheckParseOutcome(text, "random.bin", out);
    ASSERT_EQ(bad, "") << "round " << round;
    if (out.ok()) {
      ++parsed_ok;
      ASSERT_EQ(testing_support::CheckTableDecisions(out.model, 32), "") << "round " << round;
    } else {
      ++with_errors;
    }
  }
  // Both outcomes must be exercised, or the properties prove little.
  EXPECT_GT(parsed_ok, 50);
  EXPECT_GT(with_errors, 1000);
}

TEST(ConfigGarbageTest, MutatedValidConfigs) {
  const std::string base =
      "max-maps:3\nmax-rules:3\nrule-set:0 size:5\nip:2001:db8::1/64 port:80 jump-map:1\n"
      "rip:::ffff:10.0.0.0/104 jump-unix:/run/a.sock\ndefault jump-rule:2\n"
      "map-set:1 size:4 match-lip:128 match-lport\nip:2001:db8::1 port:80 jump-fd:5\n"
      "default fail\nrule-set:2 size:1\ndefault jump-unix:/run/b.sock\n";
  const char alphabet[] = ":/-0123456789abcdef \t\r\n#ipjumprulesetmapfaildefault";
  std::mt19937 rng(7);
  int loaded_ok = 0;
  for (int round = 0; round < 5000; ++round) {
    std::string text = base;
    const int edits = std::uniform_int_distribution<int>(1, 6)(rng);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = std::uniform_int_distribution<size_t>(0, text.size() - 1)(rng);
      const char c = alphabet[std::uniform_int_distribution<size_t>(0, sizeof(alphabet) - 2)(rng)];
      switch (rng() % 3) {
        case 0:
          text[pos] = c;
          break;
        case 1:
          text.insert(pos, 1, c);
          break;
        default:
          text.erase(pos, 1);
          break;
      }
    }
    auto loaded = LoadConfigText(text, "mutated.conf");
    if (loaded.ok()) {
      ++loaded_ok;
      ConnTuple t{*ParseIp6("2001:db8::1"), *ParseIp6("::ffff:10.1.2.3"), 80, 1234};
      (void)loaded->table->Lookup(t);
    } else {
      EXPECT_FALSE(loaded.status().message().empty());
    }
  }
  EXPECT_GT(loaded_ok, 0);
}

TEST(ConfigGarbageTest, HugeNumbers) {
  for (const char* token :
       {"max-rules:99999999999999999999999999", "max-rules:18446744073709551616",
        "max-rules:4294967297", "max-maps:-0", "max-rules:+1", "max-rules: 1", "max-rules:0x10"}) {
    const ParseOutcome out = ParseConfig(token, "f");
    EXPECT_FALSE(out.ok()) << token;
  }
  const ParseOutcome ports = ParseConfig(
      "max-rules:1\nrule-set:0 size:3\nport:4294967376 fail\nrport:18446744073709551696 fail\n"
      "jump-fd:2147483648\n",
      "f");
  EXPECT_EQ(ports.errors.size(), 3u);
}

TEST(ConfigGarbageTest, TenThousandLineSet) {
  std::string text = "max-rules:1\nrule-set:0 size:1000\n";
  for (int i = 0; i < 10000; ++i)
    text += "ip:2001:db8::" + std::to_string(i % 9999 + 1) + " fail\n";
  const ParseOutcome out = ParseConfig(text, "big.conf");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.errors[0].line, 1003);
  EXPECT_NE(out.errors[0].message.find("is full (size:1000)"), std::string::npos);
  EXPECT_EQ(out.model.rule_sets[0].entries.size(), 1000u);
}

TEST(ConfigGarbageTest, LargestValidConfiguration) {
  // 1000 map-sets would be slow to build in a unit test; one full map and
  // one full rule-set at the maximum size are enough to prove the bounds.
  std::string text = "max-rules:1000\nmax-maps:1000\nrule-set:999 size:1000\n";
  for (int i = 0; i < 1000; ++i) text += "port:" + std::to_string(i) + " jump-map:999\n";
  text += "map-set:999 size:1000 match-lip:128\n";
  for (int i = 0; i < 1000; ++i) text += "ip:2001:db8::" + std::to_string(i + 1) + " fail\n";
  auto loaded = LoadConfigText(text, "max.conf");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
}

TEST(ConfigGarbageTest, VeryLongLinesAndPaths) {
  const std::string long_token(1 << 20, 'x');
  EXPECT_FALSE(ParseConfig(long_token, "f").ok());
  EXPECT_FALSE(ParseConfig("max-rules:1\nrule-set:0 size:1\njump-unix:" + long_token, "f").ok());
  EXPECT_FALSE(ParseConfig("max-rules:1\nrule-set:0 size:1\nip:" + long_token, "f").ok());
  EXPECT_FALSE(ParseConfig("max-rules:1\nrule-set:0 size:1\nip:::1/" + long_token, "f").ok());
  std::string spaces(1 << 20, ' ');
  EXPECT_TRUE(ParseConfig(spaces + "\n" + spaces, "f").ok());
  const ParseOutcome out = ParseConfig(long_token, "f");
  EXPECT_LT(out.errors[0].ToString().size(), 300u);  // the token is shortened in messages
}

}  // namespace
}  // namespace sbx
