#include "relay/options.h"

#include <getopt.h>
#include <net/if.h>

#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "engine/core/diagnostic.h"
#include "engine/core/numbers.h"
#include "engine/core/str_cat.h"

namespace sbx::relay {
namespace {

absl::Status Bad(std::string_view what) { return absl::InvalidArgumentError(std::string(what)); }

// Values from the command line are shown escaped (Printable): a newline in
// one must not start a line of its own in the log.
std::string Shown(std::string_view value) { return Printable(value); }

enum LongOnly {
  kProxyV2 = 1000,
  kMetricsListen,
  kWorkers,
  kBufferSize,
  kCopy,
  kConnectTimeout,
  kIdleTimeout,
  kDrainTimeout,
  kMaxConnections,
  kBacklog,
  kQuiet,
  kRefuseUnixClients,
  kProxyToUnix,
  kLogFormat,
  kRegister,
  kHelp,
};

const option kLongOptions[] = {
    {"proxy-v2", no_argument, nullptr, kProxyV2},
    {"metrics-listen", required_argument, nullptr, kMetricsListen},
    {"workers", required_argument, nullptr, kWorkers},
    {"buffer-size", required_argument, nullptr, kBufferSize},
    {"copy", required_argument, nullptr, kCopy},
    {"connect-timeout", required_argument, nullptr, kConnectTimeout},
    {"idle-timeout", required_argument, nullptr, kIdleTimeout},
    {"drain-timeout", required_argument, nullptr, kDrainTimeout},
    {"max-connections", required_argument, nullptr, kMaxConnections},
    {"backlog", required_argument, nullptr, kBacklog},
    {"quiet", no_argument, nullptr, kQuiet},
    {"refuse-unix-clients", no_argument, nullptr, kRefuseUnixClients},
    {"proxy-to-unix", no_argument, nullptr, kProxyToUnix},
    {"log-format", required_argument, nullptr, kLogFormat},
    {"register", required_argument, nullptr, kRegister},
    {"help", no_argument, nullptr, kHelp},
    {nullptr, 0, nullptr, 0},
};

// A number in [min, max] for `option`, or an error naming it.
absl::StatusOr<uint64_t> Number(std::string_view option, const char* text, uint64_t min,
                                uint64_t max) {
  auto value = ParseDecimal(text, min, max);
  if (!value) {
    return Bad(
        StrCat(option, " '", Shown(text), "': expected a whole number from ", min, " to ", max));
  }
  return *value;
}

// -P: an IPv6 prefix, written as an address with an optional /96 or /64.
// Like the original, a bad one is reported and the value before it kept.
void ParseNat64Prefix(const char* text, TargetSpec* target, std::vector<std::string>* warnings) {
  std::string_view s(text);
  bool prefix64 = false;
  const char* problem = nullptr;
  const size_t slash = s.find('/');
  if (slash != std::string_view::npos) {
    const std::string_view len = s.substr(slash + 1);
    prefix64 = len == "64";
    if (!prefix64 && len != "96") problem = "the prefix length must be 96 (or 64, like -x)";
    s = s.substr(0, slash);
  }
  auto ip = ParseIp6(s);
  if (!ip && problem == nullptr) problem = "not an IPv6 prefix";
  if (problem != nullptr) {
    warnings->push_back(StrCat("-P '", Shown(text), "': ", problem, "; keeping ",
                               FormatIp6(target->nat64_prefix),
                               target->nat64_prefix64 ? "/64" : "/96"));
    return;
  }
  target->nat64_prefix = *ip;
  if (prefix64) target->nat64_prefix64 = true;
}

absl::Status ApplyLong(int code, const char* arg, RelayOptions* o) {
  absl::StatusOr<uint64_t> n;
  switch (code) {
    case kProxyV2:
      o->proxy = ProxyVersion::kV2;
      return absl::OkStatus();
    case kMetricsListen:
      if (o->metrics_listen) {
        return Bad(StrCat("--metrics-listen '", Shown(arg), "': given twice (already ",
                          FormatHostPort(*o->metrics_listen), "); the relay serves one endpoint"));
      }
      o->metrics_listen = ParseHostPort(arg);
      if (!o->metrics_listen) {
        return Bad(
            StrCat("--metrics-listen '", Shown(arg), "': expected [ADDR]:PORT or A.B.C.D:PORT"));
      }
      return absl::OkStatus();
    case kWorkers:
      n = Number("--workers", arg, 1, 64);
      if (n.ok()) o->workers = static_cast<int>(*n);
      break;
    case kBufferSize:
      n = Number("--buffer-size", arg, 4096, 16 << 20);
      if (n.ok()) o->buffer_size = static_cast<uint32_t>(*n);
      break;
    case kCopy:
      if (std::string_view(arg) == "buffer") {
        o->copy = CopyMode::kBuffer;
      } else if (std::string_view(arg) == "splice") {
        o->copy = CopyMode::kSplice;
      } else {
        return Bad(StrCat("--copy '", Shown(arg), "': expected buffer or splice"));
      }
      return absl::OkStatus();
    case kConnectTimeout:
      n = Number("--connect-timeout", arg, 0, 86400);
      if (n.ok()) o->connect_timeout_s = static_cast<uint32_t>(*n);
      break;
    case kIdleTimeout:
      n = Number("--idle-timeout", arg, 0, 30 * 86400);
      if (n.ok()) o->idle_timeout_s = static_cast<uint32_t>(*n);
      break;
    case kDrainTimeout:
      n = Number("--drain-timeout", arg, 0, 86400);
      if (n.ok()) o->drain_timeout_s = static_cast<uint32_t>(*n);
      break;
    case kMaxConnections:
      n = Number("--max-connections", arg, 0, 10'000'000);
      if (n.ok()) o->max_connections = static_cast<uint32_t>(*n);
      break;
    case kBacklog:
      n = Number("--backlog", arg, 1, 65535);
      if (n.ok()) o->backlog = static_cast<int>(*n);
      break;
    case kQuiet:
      o->log_connections = false;
      return absl::OkStatus();
    case kRefuseUnixClients:
      o->refuse_unix_clients = true;
      return absl::OkStatus();
    case kProxyToUnix:
      o->proxy_to_unix = true;
      return absl::OkStatus();
    case kLogFormat:
      if (std::string_view(arg) == "original") {
        o->log_format = LogFormat::kOriginal;
      } else if (std::string_view(arg) == "detailed") {
        o->log_format = LogFormat::kDetailed;
      } else {
        return Bad(StrCat("--log-format '", Shown(arg), "': expected original or detailed"));
      }
      return absl::OkStatus();
    case kRegister: {
      const std::string_view text(arg);
      const size_t colon = text.find(':');
      const auto group = colon == std::string_view::npos
                             ? std::nullopt
                             : ParseDecimal(text.substr(0, colon), 0, UINT32_MAX);
      if (!group || colon + 1 >= text.size()) {
        return Bad(StrCat("--register '", Shown(arg), "': expected GROUP:CTLPATH (GROUP decimal)"));
      }
      o->source = SourceKind::kRegistration;
      o->register_group = static_cast<uint32_t>(*group);
      o->receiver_path = std::string(text.substr(colon + 1));
      return absl::OkStatus();
    }
    default:
      return Bad("unknown option");
  }
  return n.status();
}

absl::Status ApplyShort(int code, const char* arg, RelayOptions* o, bool* listen_fd_given) {
  TargetSpec& t = o->target;
  absl::StatusOr<uint64_t> n;
  switch (code) {
    case 's':
      if (o->source == SourceKind::kRegistration)
        return Bad("-s and --register exclude each other");
      o->source = SourceKind::kReceiverPath;
      o->receiver_path = arg;
      if (o->receiver_path.empty()) return Bad("-s: empty path");
      return absl::OkStatus();
    case 'l':
      n = Number("-l", arg, 0, 1 << 30);
      if (n.ok()) o->source_fd = static_cast<int>(*n);
      *listen_fd_given = true;
      return n.status();
    case 'e':
      if (o->source == SourceKind::kListener) o->source = SourceKind::kReceiver;
      return absl::OkStatus();
    case 'c': {
      // Like the original, a bad address is reported and the one before kept.
      auto ip = ParseIp6(arg, /*allow_ipv4=*/true);
      if (ip) {
        t.tcp.ip = *ip;
      } else {
        o->warnings.push_back(StrCat("-c '", Shown(arg),
                                     "': not an IPv6 address (write IPv4 as ::ffff:a.b.c.d); "
                                     "keeping ",
                                     FormatIp6(t.tcp.ip)));
      }
      return absl::OkStatus();
    }
    case 'p':
      n = Number("-p", arg, 0, 65535);
      if (n.ok()) t.tcp.port = static_cast<uint16_t>(*n);
      return n.status();
    case 'I': {
      const unsigned index = ::if_nametoindex(arg);
      if (index == 0) return Bad(StrCat("-I '", Shown(arg), "': no such network interface"));
      t.tcp.scope_id = index;
      return absl::OkStatus();
    }
    case 'n':
      n = Number("-n", arg, 0, UINT32_MAX);
      if (n.ok()) t.tcp.scope_id = static_cast<uint32_t>(*n);
      return n.status();
    case 'u':
      t.is_unix = true;
      t.unix_path = arg;
      return absl::OkStatus();
    case 'N':
      t.nat64 = true;
      return absl::OkStatus();
    case 'x':
      t.nat64_prefix64 = true;
      return absl::OkStatus();
    case 'P':
      ParseNat64Prefix(arg, &t, &o->warnings);
      return absl::OkStatus();
    case 'i':
      o->proxy = ProxyVersion::kV1;
      return absl::OkStatus();
    default:
      return Bad(RelayUsage());
  }
}

absl::Status CheckCombination(const RelayOptions& o) {
  const TargetSpec& t = o.target;
  if (t.is_unix) {
    const bool abstract = !t.unix_path.empty() && t.unix_path[0] == '@';
    const size_t room = sizeof(sockaddr_un::sun_path) - (abstract ? 0 : 1) - (t.nat64 ? 9 : 0);
    if (t.unix_path.empty() || t.unix_path.size() > room) {
      return Bad(StrCat("-u '", Shown(t.unix_path), "': empty or longer than ", room, " bytes"));
    }
  } else if (t.tcp.port == 0 && !t.nat64) {
    return Bad("-p 0: port 0 means the local port, which needs -N");
  }
  return absl::OkStatus();
}

}  // namespace

std::string RelayUsage() {
  return "usage: socketbox-relay [-s PATH | -l FD [-e]] [-c ADDR] [-p PORT] [-I IFNAME | -n ID]\n"
         "                       [-u PATH] [-N [-P PREFIX] [-x]] [-i | --proxy-v2]\n"
         "  --metrics-listen ADDR:PORT   Prometheus counters over HTTP\n"
         "  --workers N                  threads, one io_uring each (default 1)\n"
         "  --buffer-size BYTES          per connection and direction (default 262144)\n"
         "  --copy buffer|splice         how bytes are moved (default buffer)\n"
         "  --connect-timeout S          give up connecting after S seconds (default 10, 0: "
         "never)\n"
         "  --idle-timeout S             close after S seconds without a byte (default 0: never)\n"
         "  --drain-timeout S            on SIGTERM, wait S seconds for connections (default 30)\n"
         "  --max-connections N          per worker; more wait in the queue (default 0: no limit)\n"
         "  --backlog N                  listen(2) backlog for -l without -e (default 4096)\n"
         "  --quiet                      no line per connection on stderr\n"
         "  --log-format FORMAT          original (default): a line 'EPOCH [client]:port ->\n"
         "                               [local]:port' per connection; detailed: prefixed,\n"
         "                               ISO 8601 times, drain and exit summaries\n"
         "  --proxy-to-unix              send the -i/--proxy-v2 header to a -u target too\n"
         "  --refuse-unix-clients        close passed connections from Unix sockets (they have\n"
         "                               no client address for a PROXY header)\n"
         "  --register GROUP:CTLPATH     source: register as GROUP at a registration server";
}

absl::StatusOr<RelayOptions> ParseRelayOptions(int argc, char** argv) {
  RelayOptions o;
  o.target.tcp.family = AF_INET6;
  o.target.tcp.ip = *ParseIp6("::1");
  o.target.tcp.port = 80;
  o.target.nat64_prefix = *ParseIp6("64:ff9b::");
  bool listen_fd_given = false;
  ::optind = 0;  // GNU: reinitialise, so that tests may parse several times
  ::opterr = 0;
  while (true) {
    // No '+': like the original's getopt, options may follow other words.
    const int code = ::getopt_long(argc, argv, ":I:n:c:p:l:u:NxP:s:ei", kLongOptions, nullptr);
    if (code == -1) break;
    if (code == kHelp) return absl::CancelledError(RelayUsage());
    if (code == '?' || code == ':') {
      const std::string opt = ::optopt >= 1000 || ::optopt == 0
                                  ? std::string(argv[::optind - 1])
                                  : StrCat("-", static_cast<char>(::optopt));
      const std::string shown = Shown(opt);
      return Bad(StrCat(code == ':' ? "missing value for " : "unknown option ", shown, "\n",
                        RelayUsage()));
    }
    absl::Status s = code >= 1000 ? ApplyLong(code, ::optarg, &o)
                                  : ApplyShort(code, ::optarg, &o, &listen_fd_given);
    if (!s.ok()) return s;
  }
  if (::optind < argc) {
    // The original ignored them; command lines that carry some keep working.
    std::string words;
    for (int i = ::optind; i < argc; ++i)
      words += StrCat(words.empty() ? "'" : " '", Shown(argv[i]), "'");
    o.warnings.push_back(StrCat("ignoring extra argument(s) after the options: ", words));
  }
  if (o.source == SourceKind::kReceiverPath && listen_fd_given)
    return Bad("-s and -l exclude each other");
  if (o.source == SourceKind::kRegistration && listen_fd_given) {
    return Bad("--register and -l exclude each other");
  }
  if (absl::Status s = CheckCombination(o); !s.ok()) return s;
  if (o.target.is_unix && !o.proxy_to_unix && o.proxy != ProxyVersion::kNone) {
    // The original never sent -i's header to a Unix target, and servers
    // behind one do not expect it; -i stays quiet about it, as it was.
    if (o.proxy == ProxyVersion::kV2) {
      o.warnings.push_back("--proxy-v2: no header to a Unix target (-u) without --proxy-to-unix");
    }
    o.proxy = ProxyVersion::kNone;
  }
  return o;
}

}  // namespace sbx::relay
