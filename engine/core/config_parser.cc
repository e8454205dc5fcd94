#include "engine/core/config_parser.h"

#include <climits>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "engine/core/numbers.h"
#include "engine/core/str_cat.h"

namespace sbx {
namespace {

enum class TokenId {
  kDefault,
  kFail,
  kIp,
  kJumpFd,
  kJumpMap,
  kJumpRule,
  kJumpUnix,
  kMapSet,
  kMatchLip,
  kMatchLport,
  kMatchRip,
  kMatchRport,
  kMaxMaps,
  kMaxRules,
  kPort,
  kRip,
  kRport,
  kRuleSet,
  kSize,
};

struct TokenSpec {
  std::string_view name;
  TokenId id;
  bool takes_value;
  std::string_view usage;
};

constexpr TokenSpec kTokens[] = {
    {"default", TokenId::kDefault, false, "default"},
    {"fail", TokenId::kFail, false, "fail"},
    {"ip", TokenId::kIp, true, "ip:ADDRESS[/LEN|/MASK]"},
    {"jump-fd", TokenId::kJumpFd, true, "jump-fd:FD"},
    {"jump-map", TokenId::kJumpMap, true, "jump-map:N"},
    {"jump-rule", TokenId::kJumpRule, true, "jump-rule:N"},
    {"jump-unix", TokenId::kJumpUnix, true, "jump-unix:PATH"},
    {"map-set", TokenId::kMapSet, true, "map-set:N"},
    {"match-lip", TokenId::kMatchLip, true, "match-lip:LEN"},
    {"match-lport", TokenId::kMatchLport, false, "match-lport"},
    {"match-rip", TokenId::kMatchRip, true, "match-rip:LEN"},
    {"match-rport", TokenId::kMatchRport, false, "match-rport"},
    {"max-maps", TokenId::kMaxMaps, true, "max-maps:N"},
    {"max-rules", TokenId::kMaxRules, true, "max-rules:N"},
    {"port", TokenId::kPort, true, "port:N"},
    {"rip", TokenId::kRip, true, "rip:ADDRESS[/LEN|/MASK]"},
    {"rport", TokenId::kRport, true, "rport:N"},
    {"rule-set", TokenId::kRuleSet, true, "rule-set:N"},
    {"size", TokenId::kSize, true, "size:N"},
};

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// Where the tokens of a line go, exactly as in the original.
enum class State { kGlobal, kMap, kRule, kDefaultMap, kDefaultRule };

class Parser {
 public:
  explicit Parser(std::string_view file) : file_(file) {}

  ParseOutcome Run(std::string_view text) {
    size_t pos = 0;
    while (pos < text.size() && out_.errors.size() < kMaxErrors) {
      size_t end = text.find('\n', pos);
      if (end == std::string_view::npos) end = text.size();
      ++line_;
      ParseLine(text.substr(pos, end - pos));
      pos = end + 1;
    }
    if (out_.errors.size() >= kMaxErrors && pos < text.size()) {
      Report(Diagnostic::Severity::kError, "", "too many errors; stopped reading here");
    }
    return std::move(out_);
  }

 private:
  void ParseLine(std::string_view line) {
    if (line.empty() || line.front() == '#') return;
    continue_entry_ = false;
    action_set_on_line_ = false;
    size_t pos = 0;
    while (true) {
      while (pos < line.size() && IsSpace(line[pos])) ++pos;
      if (pos >= line.size()) return;
      size_t end = pos;
      while (end < line.size() && !IsSpace(line[end])) ++end;
      // After an error the rest of the line would only cascade; skip it.
      if (!ParseToken(line.substr(pos, end - pos))) return;
      pos = end;
    }
  }

  bool ParseToken(std::string_view token) {
    token_ = token;
    const size_t colon = token.find(':');
    const std::string_view name = token.substr(0, colon);
    std::optional<std::string_view> value;
    if (colon != std::string_view::npos) value = token.substr(colon + 1);

    const TokenSpec* spec = nullptr;
    for (const TokenSpec& s : kTokens) {
      if (s.name == name) spec = &s;
    }
    if (spec == nullptr) return UnknownToken(name);
    if (spec->takes_value && !value) {
      return Error(StrCat("'", spec->name, "' needs a value: ", spec->usage));
    }
    if (!spec->takes_value && value) {
      Warn(StrCat("'", spec->name, "' takes no value; ':", Printable(*value), "' ignored"));
    }
    const std::string_view v = value.value_or("");
    switch (spec->id) {
      case TokenId::kMaxMaps:
        return SetMaxSets(v, "max-maps", out_.model.map_sets);
      case TokenId::kMaxRules:
        return SetMaxSets(v, "max-rules", out_.model.rule_sets);
      case TokenId::kRuleSet:
        return SelectSet(v, "rule-set", "max-rules", out_.model.rule_sets.size(), State::kRule);
      case TokenId::kMapSet:
        return SelectSet(v, "map-set", "max-maps", out_.model.map_sets.size(), State::kMap);
      case TokenId::kSize:
        return SetSize(v);
      case TokenId::kDefault:
        return EnterDefault();
      case TokenId::kIp:
        return SetAddress(v, /*remote=*/false);
      case TokenId::kRip:
        return SetAddress(v, /*remote=*/true);
      case TokenId::kPort:
        return SetPort(v, /*remote=*/false);
      case TokenId::kRport:
        return SetPort(v, /*remote=*/true);
      case TokenId::kJumpUnix:
        return SetJumpUnix(v);
      case TokenId::kJumpFd:
        return SetJumpNumber(v, ActionKind::kFd, INT_MAX);
      case TokenId::kJumpMap:
        return SetJumpNumber(v, ActionKind::kJumpMap, UINT32_MAX);
      case TokenId::kJumpRule:
        return SetJumpNumber(v, ActionKind::kJumpRule, UINT32_MAX);
      case TokenId::kFail:
        return SetAction({ActionKind::kFail, 0});
      case TokenId::kMatchLip:
        return SetMapPrefix(v, "match-lip", /*remote=*/false);
      case TokenId::kMatchRip:
        return SetMapPrefix(v, "match-rip", /*remote=*/true);
      case TokenId::kMatchLport:
        return SetMapPortMask(/*remote=*/false);
      case TokenId::kMatchRport:
        return SetMapPortMask(/*remote=*/true);
    }
    return Error("internal: unhandled token");
  }

  bool UnknownToken(std::string_view name) {
    if (!name.empty() && name.front() == '#') {
      return Error("'#' starts a comment only at the beginning of a line");
    }
    std::string candidates;
    for (const TokenSpec& s : kTokens) {
      if (!name.empty() && s.name.substr(0, name.size()) == name) {
        StrAppend(&candidates, candidates.empty() ? "" : ", ", s.name);
      }
    }
    if (!candidates.empty()) {
      return Error(StrCat("unknown token '", Printable(name),
                          "': abbreviations are not accepted (write one of: ", candidates, ")"));
    }
    return Error(StrCat("unknown token '", Printable(name), "'"));
  }

  template <typename Set>
  bool SetMaxSets(std::string_view v, std::string_view what, std::vector<Set>& sets) {
    if (!sets.empty()) return Error(StrCat("'", what, "' given twice"));
    auto n = ParseDecimal(v, 1, kMaxSets);
    if (!n) return Error(StrCat("'", what, "' must be a number from 1 to ", kMaxSets));
    sets.resize(*n);
    return true;
  }

  bool SelectSet(std::string_view v, std::string_view what, std::string_view max_token,
                 size_t count, State state) {
    if (continue_entry_) {
      return Error(StrCat("'", what, "' cannot follow an entry on the same line"));
    }
    auto n = ParseDecimal(v, 0, UINT32_MAX);
    if (!n) return Error(StrCat("'", what, "' needs a set number"));
    if (count == 0) {
      return Error(
          StrCat("'", what, "' before '", max_token, "' (declare ", max_token, ":N first)"));
    }
    if (*n >= count) {
      return Error(StrCat(what, " ", *n, " does not exist (", max_token, ":", count,
                          " allows 0 to ", count - 1, ")"));
    }
    current_ = static_cast<uint32_t>(*n);
    state_ = state;
    return true;
  }

  bool SetSize(std::string_view v) {
    if (state_ == State::kDefaultMap || state_ == State::kDefaultRule) {
      return Error("'size' must come before 'default' in a set");
    }
    if (state_ == State::kGlobal)
      return Error("'size' outside a set (use rule-set:N or map-set:N first)");
    auto n = ParseDecimal(v, 1, kMaxSetSize);
    if (!n) return Error(StrCat("'size' must be a number from 1 to ", kMaxSetSize));
    uint32_t& capacity = state_ == State::kRule ? out_.model.rule_sets[current_].capacity
                                                : out_.model.map_sets[current_].capacity;
    if (capacity != 0) return Error(StrCat("'size' given twice for ", SetName()));
    capacity = static_cast<uint32_t>(*n);
    return true;
  }

  bool EnterDefault() {
    if (continue_entry_) return Error("'default' cannot follow an entry on the same line");
    switch (state_) {
      case State::kMap:
        state_ = State::kDefaultMap;
        return true;
      case State::kRule:
        state_ = State::kDefaultRule;
        return true;
      case State::kGlobal:
        return Error("'default' outside a set");
      default:
        return Error("'default' given twice (already setting this set's default)");
    }
  }

  std::string SetName() const {
    const bool map = state_ == State::kMap || state_ == State::kDefaultMap;
    return StrCat(map ? "map-set " : "rule-set ", current_);
  }

  // The entry this line is building, created by the line's first entry token.
  // nullptr (after reporting why) if there is no room or no set.
  template <typename Set>
  auto* CurrentEntry(Set& set) {
    using Entry = typename decltype(set.entries)::value_type;
    if (continue_entry_) return &set.entries.back();
    if (set.capacity == 0) {
      Error(StrCat(SetName(), " has no size (write size:N after selecting it)"));
      return static_cast<Entry*>(nullptr);
    }
    if (set.entries.size() >= set.capacity) {
      Error(StrCat(SetName(), " is full (size:", set.capacity, ")"));
      return static_cast<Entry*>(nullptr);
    }
    continue_entry_ = true;
    set.entries.emplace_back();
    set.entries.back().line = line_;
    return &set.entries.back();
  }

  bool RequireEntryState(std::string_view what) {
    if (state_ == State::kMap || state_ == State::kRule) return true;
    if (state_ == State::kGlobal) {
      return Error(StrCat("'", what, "' outside a set (use rule-set:N or map-set:N first)"));
    }
    return Error(StrCat("'", what, "' is an entry token and cannot follow 'default' (select ",
                        "the set again with rule-set:N or map-set:N)"));
  }

  bool SetAddress(std::string_view v, bool remote) {
    const std::string_view what = remote ? "rip" : "ip";
    if (!RequireEntryState(what)) return false;
    if (state_ == State::kMap) {
      if (v.find('/') != std::string_view::npos) {
        return Error(StrCat("map-set entries take a plain address without a mask (use ",
                            remote ? "match-rip" : "match-lip", ":LEN on the set)"));
      }
      auto ip = ParseAddressValue(v);
      if (!ip) return false;
      MapEntry* e = CurrentEntry(out_.model.map_sets[current_]);
      if (e == nullptr) return false;
      SetTupleAddress(e->key, *ip, remote);
      return true;
    }
    std::string_view addr_text = v;
    Ip6 mask = PrefixMask(128);
    if (const size_t slash = v.find('/'); slash != std::string_view::npos) {
      addr_text = v.substr(0, slash);
      const std::string_view mask_text = v.substr(slash + 1);
      if (mask_text.find(':') != std::string_view::npos) {
        auto m = ParseIp6(mask_text);
        if (!m) return Error(StrCat("mask '", Printable(mask_text), "' is not an IPv6 address"));
        mask = *m;
      } else {
        auto len = ParseDecimal(mask_text, 0, 128);
        if (!len) {
          return Error(StrCat("prefix length '", Printable(mask_text),
                              "' must be a number from 0 to 128 (or an IPv6 mask)"));
        }
        mask = PrefixMask(static_cast<int>(*len));
      }
    }
    auto ip = ParseAddressValue(addr_text);
    if (!ip) return false;
    RuleEntry* e = CurrentEntry(out_.model.rule_sets[current_]);
    if (e == nullptr) return false;
    SetTupleAddress(e->pattern, *ip, remote);
    SetTupleAddress(e->mask, mask, remote);
    return true;
  }

  std::optional<Ip6> ParseAddressValue(std::string_view text) {
    if (auto ip = ParseIp6(text)) return ip;
    if (ParseIp6(text, /*allow_ipv4=*/true)) {
      Error(StrCat("'", Printable(text), "': write IPv4 addresses as ::ffff:", text));
    } else {
      Error(StrCat("'", Printable(text), "' is not an IPv6 address"));
    }
    return std::nullopt;
  }

  static void SetTupleAddress(PackedTuple& t, const Ip6& ip, bool remote) {
    ConnTuple c = t.ToConnTuple();
    (remote ? c.remote : c.local) = ip;
    t = PackedTuple::From(c);
  }

  static void SetTuplePort(PackedTuple& t, uint16_t port, bool remote) {
    ConnTuple c = t.ToConnTuple();
    (remote ? c.rport : c.lport) = port;
    t = PackedTuple::From(c);
  }

  bool SetPort(std::string_view v, bool remote) {
    const std::string_view what = remote ? "rport" : "port";
    if (!RequireEntryState(what)) return false;
    auto port = ParsePort(v);
    if (!port) return Error(StrCat("'", what, "' must be a number from 0 to 65535"));
    if (state_ == State::kMap) {
      MapEntry* e = CurrentEntry(out_.model.map_sets[current_]);
      if (e == nullptr) return false;
      SetTuplePort(e->key, *port, remote);
      return true;
    }
    RuleEntry* e = CurrentEntry(out_.model.rule_sets[current_]);
    if (e == nullptr) return false;
    SetTuplePort(e->pattern, *port, remote);
    SetTuplePort(e->mask, 0xffff, remote);  // in rule-sets a port always takes part
    return true;
  }

  bool SetJumpUnix(std::string_view path) {
    if (path.empty()) return Error("'jump-unix' needs a socket path");
    if (path.size() > kMaxUnixPathLength) {
      return Error(StrCat("path is ", path.size(), " bytes; a Unix socket path holds at most ",
                          kMaxUnixPathLength));
    }
    if (path.find('\0') != std::string_view::npos) return Error("path contains a NUL byte");
    auto [it, inserted] = path_index_.try_emplace(std::string(path), out_.model.unix_paths.size());
    if (inserted) out_.model.unix_paths.emplace_back(path);
    return SetAction({ActionKind::kUnix, static_cast<uint32_t>(it->second)});
  }

  bool SetJumpNumber(std::string_view v, ActionKind kind, uint64_t max) {
    auto n = ParseDecimal(v, 0, max);
    if (!n) return Error(StrCat("value must be a number from 0 to ", max));
    return SetAction({kind, static_cast<uint32_t>(*n)});
  }

  bool SetAction(Action action) {
    switch (state_) {
      case State::kRule: {
        RuleEntry* e = CurrentEntry(out_.model.rule_sets[current_]);
        if (e == nullptr) return false;
        NoteOverride(action_set_on_line_);
        e->action = action;
        return true;
      }
      case State::kMap: {
        MapEntry* e = CurrentEntry(out_.model.map_sets[current_]);
        if (e == nullptr) return false;
        NoteOverride(action_set_on_line_);
        e->action = action;
        return true;
      }
      case State::kDefaultRule:
        out_.model.rule_sets[current_].default_action = action;
        out_.model.rule_sets[current_].default_line = line_;
        return true;
      case State::kDefaultMap:
        out_.model.map_sets[current_].default_action = action;
        out_.model.map_sets[current_].default_line = line_;
        return true;
      case State::kGlobal:
        break;
    }
    return Error("action outside a set (use rule-set:N or map-set:N first)");
  }

  void NoteOverride(bool already) {
    if (already) Warn("this entry already has an action; the last one on the line wins");
    action_set_on_line_ = true;
  }

  bool SetMapPrefix(std::string_view v, std::string_view what, bool remote) {
    if (state_ != State::kMap)
      return Error(StrCat("'", what, "' belongs in a map-set, before 'default'"));
    auto len = ParseDecimal(v, 0, 128);
    if (!len) return Error(StrCat("'", what, "' must be a prefix length from 0 to 128"));
    SetTupleAddress(out_.model.map_sets[current_].mask, PrefixMask(static_cast<int>(*len)), remote);
    return true;
  }

  bool SetMapPortMask(bool remote) {
    if (state_ != State::kMap) {
      return Error(StrCat("'", remote ? "match-rport" : "match-lport",
                          "' belongs in a map-set, before 'default'"));
    }
    SetTuplePort(out_.model.map_sets[current_].mask, 0xffff, remote);
    return true;
  }

  bool Error(std::string message) {
    Report(Diagnostic::Severity::kError, token_, std::move(message));
    return false;
  }
  void Warn(std::string message) {
    Report(Diagnostic::Severity::kWarning, token_, std::move(message));
  }
  void Report(Diagnostic::Severity severity, std::string_view token, std::string message) {
    auto& list = severity == Diagnostic::Severity::kError ? out_.errors : out_.warnings;
    list.push_back({severity, std::string(file_), line_, std::string(token), std::move(message)});
  }

  std::string_view file_;
  ParseOutcome out_;
  absl::flat_hash_map<std::string, size_t> path_index_;
  State state_ = State::kGlobal;
  uint32_t current_ = 0;
  bool continue_entry_ = false;
  bool action_set_on_line_ = false;
  int line_ = 0;
  std::string_view token_;
};

}  // namespace

ParseOutcome ParseConfig(std::string_view text, std::string_view file_name) {
  return Parser(file_name).Run(text);
}

}  // namespace sbx
