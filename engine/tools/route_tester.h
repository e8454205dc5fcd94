// The operator's route tester: `socketbox -f FILE --check-config` and
// `socketbox -f FILE --test-route`, so that where a connection will go is
// known before a configuration is deployed.
#ifndef SBX_ENGINE_TOOLS_ROUTE_TESTER_H_
#define SBX_ENGINE_TOOLS_ROUTE_TESTER_H_

#include <iosfwd>
#include <string>
#include <string_view>

#include "engine/core/route_table.h"

namespace sbx {

// One input line "LOCAL_ADDR LOCAL_PORT REMOTE_ADDR REMOTE_PORT" (IPv6 text,
// IPv4 as ::ffff:a.b.c.d or plain dotted, decimal ports) to one output line:
// "jump-unix:PATH" (PATH after -U substitution when `substitute`),
// "jump-fd:N", "fail" or "none"; or "error: line N: WHY" for a malformed line.
std::string DecideRouteLine(const RouteTable& table, std::string_view line, int line_number,
                            bool substitute);

// Reads lines from `in` and writes one decision line each to `out`. Empty
// lines and lines starting with '#' are skipped. Returns the number of
// malformed lines.
int RunRouteTester(const RouteTable& table, std::istream& in, std::ostream& out, bool substitute);

}  // namespace sbx

#endif  // SBX_ENGINE_TOOLS_ROUTE_TESTER_H_
