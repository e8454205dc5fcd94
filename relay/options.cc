#include "relay/options.h"

#include <net/if.h>

#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "engine/core/diagnostic.h"
#include "engine/core/numbers.h"
#include "engine/core/option_table.h"
#include "engine/core/str_cat.h"

namespace sbx::relay {
namespace {

// Where the help of an option starts in the usage text: the original's
// options, then this implementation's (long names only).
constexpr size_t kOriginalHelpColumn = 13;
constexpr size_t kAddedHelpColumn = 34;

// What the rows fill in: the options, and what only the checks after the
// walk need.
struct CommandLine {
  RelayOptions options;
  bool listen_fd_given = false;
};

absl::Status Bad(std::string_view what) { return absl::InvalidArgumentError(std::string(what)); }

// Values from the command line are shown escaped (Printable): a newline in
// one must not start a line of its own in the log.
std::string Shown(std::string_view value) { return Printable(value); }

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

template <typename T>
absl::Status SetNumber(std::string_view option, const char* text, uint64_t min, uint64_t max,
                       T* out) {
  auto n = Number(option, text, min, max);
  if (n.ok()) *out = static_cast<T>(*n);
  return n.status();
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

absl::Status ApplyReceiverPath(const char* value, CommandLine* c) {
  RelayOptions& o = c->options;
  if (o.source == SourceKind::kRegistration) return Bad("-s and --register exclude each other");
  o.source = SourceKind::kReceiverPath;
  o.receiver_path = value;
  if (o.receiver_path.empty()) return Bad("-s: empty path");
  return absl::OkStatus();
}

// Like the original, a bad address is reported and the one before kept.
absl::Status ApplyTargetAddress(const char* value, CommandLine* c) {
  TargetSpec& t = c->options.target;
  if (auto ip = ParseIp6(value, /*allow_ipv4=*/true)) {
    t.tcp.ip = *ip;
  } else {
    c->options.warnings.push_back(StrCat("-c '", Shown(value),
                                         "': not an IPv6 address (write IPv4 as ::ffff:a.b.c.d); "
                                         "keeping ",
                                         FormatIp6(t.tcp.ip)));
  }
  return absl::OkStatus();
}

absl::Status ApplyInterface(const char* value, CommandLine* c) {
  const unsigned index = ::if_nametoindex(value);
  if (index == 0) return Bad(StrCat("-I '", Shown(value), "': no such network interface"));
  c->options.target.tcp.scope_id = index;
  return absl::OkStatus();
}

absl::Status ApplyMetricsListen(const char* value, CommandLine* c) {
  RelayOptions& o = c->options;
  if (o.metrics_listen) {
    return Bad(StrCat("--metrics-listen '", Shown(value), "': given twice (already ",
                      FormatHostPort(*o.metrics_listen), "); the relay serves one endpoint"));
  }
  o.metrics_listen = ParseHostPort(value);
  if (!o.metrics_listen) {
    return Bad(
        StrCat("--metrics-listen '", Shown(value), "': expected [ADDR]:PORT or A.B.C.D:PORT"));
  }
  return absl::OkStatus();
}

absl::Status ApplyCopy(const char* value, CommandLine* c) {
  if (std::string_view(value) == "buffer") {
    c->options.copy = CopyMode::kBuffer;
  } else if (std::string_view(value) == "splice") {
    c->options.copy = CopyMode::kSplice;
  } else {
    return Bad(StrCat("--copy '", Shown(value), "': expected buffer or splice"));
  }
  return absl::OkStatus();
}

absl::Status ApplyLogFormat(const char* value, CommandLine* c) {
  if (std::string_view(value) == "original") {
    c->options.log_format = LogFormat::kOriginal;
  } else if (std::string_view(value) == "detailed") {
    c->options.log_format = LogFormat::kDetailed;
  } else {
    return Bad(StrCat("--log-format '", Shown(value), "': expected original or detailed"));
  }
  return absl::OkStatus();
}

absl::Status ApplyRegister(const char* value, CommandLine* c) {
  const std::string_view text(value);
  const size_t colon = text.find(':');
  const auto group = colon == std::string_view::npos
                         ? std::nullopt
                         : ParseDecimal(text.substr(0, colon), 0, UINT32_MAX);
  if (!group || colon + 1 >= text.size()) {
    return Bad(StrCat("--register '", Shown(value), "': expected GROUP:CTLPATH (GROUP decimal)"));
  }
  c->options.source = SourceKind::kRegistration;
  c->options.register_group = static_cast<uint32_t>(*group);
  c->options.receiver_path = std::string(text.substr(colon + 1));
  return absl::OkStatus();
}

using Row = OptionRow<CommandLine>;
using Status = absl::Status;

// The original's options (getopt "I:n:c:p:l:u:NxP:s:ei"), then this
// implementation's (kFirstAddedRow on), which have long names only.
constexpr Row kRows[] = {
    {nullptr, 's', "PATH",
     "bind a receiving (\"A\") socket at PATH and relay the\nconnections passed to it",
     ApplyReceiverPath},
    {nullptr, 'l', "FD",
     "an inherited socket (default 0): a TCP socket to listen on,\nor with -e a receiving socket",
     [](const char* v, CommandLine* c) {
       c->listen_fd_given = true;
       return SetNumber("-l", v, 0, 1 << 30, &c->options.source_fd);
     }},
    {nullptr, 'e', nullptr,
     "-l's socket is a receiving socket (datagram, or a connected\nUnix stream or seqpacket "
     "socket)",
     [](const char*, CommandLine* c) -> Status {
       if (c->options.source == SourceKind::kListener) c->options.source = SourceKind::kReceiver;
       return absl::OkStatus();
     }},
    {nullptr, 'c', "ADDR",
     "TCP target address, IPv6 (::ffff:a.b.c.d or a.b.c.d for\nIPv4; default ::1)",
     ApplyTargetAddress},
    {nullptr, 'p', "PORT", "TCP target port (default 80; 0 only with -N: the local port)",
     [](const char* v, CommandLine* c) {
       return SetNumber("-p", v, 0, 65535, &c->options.target.tcp.port);
     }},
    {nullptr, 'I', "IFNAME", "the target's scope id, by interface name", ApplyInterface},
    {nullptr, 'n', "ID", "the target's scope id, by number",
     [](const char* v, CommandLine* c) {
       return SetNumber("-n", v, 0, UINT32_MAX, &c->options.target.tcp.scope_id);
     }},
    {nullptr, 'u', "PATH", "Unix stream target ('@' first: the abstract namespace)",
     [](const char* v, CommandLine* c) -> Status {
       c->options.target.is_unix = true;
       c->options.target.unix_path = v;
       return absl::OkStatus();
     }},
    {nullptr, 'N', nullptr, "NAT64: the target address from the connection's local address",
     [](const char*, CommandLine* c) -> Status {
       c->options.target.nat64 = true;
       return absl::OkStatus();
     }},
    {nullptr, 'P', "PREFIX", "NAT64 prefix (default 64:ff9b::/96)",
     [](const char* v, CommandLine* c) -> Status {
       ParseNat64Prefix(v, &c->options.target, &c->options.warnings);
       return absl::OkStatus();
     }},
    {nullptr, 'x', nullptr, "NAT64: only the prefix's first 64 bits are compared",
     [](const char*, CommandLine* c) -> Status {
       c->options.target.nat64_prefix64 = true;
       return absl::OkStatus();
     }},
    {nullptr, 'i', nullptr, "send a PROXY protocol v1 header (to a TCP target)",
     [](const char*, CommandLine* c) -> Status {
       c->options.proxy = ProxyVersion::kV1;
       return absl::OkStatus();
     }},
    // kFirstAddedRow: this implementation's options.
    {"proxy-v2", 0, nullptr, "send a PROXY protocol v2 header instead",
     [](const char*, CommandLine* c) -> Status {
       c->options.proxy = ProxyVersion::kV2;
       return absl::OkStatus();
     }},
    {"metrics-listen", 0, "ADDR:PORT", "Prometheus counters over HTTP", ApplyMetricsListen},
    {"workers", 0, "N", "threads, one io_uring each (default 1)",
     [](const char* v, CommandLine* c) {
       return SetNumber("--workers", v, 1, 64, &c->options.workers);
     }},
    {"buffer-size", 0, "BYTES", "per connection and direction (default 262144)",
     [](const char* v, CommandLine* c) {
       return SetNumber("--buffer-size", v, 4096, 16 << 20, &c->options.buffer_size);
     }},
    {"copy", 0, "buffer|splice", "how bytes are moved (default buffer)", ApplyCopy},
    {"connect-timeout", 0, "S", "give up connecting after S seconds\n(default 10, 0: never)",
     [](const char* v, CommandLine* c) {
       return SetNumber("--connect-timeout", v, 0, 86400, &c->options.connect_timeout_s);
     }},
    {"idle-timeout", 0, "S", "close after S seconds without a byte\n(default 0: never)",
     [](const char* v, CommandLine* c) {
       return SetNumber("--idle-timeout", v, 0, 30 * 86400, &c->options.idle_timeout_s);
     }},
    {"drain-timeout", 0, "S", "on SIGTERM, wait S seconds for connections\n(default 30)",
     [](const char* v, CommandLine* c) {
       return SetNumber("--drain-timeout", v, 0, 86400, &c->options.drain_timeout_s);
     }},
    {"max-connections", 0, "N", "per worker; more wait in the queue\n(default 0: no limit)",
     [](const char* v, CommandLine* c) {
       return SetNumber("--max-connections", v, 0, 10'000'000, &c->options.max_connections);
     }},
    {"backlog", 0, "N", "listen(2) backlog for -l without -e\n(default 4096)",
     [](const char* v, CommandLine* c) {
       return SetNumber("--backlog", v, 1, 65535, &c->options.backlog);
     }},
    {"quiet", 0, nullptr, "no line per connection on stderr",
     [](const char*, CommandLine* c) -> Status {
       c->options.log_connections = false;
       return absl::OkStatus();
     }},
    {"log-format", 0, "FORMAT",
     "original (default): a line 'EPOCH\n[client]:port -> [local]:port' per\nconnection; detailed: "
     "prefixed, ISO 8601\ntimes, drain and exit summaries",
     ApplyLogFormat},
    {"proxy-to-unix", 0, nullptr, "send the -i/--proxy-v2 header to a -u target\ntoo",
     [](const char*, CommandLine* c) -> Status {
       c->options.proxy_to_unix = true;
       return absl::OkStatus();
     }},
    {"refuse-unix-clients", 0, nullptr,
     "close passed connections from Unix sockets\n(they have no client address for a "
     "PROXY\nheader)",
     [](const char*, CommandLine* c) -> Status {
       c->options.refuse_unix_clients = true;
       return absl::OkStatus();
     }},
    {"register", 0, "GROUP:CTLPATH", "source: register as GROUP at a registration\nserver",
     ApplyRegister},
    {"help", 0, nullptr, "this text",
     [](const char*, CommandLine*) -> Status { return absl::CancelledError(RelayUsage()); }},
};
constexpr size_t kFirstAddedRow = 12;
static_assert(kRows[kFirstAddedRow].short_name == 0 && kRows[kFirstAddedRow - 1].short_name != 0);

// Getopt's faults, worded as since the relay's first release, with the usage.
absl::Status WordFault(const OptionFault& f) {
  const std::string option =
      f.short_name != 0 ? StrCat("-", std::string(1, f.short_name)) : f.token;
  return Bad(StrCat(f.missing_value ? "missing value for " : "unknown option ", Shown(option), "\n",
                    RelayUsage()));
}

}  // namespace

std::string RelayUsage() {
  const std::span<const Row> rows(kRows);
  std::string usage = StrCat(
      "usage: socketbox-relay [-s PATH | -l FD [-e]] [-c ADDR] [-p PORT] [-I IFNAME | -n ID]\n"
      "                       [-u PATH] [-N [-P PREFIX] [-x]] [-i | --proxy-v2]\n\n"
      "Options of the original socketbox-relay (same meaning and defaults):\n",
      OptionHelp(rows.first(kFirstAddedRow), kOriginalHelpColumn),
      "\nOptions of this implementation:\n",
      OptionHelp(rows.subspan(kFirstAddedRow), kAddedHelpColumn));
  usage.pop_back();  // the last '\n': callers end the text
  return usage;
}

absl::StatusOr<RelayOptions> ParseRelayOptions(int argc, char** argv) {
  CommandLine line;
  RelayOptions& o = line.options;
  o.target.tcp.family = AF_INET6;
  o.target.tcp.ip = *ParseIp6("::1");
  o.target.tcp.port = 80;
  o.target.nat64_prefix = *ParseIp6("64:ff9b::");
  // Permuting, like the original's getopt: options may follow other words.
  auto words =
      ParseOptionTable<CommandLine>(kRows, argc, argv, OptionOrder::kPermute, &line, WordFault);
  if (!words.ok()) return words.status();
  if (!words->empty()) {
    // The original ignored them; command lines that carry some keep working.
    std::string shown;
    for (const std::string& w : *words) shown += StrCat(shown.empty() ? "'" : " '", Shown(w), "'");
    o.warnings.push_back(StrCat("ignoring extra argument(s) after the options: ", shown));
  }
  const bool listen_fd_given = line.listen_fd_given;
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
  return std::move(line.options);
}

}  // namespace sbx::relay
