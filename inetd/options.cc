#include "inetd/options.h"

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "engine/core/diagnostic.h"
#include "engine/core/numbers.h"
#include "engine/core/option_table.h"
#include "engine/core/str_cat.h"

namespace sbx::inetd {
namespace {

absl::Status Bad(std::string_view what) { return absl::InvalidArgumentError(std::string(what)); }

// Values from the command line and the environment are shown escaped
// (Printable): a newline in one must not start a line of its own in the log.
std::string Shown(std::string_view value) { return Printable(value); }

// Where the help of an option starts in the usage text.
constexpr size_t kHelpColumn = 18;

absl::Status SetCount(std::string_view option, const char* value, uint64_t* out) {
  auto n = ParseDecimal(value, 0, 1000000);
  if (!n)
    return Bad(StrCat("option ", option, " '", Shown(value), "': expected a number 0..1000000"));
  *out = *n;
  return absl::OkStatus();
}

absl::Status ApplySpawnMethod(const char* value, InetdOptions* o) {
  const std::string_view v = value;
  if (v == "fork") {
    o->spawn_method = SpawnMethod::kFork;
  } else if (v == "spawn" || v == "vfork") {
    o->spawn_method = SpawnMethod::kPosixSpawn;
  } else {
    return Bad(StrCat("option -m '", Shown(value), "': expected fork or spawn"));
  }
  return absl::OkStatus();
}

using Row = OptionRow<InetdOptions>;

// The original took no options; these come before SOCKPATH (or CTLPATH).
constexpr Row kRows[] = {
    {nullptr, 'c', "N",
     "at most N children at once; while N run, connections wait\nin the queue (0: no limit, the "
     "default)",
     [](const char* v, InetdOptions* o) { return SetCount("-c", v, &o->max_children); }},
    {nullptr, 'C', "N",
     "at most N children per remote IP address; one more is\nclosed and logged (0: no limit, the "
     "default)",
     [](const char* v, InetdOptions* o) { return SetCount("-C", v, &o->max_per_source); }},
    {nullptr, 'L', "LEN", "with -C, count IPv6 clients by their /LEN prefix (128)",
     [](const char* v, InetdOptions* o) -> absl::Status {
       auto n = ParseDecimal(v, 1, 128);
       if (!n) return Bad(StrCat("option -L '", Shown(v), "': expected a prefix length 1..128"));
       o->source_prefix6 = static_cast<int>(*n);
       return absl::OkStatus();
     }},
    {nullptr, 'm', "fork|spawn", "how children are started (default spawn: posix_spawn)",
     ApplySpawnMethod},
    {nullptr, 'E', nullptr, "no connection variables in the child's environment",
     [](const char*, InetdOptions* o) -> absl::Status {
       o->set_environment = false;
       return absl::OkStatus();
     }},
};

// Getopt's faults, worded as the first release's own parser worded them.
absl::Status WordFault(const OptionFault& f) {
  if (f.missing_value)
    return Bad(StrCat("option -", std::string(1, f.short_name), " needs a value"));
  return Bad(StrCat("unknown option '", Shown(f.token), "'"));
}

}  // namespace

std::string InetdUsage(Mode mode) {
  const std::string opts =
      "[-c MAX_CHILDREN] [-C MAX_PER_SOURCE [-L PREFIXLEN]] [-m fork|spawn] [-E]";
  const std::string synopsis =
      mode == Mode::kDatagram
          ? StrCat("usage: socketbox-inetd ", opts, " SOCKPATH PROG [ARGS...]")
          : StrCat("usage: socketbox-inetd-p ", opts, " CTLPATH GROUP PROG [ARGS...]");
  std::string usage = StrCat(synopsis, "\n", OptionHelp(std::span<const Row>(kRows), kHelpColumn));
  usage.pop_back();  // the last '\n': callers end the text
  return usage;
}

absl::StatusOr<StrictLevel> ParseStrictLevel(const char* value) {
  if (value == nullptr) return StrictLevel::kStreamInetUnix;
  auto level = ParseDecimal(value, 0, 2);
  if (!level) {
    return Bad(StrCat("SKBOX_STRICT_STREAM_MODE='", Shown(value), "': expected 0, 1 or 2"));
  }
  return static_cast<StrictLevel>(*level);
}

absl::StatusOr<uint32_t> ParseGroup(const std::string& text) {
  // As the original's strtoul(GROUP, NULL, 0): 0x hex, leading-0 octal, decimal.
  auto value = ParseCNumber(text, 0, UINT32_MAX);
  if (!value) {
    return Bad(StrCat("GROUP '", Shown(text),
                      "': expected a number 0..4294967295 (decimal, 0x hex or 0 octal)"));
  }
  return static_cast<uint32_t>(*value);
}

absl::StatusOr<InetdOptions> ParseInetdOptions(Mode mode, const std::vector<std::string>& args,
                                               const char* strict_env, const char* senders_env,
                                               const char* acknowledge_env,
                                               const char* take_listener_env) {
  InetdOptions options;
  options.mode = mode;
  // getopt wants argv[0] and writable words (it permutes none here).
  std::vector<std::string> words(1, "socketbox-inetd");
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;
  argv.reserve(words.size() + 1);
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  // Options stop at the first word, so PROG's own options are PROG's.
  auto operands =
      ParseOptionTable<InetdOptions>(kRows, static_cast<int>(words.size()), argv.data(),
                                     OptionOrder::kStopAtFirstWord, &options, WordFault);
  if (!operands.ok()) return operands.status();
  const std::vector<std::string>& rest = *operands;
  size_t i = 0;
  const size_t needed = mode == Mode::kDatagram ? 2 : 3;
  if (rest.size() < needed) {
    return Bad(mode == Mode::kDatagram ? "missing SOCKPATH or PROG"
                                       : "missing CTLPATH, GROUP or PROG");
  }
  options.socket_path = rest[i++];
  if (options.socket_path.empty()) return Bad("empty socket path");
  if (mode == Mode::kRegistration) {
    auto group = ParseGroup(rest[i++]);
    if (!group.ok()) return group.status();
    options.group = *group;
  }
  options.program.assign(rest.begin() + static_cast<ptrdiff_t>(i), rest.end());
  if (options.program[0].empty()) return Bad("empty PROG");
  auto strict = ParseStrictLevel(strict_env);
  if (!strict.ok()) return strict.status();
  options.strict = *strict;
  if (senders_env != nullptr && !SenderFilter::Parse(senders_env, &options.senders)) {
    return Bad(StrCat(kSenderUidsVariable, "='", Shown(senders_env),
                      "': expected uids separated by commas (e.g. 0,998), at most ",
                      SenderFilter::kMaxUids));
  }
  if (acknowledge_env != nullptr) {
    const std::string_view value(acknowledge_env);
    if (value != "0" && value != "1") {
      return Bad(StrCat(kAcknowledgeVariable, "='", Shown(value), "': expected 0 or 1"));
    }
    options.acknowledge = value == "1";
  }
  if (take_listener_env != nullptr) {
    const std::string_view value(take_listener_env);
    if (value != "0" && value != "1") {
      return Bad(StrCat(kTakeListenerVariable, "='", Shown(value), "': expected 0 or 1"));
    }
    options.take_listener = value == "1";
  }
  return options;
}

}  // namespace sbx::inetd
