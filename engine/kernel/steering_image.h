// The configuration as the steering program reads it: RouteTable's rule-sets
// and map-sets in the layout of steering_abi.h, with every jump-unix end that
// a listener can serve turned into "steer to listener slot N" and every other
// end into "pass" (the engine's io_uring path decides and counts it).
//
// Pure logic: no kernel. SteeringProgram (steering_program.h) writes an
// image into one generation of the maps.
#ifndef SBX_ENGINE_KERNEL_STEERING_IMAGE_H_
#define SBX_ENGINE_KERNEL_STEERING_IMAGE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/core/route_table.h"
#include "engine/kernel/steering_abi.h"

namespace sbx {

struct SteeringImage {
  std::vector<sbx_steer_rule_set> rule_sets;
  std::vector<sbx_steer_rule> rules;
  std::vector<sbx_steer_map_set> map_sets;
  struct MapEntry {
    uint32_t set = 0;
    sbx_steer_tuple key{};
    sbx_steer_action action{};
  };
  std::vector<MapEntry> map_entries;
  // Backend paths (RouteTable::unix_paths() indexes) the program can steer
  // to, and those it leaves to the engine (with the reason, for
  // --check-config and the log).
  std::vector<uint32_t> steerable_paths;
  std::vector<std::pair<std::string, std::string>> not_steered;  // path, why
};

// The listener slot of a backend path, or nullopt when its connections must
// stay on the engine's path.
using SlotOf = std::function<std::optional<uint32_t>(uint32_t path_index)>;

// Paths the kernel cannot steer to, whatever the listeners: -U paths with
// substitution tokens (the path depends on the connection).
std::optional<std::string> WhyNotSteerable(const std::string& path, bool substitute);

// nullopt with `error` set when the table exceeds the program's limits
// (SBX_STEER_MAX_*): then nothing is steered.
std::optional<SteeringImage> BuildSteeringImage(const RouteTable& table, const SlotOf& slot_of,
                                                bool substitute, std::string* error);

// For --check-config: what of `table` the kernel leaves to the engine's
// path, one line each (none when it can steer every backend).
std::vector<std::string> KernelDispatchNotes(const RouteTable& table, bool substitute);

sbx_steer_tuple ToSteerTuple(const PackedTuple& t);

}  // namespace sbx

#endif  // SBX_ENGINE_KERNEL_STEERING_IMAGE_H_
