#include "engine/core/path_substitution.h"

#include "gtest/gtest.h"

namespace sbx {
namespace {

struct Case {
  const char* path;
  const char* local;
  uint16_t port;
  const char* expected;
};

const Case kCases[] = {
    {"/run/sb/#//0_.sock", "2001:db8::1", 80, "/run/sb/08193.sock"},
    {"/run/#//7_/#//P_", "2001:db8::ffff", 443, "/run/65535/00443"},
    {"#//0_#//1_#//2_#//3_#//4_#//5_#//6_#//7_#//P_", "1:2:3:4:5:6:7:8", 9,
     "000010000200003000040000500006000070000800009"},
    // Only the first occurrence of each token is replaced.
    {"#//P_-#//P_", "::", 22, "00022-#//P_"},
    {"/plain/path", "::1", 1, "/plain/path"},
    {"#//8_ #//p_ #/0_ #//0", "::1", 1, "#//8_ #//p_ #/0_ #//0"},
    {"", "::", 0, ""},
};

TEST(PathSubstitutionTest, Table) {
  for (const Case& c : kCases) {
    EXPECT_EQ(SubstitutePath(c.path, *ParseIp6(c.local), c.port), c.expected) << c.path;
  }
}

TEST(PathSubstitutionTest, DetectsTokens) {
  EXPECT_TRUE(HasSubstitutionTokens("/run/#//P_"));
  EXPECT_TRUE(HasSubstitutionTokens("#//3_"));
  EXPECT_FALSE(HasSubstitutionTokens("/run/#//9_"));
  EXPECT_FALSE(HasSubstitutionTokens(""));
}

TEST(PathSubstitutionTest, TokenAtTheVeryEndOfAMaximalPath) {
  // The original read past sun_path here; we touch exactly path.size() bytes.
  std::string path(102, 'a');
  path += "#//P_";
  ASSERT_EQ(path.size(), 107u);
  char out[107];
  EXPECT_EQ(SubstitutePath(path, *ParseIp6("::"), 65535, out), 107u);
  EXPECT_EQ(std::string(out + 102, 5), "65535");
}

}  // namespace
}  // namespace sbx
