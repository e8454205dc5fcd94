// RouteTable: the compiled, immutable form of a configuration, and the lookup
// that decides where a connection goes.
//
// Evaluation is the original's (reference §3.3): start as jump-rule:0; a
// rule-set is scanned in order and the first entry whose masked fields equal
// its pattern wins, else the set's default; a map-set is an exact lookup of
// the tuple under the set's mask (a hash table here), else the default;
// jump-unix, jump-fd and fail end the lookup; a jump to a missing set, or more
// than kMaxLookupSteps set lookups, is "no decision" (ActionKind::kNone).
//
// Where the original was undefined (two map entries with the same masked
// key: its binary search returned either one, or none) the entry written
// first wins, and Build() warns.
//
// Thread-safety: const methods may be called from any number of threads.
// A reload builds a new table; nothing mutates one after Build().
#ifndef SBX_ENGINE_CORE_ROUTE_TABLE_H_
#define SBX_ENGINE_CORE_ROUTE_TABLE_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/core/config_model.h"
#include "engine/core/conn_tuple.h"
#include "engine/core/diagnostic.h"
#include "engine/core/route_action.h"

namespace sbx {

class RouteTable {
 public:
  RouteTable() = default;  // no rule-set 0: every lookup gives no decision

  // Compiles `model`; duplicate map keys are appended to `warnings`.
  static RouteTable Build(const ConfigModel& model, std::string_view file_name,
                          std::vector<Diagnostic>* warnings);

  // Never kJumpMap/kJumpRule: one of kNone, kFail, kUnix, kFd.
  Action Lookup(const PackedTuple& tuple) const;
  Action Lookup(const ConnTuple& tuple) const { return Lookup(PackedTuple::From(tuple)); }

  // Paths named by kUnix actions (arg indexes this vector).
  const std::vector<std::string>& unix_paths() const { return unix_paths_; }

  // Every fd a jump-fd action names, once, with the line that first names
  // it, in line order: the daemon checks each one before it uses the table
  // (an fd that is not an open, connected Unix socket must not be written to).
  struct NamedFd {
    int fd = -1;
    int line = 0;
    friend bool operator==(const NamedFd&, const NamedFd&) = default;
  };
  const std::vector<NamedFd>& named_fds() const { return named_fds_; }

  // The union of every mask a lookup starting at rule-set 0 can consult: a
  // field that is zero here never changes a decision, so the engine need not
  // fetch it (for example, no getsockname when no reachable rule looks at
  // the local address or port).
  const PackedTuple& fields_used() const { return fields_used_; }

  // A local address that a reachable rule or map key names exactly (a full
  // /128 local mask), with the local port it also names (nullopt: any).
  struct ExactLocal {
    Ip6 ip;
    std::optional<uint16_t> port;
    friend bool operator==(const ExactLocal&, const ExactLocal&) = default;
  };
  // Every such (address, port) once: the engine gives a pair its own
  // listener, on the listening ports the pair can match, so that the
  // kernel's socket lookup, not getsockname(2), tells a connection's local
  // address.
  std::vector<ExactLocal> ExactLocals() const;

  // The compiled sets, read by the kernel program's compiler
  // (engine/kernel/steering_image.h), which must decide exactly as Lookup.
  struct Rule {
    PackedTuple pattern;  // already masked
    PackedTuple mask;
    Action action;
  };
  struct RuleSet {
    std::vector<Rule> rules;
    Action default_action;
  };
  struct MapSet {
    PackedTuple mask;
    absl::flat_hash_map<PackedTuple, Action> entries;
    Action default_action;
  };

  const std::vector<RuleSet>& rule_sets() const { return rule_sets_; }
  const std::vector<MapSet>& map_sets() const { return map_sets_; }

 private:
  Action MatchRuleSet(const RuleSet& set, const PackedTuple& tuple) const;
  Action MatchMapSet(const MapSet& set, const PackedTuple& tuple) const;
  void ComputeFieldsUsed();
  void CollectNamedFds(const ConfigModel& model);
  std::vector<size_t> ReachableSets() const;

  std::vector<RuleSet> rule_sets_;
  std::vector<MapSet> map_sets_;
  std::vector<std::string> unix_paths_;
  std::vector<NamedFd> named_fds_;
  PackedTuple fields_used_;
};

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_ROUTE_TABLE_H_
