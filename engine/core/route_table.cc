#include "engine/core/route_table.h"

#include <algorithm>

#include "engine/core/str_cat.h"

namespace sbx {

RouteTable RouteTable::Build(const ConfigModel& model, std::string_view file_name,
                             std::vector<Diagnostic>* warnings) {
  RouteTable table;
  table.unix_paths_ = model.unix_paths;
  table.rule_sets_.reserve(model.rule_sets.size());
  for (const RuleSetModel& in : model.rule_sets) {
    RuleSet& out = table.rule_sets_.emplace_back();
    out.default_action = in.default_action;
    out.rules.reserve(in.entries.size());
    for (const RuleEntry& e : in.entries) {
      out.rules.push_back({e.pattern & e.mask, e.mask, e.action});
    }
  }
  table.map_sets_.reserve(model.map_sets.size());
  for (size_t i = 0; i < model.map_sets.size(); ++i) {
    const MapSetModel& in = model.map_sets[i];
    MapSet& out = table.map_sets_.emplace_back();
    out.mask = in.mask;
    out.default_action = in.default_action;
    out.entries.reserve(in.entries.size());
    absl::flat_hash_map<PackedTuple, int> first_line;
    for (const MapEntry& e : in.entries) {
      const PackedTuple key = e.key & in.mask;
      auto [it, inserted] = out.entries.try_emplace(key, e.action);
      if (inserted) {
        first_line[key] = e.line;
      } else if (warnings != nullptr) {
        const int first = first_line[key];
        warnings->push_back({Diagnostic::Severity::kWarning, std::string(file_name), e.line, "",
                             StrCat("map-set ", i, ": this entry has the same key as line ", first,
                                    " under the set's mask; line ", first, " wins")});
      }
    }
  }
  table.ComputeFieldsUsed();
  table.CollectNamedFds(model);
  return table;
}

void RouteTable::CollectNamedFds(const ConfigModel& model) {
  auto note = [this](const Action& action, int line) {
    if (action.kind == ActionKind::kFd) named_fds_.push_back({static_cast<int>(action.arg), line});
  };
  for (const RuleSetModel& set : model.rule_sets) {
    for (const RuleEntry& e : set.entries) note(e.action, e.line);
    note(set.default_action, set.default_line);
  }
  for (const MapSetModel& set : model.map_sets) {
    for (const MapEntry& e : set.entries) note(e.action, e.line);
    note(set.default_action, set.default_line);
  }
  // First line per fd: sort by (fd, line), keep each fd's first, then order by line.
  std::sort(named_fds_.begin(), named_fds_.end(), [](const NamedFd& a, const NamedFd& b) {
    return a.fd != b.fd ? a.fd < b.fd : a.line < b.line;
  });
  named_fds_.erase(std::unique(named_fds_.begin(), named_fds_.end(),
                               [](const NamedFd& a, const NamedFd& b) { return a.fd == b.fd; }),
                   named_fds_.end());
  std::sort(named_fds_.begin(), named_fds_.end(),
            [](const NamedFd& a, const NamedFd& b) { return a.line < b.line; });
}

Action RouteTable::MatchRuleSet(const RuleSet& set, const PackedTuple& tuple) const {
  for (const Rule& rule : set.rules) {
    if (tuple.MatchesMasked(rule.pattern, rule.mask)) return rule.action;
  }
  return set.default_action;
}

Action RouteTable::MatchMapSet(const MapSet& set, const PackedTuple& tuple) const {
  auto it = set.entries.find(tuple & set.mask);
  return it == set.entries.end() ? set.default_action : it->second;
}

Action RouteTable::Lookup(const PackedTuple& tuple) const {
  Action current{ActionKind::kJumpRule, 0};
  for (int step = 0; step < kMaxLookupSteps; ++step) {
    Action next;
    if (current.kind == ActionKind::kJumpRule) {
      if (current.arg >= rule_sets_.size()) break;
      next = MatchRuleSet(rule_sets_[current.arg], tuple);
    } else {
      if (current.arg >= map_sets_.size()) break;
      next = MatchMapSet(map_sets_[current.arg], tuple);
    }
    if (!next.IsJump()) return next;
    current = next;
  }
  return {ActionKind::kNone, 0};
}

std::vector<size_t> RouteTable::ReachableSets() const {
  // Walk the jump graph from rule-set 0; rule-sets are nodes 0..R-1, maps R...
  const size_t rules = rule_sets_.size();
  std::vector<bool> seen(rules + map_sets_.size(), false);
  std::vector<size_t> order;
  std::vector<size_t> todo;
  auto push = [&](const Action& a) {
    if (!a.IsJump()) return;
    const bool to_map = a.kind == ActionKind::kJumpMap;
    if (a.arg >= (to_map ? map_sets_.size() : rules)) return;
    const size_t node = to_map ? rules + a.arg : a.arg;
    if (!seen[node]) {
      seen[node] = true;
      todo.push_back(node);
    }
  };
  push({ActionKind::kJumpRule, 0});
  while (!todo.empty()) {
    const size_t node = todo.back();
    todo.pop_back();
    order.push_back(node);
    if (node < rules) {
      for (const Rule& r : rule_sets_[node].rules) push(r.action);
      push(rule_sets_[node].default_action);
    } else {
      for (const auto& [key, action] : map_sets_[node - rules].entries) push(action);
      push(map_sets_[node - rules].default_action);
    }
  }
  return order;
}

void RouteTable::ComputeFieldsUsed() {
  const size_t rules = rule_sets_.size();
  for (size_t node : ReachableSets()) {
    if (node < rules) {
      for (const Rule& r : rule_sets_[node].rules) fields_used_ = fields_used_ | r.mask;
    } else {
      fields_used_ = fields_used_ | map_sets_[node - rules].mask;
    }
  }
}

std::vector<RouteTable::ExactLocal> RouteTable::ExactLocals() const {
  const PackedTuple full_local = PackedTuple::From({PrefixMask(128), Ip6{}, 0xffff, 0});
  auto exact = [&](const PackedTuple& mask) {
    return mask.w[0] == full_local.w[0] && mask.w[1] == full_local.w[1];
  };
  std::vector<ExactLocal> out;
  auto add = [&](const PackedTuple& key, const PackedTuple& mask) {
    const ConnTuple t = key.ToConnTuple();
    ExactLocal e{t.local, std::nullopt};
    // Ports are matched whole (port:N, match-lport) or not at all.
    if ((mask.w[4] & full_local.w[4]) == full_local.w[4]) e.port = t.lport;
    if (std::find(out.begin(), out.end(), e) == out.end()) out.push_back(e);
  };
  const size_t rules = rule_sets_.size();
  for (size_t node : ReachableSets()) {
    if (node < rules) {
      for (const Rule& r : rule_sets_[node].rules) {
        if (exact(r.mask)) add(r.pattern, r.mask);
      }
    } else if (const MapSet& map = map_sets_[node - rules]; exact(map.mask)) {
      for (const auto& [key, action] : map.entries) add(key, map.mask);
    }
  }
  return out;
}

}  // namespace sbx
