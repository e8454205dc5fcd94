// An obviously-correct evaluator of a ConfigModel, written straight from the
// reference's §3.3 with no compilation step, masks applied byte by byte and
// maps scanned linearly in file order (first entry wins). The property test
// compares the compiled RouteTable against it.
#ifndef SBX_TESTS_UNIT_REFERENCE_EVALUATOR_H_
#define SBX_TESTS_UNIT_REFERENCE_EVALUATOR_H_

#include "engine/core/config_model.h"

namespace sbx::testing_support {

inline bool MaskedEqual(const ConnTuple& a, const ConnTuple& b, const ConnTuple& mask) {
  for (int i = 0; i < 16; ++i) {
    if ((a.local.bytes[i] & mask.local.bytes[i]) != (b.local.bytes[i] & mask.local.bytes[i]))
      return false;
    if ((a.remote.bytes[i] & mask.remote.bytes[i]) != (b.remote.bytes[i] & mask.remote.bytes[i]))
      return false;
  }
  return (a.lport & mask.lport) == (b.lport & mask.lport) &&
         (a.rport & mask.rport) == (b.rport & mask.rport);
}

inline Action ReferenceLookup(const ConfigModel& model, const ConnTuple& tuple) {
  Action current{ActionKind::kJumpRule, 0};
  for (int step = 0; step < 100; ++step) {
    Action next;
    if (current.kind == ActionKind::kJumpRule) {
      if (current.arg >= model.rule_sets.size()) return {ActionKind::kNone, 0};
      const RuleSetModel& set = model.rule_sets[current.arg];
      next = set.default_action;
      for (const RuleEntry& e : set.entries) {
        if (MaskedEqual(tuple, e.pattern.ToConnTuple(), e.mask.ToConnTuple())) {
          next = e.action;
          break;
        }
      }
    } else if (current.kind == ActionKind::kJumpMap) {
      if (current.arg >= model.map_sets.size()) return {ActionKind::kNone, 0};
      const MapSetModel& set = model.map_sets[current.arg];
      next = set.default_action;
      for (const MapEntry& e : set.entries) {
        if (MaskedEqual(tuple, e.key.ToConnTuple(), set.mask.ToConnTuple())) {
          next = e.action;
          break;
        }
      }
    }
    if (next.kind != ActionKind::kJumpRule && next.kind != ActionKind::kJumpMap) return next;
    current = next;
  }
  return {ActionKind::kNone, 0};
}

}  // namespace sbx::testing_support

#endif  // SBX_TESTS_UNIT_REFERENCE_EVALUATOR_H_
