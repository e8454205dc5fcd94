// The option table: getopt's strings made from rows, the walk (order,
// clusters, "--", faults), and the help lines.
#include "engine/core/option_table.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sbx {
namespace {

using ::testing::ElementsAre;

struct Seen {
  std::vector<std::string> events;
};

absl::Status Note(const char* name, const char* value, Seen* s) {
  s->events.push_back(value != nullptr ? std::string(name) + "=" + value : name);
  return absl::OkStatus();
}

constexpr OptionRow<Seen> kRows[] = {
    {"port", 'p', "N", "the port", [](const char* v, Seen* s) { return Note("port", v, s); }},
    {"quiet", 'q', nullptr, "say less", [](const char* v, Seen* s) { return Note("quiet", v, s); }},
    {"listen", 0, "ADDR", "more", [](const char* v, Seen* s) { return Note("listen", v, s); }},
    {nullptr, 'x', nullptr, "short only", [](const char* v, Seen* s) { return Note("x", v, s); }},
    {"fail", 0, "V", "always refused",
     [](const char* v, Seen*) { return absl::InvalidArgumentError(std::string("bad ") + v); }},
};

struct Result {
  absl::StatusOr<std::vector<std::string>> words;
  Seen seen;
  OptionFault fault{};
};

Result Parse(std::vector<std::string> args, OptionOrder order = OptionOrder::kStopAtFirstWord) {
  args.insert(args.begin(), "prog");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  Result r;
  r.words = ParseOptionTable<Seen>(kRows, static_cast<int>(args.size()), argv.data(), order,
                                   &r.seen, [&](const OptionFault& f) {
                                     r.fault = f;
                                     return absl::InvalidArgumentError("fault");
                                   });
  return r;
}

TEST(OptionTableTest, ShortLongClusteredAndLongOnlyRowsReachTheirSetters) {
  Result r = Parse({"-p", "80", "--quiet", "-qx", "--listen=[::]:1", "--port", "81", "-p82"});
  ASSERT_TRUE(r.words.ok()) << r.words.status();
  EXPECT_THAT(r.seen.events,
              ElementsAre("port=80", "quiet", "quiet", "x", "listen=[::]:1", "port=81", "port=82"));
  EXPECT_TRUE(r.words->empty());
}

TEST(OptionTableTest, StopAtFirstWordLeavesTheRestAsWords) {
  Result r = Parse({"-q", "prog", "-p", "1"});
  ASSERT_TRUE(r.words.ok());
  EXPECT_THAT(r.seen.events, ElementsAre("quiet"));
  EXPECT_THAT(*r.words, ElementsAre("prog", "-p", "1"));
}

TEST(OptionTableTest, PermuteTakesOptionsAfterWordsAndStopsAtDoubleDash) {
  Result r = Parse({"word", "-q", "other", "--", "-p"}, OptionOrder::kPermute);
  ASSERT_TRUE(r.words.ok());
  EXPECT_THAT(r.seen.events, ElementsAre("quiet"));
  EXPECT_THAT(*r.words, ElementsAre("word", "other", "-p"));
}

TEST(OptionTableTest, FaultsNameTheOptionAndTheWord) {
  Result missing = Parse({"-q", "-p"});
  EXPECT_FALSE(missing.words.ok());
  EXPECT_TRUE(missing.fault.missing_value);
  EXPECT_EQ(missing.fault.token, "-p");

  Result in_cluster = Parse({"-qZ"});
  EXPECT_FALSE(in_cluster.words.ok());
  EXPECT_FALSE(in_cluster.fault.missing_value);
  EXPECT_EQ(in_cluster.fault.short_name, 'Z');
  EXPECT_EQ(in_cluster.fault.token, "-qZ");

  // An unknown letter before others: still the word it is in.
  Result first_of_cluster = Parse({"-p", "1", "-Zq", "w"});
  EXPECT_FALSE(first_of_cluster.words.ok());
  EXPECT_EQ(first_of_cluster.fault.short_name, 'Z');
  EXPECT_EQ(first_of_cluster.fault.token, "-Zq");
  Result middle_of_cluster = Parse({"-qZx"});
  EXPECT_EQ(middle_of_cluster.fault.token, "-qZx");

  Result long_unknown = Parse({"--bogus"});
  EXPECT_FALSE(long_unknown.words.ok());
  EXPECT_EQ(long_unknown.fault.short_name, 0);
  EXPECT_EQ(long_unknown.fault.token, "--bogus");

  Result long_missing = Parse({"--listen"});
  EXPECT_TRUE(long_missing.fault.missing_value);
  EXPECT_EQ(long_missing.fault.token, "--listen");
}

TEST(OptionTableTest, ASettersErrorStopsTheWalk) {
  Result r = Parse({"--fail", "v", "-q"});
  ASSERT_FALSE(r.words.ok());
  EXPECT_EQ(r.words.status().message(), "bad v");
  EXPECT_TRUE(r.seen.events.empty());
}

TEST(OptionTableTest, ParsingTwiceStartsAfresh) {
  EXPECT_FALSE(Parse({"-qZ"}).words.ok());
  Result r = Parse({"-q"});
  ASSERT_TRUE(r.words.ok());
  EXPECT_THAT(r.seen.events, ElementsAre("quiet"));
}

TEST(OptionTableTest, HelpLinesAlignAndWrap) {
  EXPECT_EQ(OptionHelp<Seen>(std::span<const OptionRow<Seen>>(kRows).first(4), 16),
            "  -p, --port N  the port\n"
            "  -q, --quiet   say less\n"
            "      --listen ADDR\n"
            "                more\n"
            "  -x            short only\n");
  EXPECT_EQ(FormatOptionHelp("wide", 0, nullptr, "one\ntwo", 14),
            "      --wide  one\n"
            "              two\n");
  // Names that reach the column: the help goes on the next line.
  EXPECT_EQ(FormatOptionHelp("wide", 0, nullptr, "one", 12),
            "      --wide\n"
            "            one\n");
}

}  // namespace
}  // namespace sbx
