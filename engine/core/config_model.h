// The parsed configuration, as written: sets, entries (with their lines) and
// defaults, before compilation into a RouteTable. The parser produces it; the
// analysis and the route table consume it; tests evaluate it directly.
#ifndef SBX_ENGINE_CORE_CONFIG_MODEL_H_
#define SBX_ENGINE_CORE_CONFIG_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/conn_tuple.h"
#include "engine/core/route_action.h"

namespace sbx {

// Limits of the original's language (section 3 of the reference).
inline constexpr uint32_t kMaxSets = 1000;
inline constexpr uint32_t kMaxSetSize = 1000;
inline constexpr int kMaxLookupSteps = 100;
inline constexpr size_t kMaxUnixPathLength = 107;  // sun_path less its NUL

struct RuleEntry {
  PackedTuple pattern;  // as written, not masked
  PackedTuple mask;     // all-zero fields match anything
  Action action;        // kFail unless a jump/fail token set it
  int line = 0;
};

struct MapEntry {
  PackedTuple key;  // as written; the set's mask applies at compile time
  Action action;
  int line = 0;
};

struct RuleSetModel {
  uint32_t capacity = 0;  // from size:N; 0 = never sized
  std::vector<RuleEntry> entries;
  Action default_action;
  int default_line = 0;  // line of the token that set default_action
};

struct MapSetModel {
  uint32_t capacity = 0;
  std::vector<MapEntry> entries;
  PackedTuple mask;  // from match-lip/match-rip/match-lport/match-rport
  Action default_action;
  int default_line = 0;
};

struct ConfigModel {
  std::vector<RuleSetModel> rule_sets;  // max-rules of them (0 if absent)
  std::vector<MapSetModel> map_sets;    // max-maps of them
  std::vector<std::string> unix_paths;  // distinct jump-unix paths; kUnix args index here
};

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_CONFIG_MODEL_H_
