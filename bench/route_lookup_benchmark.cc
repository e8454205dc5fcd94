// Route lookup cost: rule-sets of 10/100/1000 entries (the tuple matches the
// last entry: the worst case of a first-match scan) and map-sets of 1,000 and
// 100,000 entries (hash lookup). Maps hold at most 1,000 entries per set in
// the configuration language, so the 100,000-entry case spreads its keys over
// 100 map-sets reached through one rule-set keyed by port.
#include <cstdio>
#include <string>

#include "benchmark/benchmark.h"
#include "engine/core/config_loader.h"

namespace sbx {
namespace {

std::string Host(int i) {
  char text[64];
  std::snprintf(text, sizeof(text), "2001:db8::%x:%x", i / 65536 % 65536, i % 65536);
  return text;
}

ConnTuple TupleFor(int i, uint16_t lport) {
  return {*ParseIp6(Host(i)), *ParseIp6("2001:db8:ffff::1"), lport, 40000};
}

std::shared_ptr<const RouteTable> MustLoad(const std::string& text) {
  auto loaded = LoadConfigText(text, "bench.conf");
  if (!loaded.ok()) {
    std::fprintf(stderr, "bench config does not load: %s\n",
                 std::string(loaded.status().message()).c_str());
    std::abort();
  }
  return loaded->table;
}

void BM_RuleSetLookup(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  std::string text = "max-rules:1\nrule-set:0 size:" + std::to_string(n) + "\n";
  for (int i = 0; i < n; ++i)
    text += "ip:" + Host(i) + " port:80 jump-unix:/run/b" + std::to_string(i % 8) + "\n";
  auto table = MustLoad(text);
  const PackedTuple last = PackedTuple::From(TupleFor(n - 1, 80));
  for (auto _ : state) {
    Action a = table->Lookup(last);
    benchmark::DoNotOptimize(a);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RuleSetLookup)->Arg(10)->Arg(100)->Arg(1000);

void BM_MapLookup(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const int sets = (n + 999) / 1000;
  std::string text = "max-rules:1\nmax-maps:" + std::to_string(sets) +
                     "\nrule-set:0 size:" + std::to_string(sets) + "\n";
  for (int s = 0; s < sets; ++s)
    text += "port:" + std::to_string(s + 1) + " jump-map:" + std::to_string(s) + "\n";
  for (int s = 0; s < sets; ++s) {
    text += "map-set:" + std::to_string(s) + " size:1000 match-lip:128\n";
    for (int i = s * 1000; i < (s + 1) * 1000 && i < n; ++i) {
      text += "ip:" + Host(i) + " jump-unix:/run/b" + std::to_string(i % 8) + "\n";
    }
  }
  auto table = MustLoad(text);
  std::vector<PackedTuple> tuples;
  for (int i = 0; i < 4096; ++i) {
    const int key = (i * 7919) % n;
    tuples.push_back(PackedTuple::From(TupleFor(key, static_cast<uint16_t>(key / 1000 + 1))));
  }
  size_t i = 0;
  for (auto _ : state) {
    Action a = table->Lookup(tuples[i++ & 4095]);
    benchmark::DoNotOptimize(a);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MapLookup)->Arg(1000)->Arg(100000);

}  // namespace
}  // namespace sbx

BENCHMARK_MAIN();
