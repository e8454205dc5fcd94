// From configuration text (or an open file) to a RouteTable: parse, analyse,
// compile. The one entry point the daemon, --check-config and --test-route use.
#ifndef SBX_ENGINE_CORE_CONFIG_LOADER_H_
#define SBX_ENGINE_CORE_CONFIG_LOADER_H_

#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/core/diagnostic.h"
#include "engine/core/route_table.h"

namespace sbx {

// Configuration files larger than this are refused (the largest meaningful
// file, 1000 sets of 1000 entries, is well below it).
inline constexpr size_t kMaxConfigBytes = 256u << 20;

struct LoadedConfig {
  std::shared_ptr<const RouteTable> table;
  std::vector<Diagnostic> warnings;
};

// InvalidArgument with every error, one a line, when the text does not parse.
absl::StatusOr<LoadedConfig> LoadConfigText(std::string_view text, std::string_view file_name);

// Reads `fd` to its end. The daemon opens and parses the file before it
// binds anything or drops privileges (daemon.cc, StartUp step 1), so a bad
// file leaves no socket bound; the open fd survives the chroot for reloads.
absl::StatusOr<LoadedConfig> LoadConfigFd(int fd, std::string_view file_name);

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_CONFIG_LOADER_H_
