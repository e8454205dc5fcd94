#include "engine/core/sender_filter.h"

#include <cstring>

#include "engine/core/control_data.h"
#include "engine/core/numbers.h"

namespace sbx {

bool SenderFilter::Parse(std::string_view text, SenderFilter* out) {
  SenderFilter parsed;
  parsed.active_ = true;
  while (true) {
    const size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    // (uid_t)-1 is "no uid" to the kernel's calls: never a real sender.
    auto uid = ParseDecimal(item, 0, static_cast<uid_t>(-1) - 1);
    if (!uid || parsed.count_ == kMaxUids) {
      *out = RefuseAll();
      return false;
    }
    parsed.uids_[parsed.count_++] = static_cast<uid_t>(*uid);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  *out = parsed;
  return true;
}

SenderFilter SenderFilter::RefuseAll() {
  SenderFilter f;
  f.active_ = true;
  return f;
}

bool SenderFilter::Allows(uid_t uid) const {
  if (!active_) return true;
  for (size_t i = 0; i < count_; ++i) {
    if (uids_[i] == uid) return true;
  }
  return false;
}

bool SenderUidOf(msghdr* msg, uid_t* uid) {
  for (cmsghdr* c = FirstCmsg(msg); c != nullptr; c = NextCmsg(msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
        CmsgPayloadBytes(msg, c) >= sizeof(ucred)) {
      ucred cred;
      std::memcpy(&cred, CMSG_DATA(c), sizeof(cred));
      *uid = cred.uid;
      return true;
    }
  }
  return false;
}

int EnableSenderCredentials(int fd) {
  const int on = 1;
  return ::setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on));
}

}  // namespace sbx
