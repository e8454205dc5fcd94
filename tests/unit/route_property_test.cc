// Property test: on thousands of random configurations and tuples, the
// compiled RouteTable decides exactly as the reference evaluator does.
#include <random>
#include <string>

#include "engine/core/config_loader.h"
#include "engine/core/config_parser.h"
#include "engine/core/route_table.h"
#include "gtest/gtest.h"
#include "tests/unit/random_config.h"
#include "tests/unit/reference_evaluator.h"

namespace sbx {
namespace {

using testing_support::RandomConfig;

TEST(RoutePropertyTest, CompiledTableAgreesWithReferenceEvaluator) {
  int decisions_checked = 0;
  int non_fail = 0;
  for (uint32_t seed = 1; seed <= 3000; ++seed) {
    RandomConfig gen(seed);
    const std::string text = gen.Generate();
    const ParseOutcome parsed = ParseConfig(text, "random.conf");
    ASSERT_TRUE(parsed.ok()) << "seed " << seed << "\n" << text << JoinDiagnostics(parsed.errors);
    const RouteTable table = RouteTable::Build(parsed.model, "random.conf", nullptr);
    for (int i = 0; i < 40; ++i) {
      const ConnTuple t = gen.Tuple();
      const Action expected = testing_support::ReferenceLookup(parsed.model, t);
      const Action got = table.Lookup(t);
      ASSERT_EQ(got, expected) << "seed " << seed << " tuple [" << FormatIp6(t.local)
                               << "]:" << t.lport << " <- [" << FormatIp6(t.remote)
                               << "]:" << t.rport << "\n"
                               << text;
      ++decisions_checked;
      if (got.kind != ActionKind::kFail) ++non_fail;
    }
  }
  // The generator must exercise real decisions, not only defaults.
  EXPECT_GT(non_fail, decisions_checked / 4);
}

}  // namespace
}  // namespace sbx
