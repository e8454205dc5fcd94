// What a rule, a map entry or a set's default does with a connection, and
// what a lookup decides.
#ifndef SBX_ENGINE_CORE_ROUTE_ACTION_H_
#define SBX_ENGINE_CORE_ROUTE_ACTION_H_

#include <cstdint>

namespace sbx {

enum class ActionKind : uint8_t {
  kNone,      // lookup result only: no decision (missing set, step limit)
  kFail,      // close the connection (also every unset action)
  kUnix,      // arg: index into the table's Unix socket paths
  kFd,        // arg: inherited fd to send over
  kJumpMap,   // arg: map-set index
  kJumpRule,  // arg: rule-set index
};

struct Action {
  ActionKind kind = ActionKind::kFail;
  uint32_t arg = 0;

  bool IsJump() const { return kind == ActionKind::kJumpMap || kind == ActionKind::kJumpRule; }
  friend bool operator==(const Action&, const Action&) = default;
};

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_ROUTE_ACTION_H_
