#include "engine/core/diagnostic.h"

#include <cstdio>

#include "engine/core/str_cat.h"

namespace sbx {
namespace {

constexpr size_t kMaxTokenShown = 80;

}  // namespace

std::string Printable(std::string_view token) {
  std::string out;
  for (size_t i = 0; i < token.size() && i < kMaxTokenShown; ++i) {
    const unsigned char c = static_cast<unsigned char>(token[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char hex[5];
      std::snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    }
  }
  if (token.size() > kMaxTokenShown) StrAppend(&out, "...(", token.size(), " bytes)");
  return out;
}

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
