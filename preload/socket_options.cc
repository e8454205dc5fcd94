#include "preload/socket_options.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cstring>
#include <iterator>

#include "engine/sys/unique_fd.h"

namespace sbx::preload {
namespace {

struct IntOption {
  int level;
  int name;
  // getsockopt reports twice the value given to setsockopt (kernel
  // bookkeeping overhead); halve what we read back before re-applying.
  bool doubled;
};

// Options an accepted TCP socket inherits from its listener.
constexpr IntOption kInherited[] = {
    {SOL_SOCKET, SO_KEEPALIVE, false},       {SOL_SOCKET, SO_RCVBUF, true},
    {SOL_SOCKET, SO_SNDBUF, true},           {SOL_SOCKET, SO_PRIORITY, false},
    {SOL_SOCKET, SO_RCVLOWAT, false},        {IPPROTO_TCP, TCP_NODELAY, false},
    {IPPROTO_TCP, TCP_KEEPIDLE, false},      {IPPROTO_TCP, TCP_KEEPINTVL, false},
    {IPPROTO_TCP, TCP_KEEPCNT, false},       {IPPROTO_TCP, TCP_USER_TIMEOUT, false},
    {IPPROTO_TCP, TCP_NOTSENT_LOWAT, false}, {IPPROTO_TCP, TCP_CORK, false},
};
static_assert(std::size(kInherited) <= 16);

int IndexOf(int level, int name) {
  for (size_t i = 0; i < std::size(kInherited); ++i) {
    if (kInherited[i].level == level && kInherited[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

bool ReadInt(int fd, int level, int name, int* value) {
  socklen_t len = sizeof(*value);
  return ::getsockopt(fd, level, name, value, &len) == 0 && len == sizeof(*value);
}

bool ReadLinger(int fd, linger* value) {
  socklen_t len = sizeof(*value);
  return ::getsockopt(fd, SOL_SOCKET, SO_LINGER, value, &len) == 0 && len == sizeof(*value);
}

}  // namespace

bool OptionSet::Record(int level, int name, const void* value, socklen_t len) {
  if (level == SOL_SOCKET && name == SO_LINGER) {
    if (value != nullptr && len >= sizeof(linger)) {
      std::memcpy(&linger_, value, sizeof(linger));
      has_linger_ = true;
    }
    return true;
  }
  const int index = IndexOf(level, name);
  if (index >= 0 && value != nullptr && len >= sizeof(int)) {
    std::memcpy(&values_[index], value, sizeof(int));
    present_ |= 1u << index;
    return true;
  }
  return level == IPPROTO_TCP || level == IPPROTO_IP || level == IPPROTO_IPV6;
}

OptionSet OptionSet::CaptureChanged(int fd, int family) {
  OptionSet set;
  UniqueFd fresh(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fresh) return set;
  for (size_t i = 0; i < std::size(kInherited); ++i) {
    const IntOption& o = kInherited[i];
    int now = 0;
    int usual = 0;
    if (!ReadInt(fd, o.level, o.name, &now) || !ReadInt(fresh.get(), o.level, o.name, &usual)) {
      continue;
    }
    if (now == usual) continue;
    set.values_[i] = o.doubled ? now / 2 : now;
    set.present_ |= 1u << i;
  }
  linger now{};
  linger usual{};
  if (ReadLinger(fd, &now) && ReadLinger(fresh.get(), &usual) &&
      (now.l_onoff != usual.l_onoff || now.l_linger != usual.l_linger)) {
    set.linger_ = now;
    set.has_linger_ = true;
  }
  return set;
}

void OptionSet::ApplyTo(int fd) const {
  for (size_t i = 0; i < std::size(kInherited); ++i) {
    if ((present_ & (1u << i)) == 0) continue;
    ::setsockopt(fd, kInherited[i].level, kInherited[i].name, &values_[i], sizeof(int));
  }
  if (has_linger_) ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger_, sizeof(linger_));
}

bool OptionSet::Has(int level, int name, int* value) const {
  const int index = IndexOf(level, name);
  if (index < 0 || (present_ & (1u << index)) == 0) return false;
  *value = values_[index];
  return true;
}

}  // namespace sbx::preload
