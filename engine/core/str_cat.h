// StrCat / StrAppend over std::string_view, strings, chars and integers.
//
// Debian 12's abseil is built with its own absl::string_view (not
// std::string_view), so absl::StrCat does not take std::string_view; this
// small replacement keeps the project on std::string_view throughout.
#ifndef SBX_ENGINE_CORE_STR_CAT_H_
#define SBX_ENGINE_CORE_STR_CAT_H_

#include <concepts>
#include <string>
#include <string_view>

namespace sbx {
namespace str_cat_internal {

inline void Append(std::string& out, std::string_view s) { out.append(s); }
inline void Append(std::string& out, const char* s) { out.append(s); }
inline void Append(std::string& out, char c) { out.push_back(c); }
// Other string views (absl::string_view in Debian's abseil is its own type).
template <typename T>
requires(!std::convertible_to<const T&, std::string_view> && requires(const T& t) {
  t.data();
  t.size();
}) void Append(std::string& out, const T& text) {
  out.append(text.data(), text.size());
}
template <std::integral T>
requires(!std::same_as<T, char> && !std::same_as<T, bool>) void Append(std::string& out, T value) {
  out += std::to_string(value);
}

}  // namespace str_cat_internal

template <typename... Args>
void StrAppend(std::string* out, const Args&... args) {
  (str_cat_internal::Append(*out, args), ...);
}

template <typename... Args>
std::string StrCat(const Args&... args) {
  std::string out;
  StrAppend(&out, args...);
  return out;
}

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_STR_CAT_H_
