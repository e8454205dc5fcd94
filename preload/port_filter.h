// Port filters (SKBOX_PORT_FILTER_*): which ports a bind may be redirected on.
//
// Text form "odd_limit[,even_limit[,p1,...,p30]]": an odd port passes when it
// is below odd_limit, an even port when it is below even_limit (the odd limit
// when only one value is given), and any listed port passes. Port 0 never
// passes. Limits go up to 65536 (every port). Parsing is strict: anything
// else is malformed (the original aborted the host process; we report it).
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

std::optional<PortFilter> ParsePortFilter(std::string_view text);

}  // namespace sbx::preload

#endif  // SBX_PRELOAD_PORT_FILTER_H_
