// The preload's settings, read once from the environment at load time.
//
// Same variables and defaults as the original socketbox-preload (reference
// §5). Parsing is strict (port filters excepted: they are read as leniently
// as the original read them, with a warning line, see port_filter.h): a
// malformed value keeps the safe default for that setting and adds one line
// to `problems`, which the library prints once on stderr. A malformed port
// filter or directory marks that address class as broken: binds in it then
// fail with EINVAL / ENAMETOOLONG instead of silently becoming real TCP binds.
//
// Config is a plain value with fixed-size storage (no heap), so one lives in
// static storage of the host process and unit tests can build their own
// from an environ-style array.
#ifndef SBX_PRELOAD_ENV_CONFIG_H_
#define SBX_PRELOAD_ENV_CONFIG_H_

#include <limits.h>
#include <sys/un.h>

#include "engine/core/fd_passing.h"
#include "engine/core/sender_filter.h"
#include "preload/port_filter.h"

namespace sbx::preload {

// A directory setting (SKBOX_DIRECTORY_ROOT / SKBOX_DIRECTORY_ROOT2).
struct DirectorySetting {
  // Unset (or empty): the address class it serves is not intercepted.
  bool set = false;
  // Set but unusable (too long): binds that need it fail with ENAMETOOLONG.
  bool broken = false;
  char path[PATH_MAX] = {};
};

// A port filter setting; `broken` when the text was malformed.
struct FilterSetting {
  PortFilter filter;
  bool broken = false;
};

struct Problems {
  static constexpr int kMax = 16;
  static constexpr int kLineSize = 400;
  // Bytes of a malformed value shown in its line (escaped: PrintableText).
  static constexpr size_t kValueShown = 40;
  int count = 0;
  char lines[kMax][kLineSize] = {};

  // "VARIABLE="VALUE" is malformed: expected EXPECTED".
  void Add(const char* variable, const char* value, const char* expected);
  // "VARIABLE="VALUE" WHAT": a value that was read, with a warning.
  void Note(const char* variable, const char* value, const char* what);
};

struct Config {
  DirectorySetting directory_root;   // record files, X = 0/1
  DirectorySetting directory_root2;  // directory2 layout, X = 2/3, IPv4, wildcards
  FilterSetting filter_ipv6{PortFilter::Below(1024)};
  FilterSetting filter_ipv4;
  FilterSetting filter_ipv6_wildcard;
  FilterSetting filter_ipv4_wildcard;
  int connect_level = 0;        // SKBOX_ENABLE_CONNECT digit
  bool connect_ipv4 = false;    // SKBOX_ENABLE_CONNECT 'b': 127.180/15 too
  bool stealth = false;         // SKBOX_STEALTH_MODE
  bool clear_scope_id = false;  // SKBOX_CLEAR_SCOPE_ID
  int getpeername_protection = 2;
  bool accept_stream = false;  // SKBOX_ACCEPT_STREAM
  bool block_listen = true;    // SKBOX_BLOCK_LISTEN_EMPTY_ADDR
  StrictLevel strict = StrictLevel::kStreamInetUnix;
  bool sched_yield = false;  // SKBOX_SCHED_YIELD
  bool debug = false;        // SKBOX_DEBUG (ours): log each decision
  bool acknowledge = false;  // SKBOX_ACKNOWLEDGE (ours): receiver protocol acks
  SenderFilter senders;      // SKBOX_SENDER_UIDS (ours); malformed: refuse all
  // Kernel dispatch (ours): at listen(), ask the engine for the TCP listener
  // the kernel steers this backend's connections into (replace.h).
  bool kernel_dispatch = true;                                   // SKBOX_KERNEL_DISPATCH
  int kernel_dispatch_timeout_ms = 200;                          // SKBOX_KERNEL_DISPATCH_TIMEOUT_MS
  char listener_socket[sizeof(sockaddr_un::sun_path) + 1] = {};  // SKBOX_LISTENER_SOCKET
  Problems problems;
};

// Reads the settings from `envp` ("NAME=VALUE" strings, null-terminated, as
// `environ`). Writes into `*out` (a large object: callers keep it static).
void ParseConfig(const char* const* envp, Config* out);

}  // namespace sbx::preload

#endif  // SBX_PRELOAD_ENV_CONFIG_H_
