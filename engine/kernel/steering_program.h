// The steering program in the kernel: loading and attaching it (libbpf
// skeleton, built from steering.bpf.c), and the engine's writes to its maps.
//
// Loading needs CAP_BPF and CAP_NET_ADMIN (root): the daemon does it before
// it drops privileges and keeps the link (and so the attachment) for its
// life. Writes to the maps go through the map fds it holds, which need no
// privilege. Thread-safe: every method is one or a few bpf(2) calls on
// kernel objects, and Publish is serialized by the caller.
#ifndef SBX_ENGINE_KERNEL_STEERING_PROGRAM_H_
#define SBX_ENGINE_KERNEL_STEERING_PROGRAM_H_

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/core/conn_tuple.h"
#include "engine/kernel/steering_abi.h"
#include "engine/kernel/steering_image.h"

struct steering;  // the generated skeleton (steering.skel.h)
struct bpf_link;

namespace sbx {

class SteeringProgram {
 public:
  // Loads the program and creates its maps (every connection passes until
  // Enable). An error says what the kernel refused and why that usually is.
  static absl::StatusOr<std::unique_ptr<SteeringProgram>> Load();
  ~SteeringProgram();
  SteeringProgram(const SteeringProgram&) = delete;
  SteeringProgram& operator=(const SteeringProgram&) = delete;

  // Attaches to the calling thread's network namespace; the link lives as
  // long as this object.
  absl::Status Attach();

  // The engine's own listener bound at `address` (getsockname of it):
  // connections to anything else are never steered.
  absl::Status AddListenAddress(const sockaddr_storage& address, bool takes_ipv4);

  // A steering listener's own port: connections that reach it other than
  // through the steering are refused (the listener is bound to [::]:port).
  absl::Status GuardPort(uint16_t port);

  // Writes `image` into the generation not in use, then switches lookups
  // to it: first the state with the new generation's set counts (which no
  // lookup reads yet), then the generation number alone changes. Publish
  // calls must not overlap (the registry holds its lock).
  absl::Status Publish(const SteeringImage& image);

  // Every connection passes on (the engine decides) until the next Publish.
  void Disable();

  absl::Status SetListener(uint32_t slot, int listener_fd);
  absl::Status ClearListener(uint32_t slot);

  // Summed over CPUs.
  uint64_t Steered(uint32_t slot) const;
  std::array<uint64_t, SBX_COUNT_MAX> Counters() const;

  // Runs the program once on a connection to `tuple` (BPF_PROG_TEST_RUN):
  // the cookie of the listener it picked, 0 when it passed the connection
  // on, kRefused when it refused it. For tests.
  static constexpr uint64_t kRefused = ~uint64_t{0};
  absl::StatusOr<uint64_t> TestRun(const ConnTuple& tuple) const;

 private:
  SteeringProgram() = default;
  uint64_t SumPerCpu(int map_fd, uint32_t key) const;
  absl::Status WriteState(uint32_t generation);

  steering* skel_ = nullptr;
  ::bpf_link* link_ = nullptr;
  uint32_t generation_ = 0;  // in use; Publish writes the other
  std::array<uint32_t, SBX_STEER_GENERATIONS> rule_sets_{}, map_sets_{};
  std::array<std::vector<sbx_steer_map_key>, SBX_STEER_GENERATIONS> written_keys_;
};

}  // namespace sbx

#endif  // SBX_ENGINE_KERNEL_STEERING_PROGRAM_H_
