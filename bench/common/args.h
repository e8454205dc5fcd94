// Small command-line helpers shared by the bench tools: numbers with range
// checks and "NAME=VALUE" splitting. Errors are reported by the callers with
// the offending text, so these only say yes or no.
#ifndef SBX_BENCH_COMMON_ARGS_H_
#define SBX_BENCH_COMMON_ARGS_H_

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <optional>
#include <string_view>
#include <utility>

namespace sbx::bench {

// A decimal integer within [lo, hi], the whole text and nothing else.
inline std::optional<uint64_t> ParseUint(std::string_view text, uint64_t lo, uint64_t hi) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < lo || value > hi) {
    return std::nullopt;
  }
  return value;
}

// A non-negative decimal number with an optional fraction ("2", "0.5").
inline std::optional<double> ParseSeconds(std::string_view text) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !(value >= 0)) {
    return std::nullopt;
  }
  return value;
}

// "NAME=VALUE" split at the first '='; both sides non-empty.
inline std::optional<std::pair<std::string_view, std::string_view>> SplitAssign(
    std::string_view text) {
  size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == text.size()) return std::nullopt;
  return std::make_pair(text.substr(0, eq), text.substr(eq + 1));
}

// Walks "--flag value" pairs, calling on_pair(flag, value) for each. --help
// or -h prints `usage`. Returns false when parsing must stop: then
// *exit_code is 0 after --help and 2 after an error (on_pair reports its own
// errors; a flag without a value is reported through fail(what, text)).
// The flags in `switches` take no value: on_pair(flag, "").
template <typename OnPair, typename OnFail>
bool ForEachFlagValue(int argc, char** argv, const char* usage, int* exit_code, OnPair on_pair,
                      OnFail fail, std::initializer_list<std::string_view> switches = {}) {
  *exit_code = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(usage, stdout);
      *exit_code = 0;
      return false;
    }
    if (std::find(switches.begin(), switches.end(), flag) != switches.end()) {
      if (!on_pair(flag, std::string_view())) return false;
      continue;
    }
    if (i + 1 >= argc) {
      fail("missing value or unknown option", flag);
      return false;
    }
    if (!on_pair(flag, std::string_view(argv[++i]))) return false;
  }
  return true;
}

}  // namespace sbx::bench

#endif  // SBX_BENCH_COMMON_ARGS_H_
