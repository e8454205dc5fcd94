#include "preload/port_filter.h"

#include "engine/core/numbers.h"

namespace sbx::preload {

bool PortFilter::Passes(uint16_t port) const {
  if (port == 0) return false;
  const uint32_t limit = (port % 2 == 1) ? odd_limit : even_limit;
  if (port < limit) return true;
  for (int i = 0; i < listed_count; ++i) {
    if (listed[static_cast<size_t>(i)] == port) return true;
  }
  return false;
}

std::optional<PortFilter> ParsePortFilter(std::string_view text) {
  PortFilter filter;
  int field = 0;
  while (true) {
    const size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    if (field < 2) {
      const auto limit = ParseDecimal(item, 0, 65536);
      if (!limit) return std::nullopt;
      if (field == 0) {
        filter.odd_limit = filter.even_limit = static_cast<uint32_t>(*limit);
      } else {
        filter.even_limit = static_cast<uint32_t>(*limit);
      }
    } else {
      const auto port = ParseDecimal(item, 1, 65535);
      if (!port || filter.listed_count == PortFilter::kMaxListed) return std::nullopt;
      filter.listed[static_cast<size_t>(filter.listed_count++)] = static_cast<uint16_t>(*port);
    }
    ++field;
    if (comma == std::string_view::npos) return filter;
    text.remove_prefix(comma + 1);
  }
}

}  // namespace sbx::preload
