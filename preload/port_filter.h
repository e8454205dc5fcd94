// Port filters (SKBOX_PORT_FILTER_*): which ports a bind may be redirected on.
//
// Text form "odd_limit[,even_limit[,p1,...,p30]]": an odd port passes when it
// is below odd_limit, an even port when it is below even_limit (the odd limit
// when only one value is given), and any listed port passes. Port 0 never
// passes. Limits go up to 65536 (every port).
//
// Numbers are read as the original read them, with C's strtoul(..., 0):
// "0x400" is hex (1024), "010" octal (8), bytes after a number are ignored
// ("1024x" is 1024), text without a number is 0, leading blanks and a '+'
// are skipped; empty fields are skipped (the original split with strtok).
// Such a text is lenient (not plain decimal) and the caller warns about it.
// What the original refused (it aborted the host process) is malformed and
// refused: a limit above 65536, a listed port 0 or above 65535, a negative
// number, more than 30 listed ports.
#ifndef SBX_PRELOAD_PORT_FILTER_H_
#define SBX_PRELOAD_PORT_FILTER_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace sbx::preload {

struct PortFilter {
  static constexpr int kMaxListed = 30;

  uint32_t odd_limit = 0;
  uint32_t even_limit = 0;
  std::array<uint16_t, kMaxListed> listed{};
  int listed_count = 0;

  // Passes nothing: the default of every filter but the IPv6 one.
  static PortFilter None() { return PortFilter{}; }
  // Ports below `limit`.
  static PortFilter Below(uint32_t limit) {
    PortFilter f;
    f.odd_limit = f.even_limit = limit;
    return f;
  }

  bool Passes(uint16_t port) const;
};

struct ParsedPortFilter {
  PortFilter filter;
  // Fields read; 0 for a text of commas only, which the original took as
  // unset (the variable's default applies).
  int fields = 0;
  // Every field was plain decimal ("0" or digits without a leading zero)
  // and no field was empty.
  bool plain_decimal = true;
};

// nullopt: malformed (see above).
std::optional<ParsedPortFilter> ParsePortFilter(std::string_view text);

}  // namespace sbx::preload

#endif  // SBX_PRELOAD_PORT_FILTER_H_
