#include "engine/core/option_table.h"

#include <getopt.h>

#include <array>
#include <string_view>

namespace sbx {
namespace {

// getopt_long's value for a row without a short name: above every char.
constexpr int kLongOnlyBase = 1000;

}  // namespace

absl::StatusOr<std::vector<std::string>> WalkOptions(
    int argc, char** argv, std::span<const OptionShape> shapes, OptionOrder order,
    const std::function<absl::Status(size_t, const char*)>& on_option,
    const std::function<absl::Status(const OptionFault&)>& on_fault) {
  // ':' first: a missing value is told apart from an unknown option.
  std::string short_options = order == OptionOrder::kStopAtFirstWord ? "+:" : ":";
  std::vector<option> long_options;
  std::array<int, 256> row_of_short;
  row_of_short.fill(-1);
  for (size_t i = 0; i < shapes.size(); ++i) {
    const OptionShape& s = shapes[i];
    const int code = s.short_name != 0 ? static_cast<unsigned char>(s.short_name)
                                       : kLongOnlyBase + static_cast<int>(i);
    if (s.short_name != 0) {
      short_options += s.short_name;
      if (s.takes_value) short_options += ':';
      row_of_short[static_cast<unsigned char>(s.short_name)] = static_cast<int>(i);
    }
    if (s.long_name != nullptr) {
      long_options.push_back(
          {s.long_name, s.takes_value ? required_argument : no_argument, nullptr, code});
    }
  }
  long_options.push_back({nullptr, 0, nullptr, 0});

  ::optind = 0;  // 0, not 1: glibc then also resets its internal position
  ::opterr = 0;
  int code;
  while ((code = ::getopt_long(argc, argv, short_options.c_str(), long_options.data(), nullptr)) !=
         -1) {
    if (code == '?' || code == ':') {
      OptionFault fault;
      fault.missing_value = code == ':';
      fault.short_name = ::optopt > 0 && ::optopt < 256 ? static_cast<char>(::optopt) : '\0';
      // The word the option was in: getopt moves past a word only once its
      // last letter is read, so an unknown letter followed by others
      // ("-xE") is still in argv[optind]; every other fault ended its word.
      const bool in_cluster =
          fault.short_name != 0 && !fault.missing_value && ::optind < argc &&
          argv[::optind][0] == '-' && argv[::optind][1] != '-' &&
          std::string_view(argv[::optind]).find(fault.short_name) != std::string_view::npos;
      fault.token = argv[in_cluster ? ::optind : ::optind - 1];
      return on_fault(fault);
    }
    const int row = code >= kLongOnlyBase ? code - kLongOnlyBase : row_of_short[code];
    if (absl::Status s = on_option(static_cast<size_t>(row), ::optarg); !s.ok()) return s;
  }
  std::vector<std::string> words;
  for (int i = ::optind; i < argc; ++i) words.emplace_back(argv[i]);
  return words;
}

std::string FormatOptionHelp(const char* long_name, char short_name, const char* value_name,
                             const char* help, size_t column) {
  std::string line = "  ";
  if (short_name != 0) {
    line += '-';
    line += short_name;
    if (long_name != nullptr) line += ", ";
  } else {
    line += "    ";
  }
  if (long_name != nullptr) line += std::string("--") + long_name;
  if (value_name != nullptr) line += std::string(" ") + value_name;
  // The help starts at `column`, on a line of its own when the names reach it.
  if (line.size() + 1 > column) line += "\n" + std::string(column, ' ');
  line.resize(line.size() + (column - (line.size() - (line.rfind('\n') + 1))), ' ');
  std::string_view rest = help;
  while (true) {
    const size_t newline = rest.find('\n');
    line += rest.substr(0, newline);
    line += '\n';
    if (newline == std::string_view::npos) break;
    rest = rest.substr(newline + 1);
    line += std::string(column, ' ');
  }
  return line;
}

}  // namespace sbx
