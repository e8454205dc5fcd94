// Which users may pass sockets to a receiver (the original's fault 13:
// anyone who can write to a backend socket file can inject connections).
//
// A receiver that is given SKBOX_SENDER_UIDS=UID[,UID...] turns on
// SO_PASSCRED on its receiving socket: the kernel then stamps every message
// with the sending process's credentials (translated into the receiver's
// user namespace; it cannot be forged by the sender), and a message from any
// other uid, or without credentials, is refused: its fds are closed unread.
// Unset, every sender is accepted, as the original did (file permissions
// are the only guard).
//
// Fixed-size and free of abseil and exceptions: the preload library keeps
// one in static storage.
#ifndef SBX_ENGINE_CORE_SENDER_FILTER_H_
#define SBX_ENGINE_CORE_SENDER_FILTER_H_

#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>
#include <string_view>

namespace sbx {

inline constexpr char kSenderUidsVariable[] = "SKBOX_SENDER_UIDS";

class SenderFilter {
 public:
  static constexpr size_t kMaxUids = 16;

  // Parses "0,998" (decimal uids below 2^32-1, comma-separated, 1 to
  // kMaxUids of them, no spaces). False if malformed; `*out` is then a
  // filter that refuses every sender (a broken allow-list fails closed).
  static bool Parse(std::string_view text, SenderFilter* out);

  // A filter that refuses everyone (what a malformed setting becomes).
  static SenderFilter RefuseAll();

  bool active() const { return active_; }
  bool Allows(uid_t uid) const;

 private:
  bool active_ = false;
  size_t count_ = 0;
  uid_t uids_[kMaxUids] = {};
};

// The sender's uid from the SCM_CREDENTIALS of a received `msg`; false if
// the message carries none (the receiving socket had no SO_PASSCRED).
bool SenderUidOf(msghdr* msg, uid_t* uid);

// Turns on SO_PASSCRED on `fd`: 0, or -1 with errno.
int EnableSenderCredentials(int fd);

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_SENDER_FILTER_H_
