// Which bind()/connect() addresses the preload redirects, and where to.
//
// Pure logic over the caller's sockaddr and the Config (reference §5.1); the
// socket itself is checked by the caller (only SOCK_STREAM AF_INET/AF_INET6
// sockets are redirected to Unix sockets; the fe8f:1:: link-local form works
// for any socket). Unlike the original, any address length at least the
// size of sockaddr_in / sockaddr_in6 is understood (sockaddr_storage).
#ifndef SBX_PRELOAD_ADDRESS_PLAN_H_
#define SBX_PRELOAD_ADDRESS_PLAN_H_

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>

#include "preload/env_config.h"

namespace sbx::preload {

enum class Operation { kBind, kConnect };

// Where the Unix socket path comes from.
struct UnixTarget {
  enum class Source {
    kRecordFile,  // $SKBOX_DIRECTORY_ROOT/skbox_dir_<a>, record <b>
    kDirectory2,  // $SKBOX_DIRECTORY_ROOT2/<a>/<b>_<port>
  };
  Source source = Source::kRecordFile;
  bool stream = false;  // SOCK_STREAM Unix socket (else SOCK_DGRAM, "A" protocol)
  uint16_t a = 0;       // record file number / first directory2 component
  uint16_t b = 0;       // record number / second directory2 component
  uint16_t port = 0;
  bool x_prefix = false;  // directory2: first digit of <a> written as 'X'
};

struct Plan {
  enum class Kind {
    kPassThrough,   // the real call with the caller's arguments
    kLinkLocal,     // the real call with `link_local` (fe8f:1:S:S:I:I:I:I)
    kUnix,          // replace the socket by a Unix socket at `target`
    kFail,          // fail with `error` (a setting this address needs is broken)
    kUnredirected,  // a bind to fe8f::X:... (X 0..3) that is not redirected: the
                    // real call (the kernel refuses it), but say why first
  };
  // Why a kUnredirected bind was not redirected; `variable` is the setting
  // that would let it through.
  enum class Why { kUnset, kFiltered, kPortZero };
  Kind kind = Kind::kPassThrough;
  int error = 0;
  Why why = Why::kUnset;
  const char* variable = nullptr;
  sockaddr_in6 link_local{};
  UnixTarget target;
};

Plan PlanAddress(const sockaddr* addr, socklen_t len, Operation op, const Config& config);

}  // namespace sbx::preload

#endif  // SBX_PRELOAD_ADDRESS_PLAN_H_
