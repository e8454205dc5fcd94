// The four fields a route looks at: local address and port, remote address
// and port. ConnTuple is the readable form; PackedTuple is the same 36 bytes
// as five 64-bit words, the form rule and map lookups mask and compare.
#ifndef SBX_ENGINE_CORE_CONN_TUPLE_H_
#define SBX_ENGINE_CORE_CONN_TUPLE_H_

#include <array>
#include <cstdint>
#include <cstring>

#include "engine/core/address.h"

namespace sbx {

struct ConnTuple {
  Ip6 local;
  Ip6 remote;
  uint16_t lport = 0;
  uint16_t rport = 0;

  friend bool operator==(const ConnTuple&, const ConnTuple&) = default;
};

struct PackedTuple {
  // w[0..1] local address, w[2..3] remote address, w[4] = lport << 16 | rport.
  std::array<uint64_t, 5> w{};

  static PackedTuple From(const ConnTuple& t) {
    PackedTuple p;
    std::memcpy(&p.w[0], t.local.bytes.data(), 16);
    std::memcpy(&p.w[2], t.remote.bytes.data(), 16);
    p.w[4] = static_cast<uint64_t>(t.lport) << 16 | t.rport;
    return p;
  }
  ConnTuple ToConnTuple() const {
    ConnTuple t;
    std::memcpy(t.local.bytes.data(), &w[0], 16);
    std::memcpy(t.remote.bytes.data(), &w[2], 16);
    t.lport = static_cast<uint16_t>(w[4] >> 16);
    t.rport = static_cast<uint16_t>(w[4]);
    return t;
  }

  PackedTuple operator&(const PackedTuple& m) const {
    return {{w[0] & m.w[0], w[1] & m.w[1], w[2] & m.w[2], w[3] & m.w[3], w[4] & m.w[4]}};
  }
  PackedTuple operator|(const PackedTuple& m) const {
    return {{w[0] | m.w[0], w[1] | m.w[1], w[2] | m.w[2], w[3] | m.w[3], w[4] | m.w[4]}};
  }
  // (*this & mask) == pattern, for a pattern already masked.
  bool MatchesMasked(const PackedTuple& pattern, const PackedTuple& mask) const {
    return ((w[0] & mask.w[0]) ^ pattern.w[0]) == 0 && ((w[1] & mask.w[1]) ^ pattern.w[1]) == 0 &&
           ((w[2] & mask.w[2]) ^ pattern.w[2]) == 0 && ((w[3] & mask.w[3]) ^ pattern.w[3]) == 0 &&
           ((w[4] & mask.w[4]) ^ pattern.w[4]) == 0;
  }

  bool HasLocalAddress() const { return (w[0] | w[1]) != 0; }
  bool HasRemoteAddress() const { return (w[2] | w[3]) != 0; }
  bool HasLocalPort() const { return (w[4] >> 16) != 0; }
  bool HasRemotePort() const { return (w[4] & 0xffff) != 0; }

  friend bool operator==(const PackedTuple&, const PackedTuple&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const PackedTuple& t) {
    return H::combine(std::move(h), t.w[0], t.w[1], t.w[2], t.w[3], t.w[4]);
  }
};

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_CONN_TUPLE_H_
