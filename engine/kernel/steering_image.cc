#include "engine/kernel/steering_image.h"

#include <cstring>

#include "engine/core/path_substitution.h"
#include "engine/core/str_cat.h"

namespace sbx {

sbx_steer_tuple ToSteerTuple(const PackedTuple& t) {
  sbx_steer_tuple out{};
  static_assert(sizeof(out.w) == sizeof(t.w));
  std::memcpy(out.w, t.w.data(), sizeof out.w);
  return out;
}

std::optional<std::string> WhyNotSteerable(const std::string& path, bool substitute) {
  if (substitute && HasSubstitutionTokens(path)) {
    return std::string("-U: the path depends on the connection's local address");
  }
  return std::nullopt;
}

std::optional<SteeringImage> BuildSteeringImage(const RouteTable& table, const SlotOf& slot_of,
                                                bool substitute, std::string* error) {
  SteeringImage image;
  const std::vector<std::string>& paths = table.unix_paths();
  std::vector<std::optional<uint32_t>> slots(paths.size());
  for (uint32_t i = 0; i < paths.size(); ++i) {
    if (std::optional<std::string> why = WhyNotSteerable(paths[i], substitute)) {
      image.not_steered.emplace_back(paths[i], *why);
      continue;
    }
    slots[i] = slot_of(i);
    if (slots[i]) image.steerable_paths.push_back(i);
  }
  auto convert = [&](const Action& a) -> sbx_steer_action {
    switch (a.kind) {
      case ActionKind::kJumpRule:
        return {SBX_STEER_JUMP_RULE, a.arg};
      case ActionKind::kJumpMap:
        return {SBX_STEER_JUMP_MAP, a.arg};
      case ActionKind::kUnix:
        if (a.arg < slots.size() && slots[a.arg]) return {SBX_STEER_BACKEND, *slots[a.arg]};
        return {SBX_STEER_PASS, 0};
      default:  // fail, jump-fd, no decision: the engine's to count
        return {SBX_STEER_PASS, 0};
    }
  };

  const auto& rule_sets = table.rule_sets();
  const auto& map_sets = table.map_sets();
  size_t rules = 0, entries = 0;
  for (const auto& set : rule_sets) rules += set.rules.size();
  for (const auto& set : map_sets) entries += set.entries.size();
  if (rule_sets.size() > SBX_STEER_MAX_SETS || map_sets.size() > SBX_STEER_MAX_SETS ||
      rules > SBX_STEER_MAX_RULES || entries > SBX_STEER_MAX_MAP_ENTRIES) {
    *error = StrCat("the configuration is larger than the kernel program takes (", rule_sets.size(),
                    " rule-sets, ", map_sets.size(), " map-sets, ", rules, " rules, ", entries,
                    " map entries; at most ", SBX_STEER_MAX_SETS, " sets of each kind, ",
                    SBX_STEER_MAX_RULES, " rules, ", SBX_STEER_MAX_MAP_ENTRIES, " map entries)");
    return std::nullopt;
  }
  for (const auto& set : rule_sets) {
    sbx_steer_rule_set out{};
    out.first = static_cast<uint32_t>(image.rules.size());
    out.count = static_cast<uint32_t>(set.rules.size());
    out.fallback = convert(set.default_action);
    image.rule_sets.push_back(out);
    for (const auto& rule : set.rules) {
      image.rules.push_back(
          {ToSteerTuple(rule.pattern), ToSteerTuple(rule.mask), convert(rule.action)});
    }
  }
  for (uint32_t s = 0; s < map_sets.size(); ++s) {
    image.map_sets.push_back({ToSteerTuple(map_sets[s].mask), convert(map_sets[s].default_action)});
    for (const auto& [key, action] : map_sets[s].entries) {
      image.map_entries.push_back({s, ToSteerTuple(key), convert(action)});
    }
  }
  return image;
}

std::vector<std::string> KernelDispatchNotes(const RouteTable& table, bool substitute) {
  std::vector<std::string> notes;
  uint32_t next = 0;
  std::string error;
  std::optional<SteeringImage> image = BuildSteeringImage(
      table, [&](uint32_t) -> std::optional<uint32_t> { return next++; }, substitute, &error);
  if (!image) return {StrCat("kernel dispatch: steers nothing: ", error)};
  for (const auto& [path, why] : image->not_steered) {
    notes.push_back(StrCat("kernel dispatch: leaves ", path, " to the engine: ", why));
  }
  if (!table.named_fds().empty()) {
    notes.push_back(
        "kernel dispatch: leaves jump-fd ends to the engine: it passes those over its own "
        "inherited sockets");
  }
  return notes;
}

}  // namespace sbx
