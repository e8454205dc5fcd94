// The socketbox command line: every option of the original with the same
// meaning and default (getopt string "+f:l:p:tFRrs:eu:g:G:kdx:S:i:b:zP:U"),
// long forms of each, and the options this design adds. Every number is
// checked; names are resolved here so that a typo fails before any socket
// exists.
#ifndef SBX_ENGINE_DAEMON_OPTIONS_H_
#define SBX_ENGINE_DAEMON_OPTIONS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/core/address.h"
#include "engine/core/listener_request.h"
#include "engine/dispatch/worker_config.h"

namespace sbx {

enum class RunMode { kDaemon, kCheckConfig, kTestRoute, kHelp, kVersion };
enum class IoMode { kUring, kSync };
enum class KernelDispatchMode { kAuto, kOn, kOff };

struct Options {
  RunMode mode = RunMode::kDaemon;
  std::string config_path = "/etc/socketbox.conf";

  // Listening. -l/-p make one listener (default [::]:80); --listen adds more.
  SocketAddress address{AF_INET6, {}, 80, 0};
  bool address_given = false;  // -l or -p seen
  std::vector<SocketAddress> listen;
  bool transparent = false;        // -t
  bool freebind = false;           // -F
  bool reuseaddr = true;           // -R clears
  bool reuseport = false;          // -r
  int inherited_fd = -1;           // -s FD
  int backlog = 4096;              // -b
  bool clear_transparent = false;  // -z

  // Forced actions (no configuration file): -S PATH or -i FD.
  std::optional<std::string> forced_path;
  std::optional<int> forced_fd;
  bool substitute = false;  // -U

  // -P GROUP:PATH registration mode.
  struct Registration {
    uint32_t group = 0;
    std::string path;
  };
  std::optional<Registration> registration;

  // Privileges and process.
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::string user_label;                    // the -u argument, for messages
  std::optional<std::vector<gid_t>> groups;  // -G
  bool keep_groups = false;                  // -k
  bool daemonize = false;                    // -d
  std::string chroot_dir;                    // -x
  bool exec_mode = false;                    // -e
  std::vector<std::string> exec_argv;

  // Added by this implementation.
  int threads = 0;  // 0 = one per CPU
  IoMode io = IoMode::kUring;
  int dispatch_timeout_ms = 2000;
  int stats_interval_s = 0;
  int batch_wait_us = 0;  // --batch-wait: the kernel min-wait's budget (0: adaptive wait)
  // --fds-per-message: to receivers that declared it, at most
  // kFdsPerMessageLimit (worker_config.h), which bounds every message the
  // engine sends and sizes each dispatch slot's message storage (FdBatch);
  // past it the per-fd cost barely falls (bench/hop_benchmark).
  int fds_per_message = 16;
  int exact_listeners = 64;
  std::optional<SocketAddress> metrics_listen;  // --metrics-listen
  std::optional<std::string> handover_path;     // --handover (handover.h)
  int handover_grace_s = 10;                    // --handover-grace (handover.h)
  // --kernel-dispatch, --listener-socket (docs/kernel-dispatch.md).
  KernelDispatchMode kernel_dispatch = KernelDispatchMode::kAuto;
  std::string listener_socket = kDefaultListenerSocket;

  // Things accepted but worth a line on stderr (e.g. ignored extra words).
  std::vector<std::string> warnings;

  bool has_forced_action() const { return forced_path.has_value() || forced_fd.has_value(); }
};

// InvalidArgument naming the option and the value on any error.
absl::StatusOr<Options> ParseOptions(int argc, char** argv);

// The part of the options the workers read.
WorkerConfig WorkerConfigOf(const Options& options);

std::string UsageText();

}  // namespace sbx

#endif  // SBX_ENGINE_DAEMON_OPTIONS_H_
