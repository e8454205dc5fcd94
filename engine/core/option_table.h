// Command lines by table: one row per option (its long and short names,
// its value, its help line, and what it does), from which come getopt's
// option string and long options, the walk over argv, and the usage text.
// Every program of the project (socketbox, socketbox-relay, the inetd
// tools) had its own getopt table, usage text and switch of setters, three
// places to keep in step for each option; a row is one.
//
// Getopt's own faults (an unknown option, a missing value) come back as an
// OptionFault for the program to word as it always has: the original
// programs' messages differ, and scripts read them.
#ifndef SBX_ENGINE_CORE_OPTION_TABLE_H_
#define SBX_ENGINE_CORE_OPTION_TABLE_H_

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sbx {

template <typename Target>
struct OptionRow {
  const char* long_name;   // without the dashes; nullptr: short only
  char short_name;         // 0: long only
  const char* value_name;  // "FILE" in the help line; nullptr: takes no value
  const char* help;        // '\n' starts a continuation line
  // `value` is nullptr for an option without one.
  absl::Status (*apply)(const char* value, Target* target);
};

// What getopt needs of a row.
struct OptionShape {
  const char* long_name;
  char short_name;
  bool takes_value;
};

struct OptionFault {
  bool missing_value;  // else unknown
  char short_name;     // the short option getopt named (in a cluster too), or 0
  std::string token;   // the word of argv it was in, as given
};

enum class OptionOrder {
  kStopAtFirstWord,  // "+": the first word that is not an option ends them
  kPermute,          // GNU: options may follow other words
};

// Walks argv[1..argc) with getopt_long (reset first, so it may be called
// again): on_option(row index, value) for each option, on_fault for a
// getopt fault (its status is returned). The words that are not options,
// in order; or the first error.
absl::StatusOr<std::vector<std::string>> WalkOptions(
    int argc, char** argv, std::span<const OptionShape> shapes, OptionOrder order,
    const std::function<absl::Status(size_t, const char*)>& on_option,
    const std::function<absl::Status(const OptionFault&)>& on_fault);

template <typename Target>
absl::StatusOr<std::vector<std::string>> ParseOptionTable(
    std::span<const OptionRow<Target>> rows, int argc, char** argv, OptionOrder order,
    Target* target, const std::function<absl::Status(const OptionFault&)>& on_fault) {
  std::vector<OptionShape> shapes;
  shapes.reserve(rows.size());
  for (const OptionRow<Target>& r : rows) {
    shapes.push_back({r.long_name, r.short_name, r.value_name != nullptr});
  }
  return WalkOptions(
      argc, argv, shapes, order,
      [&](size_t i, const char* value) { return rows[i].apply(value, target); }, on_fault);
}

// One help entry: "  -f, --config FILE" then the help from `column` on (on
// the next line when the names reach it), continuation lines indented to
// `column`.
std::string FormatOptionHelp(const char* long_name, char short_name, const char* value_name,
                             const char* help, size_t column);

template <typename Target>
std::string OptionHelp(std::span<const OptionRow<Target>> rows, size_t column) {
  std::string out;
  for (const OptionRow<Target>& r : rows) {
    out += FormatOptionHelp(r.long_name, r.short_name, r.value_name, r.help, column);
  }
  return out;
}

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_OPTION_TABLE_H_
