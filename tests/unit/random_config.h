// Random configurations and tuples for the property tests: small pools of
// addresses, prefixes and ports so that rules and tuples actually collide.
#ifndef SBX_TESTS_UNIT_RANDOM_CONFIG_H_
#define SBX_TESTS_UNIT_RANDOM_CONFIG_H_

#include <random>
#include <string>

#include "engine/core/address.h"
#include "engine/core/conn_tuple.h"

namespace sbx::testing_support {

// Small pools so that random rules and tuples actually collide.
inline const char* const kAddresses[] = {
    "2001:db8::1",      "2001:db8::2", "2001:db8::1:1", "2001:db8:1::1", "::ffff:192.0.2.1",
    "::ffff:192.0.2.2", "::",          "fe80::1"};
inline const int kPrefixes[] = {0, 16, 32, 64, 96, 112, 120, 127, 128};
inline const uint16_t kPorts[] = {0, 22, 80, 443, 8080};

class RandomConfig {
 public:
  explicit RandomConfig(uint32_t seed) : rng_(seed) {}

  std::string Generate() {
    rules_ = Pick(1, 6);
    maps_ = Pick(0, 4);
    std::string text = "max-rules:" + std::to_string(rules_) + "\n";
    if (maps_ > 0) text += "max-maps:" + std::to_string(maps_) + "\n";
    for (int r = 0; r < rules_; ++r) {
      const int n = Pick(0, 8);
      text += "rule-set:" + std::to_string(r) + " size:" + std::to_string(n + 1) + "\n";
      for (int i = 0; i < n; ++i) text += RuleEntryLine() + "\n";
      if (Chance(70)) text += "default " + ActionText() + "\n";
    }
    for (int m = 0; m < maps_; ++m) {
      const int n = Pick(0, 8);
      text += "map-set:" + std::to_string(m) + " size:" + std::to_string(n + 1);
      if (Chance(80)) text += " match-lip:" + std::to_string(Choose(kPrefixes));
      if (Chance(40)) text += " match-rip:" + std::to_string(Choose(kPrefixes));
      if (Chance(40)) text += " match-lport";
      if (Chance(30)) text += " match-rport";
      text += "\n";
      for (int i = 0; i < n; ++i) text += MapEntryLine() + "\n";
      if (Chance(70)) text += "default " + ActionText() + "\n";
    }
    return text;
  }

  ConnTuple Tuple() {
    ConnTuple t;
    t.local = *ParseIp6(Choose(kAddresses));
    t.remote = *ParseIp6(Choose(kAddresses));
    t.lport = Choose(kPorts);
    t.rport = Choose(kPorts);
    return t;
  }

 private:
  int Pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Chance(int percent) { return Pick(1, 100) <= percent; }
  template <typename T, size_t N>
  T Choose(const T (&pool)[N]) {
    return pool[Pick(0, N - 1)];
  }

  std::string ActionText() {
    switch (Pick(0, 5)) {
      case 0:
        return "fail";
      case 1:
        return "jump-unix:/run/b" + std::to_string(Pick(0, 3));
      case 2:
        return "jump-fd:" + std::to_string(Pick(3, 9));
      // Jumps may go to missing sets and may form cycles.
      case 3:
      case 4:
        return "jump-rule:" + std::to_string(Pick(0, rules_));
      default:
        return "jump-map:" + std::to_string(Pick(0, maps_));
    }
  }

  std::string AddressWithMask() {
    std::string a = Choose(kAddresses);
    switch (Pick(0, 2)) {
      case 0:
        return a;
      case 1:
        return a + "/" + std::to_string(Choose(kPrefixes));
      default:
        return a + "/::ffff:ffff";  // mask literal
    }
  }

  std::string RuleEntryLine() {
    std::string line;
    if (Chance(60)) line += " ip:" + AddressWithMask();
    if (Chance(30)) line += " rip:" + AddressWithMask();
    if (Chance(30)) line += " port:" + std::to_string(Choose(kPorts));
    if (Chance(20)) line += " rport:" + std::to_string(Choose(kPorts));
    // Appended in two steps: GCC 12 at -O3 raises a false -Wrestrict on " " + string.
    line += ' ';
    line += ActionText();
    return line.substr(1);
  }

  std::string MapEntryLine() {
    std::string line;
    if (Chance(80)) line += " ip:" + std::string(Choose(kAddresses));
    if (Chance(30)) line += " rip:" + std::string(Choose(kAddresses));
    if (Chance(40)) line += " port:" + std::to_string(Choose(kPorts));
    if (Chance(20)) line += " rport:" + std::to_string(Choose(kPorts));
    // Appended in two steps: GCC 12 at -O3 raises a false -Wrestrict on " " + string.
    line += ' ';
    line += ActionText();
    return line.substr(1);
  }

  std::mt19937 rng_;
  int rules_ = 1;
  int maps_ = 0;
};

}  // namespace sbx::testing_support

#endif  // SBX_TESTS_UNIT_RANDOM_CONFIG_H_
