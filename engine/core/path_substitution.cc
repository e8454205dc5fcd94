#include "engine/core/path_substitution.h"

#include <cstring>

namespace sbx {
namespace {

constexpr size_t kTokenLength = 5;  // "#//N_"
constexpr char kTokenKinds[] = "01234567P";

void WriteFiveDigits(uint16_t value, char* out) {
  for (int i = 4; i >= 0; --i) {
    out[i] = static_cast<char>('0' + value % 10);
    value = static_cast<uint16_t>(value / 10);
  }
}

size_t FindToken(std::string_view path, char kind) {
  const char token[kTokenLength] = {'#', '/', '/', kind, '_'};
  return path.find(std::string_view(token, kTokenLength));
}

}  // namespace

bool HasSubstitutionTokens(std::string_view path) {
  for (const char* k = kTokenKinds; *k != '\0'; ++k) {
    if (FindToken(path, *k) != std::string_view::npos) return true;
  }
  return false;
}

size_t SubstitutePath(std::string_view path, const Ip6& local, uint16_t local_port, char* out) {
  std::memcpy(out, path.data(), path.size());
  // Tokens are found in the input, not the output: a replacement is all
  // digits and can never form or hide another token.
  for (const char* k = kTokenKinds; *k != '\0'; ++k) {
    const size_t at = FindToken(path, *k);
    if (at == std::string_view::npos) continue;
    const uint16_t value = *k == 'P' ? local_port : local.group(*k - '0');
    WriteFiveDigits(value, out + at);
  }
  return path.size();
}

std::string SubstitutePath(std::string_view path, const Ip6& local, uint16_t local_port) {
  std::string out(path.size(), '\0');
  SubstitutePath(path, local, local_port, out.data());
  return out;
}

}  // namespace sbx
