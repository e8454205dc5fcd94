// Strict decimal number parsing: the replacement for the original's atoi().
//
// ParseDecimal accepts only [0-9]+ (leading zeros allowed), no sign, no
// spaces, no trailing bytes, and a value in [min, max]. Anything else is
// nullopt, so "-p abc" or "port:70000" are errors instead of 0 or a wrapped
// port. Free of abseil: the preload library uses it too.
#ifndef SBX_ENGINE_CORE_NUMBERS_H_
#define SBX_ENGINE_CORE_NUMBERS_H_

#include <cstdint>
#include <optional>
#include <string_view>

namespace sbx {

constexpr std::optional<uint64_t> ParseDecimal(std::string_view text, uint64_t min, uint64_t max) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  if (value < min || value > max) return std::nullopt;
  return value;
}

// A number as C's strtoul(text, NULL, 0) reads it (the original's -u, -g,
// -G, -P and socketbox-inetd-p's GROUP): "0x"/"0X" then hex digits, a leading
// "0" then octal digits ("010" is 8), otherwise decimal. Unlike strtoul the
// whole text must be the number (no sign, spaces or trailing bytes), and the
// value must be in [min, max].
constexpr std::optional<uint64_t> ParseCNumber(std::string_view text, uint64_t min, uint64_t max) {
  unsigned base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    text.remove_prefix(2);
  } else if (text.size() > 1 && text[0] == '0') {
    base = 8;
    text.remove_prefix(1);
  }
  if (text.empty()) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    unsigned digit;
    if (c >= '0' && c <= '9') {
      digit = static_cast<unsigned>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<unsigned>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      digit = static_cast<unsigned>(c - 'A' + 10);
    } else {
      return std::nullopt;
    }
    if (digit >= base || value > (UINT64_MAX - digit) / base) return std::nullopt;
    value = value * base + digit;
  }
  if (value < min || value > max) return std::nullopt;
  return value;
}

constexpr std::optional<uint16_t> ParsePort(std::string_view text) {
  auto v = ParseDecimal(text, 0, 65535);
  if (!v) return std::nullopt;
  return static_cast<uint16_t>(*v);
}

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_NUMBERS_H_
