#include "inetd/options.h"

#include <cstdint>

#include "absl/status/status.h"
#include "engine/core/diagnostic.h"
#include "engine/core/numbers.h"
#include "engine/core/str_cat.h"

namespace sbx::inetd {
namespace {

absl::Status Bad(std::string_view what) { return absl::InvalidArgumentError(std::string(what)); }

// Values from the command line and the environment are shown escaped
// (Printable): a newline in one must not start a line of its own in the log.
std::string Shown(std::string_view value) { return Printable(value); }

}  // namespace

std::string InetdUsage(Mode mode) {
  const std::string opts =
      "[-c MAX_CHILDREN] [-C MAX_PER_SOURCE [-L PREFIXLEN]] [-m fork|spawn] [-E]";
  if (mode == Mode::kDatagram)
    return StrCat("usage: socketbox-inetd ", opts, " SOCKPATH PROG [ARGS...]");
  return StrCat("usage: socketbox-inetd-p ", opts, " CTLPATH GROUP PROG [ARGS...]");
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
  size_t i = 0;
  auto value_of = [&](std::string_view opt) -> absl::StatusOr<std::string> {
    if (i + 1 >= args.size()) return Bad(StrCat("option ", opt, " needs a value"));
    return args[++i];
  };
  for (; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') break;
    if (arg == "-c" || arg == "-C") {
      auto text = value_of(arg);
      if (!text.ok()) return text.status();
      auto n = ParseDecimal(*text, 0, 1000000);
      if (!n) {
        return Bad(StrCat("option ", arg, " '", Shown(*text), "': expected a number 0..1000000"));
      }
      (arg == "-c" ? options.max_children : options.max_per_source) = *n;
    } else if (arg == "-L") {
      auto text = value_of(arg);
      if (!text.ok()) return text.status();
      auto n = ParseDecimal(*text, 1, 128);
      if (!n) return Bad(StrCat("option -L '", Shown(*text), "': expected a prefix length 1..128"));
      options.source_prefix6 = static_cast<int>(*n);
    } else if (arg == "-m") {
      auto text = value_of(arg);
      if (!text.ok()) return text.status();
      if (*text == "fork") {
        options.spawn_method = SpawnMethod::kFork;
      } else if (*text == "spawn" || *text == "vfork") {
        options.spawn_method = SpawnMethod::kPosixSpawn;
      } else {
        return Bad(StrCat("option -m '", Shown(*text), "': expected fork or spawn"));
      }
    } else if (arg == "-E") {
      options.set_environment = false;
    } else {
      return Bad(StrCat("unknown option '", Shown(arg), "'"));
    }
  }
  const size_t needed = mode == Mode::kDatagram ? 2 : 3;
  if (args.size() - i < needed) {
    return Bad(mode == Mode::kDatagram ? "missing SOCKPATH or PROG"
                                       : "missing CTLPATH, GROUP or PROG");
  }
  options.socket_path = args[i++];
  if (options.socket_path.empty()) return Bad("empty socket path");
  if (mode == Mode::kRegistration) {
    auto group = ParseGroup(args[i++]);
    if (!group.ok()) return group.status();
    options.group = *group;
  }
  options.program.assign(args.begin() + static_cast<ptrdiff_t>(i), args.end());
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
