#include "engine/core/diagnostic.h"

#include "engine/core/printable.h"
#include "engine/core/str_cat.h"

namespace sbx {

std::string Printable(std::string_view token) { return PrintableText(token).text; }

std::string Diagnostic::ToString() const {
  std::string out = file;
  if (line > 0) StrAppend(&out, ":", line);
  StrAppend(&out, severity == Severity::kError ? ": error: " : ": warning: ");
  if (!token.empty()) StrAppend(&out, "near '", Printable(token), "': ");
  StrAppend(&out, message);
  return out;
}

std::string JoinDiagnostics(const std::vector<Diagnostic>& diagnostics) {
  std::string out;
  for (const Diagnostic& d : diagnostics) {
    if (!out.empty()) out.push_back('\n');
    out += d.ToString();
  }
  return out;
}

}  // namespace sbx
