#include "engine/daemon/options.h"

#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <climits>

#include "absl/status/status.h"
#include "engine/core/diagnostic.h"
#include "engine/core/numbers.h"
#include "engine/core/str_cat.h"

namespace sbx {
namespace {

enum LongOnly {
  kListen = 1000,
  kThreads,
  kIo,
  kDispatchTimeout,
  kStatsInterval,
  kExactListeners,
  kMetricsListen,
  kCheckConfig,
  kTestRoute,
  kHelp,
  kVersion,
  kBatchWait,
  kFdsPerMessage,
  kHandover,
  kHandoverGrace,
  kKernelDispatch,
  kListenerSocket,
};

const option kLongOptions[] = {
    {"config", required_argument, nullptr, 'f'},
    {"address", required_argument, nullptr, 'l'},
    {"port", required_argument, nullptr, 'p'},
    {"transparent", no_argument, nullptr, 't'},
    {"freebind", no_argument, nullptr, 'F'},
    {"no-reuseaddr", no_argument, nullptr, 'R'},
    {"reuseport", no_argument, nullptr, 'r'},
    {"socket-fd", required_argument, nullptr, 's'},
    {"exec", no_argument, nullptr, 'e'},
    {"user", required_argument, nullptr, 'u'},
    {"group", required_argument, nullptr, 'g'},
    {"groups", required_argument, nullptr, 'G'},
    {"keep-groups", no_argument, nullptr, 'k'},
    {"daemon", no_argument, nullptr, 'd'},
    {"chroot", required_argument, nullptr, 'x'},
    {"send-to", required_argument, nullptr, 'S'},
    {"send-fd", required_argument, nullptr, 'i'},
    {"backlog", required_argument, nullptr, 'b'},
    {"clear-transparent", no_argument, nullptr, 'z'},
    {"register", required_argument, nullptr, 'P'},
    {"substitute", no_argument, nullptr, 'U'},
    {"listen", required_argument, nullptr, kListen},
    {"threads", required_argument, nullptr, kThreads},
    {"io", required_argument, nullptr, kIo},
    {"dispatch-timeout", required_argument, nullptr, kDispatchTimeout},
    {"stats-interval", required_argument, nullptr, kStatsInterval},
    {"batch-wait", required_argument, nullptr, kBatchWait},
    {"fds-per-message", required_argument, nullptr, kFdsPerMessage},
    {"exact-listeners", required_argument, nullptr, kExactListeners},
    {"metrics-listen", required_argument, nullptr, kMetricsListen},
    {"handover", required_argument, nullptr, kHandover},
    {"handover-grace", required_argument, nullptr, kHandoverGrace},
    {"kernel-dispatch", required_argument, nullptr, kKernelDispatch},
    {"listener-socket", required_argument, nullptr, kListenerSocket},
    {"check-config", no_argument, nullptr, kCheckConfig},
    {"test-route", no_argument, nullptr, kTestRoute},
    {"help", no_argument, nullptr, kHelp},
    {"version", no_argument, nullptr, kVersion},
    {nullptr, 0, nullptr, 0},
};

// Values are shown escaped (Printable): a newline in one must not start a
// line of its own in the log.
absl::Status Bad(std::string_view option, std::string_view value, std::string_view why) {
  return absl::InvalidArgumentError(StrCat("option ", option, " '", Printable(value), "': ", why));
}

// As the original: a value starting with a digit is a number, read with C's
// base-0 rules (strtoll(value, NULL, 0): "010" is 8, "0x10" is 16); anything
// else is a name.
bool IsNumeric(std::string_view s) { return !s.empty() && s[0] >= '0' && s[0] <= '9'; }

absl::StatusOr<gid_t> ResolveGroup(std::string_view option, const std::string& name) {
  if (IsNumeric(name)) {
    auto n = ParseCNumber(name, 0, UINT32_MAX - 1);
    if (!n) return Bad(option, name, "not a valid group id (decimal, 0x hex or 0 octal)");
    return static_cast<gid_t>(*n);
  }
  const group* g = ::getgrnam(name.c_str());
  if (g == nullptr) return Bad(option, name, "no such group");
  return g->gr_gid;
}

absl::StatusOr<int> ParseNumber(std::string_view option, const char* value, int min, int max) {
  auto n = ParseDecimal(value, static_cast<uint64_t>(min), static_cast<uint64_t>(max));
  if (!n) return Bad(option, value, StrCat("must be a number from ", min, " to ", max));
  return static_cast<int>(*n);
}

// -l takes IPv6 text with an optional %scope, or IPv4 text (the original
// took IPv6 syntax only, ::ffff:a.b.c.d for IPv4).
absl::Status ParseListenAddress(const char* value, SocketAddress* out) {
  std::string_view text = value;
  uint32_t scope = 0;
  if (const size_t pct = text.find('%'); pct != std::string_view::npos) {
    auto parsed = ParseHostPort(StrCat("[", text, "]:0"));
    if (!parsed) return Bad("-l", value, "invalid IP address or scope");
    scope = parsed->scope_id;
    text = text.substr(0, pct);
  }
  if (auto ip = ParseIp6(text)) {
    out->family = AF_INET6;
    out->ip = *ip;
    out->scope_id = scope;
    return absl::OkStatus();
  }
  if (auto ip = ParseIp6(text, /*allow_ipv4=*/true); ip && scope == 0) {
    out->family = AF_INET;
    out->ip = *ip;
    return absl::OkStatus();
  }
  return Bad("-l", value, "invalid IP address");
}

absl::Status ApplyUser(const char* value, Options* o) {
  o->user_label = value;
  if (IsNumeric(value)) {
    auto n = ParseCNumber(value, 0, UINT32_MAX - 1);
    if (!n) return Bad("-u", value, "not a valid user id (decimal, 0x hex or 0 octal)");
    o->uid = static_cast<uid_t>(*n);
    return absl::OkStatus();
  }
  const passwd* pw = ::getpwnam(value);
  if (pw == nullptr) return Bad("-u", value, "no such user");
  o->uid = pw->pw_uid;
  // A name also brings its primary group unless -g chose one (any order).
  if (!o->gid) o->gid = pw->pw_gid;
  return absl::OkStatus();
}

// As the original (strtok on ","): empty elements are skipped, and a list
// with no group in it ('' or ',,') clears the supplementary groups. Such a
// list is still accepted (the original's command lines must keep working),
// with a warning naming the empty elements.
absl::Status ApplyGroups(const char* value, Options* o) {
  std::vector<gid_t> groups;
  std::string empty;  // positions of empty elements, "2, 4"
  std::string_view rest = value;
  size_t position = 0;
  while (true) {
    const size_t comma = rest.find(',');
    const std::string name(rest.substr(0, comma));
    ++position;
    if (name.empty()) {
      if (*value != '\0') StrAppend(&empty, empty.empty() ? "" : ", ", position);
    } else {
      auto gid = ResolveGroup("-G", name);
      if (!gid.ok()) return gid.status();
      groups.push_back(*gid);
    }
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  if (groups.size() > static_cast<size_t>(NGROUPS_MAX)) return Bad("-G", value, "too many groups");
  const std::string shown = StrCat("option -G '", Printable(value), "': ");
  if (*value == '\0') {
    o->warnings.push_back(
        StrCat(shown, "an empty list: no supplementary groups (as the original)"));
  } else if (groups.empty()) {
    o->warnings.push_back(StrCat(shown,
                                 "no group in it, only commas: no supplementary groups (as "
                                 "the original)"));
  } else if (!empty.empty()) {
    o->warnings.push_back(StrCat(shown, "element(s) ", empty, " of ", position,
                                 " empty, skipped (as the original skips them)"));
  }
  o->groups = std::move(groups);
  return absl::OkStatus();
}

absl::Status Apply(int opt, const char* arg, Options* o) {
  switch (opt) {
    case 'f':
      o->config_path = arg;
      return absl::OkStatus();
    case 'l':
      o->address_given = true;
      return ParseListenAddress(arg, &o->address);
    case 'p': {
      auto port = ParsePort(arg);
      if (!port) return Bad("-p", arg, "must be a port number from 0 to 65535");
      o->address.port = *port;
      o->address_given = true;
      return absl::OkStatus();
    }
    case 't':
      o->transparent = true;
      return absl::OkStatus();
    case 'F':
      o->freebind = true;
      return absl::OkStatus();
    case 'R':
      o->reuseaddr = false;
      return absl::OkStatus();
    case 'r':
      o->reuseport = true;
      return absl::OkStatus();
    case 's': {
      auto fd = ParseNumber("-s", arg, 0, INT_MAX);
      if (!fd.ok()) return fd.status();
      o->inherited_fd = *fd;
      return absl::OkStatus();
    }
    case 'e':
      o->exec_mode = true;
      return absl::OkStatus();
    case 'u':
      return ApplyUser(arg, o);
    case 'g': {
      auto gid = ResolveGroup("-g", arg);
      if (!gid.ok()) return gid.status();
      o->gid = *gid;
      return absl::OkStatus();
    }
    case 'G':
      return ApplyGroups(arg, o);
    case 'k':
      o->keep_groups = true;
      return absl::OkStatus();
    case 'd':
      o->daemonize = true;
      return absl::OkStatus();
    case 'x':
      // The original called chroot("") and exited 1 after binding.
      if (arg[0] == '\0')
        return Bad("-x", arg, "an empty directory: give the directory to chroot to");
      o->chroot_dir = arg;
      return absl::OkStatus();
    case 'S':
      if (std::string_view(arg).empty() || std::string_view(arg).size() > 107) {
        return Bad("-S", arg, "a Unix socket path of 1 to 107 bytes");
      }
      o->forced_path = arg;
      o->forced_fd.reset();  // the last of -S / -i wins, as in the original
      return absl::OkStatus();
    case 'i': {
      auto fd = ParseNumber("-i", arg, 0, INT_MAX);
      if (!fd.ok()) return fd.status();
      o->forced_fd = *fd;
      o->forced_path.reset();
      return absl::OkStatus();
    }
    case 'b': {
      auto backlog = ParseNumber("-b", arg, 1, INT_MAX);
      if (!backlog.ok()) return backlog.status();
      o->backlog = *backlog;
      return absl::OkStatus();
    }
    case 'z':
      o->clear_transparent = true;
      return absl::OkStatus();
    case 'P': {
      std::string_view text = arg;
      const size_t colon = text.find(':');
      auto group = colon == std::string_view::npos
                       ? std::nullopt
                       : ParseCNumber(text.substr(0, colon), 0, UINT32_MAX);
      if (!group || colon + 1 >= text.size() || text.size() - colon - 1 > 107) {
        return Bad("-P", arg,
                   "expected GROUP:PATH (a number: decimal, 0x hex or 0 octal; a colon; a "
                   "socket path)");
      }
      o->registration =
          Options::Registration{static_cast<uint32_t>(*group), std::string(text.substr(colon + 1))};
      return absl::OkStatus();
    }
    case 'U':
      o->substitute = true;
      return absl::OkStatus();
    case kListen: {
      auto address = ParseHostPort(arg);
      if (!address) return Bad("--listen", arg, "expected [IPV6]:PORT or IPV4:PORT");
      o->listen.push_back(*address);
      return absl::OkStatus();
    }
    case kMetricsListen: {
      auto address = ParseHostPort(arg);
      if (!address || address->port == 0) {
        return Bad("--metrics-listen", arg, "expected [IPV6]:PORT or IPV4:PORT, port 1-65535");
      }
      // One endpoint: a second one would silently replace the first (it is
      // easily taken for a repeatable option, like --listen).
      if (o->metrics_listen) {
        return Bad("--metrics-listen", arg,
                   StrCat("given twice (already ", FormatHostPort(*o->metrics_listen),
                          "); the daemon serves one metrics endpoint"));
      }
      o->metrics_listen = *address;
      return absl::OkStatus();
    }
    case kHandover:
      if (arg[0] == '\0' || std::string_view(arg).size() > 100) {
        return Bad("--handover", arg, "expected a Unix socket path of 1 to 100 bytes");
      }
      o->handover_path = arg;
      return absl::OkStatus();
    case kHandoverGrace: {
      auto seconds = ParseNumber("--handover-grace", arg, 0, 3600);
      if (!seconds.ok()) return seconds.status();
      o->handover_grace_s = *seconds;
      return absl::OkStatus();
    }
    case kKernelDispatch:
      if (std::string_view(arg) == "on") {
        o->kernel_dispatch = KernelDispatchMode::kOn;
      } else if (std::string_view(arg) == "off") {
        o->kernel_dispatch = KernelDispatchMode::kOff;
      } else if (std::string_view(arg) == "auto") {
        o->kernel_dispatch = KernelDispatchMode::kAuto;
      } else {
        return Bad("--kernel-dispatch", arg, "expected on, off or auto");
      }
      return absl::OkStatus();
    case kListenerSocket:
      if (arg[0] == '\0' || std::string_view(arg).size() > 100) {
        return Bad("--listener-socket", arg, "expected a Unix socket path of 1 to 100 bytes");
      }
      o->listener_socket = arg;
      return absl::OkStatus();
    case kThreads: {
      auto n = ParseNumber("--threads", arg, 1, 256);
      if (!n.ok()) return n.status();
      o->threads = *n;
      return absl::OkStatus();
    }
    case kIo:
      if (std::string_view(arg) == "uring") {
        o->io = IoMode::kUring;
      } else if (std::string_view(arg) == "sync") {
        o->io = IoMode::kSync;
      } else {
        return Bad("--io", arg, "expected uring or sync");
      }
      return absl::OkStatus();
    case kDispatchTimeout: {
      auto n = ParseNumber("--dispatch-timeout", arg, 0, 3600000);
      if (!n.ok()) return n.status();
      o->dispatch_timeout_ms = *n;
      return absl::OkStatus();
    }
    case kBatchWait: {
      auto n = ParseNumber("--batch-wait", arg, 0, 10000);
      if (!n.ok()) return n.status();
      o->batch_wait_us = *n;
      return absl::OkStatus();
    }
    case kFdsPerMessage: {
      auto n = ParseNumber("--fds-per-message", arg, 1, Options::kMaxFdsPerMessage);
      if (!n.ok()) return n.status();
      o->fds_per_message = *n;
      return absl::OkStatus();
    }
    case kStatsInterval: {
      auto n = ParseNumber("--stats-interval", arg, 0, 86400);
      if (!n.ok()) return n.status();
      o->stats_interval_s = *n;
      return absl::OkStatus();
    }
    case kExactListeners: {
      auto n = ParseNumber("--exact-listeners", arg, 0, 4096);
      if (!n.ok()) return n.status();
      o->exact_listeners = *n;
      return absl::OkStatus();
    }
    case kCheckConfig:
      o->mode = RunMode::kCheckConfig;
      return absl::OkStatus();
    case kTestRoute:
      o->mode = RunMode::kTestRoute;
      return absl::OkStatus();
    case kHelp:
      o->mode = RunMode::kHelp;
      return absl::OkStatus();
    case kVersion:
      o->mode = RunMode::kVersion;
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError("unknown option (see --help)");
}

}  // namespace

absl::StatusOr<Options> ParseOptions(int argc, char** argv) {
  Options o;
  optind = 0;  // 0, not 1: glibc then also resets its internal position (callable twice)
  opterr = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "+:f:l:p:tFRrs:eu:g:G:kdx:S:i:b:zP:U", kLongOptions,
                            nullptr)) != -1) {
    if (opt == '?') {
      return absl::InvalidArgumentError(
          optopt != 0
              ? StrCat("unknown option -", Printable(std::string(1, static_cast<char>(optopt))),
                       " (see --help)")
              : StrCat("unknown option '", Printable(argv[optind - 1]), "' (see --help)"));
    }
    if (opt == ':') {
      return absl::InvalidArgumentError(
          StrCat("option '", Printable(argv[optind - 1]), "' needs a value"));
    }
    absl::Status status = Apply(opt, optarg, &o);
    if (!status.ok()) return status;
  }
  for (int i = optind; i < argc; ++i) o.exec_argv.emplace_back(argv[i]);

  if (o.exec_mode && o.exec_argv.empty()) {
    return absl::InvalidArgumentError("-e needs a program to run after the options");
  }
  if (!o.exec_mode && !o.exec_argv.empty()) {
    // The original ignored words after the options; command lines that
    // carry some keep working, with a warning.
    std::string words;
    for (const std::string& w : o.exec_argv) {
      words += StrCat(words.empty() ? "'" : " '", Printable(w), "'");
    }
    o.warnings.push_back(StrCat("ignoring extra argument(s) after the options: ", words,
                                " (only -e takes a program)"));
    o.exec_argv.clear();
  }
  // The original kept gid 0 and root's groups after a numeric -u; a number
  // without a passwd entry must come with -g.
  if (o.uid && !o.gid) {
    if (const passwd* pw = ::getpwuid(*o.uid)) {
      o.gid = pw->pw_gid;
    } else {
      return absl::InvalidArgumentError(StrCat("option -u '", Printable(o.user_label),
                                               "': uid has no passwd entry; give -g GROUP too"));
    }
  }
  if (o.registration && (o.inherited_fd >= 0 || o.exec_mode)) {
    return absl::InvalidArgumentError("-P receives sockets; it cannot be combined with -s or -e");
  }
  if (o.handover_path && (o.registration || o.exec_mode)) {
    return absl::InvalidArgumentError(
        "--handover hands over listeners; it cannot be combined with -P or -e");
  }
  return o;
}

std::string UsageText() {
  return R"(usage: socketbox [options]                       accept and dispatch (the daemon)
       socketbox -f FILE [-U] --check-config           check a configuration: OK or errors
       socketbox -f FILE [-U] --test-route < tuples    print where connections would go
       socketbox [options] -e PROGRAM [ARGS...]        bind, drop privileges, exec PROGRAM

Options of the original socketbox (same meaning and defaults):
  -f, --config FILE        configuration file (/etc/socketbox.conf)
  -l, --address ADDR       listen address: IPv6 (with %scope) or IPv4 (default ::)
  -p, --port N             listen port (80)
  -t, --transparent        IPV6_TRANSPARENT on the listener (TPROXY)
  -F, --freebind           IPV6_FREEBIND on the listener
  -R, --no-reuseaddr       do not set SO_REUSEADDR
  -r, --reuseport          set SO_REUSEPORT
  -s, --socket-fd FD       use inherited socket FD (listen() is still called)
  -e, --exec               exec mode: set SKBOX_LISTEN_FD and exec the arguments
  -u, --user USER          run as USER (name or uid; a name also sets its group)
  -g, --group GROUP        run as GROUP (name or gid)
  -G, --groups LIST        supplementary groups (comma list)
  -k, --keep-groups        keep the current supplementary groups
  -d, --daemon             daemonize
  -x, --chroot DIR         chroot to DIR
  -S, --send-to PATH       send every connection to this datagram socket (no config)
  -i, --send-fd FD         send every connection over inherited FD (no config)
  -b, --backlog N          listen backlog (4096)
  -z, --clear-transparent  clear IPV6_TRANSPARENT on accepted sockets
  -P, --register N:PATH    registration mode: receive sockets as group N from PATH
  -U, --substitute         #//0_ .. #//7_ and #//P_ substitution in socket paths

Options of this implementation:
      --listen [ADDR]:PORT     another listener (repeatable; IPv4 as A.B.C.D:PORT)
      --threads N              worker threads, one ring each (default: CPUs / 2)
      --io uring|sync          io_uring fast path (default) or a plain accept loop
      --dispatch-timeout MS    how long a connection may wait for a full or
                               restarting backend before it is closed (2000)
      --stats-interval S       print counters every S seconds (0: only on SIGUSR1)
      --batch-wait US          io_uring: reap completions in batches with the kernel's
                               min-wait, up to US microseconds (Linux 6.12+; default 0:
                               an adaptive wait, cheaper below saturation)
      --fds-per-message N      io_uring: pack up to N connections into one message to a
                               receiver that declared it takes several (16; 1: never;
                               docs/receiver-protocol.md)
      --exact-listeners N      at most N extra listeners for (address, port) pairs
                               named exactly in the configuration (64; 0 disables)
      --metrics-listen [ADDR]:PORT
                               serve the counters in Prometheus text format over
                               HTTP (GET /metrics), e.g. [::1]:9100
      --handover PATH          serve PATH for a successor; if a daemon serves PATH
                               already, take its listeners (upgrade without loss)
      --handover-grace S       after a handover, keep the listeners S seconds and
                               serve again if the successor dies meanwhile (10)
      --kernel-dispatch on|off|auto
                               the kernel puts connections for a backend whose
                               receiver took its listener straight into it (eBPF
                               sk_lookup; auto: where the kernel and privileges
                               allow; docs/kernel-dispatch.md)
      --listener-socket PATH   where receivers ask for their listeners
                               (/run/socketbox/listeners.sock)
      --check-config, --test-route, --help, --version
  socketbox --upgrade PATH     start a successor of the daemon serving PATH, with
                               its command line, detached (what the package runs)

Signals: SIGHUP reloads the configuration (a bad file keeps the old one),
SIGUSR1 prints counters, SIGTERM/SIGINT stop accepting, finish in-flight
dispatches and exit 0.
)";
}

}  // namespace sbx
