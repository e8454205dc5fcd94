// Warnings about a configuration that parses but cannot do what it seems to:
// jumps to sets that do not exist, jump cycles (a connection that goes round
// one gets no decision once the 100-step limit is hit), and no rule-set 0
// (where every lookup starts). Warnings never refuse the file.
#ifndef SBX_ENGINE_CORE_CONFIG_ANALYSIS_H_
#define SBX_ENGINE_CORE_CONFIG_ANALYSIS_H_

#include <string_view>
#include <vector>

#include "engine/core/config_model.h"
#include "engine/core/diagnostic.h"

namespace sbx {

std::vector<Diagnostic> AnalyzeJumps(const ConfigModel& model, std::string_view file_name);

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_CONFIG_ANALYSIS_H_
