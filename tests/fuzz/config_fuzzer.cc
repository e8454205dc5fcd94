// libFuzzer target: the configuration language, from bytes to decisions.
// The input is a configuration file. Whatever it holds, parsing must not
// crash or read out of bounds, every diagnostic must name the file and a
// line that exists, a loadable text must load (parse, jump analysis,
// compile), and the compiled table must decide every tuple the way the
// reference evaluator does, also after -U path substitution.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "engine/core/config_loader.h"
#include "engine/core/config_parser.h"
#include "engine/core/path_substitution.h"
#include "tests/unit/config_properties.h"

namespace {

constexpr std::string_view kFile = "fuzz.conf";
// Lookups per input: enough to reach the rules of small files, bounded for
// the large ones.
constexpr size_t kTuples = 64;

void Fail(const std::string& what, std::string_view text) {
  std::fprintf(stderr, "property violated: %s\n--- input (%zu bytes) ---\n%.*s\n", what.c_str(),
               text.size(), static_cast<int>(text.size() > 2000 ? 2000 : text.size()), text.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sbx;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const ParseOutcome parsed = ParseConfig(text, kFile);
  std::string bad = testing_support::CheckParseOutcome(text, kFile, parsed);
  if (!bad.empty()) Fail(bad, text);

  const auto loaded = LoadConfigText(text, kFile);
  if (loaded.ok() != parsed.ok()) Fail("LoadConfigText and ParseConfig disagree", text);
  if (!parsed.ok()) {
    if (loaded.status().message().empty()) Fail("a refused text without a message", text);
    return 0;
  }
  bad = testing_support::CheckTableDecisions(parsed.model, kTuples);
  if (!bad.empty()) Fail(bad, text);

  // -U: a substituted path keeps its length (it must still fit sun_path).
  for (const ConnTuple& t : testing_support::TuplesFor(parsed.model, 4)) {
    const Action a = loaded->table->Lookup(t);
    if (a.kind != ActionKind::kUnix) continue;
    const std::string& path = loaded->table->unix_paths()[a.arg];
    if (SubstitutePath(path, t.local, t.lport).size() != path.size()) {
      Fail("path substitution changed a path's length", text);
    }
  }
  return 0;
}
