// How bytes a user supplied (an option's value, an environment variable, a
// token of the configuration, a path built from them) appear in a message:
// printable ASCII as it is; anything else as \xNN: control characters (a
// newline would start a forged log line, an escape sequence would drive the
// terminal), DEL, bytes from 0x80, and the backslash itself, so that the
// escaped text reads back unambiguously. Long values are shortened, with
// their length: "...(300 bytes)".
//
// Header-only and free of allocation: the preload library uses it inside
// other people's programs (PrintableText), the engine and the tools through
// Printable() (engine/core/diagnostic.h).
#ifndef SBX_ENGINE_CORE_PRINTABLE_H_
#define SBX_ENGINE_CORE_PRINTABLE_H_

#include <cstddef>
#include <cstdio>
#include <string_view>

namespace sbx {

// Bytes of a value shown before it is shortened (by default; a Unix socket
// path is shown whole: sizeof(sun_path)).
inline constexpr size_t kPrintableShown = 80;
inline constexpr size_t kPrintableMaxShown = 128;
// Room for any PrintableInto() text of at most kPrintableMaxShown bytes
// shown, the terminating NUL included.
inline constexpr size_t kPrintableRoom = 4 * kPrintableMaxShown + 32;

// Writes the printable form of `text`, at most `shown` of its bytes, into
// `out` (NUL-terminated; an escape that does not fit whole is left out).
// Returns `out`.
inline char* PrintableInto(std::string_view text, char* out, size_t size,
                           size_t shown = kPrintableShown) {
  if (size == 0) return out;
  size_t n = 0;
  for (size_t i = 0; i < text.size() && i < shown; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      if (n + 1 >= size) break;
      out[n++] = static_cast<char>(c);
    } else {
      if (n + 4 >= size) break;
      std::snprintf(out + n, 5, "\\x%02x", c);
      n += 4;
    }
  }
  out[n] = '\0';
  if (text.size() > shown) {
    std::snprintf(out + n, size - n, "...(%zu bytes)", text.size());
  }
  return out;
}

// The printable form as a temporary, for printf-style calls:
// Say("... '%s'", PrintableText(value).text).
struct PrintableText {
  explicit PrintableText(std::string_view value, size_t shown = kPrintableShown) {
    PrintableInto(value, text, sizeof(text), shown);
  }
  char text[kPrintableRoom];
};

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_PRINTABLE_H_
