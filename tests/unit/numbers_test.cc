// Number parsing: strict decimal (the replacement for atoi) and C's base-0
// reading (strtoul(text, NULL, 0)) where the original used it.
#include "engine/core/numbers.h"

#include <gtest/gtest.h>

namespace sbx {
namespace {

struct CNumberCase {
  const char* text;
  std::optional<uint64_t> value;
};

TEST(NumbersTest, CNumberReadsDecimalOctalAndHex) {
  const CNumberCase cases[] = {
      {"0", 0},
      {"8", 8},
      {"010", 8},
      {"0x10", 16},
      {"0X1f", 31},
      {"00", 0},
      {"0777", 511},
      {"4294967295", 4294967295},
      {"08", std::nullopt},
      {"0x", std::nullopt},
      {"0xg", std::nullopt},
      {"1a", std::nullopt},
      {"", std::nullopt},
      {"-1", std::nullopt},
      {" 1", std::nullopt},
      {"a", std::nullopt},
      {"0x1ffffffffffffffff", std::nullopt},
  };
  for (const CNumberCase& c : cases) {
    EXPECT_EQ(ParseCNumber(c.text, 0, UINT64_MAX), c.value) << c.text;
  }
  EXPECT_EQ(ParseCNumber("0x100000000", 0, UINT32_MAX), std::nullopt);
  EXPECT_EQ(ParseCNumber("07", 8, 10), std::nullopt);  // below min
}

TEST(NumbersTest, DecimalStaysStrict) {
  EXPECT_EQ(ParseDecimal("010", 0, 100), 10u);  // atoi's reading, for -p, -s, -b
  EXPECT_EQ(ParseDecimal("0x10", 0, 100), std::nullopt);
}

}  // namespace
}  // namespace sbx
