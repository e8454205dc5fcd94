#include "engine/daemon/options.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <climits>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "engine/core/diagnostic.h"
#include "engine/core/numbers.h"
#include "engine/core/option_table.h"
#include "engine/core/str_cat.h"

namespace sbx {
namespace {

// Where the help of an option starts in --help.
constexpr size_t kHelpColumn = 31;

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

absl::Status SetNumber(std::string_view option, const char* value, int min, int max, int* out) {
  auto n = ParseNumber(option, value, min, max);
  if (!n.ok()) return n.status();
  *out = *n;
  return absl::OkStatus();
}

absl::Status SetUnixPath(std::string_view option, const char* value, size_t max, std::string* out) {
  if (value[0] == '\0' || std::string_view(value).size() > max) {
    return Bad(option, value, StrCat("expected a Unix socket path of 1 to ", max, " bytes"));
  }
  *out = value;
  return absl::OkStatus();
}

absl::Status ApplyPort(const char* value, Options* o) {
  auto port = ParsePort(value);
  if (!port) return Bad("-p", value, "must be a port number from 0 to 65535");
  o->address.port = *port;
  o->address_given = true;
  return absl::OkStatus();
}

absl::Status ApplyRegistration(const char* value, Options* o) {
  std::string_view text = value;
  const size_t colon = text.find(':');
  auto group = colon == std::string_view::npos ? std::nullopt
                                               : ParseCNumber(text.substr(0, colon), 0, UINT32_MAX);
  if (!group || colon + 1 >= text.size() || text.size() - colon - 1 > 107) {
    return Bad("-P", value,
               "expected GROUP:PATH (a number: decimal, 0x hex or 0 octal; a colon; a "
               "socket path)");
  }
  o->registration =
      Options::Registration{static_cast<uint32_t>(*group), std::string(text.substr(colon + 1))};
  return absl::OkStatus();
}

absl::Status ApplyMetricsListen(const char* value, Options* o) {
  auto address = ParseHostPort(value);
  if (!address || address->port == 0) {
    return Bad("--metrics-listen", value, "expected [IPV6]:PORT or IPV4:PORT, port 1-65535");
  }
  // One endpoint: a second one would silently replace the first (it is
  // easily taken for a repeatable option, like --listen).
  if (o->metrics_listen) {
    return Bad("--metrics-listen", value,
               StrCat("given twice (already ", FormatHostPort(*o->metrics_listen),
                      "); the daemon serves one metrics endpoint"));
  }
  o->metrics_listen = *address;
  return absl::OkStatus();
}

absl::Status ApplyKernelDispatch(const char* value, Options* o) {
  const std::string_view v = value;
  if (v == "on") {
    o->kernel_dispatch = KernelDispatchMode::kOn;
  } else if (v == "off") {
    o->kernel_dispatch = KernelDispatchMode::kOff;
  } else if (v == "auto") {
    o->kernel_dispatch = KernelDispatchMode::kAuto;
  } else {
    return Bad("--kernel-dispatch", value, "expected on, off or auto");
  }
  return absl::OkStatus();
}

absl::Status ApplyIo(const char* value, Options* o) {
  const std::string_view v = value;
  if (v == "uring") {
    o->io = IoMode::kUring;
  } else if (v == "sync") {
    o->io = IoMode::kSync;
  } else {
    return Bad("--io", value, "expected uring or sync");
  }
  return absl::OkStatus();
}

using Row = OptionRow<Options>;
using Status = absl::Status;

// The original's options, then this implementation's (kFirstAddedRow on).
constexpr Row kRows[] = {
    {"config", 'f', "FILE", "configuration file (/etc/socketbox.conf)",
     [](const char* v, Options* o) -> Status {
       o->config_path = v;
       return absl::OkStatus();
     }},
    {"address", 'l', "ADDR", "listen address: IPv6 (with %scope) or IPv4 (default ::)",
     [](const char* v, Options* o) -> Status {
       o->address_given = true;
       return ParseListenAddress(v, &o->address);
     }},
    {"port", 'p', "N", "listen port (80)", ApplyPort},
    {"transparent", 't', nullptr, "IPV6_TRANSPARENT on the listener (TPROXY)",
     [](const char*, Options* o) -> Status {
       o->transparent = true;
       return absl::OkStatus();
     }},
    {"freebind", 'F', nullptr, "IPV6_FREEBIND on the listener",
     [](const char*, Options* o) -> Status {
       o->freebind = true;
       return absl::OkStatus();
     }},
    {"no-reuseaddr", 'R', nullptr, "do not set SO_REUSEADDR",
     [](const char*, Options* o) -> Status {
       o->reuseaddr = false;
       return absl::OkStatus();
     }},
    {"reuseport", 'r', nullptr, "set SO_REUSEPORT (other programs may then share the port)",
     [](const char*, Options* o) -> Status {
       o->reuseport = true;
       return absl::OkStatus();
     }},
    {"socket-fd", 's', "FD", "use inherited socket FD (listen() is still called)",
     [](const char* v, Options* o) { return SetNumber("-s", v, 0, INT_MAX, &o->inherited_fd); }},
    {"exec", 'e', nullptr, "exec mode: set SKBOX_LISTEN_FD and exec the arguments",
     [](const char*, Options* o) -> Status {
       o->exec_mode = true;
       return absl::OkStatus();
     }},
    {"user", 'u', "USER", "run as USER (name or uid; a name also sets its group)", ApplyUser},
    {"group", 'g', "GROUP", "run as GROUP (name or gid)",
     [](const char* v, Options* o) -> Status {
       auto gid = ResolveGroup("-g", v);
       if (!gid.ok()) return gid.status();
       o->gid = *gid;
       return absl::OkStatus();
     }},
    {"groups", 'G', "LIST", "supplementary groups (comma list)", ApplyGroups},
    {"keep-groups", 'k', nullptr, "keep the current supplementary groups",
     [](const char*, Options* o) -> Status {
       o->keep_groups = true;
       return absl::OkStatus();
     }},
    {"daemon", 'd', nullptr, "daemonize",
     [](const char*, Options* o) -> Status {
       o->daemonize = true;
       return absl::OkStatus();
     }},
    {"chroot", 'x', "DIR", "chroot to DIR",
     [](const char* v, Options* o) -> Status {
       // The original called chroot("") and exited 1 after binding.
       if (v[0] == '\0') return Bad("-x", v, "an empty directory: give the directory to chroot to");
       o->chroot_dir = v;
       return absl::OkStatus();
     }},
    {"send-to", 'S', "PATH", "send every connection to this datagram socket (no config)",
     [](const char* v, Options* o) -> Status {
       if (std::string_view(v).empty() || std::string_view(v).size() > 107) {
         return Bad("-S", v, "a Unix socket path of 1 to 107 bytes");
       }
       o->forced_path = v;
       o->forced_fd.reset();  // the last of -S / -i wins, as in the original
       return absl::OkStatus();
     }},
    {"send-fd", 'i', "FD", "send every connection over inherited FD (no config)",
     [](const char* v, Options* o) -> Status {
       int fd = -1;
       if (Status s = SetNumber("-i", v, 0, INT_MAX, &fd); !s.ok()) return s;
       o->forced_fd = fd;
       o->forced_path.reset();
       return absl::OkStatus();
     }},
    {"backlog", 'b', "N", "listen backlog (4096)",
     [](const char* v, Options* o) { return SetNumber("-b", v, 1, INT_MAX, &o->backlog); }},
    {"clear-transparent", 'z', nullptr, "clear IPV6_TRANSPARENT on accepted sockets",
     [](const char*, Options* o) -> Status {
       o->clear_transparent = true;
       return absl::OkStatus();
     }},
    {"register", 'P', "N:PATH", "registration mode: receive sockets as group N from PATH",
     ApplyRegistration},
    {"substitute", 'U', nullptr, "#//0_ .. #//7_ and #//P_ substitution in socket paths",
     [](const char*, Options* o) -> Status {
       o->substitute = true;
       return absl::OkStatus();
     }},
    // kFirstAddedRow: this implementation's options.
    {"listen", 0, "[ADDR]:PORT", "another listener (repeatable; IPv4 as A.B.C.D:PORT)",
     [](const char* v, Options* o) -> Status {
       auto address = ParseHostPort(v);
       if (!address) return Bad("--listen", v, "expected [IPV6]:PORT or IPV4:PORT");
       o->listen.push_back(*address);
       return absl::OkStatus();
     }},
    {"threads", 0, "N", "worker threads, one ring each (default: CPUs / 2)",
     [](const char* v, Options* o) { return SetNumber("--threads", v, 1, 256, &o->threads); }},
    {"io", 0, "uring|sync", "io_uring fast path (default) or a plain accept loop", ApplyIo},
    {"dispatch-timeout", 0, "MS",
     "how long a connection may wait for a full or\nrestarting backend before it is closed (2000)",
     [](const char* v, Options* o) {
       return SetNumber("--dispatch-timeout", v, 0, 3600000, &o->dispatch_timeout_ms);
     }},
    {"stats-interval", 0, "S", "print counters every S seconds (0: only on SIGUSR1)",
     [](const char* v, Options* o) {
       return SetNumber("--stats-interval", v, 0, 86400, &o->stats_interval_s);
     }},
    {"batch-wait", 0, "US",
     "io_uring: reap completions in batches with the kernel's\nmin-wait, up to US microseconds "
     "(Linux 6.12+; default 0:\nan adaptive wait, cheaper below saturation)",
     [](const char* v, Options* o) {
       return SetNumber("--batch-wait", v, 0, 10000, &o->batch_wait_us);
     }},
    {"fds-per-message", 0, "N",
     "io_uring: pack up to N connections into one message to a\nreceiver that declared it takes "
     "several (16; 1: never;\ndocs/receiver-protocol.md)",
     [](const char* v, Options* o) {
       return SetNumber("--fds-per-message", v, 1, kFdsPerMessageLimit, &o->fds_per_message);
     }},
    {"exact-listeners", 0, "N",
     "at most N extra listeners for (address, port) pairs\nnamed exactly in the configuration "
     "(64; 0 disables)",
     [](const char* v, Options* o) {
       return SetNumber("--exact-listeners", v, 0, 4096, &o->exact_listeners);
     }},
    {"metrics-listen", 0, "[ADDR]:PORT",
     "serve the counters in Prometheus text format over\nHTTP (GET /metrics), e.g. [::1]:9100",
     ApplyMetricsListen},
    {"handover", 0, "PATH",
     "serve PATH for a successor; if a daemon serves PATH\nalready, take its listeners (upgrade "
     "without loss)",
     [](const char* v, Options* o) -> Status {
       std::string path;
       if (Status s = SetUnixPath("--handover", v, 100, &path); !s.ok()) return s;
       o->handover_path = path;
       return absl::OkStatus();
     }},
    {"handover-grace", 0, "S",
     "after a handover, keep the listeners S seconds and\nserve again if the successor dies "
     "meanwhile (10)",
     [](const char* v, Options* o) {
       return SetNumber("--handover-grace", v, 0, 3600, &o->handover_grace_s);
     }},
    {"kernel-dispatch", 0, "on|off|auto",
     "the kernel puts connections for a backend whose\nreceiver took its listener straight into "
     "it (eBPF\nsk_lookup; auto: where the kernel and privileges\nallow; docs/kernel-dispatch.md)",
     ApplyKernelDispatch},
    {"listener-socket", 0, "PATH",
     "where receivers ask for their listeners\n(/run/socketbox/listeners.sock)",
     [](const char* v, Options* o) {
       return SetUnixPath("--listener-socket", v, 100, &o->listener_socket);
     }},
    {"check-config", 0, nullptr, "check the configuration: OK or its errors",
     [](const char*, Options* o) -> Status {
       o->mode = RunMode::kCheckConfig;
       return absl::OkStatus();
     }},
    {"test-route", 0, nullptr, "print where the connections on stdin would go",
     [](const char*, Options* o) -> Status {
       o->mode = RunMode::kTestRoute;
       return absl::OkStatus();
     }},
    {"help", 0, nullptr, "this text",
     [](const char*, Options* o) -> Status {
       o->mode = RunMode::kHelp;
       return absl::OkStatus();
     }},
    {"version", 0, nullptr, "the version",
     [](const char*, Options* o) -> Status {
       o->mode = RunMode::kVersion;
       return absl::OkStatus();
     }},
};
constexpr size_t kFirstAddedRow = 21;
static_assert(kRows[kFirstAddedRow].short_name == 0 && kRows[kFirstAddedRow - 1].short_name != 0);

// Getopt's faults, worded as they have been since the first release.
absl::Status WordFault(const OptionFault& f) {
  if (f.missing_value) {
    return absl::InvalidArgumentError(StrCat("option '", Printable(f.token), "' needs a value"));
  }
  return absl::InvalidArgumentError(
      f.short_name != 0
          ? StrCat("unknown option -", Printable(std::string(1, f.short_name)), " (see --help)")
          : StrCat("unknown option '", Printable(f.token), "' (see --help)"));
}

}  // namespace

absl::StatusOr<Options> ParseOptions(int argc, char** argv) {
  Options o;
  auto operands =
      ParseOptionTable<Options>(kRows, argc, argv, OptionOrder::kStopAtFirstWord, &o, WordFault);
  if (!operands.ok()) return operands.status();
  o.exec_argv = std::move(*operands);

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

WorkerConfig WorkerConfigOf(const Options& o) {
  WorkerConfig c;
  c.forced_path = o.forced_path;
  c.forced_fd = o.forced_fd;
  c.substitute = o.substitute;
  c.clear_transparent = o.clear_transparent;
  c.dispatch_timeout_ms = o.dispatch_timeout_ms;
  c.fds_per_message = o.fds_per_message;
  c.batch_wait_us = o.batch_wait_us;
  return c;
}

std::string UsageText() {
  const std::span<const Row> rows(kRows);
  return StrCat(
      "usage: socketbox [options]                       accept and dispatch (the daemon)\n"
      "       socketbox -f FILE [-U] --check-config           check a configuration: OK or "
      "errors\n"
      "       socketbox -f FILE [-U] --test-route < tuples    print where connections would go\n"
      "       socketbox [options] -e PROGRAM [ARGS...]        bind, drop privileges, exec "
      "PROGRAM\n\n"
      "Options of the original socketbox (same meaning and defaults):\n",
      OptionHelp(rows.first(kFirstAddedRow), kHelpColumn), "\nOptions of this implementation:\n",
      OptionHelp(rows.subspan(kFirstAddedRow), kHelpColumn),
      "  socketbox --upgrade PATH     start a successor of the daemon serving PATH, with\n"
      "                               its command line, detached (what the package runs)\n"
      "\n"
      "Signals: SIGHUP reloads the configuration (a bad file keeps the old one),\n"
      "SIGUSR1 prints counters, SIGTERM/SIGINT stop accepting, finish in-flight\n"
      "dispatches and exit 0.\n");
}

}  // namespace sbx
