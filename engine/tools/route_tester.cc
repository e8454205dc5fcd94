#include "engine/tools/route_tester.h"

#include <istream>
#include <ostream>
#include <vector>

#include "engine/core/numbers.h"
#include "engine/core/path_substitution.h"
#include "engine/core/str_cat.h"

namespace sbx {

std::string DecideRouteLine(const RouteTable& table, std::string_view line, int line_number,
                            bool substitute) {
  auto error = [&](std::string_view why) { return StrCat("error: line ", line_number, ": ", why); };
  std::vector<std::string_view> fields;
  for (size_t pos = 0; pos < line.size();) {
    const size_t start = line.find_first_not_of(" \t\r", pos);
    if (start == std::string_view::npos) break;
    size_t end = line.find_first_of(" \t\r", start);
    if (end == std::string_view::npos) end = line.size();
    fields.push_back(line.substr(start, end - start));
    pos = end;
  }
  if (fields.size() != 4) {
    return error(StrCat("expected 4 fields (LOCAL_ADDR LOCAL_PORT REMOTE_ADDR REMOTE_PORT), got ",
                        fields.size()));
  }
  ConnTuple tuple;
  const auto local = ParseIp6(fields[0], /*allow_ipv4=*/true);
  if (!local) return error(StrCat("bad local address '", fields[0], "'"));
  const auto lport = ParsePort(fields[1]);
  if (!lport) return error(StrCat("bad local port '", fields[1], "'"));
  const auto remote = ParseIp6(fields[2], /*allow_ipv4=*/true);
  if (!remote) return error(StrCat("bad remote address '", fields[2], "'"));
  const auto rport = ParsePort(fields[3]);
  if (!rport) return error(StrCat("bad remote port '", fields[3], "'"));
  tuple.local = *local;
  tuple.lport = *lport;
  tuple.remote = *remote;
  tuple.rport = *rport;

  const Action action = table.Lookup(tuple);
  switch (action.kind) {
    case ActionKind::kUnix: {
      const std::string& path = table.unix_paths()[action.arg];
      return StrCat("jump-unix:",
                    substitute ? SubstitutePath(path, tuple.local, tuple.lport) : path);
    }
    case ActionKind::kFd:
      return StrCat("jump-fd:", action.arg);
    case ActionKind::kFail:
      return "fail";
    default:
      return "none";
  }
}

int RunRouteTester(const RouteTable& table, std::istream& in, std::ostream& out, bool substitute) {
  int malformed = 0;
  int line_number = 0;
  std::string line;
  while (std::getline(in, line)) {
    ++line_number;
    const size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    std::string decision = DecideRouteLine(table, line, line_number, substitute);
    if (decision.rfind("error:", 0) == 0) ++malformed;
    out << decision << '\n';
  }
  out.flush();
  return malformed;
}

}  // namespace sbx
