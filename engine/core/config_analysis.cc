#include "engine/core/config_analysis.h"

#include <algorithm>
#include <string>

#include "engine/core/str_cat.h"

namespace sbx {
namespace {

// Rule-sets are nodes 0..R-1, map-sets R..R+M-1.
struct JumpGraph {
  size_t rule_count = 0;
  std::vector<std::vector<size_t>> edges;

  std::string NodeName(size_t node) const {
    return node < rule_count ? StrCat("rule-set ", node) : StrCat("map-set ", node - rule_count);
  }
};

class JumpChecker {
 public:
  JumpChecker(const ConfigModel& model, std::string_view file) : model_(model), file_(file) {
    graph_.rule_count = model.rule_sets.size();
    graph_.edges.resize(model.rule_sets.size() + model.map_sets.size());
  }

  std::vector<Diagnostic> Run() {
    if (model_.rule_sets.empty()) {
      Warn(0,
           "no rule-set 0 (no max-rules): every lookup starts there, so every connection "
           "gets no decision");
    }
    for (size_t i = 0; i < model_.rule_sets.size(); ++i) {
      const RuleSetModel& set = model_.rule_sets[i];
      for (const RuleEntry& e : set.entries) AddJump(i, e.action, e.line);
      AddJump(i, set.default_action, set.default_line);
    }
    for (size_t i = 0; i < model_.map_sets.size(); ++i) {
      const MapSetModel& set = model_.map_sets[i];
      const size_t node = model_.rule_sets.size() + i;
      for (const MapEntry& e : set.entries) AddJump(node, e.action, e.line);
      AddJump(node, set.default_action, set.default_line);
    }
    FindCycles();
    return std::move(warnings_);
  }

 private:
  void AddJump(size_t from, const Action& action, int line) {
    if (!action.IsJump()) return;
    const bool to_map = action.kind == ActionKind::kJumpMap;
    const size_t count = to_map ? model_.map_sets.size() : model_.rule_sets.size();
    const std::string token = StrCat(to_map ? "jump-map:" : "jump-rule:", action.arg);
    if (action.arg >= count) {
      Warn(line, StrCat(token, " names a ", to_map ? "map-set" : "rule-set",
                        " that does not exist (", to_map ? "max-maps:" : "max-rules:", count,
                        "): connections that reach it get no decision"));
      return;
    }
    graph_.edges[from].push_back(to_map ? model_.rule_sets.size() + action.arg : action.arg);
  }

  // Tarjan's strongly connected components; a component with more than one
  // node, or one node that jumps to itself, is a cycle.
  void FindCycles() {
    const size_t n = graph_.edges.size();
    index_.assign(n, -1);
    low_.assign(n, 0);
    on_stack_.assign(n, false);
    for (size_t v = 0; v < n; ++v) {
      if (index_[v] < 0) Connect(v);
    }
  }

  void Connect(size_t v) {
    // Iterative to keep the stack depth bounded for 2,000-set configurations.
    struct Frame {
      size_t node;
      size_t next_edge;
    };
    std::vector<Frame> frames{{v, 0}};
    Visit(v);
    while (!frames.empty()) {
      Frame& f = frames.back();
      const auto& out = graph_.edges[f.node];
      if (f.next_edge < out.size()) {
        const size_t w = out[f.next_edge++];
        if (index_[w] < 0) {
          Visit(w);
          frames.push_back({w, 0});
        } else if (on_stack_[w]) {
          low_[f.node] = std::min(low_[f.node], index_[w]);
        }
        continue;
      }
      const size_t node = f.node;
      frames.pop_back();
      if (!frames.empty())
        low_[frames.back().node] = std::min(low_[frames.back().node], low_[node]);
      if (low_[node] == index_[node]) PopComponent(node);
    }
  }

  void Visit(size_t v) {
    index_[v] = low_[v] = next_index_++;
    stack_.push_back(v);
    on_stack_[v] = true;
  }

  void PopComponent(size_t root) {
    std::vector<size_t> component;
    size_t w;
    do {
      w = stack_.back();
      stack_.pop_back();
      on_stack_[w] = false;
      component.push_back(w);
    } while (w != root);
    const auto& self = graph_.edges[root];
    const bool self_loop = std::find(self.begin(), self.end(), root) != self.end();
    if (component.size() == 1 && !self_loop) return;
    std::sort(component.begin(), component.end());
    std::string names;
    for (size_t node : component)
      StrAppend(&names, names.empty() ? "" : ", ", graph_.NodeName(node));
    Warn(0,
         StrCat("jump cycle among ", names, ": a connection that goes round it gets no decision (",
                kMaxLookupSteps, "-step limit)"));
  }

  void Warn(int line, std::string message) {
    warnings_.push_back(
        {Diagnostic::Severity::kWarning, std::string(file_), line, "", std::move(message)});
  }

  const ConfigModel& model_;
  std::string_view file_;
  JumpGraph graph_;
  std::vector<int> index_, low_;
  std::vector<bool> on_stack_;
  std::vector<size_t> stack_;
  int next_index_ = 0;
  std::vector<Diagnostic> warnings_;
};

}  // namespace

std::vector<Diagnostic> AnalyzeJumps(const ConfigModel& model, std::string_view file_name) {
  return JumpChecker(model, file_name).Run();
}

}  // namespace sbx
