// libFuzzer target: ReceiveFd on real kernel sockets. The input scripts a
// channel and the messages a sender puts on it; the harness sends them for
// real (sendmsg with SCM_RIGHTS) and receives with ReceiveFd until the queue
// is empty, then once more after the sender has gone. Properties:
//  - every fd returned passes the strict level and is one that was sent;
//  - on datagram and seqpacket channels, exactly one fd per message whose
//    first fd passes the level (and whose sender the filter allows) comes
//    back, in order;
//  - EAGAIN while the sender is there; after it has gone, EAGAIN on a
//    datagram channel and ENOLINK on the others;
//  - afterwards no fd is left open that was not open before.
// Input: byte 0 = channel type (bits 0-1: dgram, seqpacket, stream), strict
// level (bits 2-3), sender filter (bit 4: on, allowing only another uid,
// so every message is refused); then one byte per message (at most 16):
// payload length (bits 0-2), fd count (bits 3-4: 0, 1, 2, or 70, past
// what the receive buffer holds), kind of the first fd (bits 5-7).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/core/fd_passing.h"
#include "engine/core/sender_filter.h"

namespace sbx {
namespace {

constexpr size_t kMaxMessages = 16;
constexpr int kTypes[] = {SOCK_DGRAM, SOCK_SEQPACKET, SOCK_STREAM};

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "property violated: %s\n", what);
  std::abort();
}

int OpenFds() {
  int n = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  Check(dir != nullptr, "/proc/self/fd readable");
  while (const dirent* e = ::readdir(dir)) n += e->d_name[0] != '.';
  ::closedir(dir);
  return n - 1;  // the directory's own fd
}

ino_t Inode(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

// A fresh fd of one of the kinds a sender might pass.
UniqueFd MakeFd(int kind) {
  int pair[2];
  switch (kind) {
    case 0:
      return UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    case 1:
      return UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));  // unconnected
    case 2: {
      // Bound to a kernel-chosen abstract name (autobind), then listening.
      UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      const sockaddr_un unnamed{AF_UNIX, {}};
      Check(::bind(listener.get(), reinterpret_cast<const sockaddr*>(&unnamed),
                   sizeof(sa_family_t)) == 0 &&
                ::listen(listener.get(), 1) == 0,
            "autobind and listen");
      return listener;
    }
    case 3:
      return UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    default:  // a connection: one end of a connected stream pair
      Check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0, "socketpair");
      ::close(pair[1]);
      return UniqueFd(pair[0]);
  }
}

struct Message {
  std::vector<UniqueFd> fds;
  size_t payload = 0;
};

bool Send(int channel, const Message& m) {
  unsigned char payload[8] = {};
  iovec iov{payload, m.payload};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<unsigned char> control(CMSG_SPACE(sizeof(int) * (m.fds.empty() ? 1 : m.fds.size())));
  if (!m.fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * m.fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * m.fds.size());
    for (size_t i = 0; i < m.fds.size(); ++i) {
      const int fd = m.fds[i].get();
      std::memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof(int));
    }
  }
  return ::sendmsg(channel, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0;
}

void Run(const uint8_t* data, size_t size) {
  const int type = kTypes[(data[0] & 3) % 3];
  const auto level = static_cast<StrictLevel>(((data[0] >> 2) & 3) % 3);
  const bool refuse_all = (data[0] & 16) != 0;
  const int baseline = OpenFds();
  {
    int pair[2];
    Check(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, pair) == 0, "channel");
    UniqueFd sender(pair[0]), receiver(pair[1]);
    SenderFilter filter;
    if (refuse_all) {
      Check(SenderFilter::Parse(std::to_string(::getuid() + 1), &filter), "filter");
      Check(EnableSenderCredentials(receiver.get()) == 0, "SO_PASSCRED");
    }
    std::vector<ino_t> expected;  // inodes of first fds that should come back
    std::vector<ino_t> sent;
    for (size_t i = 1; i < size && i <= kMaxMessages; ++i) {
      Message m;
      m.payload = data[i] & 7;
      const int counts[] = {0, 1, 2, 70};
      const int count = counts[(data[i] >> 3) & 3];
      for (int k = 0; k < count; ++k) m.fds.push_back(MakeFd(k == 0 ? data[i] >> 5 : 0));
      // A stream channel cannot carry fds without a byte of payload.
      if (type == SOCK_STREAM && m.payload == 0) m.payload = 1;
      if (!Send(sender.get(), m)) break;  // channel full: the rest is not sent
      for (const UniqueFd& fd : m.fds) sent.push_back(Inode(fd.get()));
      if (!m.fds.empty() && !refuse_all && FdPassesStrictLevel(m.fds[0].get(), level)) {
        expected.push_back(Inode(m.fds[0].get()));
      }
    }
    ReceiveOptions options;
    options.strict = level;
    options.recv_flags = MSG_DONTWAIT;
    options.senders = refuse_all ? &filter : nullptr;
    std::vector<ino_t> got;
    // Everything queued, with the sender still there; then it goes away.
    auto receive_all = [&] {
      while (true) {
        auto received = ReceiveFd(receiver.get(), options);
        if (!received.ok()) return received.error();
        Check(FdPassesStrictLevel(received->get(), level), "a returned fd passes the level");
        got.push_back(Inode(received->get()));
        bool known = false;
        for (ino_t s : sent) known = known || s == got.back();
        Check(known, "a returned fd is one that was sent");
      }
    };
    Check(receive_all() == EAGAIN, "EAGAIN while the sender is there");
    sender.Reset();
    const int end = receive_all();
    Check(end == (type == SOCK_DGRAM ? EAGAIN : ENOLINK), "EAGAIN on datagrams, ENOLINK else");
    if (type != SOCK_STREAM) Check(got == expected, "one fd per passing message, in order");
  }
  Check(OpenFds() == baseline, "no fd leaked");
}

}  // namespace
}  // namespace sbx

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 0) sbx::Run(data, size);
  return 0;
}
