#include "preload/env_config.h"

#include <cstdio>
#include <cstring>
#include <string_view>

#include "engine/core/listener_request.h"
#include "engine/core/numbers.h"
#include "engine/core/printable.h"

namespace sbx::preload {
namespace {

// Longest root that still leaves room for "/skbox_dir_NNNNN" (record files)
// or "/GGGGG/HHHHH_PPPPP" (directory2) inside PATH_MAX.
constexpr size_t kRootSuffixRoom = 32;

const char* Lookup(const char* const* envp, const char* name) {
  if (envp == nullptr) return nullptr;
  const size_t len = std::strlen(name);
  for (const char* const* e = envp; *e != nullptr; ++e) {
    if (std::strncmp(*e, name, len) == 0 && (*e)[len] == '=') return *e + len + 1;
  }
  return nullptr;
}

// "0" / "1"; anything else is reported and leaves `*flag` unchanged.
void ReadFlag(const char* const* envp, const char* name, bool* flag, Problems* problems) {
  const char* value = Lookup(envp, name);
  if (value == nullptr || *value == '\0') return;
  const std::string_view v(value);
  if (v == "0") {
    *flag = false;
  } else if (v == "1") {
    *flag = true;
  } else {
    problems->Add(name, value, "0 or 1");
  }
}

// A level 0..max. The original read one digit and acted on larger ones as
// the highest level; so does this, but it says so like any malformed value.
void ReadLevel(const char* const* envp, const char* name, int max, int* level, Problems* problems) {
  const char* value = Lookup(envp, name);
  if (value == nullptr || *value == '\0') return;
  static constexpr const char* kExpected[] = {"0", "0 or 1", "0, 1 or 2"};
  const auto parsed = ParseDecimal(value, 0, 9);
  if (!parsed) {
    problems->Add(name, value, kExpected[max]);
    return;
  }
  if (static_cast<int>(*parsed) > max) {
    problems->Add(name, value, kExpected[max]);
    *level = max;
    return;
  }
  *level = static_cast<int>(*parsed);
}

// Empty, the variable counts as unset (as in the original). Numbers are read
// as leniently as the original read them (port_filter.h), with a warning
// when the text is not plain decimal, since "010" or "1024x" may not mean
// what it seems to.
void ReadFilter(const char* const* envp, const char* name, FilterSetting* setting,
                Problems* problems) {
  const char* value = Lookup(envp, name);
  if (value == nullptr || *value == '\0') return;
  const auto parsed = ParsePortFilter(value);
  if (!parsed) {
    setting->broken = true;
    problems->Add(name, value,
                  "odd_limit[,even_limit[,port,...]]: limits up to 65536, at most 30 listed "
                  "ports from 1 to 65535 (binds it covers now fail)");
    return;
  }
  if (parsed->fields > 0) setting->filter = parsed->filter;
  if (parsed->plain_decimal) return;
  char reading[160];
  if (parsed->fields == 0) {
    std::snprintf(reading, sizeof(reading), "the default, as if unset");
  } else {
    const PortFilter& f = parsed->filter;
    std::snprintf(reading, sizeof(reading), "odd ports below %u, even ports below %u, %d listed",
                  static_cast<unsigned>(f.odd_limit), static_cast<unsigned>(f.even_limit),
                  f.listed_count);
  }
  char line[Problems::kLineSize];
  std::snprintf(line, sizeof(line),
                "is not plain decimal; read as the original read it (C strtoul, base 0): %s",
                reading);
  problems->Note(name, value, line);
}

void ReadDirectory(const char* const* envp, const char* name, DirectorySetting* setting,
                   Problems* problems) {
  const char* value = Lookup(envp, name);
  if (value == nullptr || *value == '\0') return;
  setting->set = true;
  const size_t len = std::strlen(value);
  if (len + kRootSuffixRoom >= sizeof(setting->path)) {
    setting->broken = true;
    problems->Add(name, "(too long)", "a shorter directory path");
    return;
  }
  std::memcpy(setting->path, value, len + 1);
}

void ReadConnect(const char* const* envp, Config* config) {
  const char* value = Lookup(envp, "SKBOX_ENABLE_CONNECT");
  if (value == nullptr || *value == '\0') return;
  std::string_view v(value);
  const bool ipv4 = v.front() == 'b';
  if (ipv4) v.remove_prefix(1);
  const auto level = ParseDecimal(v, 0, 9);
  if (!level) {
    // A bare "b" did nothing in the original; say so instead.
    config->problems.Add("SKBOX_ENABLE_CONNECT", value,
                         "a level digit, optionally after 'b' (e.g. 1, 2, b1, b2); connect "
                         "interception stays off");
    return;
  }
  config->connect_ipv4 = ipv4;
  config->connect_level = static_cast<int>(*level);
}

void ReadSenders(const char* const* envp, Config* config) {
  const char* value = Lookup(envp, kSenderUidsVariable);
  if (value == nullptr) return;
  if (!SenderFilter::Parse(value, &config->senders)) {
    config->problems.Add(kSenderUidsVariable, value,
                         "uids separated by commas (e.g. 0,998), at most 16; every passed "
                         "socket is refused until it is fixed");
  }
}

void ReadKernelDispatch(const char* const* envp, Config* config) {
  ReadFlag(envp, "SKBOX_KERNEL_DISPATCH", &config->kernel_dispatch, &config->problems);
  const char* timeout = Lookup(envp, "SKBOX_KERNEL_DISPATCH_TIMEOUT_MS");
  if (timeout != nullptr && *timeout != '\0') {
    const auto ms = ParseDecimal(timeout, 1, 60000);
    if (ms) {
      config->kernel_dispatch_timeout_ms = static_cast<int>(*ms);
    } else {
      config->problems.Add("SKBOX_KERNEL_DISPATCH_TIMEOUT_MS", timeout,
                           "milliseconds from 1 to 60000 (200 is used)");
    }
  }
  const char* path = Lookup(envp, kListenerSocketEnv);
  if (path == nullptr || *path == '\0') path = kDefaultListenerSocket;
  const size_t len = std::strlen(path);
  if (len >= sizeof(config->listener_socket) - 1) {
    // It could never be connected to: say so rather than fail at each listen.
    config->kernel_dispatch = false;
    config->problems.Add(kListenerSocketEnv, "(too long)",
                         "a path shorter than 108 bytes; kernel dispatch stays off");
    return;
  }
  std::memcpy(config->listener_socket, path, len + 1);
}

}  // namespace

// The value is shown escaped: one with a newline must not start a line of
// its own (a forged log line) in the program's standard error.
void Problems::Add(const char* variable, const char* value, const char* expected) {
  if (count >= kMax) return;
  std::snprintf(lines[count], kLineSize, "%s=\"%s\" is malformed: expected %s", variable,
                PrintableText(value, kValueShown).text, expected);
  ++count;
}

void Problems::Note(const char* variable, const char* value, const char* what) {
  if (count >= kMax) return;
  std::snprintf(lines[count], kLineSize, "%s=\"%s\" %s", variable,
                PrintableText(value, kValueShown).text, what);
  ++count;
}

void ParseConfig(const char* const* envp, Config* out) {
  *out = Config{};
  Problems* p = &out->problems;
  ReadDirectory(envp, "SKBOX_DIRECTORY_ROOT", &out->directory_root, p);
  ReadDirectory(envp, "SKBOX_DIRECTORY_ROOT2", &out->directory_root2, p);
  ReadFilter(envp, "SKBOX_PORT_FILTER_IPV6", &out->filter_ipv6, p);
  ReadFilter(envp, "SKBOX_PORT_FILTER_IPV4", &out->filter_ipv4, p);
  ReadFilter(envp, "SKBOX_PORT_FILTER_IPV6_WILDCARD", &out->filter_ipv6_wildcard, p);
  ReadFilter(envp, "SKBOX_PORT_FILTER_IPV4_WILDCARD", &out->filter_ipv4_wildcard, p);
  ReadConnect(envp, out);
  ReadFlag(envp, "SKBOX_STEALTH_MODE", &out->stealth, p);
  ReadFlag(envp, "SKBOX_CLEAR_SCOPE_ID", &out->clear_scope_id, p);
  ReadLevel(envp, "SKBOX_GETPEERNAME_PROTECTION", 2, &out->getpeername_protection, p);
  ReadFlag(envp, "SKBOX_ACCEPT_STREAM", &out->accept_stream, p);
  ReadFlag(envp, "SKBOX_BLOCK_LISTEN_EMPTY_ADDR", &out->block_listen, p);
  int strict = static_cast<int>(out->strict);
  ReadLevel(envp, "SKBOX_STRICT_STREAM_MODE", 2, &strict, p);
  out->strict = static_cast<StrictLevel>(strict);
  ReadFlag(envp, "SKBOX_SCHED_YIELD", &out->sched_yield, p);
  ReadFlag(envp, "SKBOX_DEBUG", &out->debug, p);
  ReadFlag(envp, "SKBOX_ACKNOWLEDGE", &out->acknowledge, p);
  ReadSenders(envp, out);
  ReadKernelDispatch(envp, out);
}

}  // namespace sbx::preload
