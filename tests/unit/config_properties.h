// Properties every parse must have, whatever the bytes: shared by the
// garbage unit test and the configuration fuzzer (tests/fuzz/).
//
// - Diagnostics name the file and a line that exists: "FILE:LINE: error: ..."
//   (or "FILE: ..." for the file as a whole, line 0), with a message, and
//   errors stop at kMaxErrors plus the one "too many errors" note.
// - A text that parses compiles into a table whose every decision is one of
//   none, fail, a known Unix path or an fd, and the same decision the
//   reference evaluator (reference_evaluator.h) makes for the same tuple.
//
// Each check returns an empty string, or what was violated.
#ifndef SBX_TESTS_UNIT_CONFIG_PROPERTIES_H_
#define SBX_TESTS_UNIT_CONFIG_PROPERTIES_H_

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/config_parser.h"
#include "engine/core/route_table.h"
#include "tests/unit/reference_evaluator.h"

namespace sbx::testing_support {

inline int CountLines(std::string_view text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
}

inline std::string CheckDiagnostic(const Diagnostic& d, std::string_view file, int lines,
                                   Diagnostic::Severity severity) {
  if (d.severity != severity) return "diagnostic in the wrong list: " + d.ToString();
  if (d.file != file) return "diagnostic names another file: " + d.ToString();
  if (d.line < 0 || d.line > lines) {
    return "diagnostic names line " + std::to_string(d.line) + " of " + std::to_string(lines) +
           ": " + d.ToString();
  }
  if (d.message.empty()) return "diagnostic without a message: " + d.ToString();
  const std::string where = d.line > 0 ? std::string(file) + ":" + std::to_string(d.line) + ": "
                                       : std::string(file) + ": ";
  const std::string kind = severity == Diagnostic::Severity::kError ? "error: " : "warning: ";
  if (d.ToString().rfind(where + kind, 0) != 0) return "not FILE:LINE: form: " + d.ToString();
  return "";
}

inline std::string CheckParseOutcome(std::string_view text, std::string_view file,
                                     const ParseOutcome& out) {
  const int lines = CountLines(text);
  if (out.errors.size() > kMaxErrors + 1) return "more than kMaxErrors + 1 errors";
  for (const Diagnostic& d : out.errors) {
    std::string bad = CheckDiagnostic(d, file, lines, Diagnostic::Severity::kError);
    if (!bad.empty()) return bad;
  }
  for (const Diagnostic& d : out.warnings) {
    std::string bad = CheckDiagnostic(d, file, lines, Diagnostic::Severity::kWarning);
    if (!bad.empty()) return bad;
  }
  return "";
}

// Tuples that reach real decisions: each entry's pattern as written, and
// its neighbour (ports + 1), plus the all-zero tuple; at most `limit`.
inline std::vector<ConnTuple> TuplesFor(const ConfigModel& model, size_t limit) {
  std::vector<ConnTuple> tuples{ConnTuple{}};
  auto add = [&](const PackedTuple& p) {
    if (tuples.size() >= limit) return;
    ConnTuple t = p.ToConnTuple();
    tuples.push_back(t);
    ++t.lport;
    ++t.rport;
    tuples.push_back(t);
  };
  for (const RuleSetModel& set : model.rule_sets) {
    for (const RuleEntry& e : set.entries) add(e.pattern);
  }
  for (const MapSetModel& set : model.map_sets) {
    for (const MapEntry& e : set.entries) add(e.key);
  }
  return tuples;
}

// For a model that parsed: build the table and compare its decisions.
inline std::string CheckTableDecisions(const ConfigModel& model, size_t tuple_limit) {
  const RouteTable table = RouteTable::Build(model, "t.conf", nullptr);
  for (const ConnTuple& t : TuplesFor(model, tuple_limit)) {
    const Action got = table.Lookup(t);
    switch (got.kind) {
      case ActionKind::kNone:
      case ActionKind::kFail:
      case ActionKind::kFd:
        break;
      case ActionKind::kUnix:
        if (got.arg >= table.unix_paths().size()) return "a Unix decision past the path list";
        break;
      default:
        return "a lookup ended on a jump";
    }
    if (!(got == ReferenceLookup(model, t))) return "table and reference evaluator disagree";
  }
  return "";
}

}  // namespace sbx::testing_support

#endif  // SBX_TESTS_UNIT_CONFIG_PROPERTIES_H_
