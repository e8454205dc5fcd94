#include "engine/kernel/steering_program.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "engine/core/str_cat.h"
#include "engine/steering.skel.h"

namespace sbx {
namespace {

absl::Status BpfError(int err, const std::string& what) {
  return absl::ErrnoToStatus(err < 0 ? -err : err, what);
}

absl::Status Update(int map_fd, const void* key, const void* value, const std::string& what) {
  if (bpf_map_update_elem(map_fd, key, value, BPF_ANY) != 0) return BpfError(errno, what);
  return absl::OkStatus();
}

// libbpf prints to stderr by default; the daemon reports errors itself.
int QuietLibbpf(enum libbpf_print_level, const char*, va_list) { return 0; }

}  // namespace

absl::StatusOr<std::unique_ptr<SteeringProgram>> SteeringProgram::Load() {
  libbpf_set_print(QuietLibbpf);
  std::unique_ptr<SteeringProgram> program(new SteeringProgram());
  program->skel_ = steering__open_and_load();
  if (program->skel_ == nullptr) {
    const int err = errno;
    return BpfError(err,
                    "load the kernel dispatch program (needs root: CAP_BPF and "
                    "CAP_NET_ADMIN, and a kernel with BPF sk_lookup, Linux 5.9+)");
  }
  return program;
}

SteeringProgram::~SteeringProgram() {
  if (link_ != nullptr) bpf_link__destroy(link_);
  if (skel_ != nullptr) steering__destroy(skel_);
}

absl::Status SteeringProgram::Attach() {
  const int netns = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (netns < 0) return BpfError(errno, "open /proc/self/ns/net");
  link_ = bpf_program__attach_netns(skel_->progs.sbx_steer, netns);
  const int err = errno;
  ::close(netns);
  if (link_ == nullptr) {
    return BpfError(err, "attach the kernel dispatch program to this network namespace");
  }
  return absl::OkStatus();
}

absl::Status SteeringProgram::AddListenAddress(const sockaddr_storage& address, bool takes_ipv4) {
  const int fd = bpf_map__fd(skel_->maps.sbx_listen);
  const uint32_t one = 1;
  sbx_listen_key key{};
  if (address.ss_family == AF_INET6) {
    const auto& a6 = reinterpret_cast<const sockaddr_in6&>(address);
    key.port = ntohs(a6.sin6_port);
    if (IN6_IS_ADDR_UNSPECIFIED(&a6.sin6_addr)) {
      key.kind = SBX_LISTEN_ANY_V6;
      if (absl::Status s = Update(fd, &key, &one, "add a listen address"); !s.ok()) return s;
      if (!takes_ipv4) return absl::OkStatus();
      key.kind = SBX_LISTEN_ANY_V4;
    } else {
      key.kind = SBX_LISTEN_EXACT;
      std::memcpy(key.addr, &a6.sin6_addr, 16);
    }
  } else if (address.ss_family == AF_INET) {
    const auto& a4 = reinterpret_cast<const sockaddr_in&>(address);
    key.port = ntohs(a4.sin_port);
    if (a4.sin_addr.s_addr == htonl(INADDR_ANY)) {
      key.kind = SBX_LISTEN_ANY_V4;
    } else {
      key.kind = SBX_LISTEN_EXACT;
      key.addr[10] = key.addr[11] = 0xff;
      std::memcpy(key.addr + 12, &a4.sin_addr, 4);
    }
  } else {
    return absl::InvalidArgumentError("a listen address that is neither IPv4 nor IPv6");
  }
  return Update(fd, &key, &one, "add a listen address");
}

absl::Status SteeringProgram::GuardPort(uint16_t port) {
  const uint32_t key = port, one = 1;
  return Update(bpf_map__fd(skel_->maps.sbx_guard), &key, &one, "guard a listener's port");
}

absl::Status SteeringProgram::Publish(const SteeringImage& image) {
  const uint32_t g = generation_ ^ 1;
  const int rule_sets = bpf_map__fd(skel_->maps.sbx_rule_sets);
  const int rules = bpf_map__fd(skel_->maps.sbx_rules);
  const int map_sets = bpf_map__fd(skel_->maps.sbx_map_sets);
  const int entries = bpf_map__fd(skel_->maps.sbx_map_entries);
  // The generation about to be written is not in use; its old map entries
  // go first (array slots are simply overwritten).
  for (const sbx_steer_map_key& key : written_keys_[g]) bpf_map_delete_elem(entries, &key);
  written_keys_[g].clear();
  for (uint32_t i = 0; i < image.rule_sets.size(); ++i) {
    const uint32_t index = g * SBX_STEER_MAX_SETS + i;
    if (auto s = Update(rule_sets, &index, &image.rule_sets[i], "write a rule-set"); !s.ok())
      return s;
  }
  for (uint32_t i = 0; i < image.rules.size(); ++i) {
    const uint32_t index = g * SBX_STEER_MAX_RULES + i;
    if (auto s = Update(rules, &index, &image.rules[i], "write a rule"); !s.ok()) return s;
  }
  for (uint32_t i = 0; i < image.map_sets.size(); ++i) {
    const uint32_t index = g * SBX_STEER_MAX_SETS + i;
    if (auto s = Update(map_sets, &index, &image.map_sets[i], "write a map-set"); !s.ok()) return s;
  }
  for (const SteeringImage::MapEntry& e : image.map_entries) {
    sbx_steer_map_key key{};
    key.generation = g;
    key.set = e.set;
    key.key = e.key;
    if (auto s = Update(entries, &key, &e.action, "write a map entry"); !s.ok()) return s;
    written_keys_[g].push_back(key);
  }
  rule_sets_[g] = static_cast<uint32_t>(image.rule_sets.size());
  map_sets_[g] = static_cast<uint32_t>(image.map_sets.size());
  // Two updates of one array element. An update copies the value in place,
  // so a lookup running during one may see some of its bytes: the first
  // changes only generation g's counts, which no lookup reads before the
  // second, which changes only the generation number (one aligned 4-byte
  // word). A lookup reads the number once and uses that generation to the end.
  for (const uint32_t generation : {generation_, g}) {
    if (auto s = WriteState(generation); !s.ok()) return s;
  }
  generation_ = g;
  return absl::OkStatus();
}

absl::Status SteeringProgram::WriteState(uint32_t generation) {
  sbx_steer_state state{};
  state.generation = generation;
  state.enabled = 1;
  for (uint32_t i = 0; i < SBX_STEER_GENERATIONS; ++i) {
    state.rule_sets[i] = rule_sets_[i];
    state.map_sets[i] = map_sets_[i];
  }
  const uint32_t zero = 0;
  return Update(bpf_map__fd(skel_->maps.sbx_state), &zero, &state, "switch generations");
}

void SteeringProgram::Disable() {
  const uint32_t zero = 0;
  sbx_steer_state state{};  // enabled = 0
  (void)bpf_map_update_elem(bpf_map__fd(skel_->maps.sbx_state), &zero, &state, BPF_ANY);
}

absl::Status SteeringProgram::SetListener(uint32_t slot, int listener_fd) {
  const uint64_t fd = static_cast<uint64_t>(listener_fd);
  return Update(bpf_map__fd(skel_->maps.sbx_listeners), &slot, &fd,
                StrCat("put listener slot ", slot, " in the kernel's map"));
}

absl::Status SteeringProgram::ClearListener(uint32_t slot) {
  if (bpf_map_delete_elem(bpf_map__fd(skel_->maps.sbx_listeners), &slot) != 0 && errno != ENOENT) {
    return BpfError(errno, StrCat("take listener slot ", slot, " out of the kernel's map"));
  }
  return absl::OkStatus();
}

uint64_t SteeringProgram::SumPerCpu(int map_fd, uint32_t key) const {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return 0;
  std::vector<uint64_t> values(static_cast<size_t>(cpus));
  if (bpf_map_lookup_elem(map_fd, &key, values.data()) != 0) return 0;
  uint64_t sum = 0;
  for (uint64_t v : values) sum += v;
  return sum;
}

uint64_t SteeringProgram::Steered(uint32_t slot) const {
  return SumPerCpu(bpf_map__fd(skel_->maps.sbx_steered), slot);
}

std::array<uint64_t, SBX_COUNT_MAX> SteeringProgram::Counters() const {
  std::array<uint64_t, SBX_COUNT_MAX> out{};
  for (uint32_t i = 0; i < SBX_COUNT_MAX; ++i) {
    out[i] = SumPerCpu(bpf_map__fd(skel_->maps.sbx_counters), i);
  }
  return out;
}

absl::StatusOr<uint64_t> SteeringProgram::TestRun(const ConnTuple& tuple) const {
  bpf_sk_lookup ctx{};
  ctx.protocol = IPPROTO_TCP;
  if (tuple.local.IsV4Mapped() && tuple.remote.IsV4Mapped()) {
    ctx.family = AF_INET;
    std::memcpy(&ctx.local_ip4, tuple.local.bytes.data() + 12, 4);
    std::memcpy(&ctx.remote_ip4, tuple.remote.bytes.data() + 12, 4);
  } else {
    ctx.family = AF_INET6;
    std::memcpy(ctx.local_ip6, tuple.local.bytes.data(), 16);
    std::memcpy(ctx.remote_ip6, tuple.remote.bytes.data(), 16);
  }
  ctx.local_port = tuple.lport;
  ctx.remote_port = htons(tuple.rport);
  LIBBPF_OPTS(bpf_test_run_opts, opts);
  opts.ctx_in = &ctx;
  opts.ctx_size_in = sizeof ctx;
  opts.ctx_out = &ctx;
  opts.ctx_size_out = sizeof ctx;
  if (bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.sbx_steer), &opts) != 0) {
    return BpfError(errno, "run the kernel dispatch program (BPF_PROG_TEST_RUN)");
  }
  if (opts.retval != SK_PASS) return kRefused;
  return static_cast<uint64_t>(ctx.cookie);
}

}  // namespace sbx
