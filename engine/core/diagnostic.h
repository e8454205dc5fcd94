// A configuration error or warning: file, line, the token it is about, and why.
#ifndef SBX_ENGINE_CORE_DIAGNOSTIC_H_
#define SBX_ENGINE_CORE_DIAGNOSTIC_H_

#include <string>
#include <string_view>
#include <vector>

namespace sbx {

struct Diagnostic {
  enum class Severity { kError, kWarning };
  Severity severity = Severity::kError;
  std::string file;
  int line = 0;       // 1-based; 0 when about the file as a whole
  std::string token;  // raw bytes as written; may be empty
  std::string message;

  // "FILE:LINE: error: near 'TOKEN': MESSAGE", with unprintable bytes of the
  // token escaped (\xNN) and very long tokens shortened.
  std::string ToString() const;
};

// `text` with unprintable bytes escaped (\xNN) and shortened past 80 bytes:
// the form in which user-supplied bytes appear in any message
// (engine/core/printable.h says which bytes, and has the allocation-free
// form the preload uses).
std::string Printable(std::string_view text);

// One diagnostic a line.
std::string JoinDiagnostics(const std::vector<Diagnostic>& diagnostics);

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_DIAGNOSTIC_H_
