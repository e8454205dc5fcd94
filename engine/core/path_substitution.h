// The -U path substitution (reference §2.3): in a jump-unix or -S path, the
// first occurrence of each 5-byte token "#//0_" ... "#//7_" becomes 16-bit
// group N of the connection's local address, and "#//P_" its local port,
// each as exactly five zero-padded decimal digits (0x2001 -> "08193").
//
// Works in a caller-owned fixed buffer: no allocation on the hot path, and
// the length never changes, so the result fits wherever the input did
// (the original read past the end of sun_path here).
#ifndef SBX_ENGINE_CORE_PATH_SUBSTITUTION_H_
#define SBX_ENGINE_CORE_PATH_SUBSTITUTION_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/core/address.h"

namespace sbx {

// True if `path` contains any substitution token.
bool HasSubstitutionTokens(std::string_view path);

// Writes the substituted path into out[0..path.size()); `out` must hold
// path.size() bytes. Returns path.size().
size_t SubstitutePath(std::string_view path, const Ip6& local, uint16_t local_port, char* out);

std::string SubstitutePath(std::string_view path, const Ip6& local, uint16_t local_port);

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_PATH_SUBSTITUTION_H_
