// Parser for the original socketbox configuration language (reference §3).
//
// Same tokens, same meaning, same state machine (one line = one entry; the
// first entry token starts it, later tokens on the line modify it; `default`
// switches the current set to its default action). Deliberate differences,
// each documented in README.md: TAB is whitespace everywhere; "\r\n" line
// ends; numbers are strict decimal and range-checked; token names must be
// written in full; a set without `size`, a full set, or a path longer than
// sun_path are errors instead of crashes or truncation.
//
// Never crashes and never reads out of bounds, whatever the bytes: every
// problem becomes a Diagnostic naming file, line, token and reason. Parsing
// goes on after an error (the rest of that line is skipped) so that one run
// reports up to kMaxErrors problems.
#ifndef SBX_ENGINE_CORE_CONFIG_PARSER_H_
#define SBX_ENGINE_CORE_CONFIG_PARSER_H_

#include <string_view>
#include <vector>

#include "engine/core/config_model.h"
#include "engine/core/diagnostic.h"

namespace sbx {

inline constexpr size_t kMaxErrors = 50;

struct ParseOutcome {
  ConfigModel model;
  std::vector<Diagnostic> errors;
  std::vector<Diagnostic> warnings;
  bool ok() const { return errors.empty(); }
};

ParseOutcome ParseConfig(std::string_view text, std::string_view file_name);

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_CONFIG_PARSER_H_
