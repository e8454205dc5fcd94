#include "preload/port_filter.h"

namespace sbx::preload {
namespace {

// Above every value a field may take; larger numbers saturate here.
constexpr uint64_t kTooLarge = 1u << 20;

struct Field {
  uint64_t value = 0;
  bool negative = false;
};

unsigned DigitValue(char c) {
  if (c >= '0' && c <= '9') return static_cast<unsigned>(c - '0');
  if (c >= 'a' && c <= 'z') return static_cast<unsigned>(c - 'a' + 10);
  if (c >= 'A' && c <= 'Z') return static_cast<unsigned>(c - 'A' + 10);
  return 36;
}

bool IsBlank(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// "0", or decimal digits without a leading zero: read the same by every
// reader (a leading zero makes strtoul read octal).
bool IsPlainDecimal(std::string_view text) {
  if (text.empty() || (text.size() > 1 && text[0] == '0')) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// One field as strtoul(field, NULL, 0) reads it.
Field ReadField(std::string_view text) {
  Field field;
  size_t i = 0;
  while (i < text.size() && IsBlank(text[i])) ++i;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
    field.negative = text[i] == '-';
    ++i;
  }
  unsigned base = 10;
  if (i < text.size() && text[i] == '0') {
    base = 8;
    // "0x" counts as hex only with a hex digit after it ("0x" alone is 0).
    if (i + 2 < text.size() && (text[i + 1] == 'x' || text[i + 1] == 'X') &&
        DigitValue(text[i + 2]) < 16) {
      base = 16;
      i += 2;
    }
  }
  for (; i < text.size(); ++i) {
    const unsigned digit = DigitValue(text[i]);
    if (digit >= base) break;
    field.value = field.value * base + digit;
    if (field.value > kTooLarge) field.value = kTooLarge;
  }
  return field;
}

}  // namespace

bool PortFilter::Passes(uint16_t port) const {
  if (port == 0) return false;
  const uint32_t limit = (port % 2 == 1) ? odd_limit : even_limit;
  if (port < limit) return true;
  for (int i = 0; i < listed_count; ++i) {
    if (listed[static_cast<size_t>(i)] == port) return true;
  }
  return false;
}

std::optional<ParsedPortFilter> ParsePortFilter(std::string_view text) {
  ParsedPortFilter parsed;
  PortFilter& filter = parsed.filter;
  while (true) {
    const size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    if (item.empty()) {
      parsed.plain_decimal = false;
    } else {
      const Field field = ReadField(item);
      if (!IsPlainDecimal(item)) parsed.plain_decimal = false;
      // strtoul negates: "-0" is 0, any other negative number is huge.
      const uint64_t value = field.negative && field.value != 0 ? kTooLarge : field.value;
      if (parsed.fields < 2) {
        if (value > 65536) return std::nullopt;
        if (parsed.fields == 0) filter.odd_limit = static_cast<uint32_t>(value);
        filter.even_limit = static_cast<uint32_t>(value);
      } else {
        if (value == 0 || value > 65535 || filter.listed_count == PortFilter::kMaxListed) {
          return std::nullopt;
        }
        filter.listed[static_cast<size_t>(filter.listed_count++)] = static_cast<uint16_t>(value);
      }
      ++parsed.fields;
    }
    if (comma == std::string_view::npos) return parsed;
    text.remove_prefix(comma + 1);
  }
}

}  // namespace sbx::preload
