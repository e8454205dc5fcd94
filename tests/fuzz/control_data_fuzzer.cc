// libFuzzer target: the receive side's parsing of what arrives with a
// message, as bytes. The input is one of:
//   0x00 + control data: TakeFirstFdCloseRest and SenderUidOf walk it. Every
//        SCM_RIGHTS slot the walk can see is first filled with a fresh fd of
//        our own, so the property is exact: the first one comes back open,
//        every other one is closed, and nothing else is touched.
//   0x01 + bytes: a registration request (DecodeRegisterRequest).
//   0x02 + bytes: a registration response (DecodeRegisterResponse).
//   0x03 + bytes: a receiver protocol message (DecodeReceiverMessage).
// Every decoder must agree with its encoder on everything it accepts.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/core/control_data.h"
#include "engine/core/fd_passing.h"
#include "engine/core/receiver_protocol.h"
#include "engine/core/registration.h"
#include "engine/core/sender_filter.h"

namespace sbx {
namespace {

// More fds than this in one input are not planted (the slots get -1, which
// close() ignores): the fd table stays small and runs stay fast.
constexpr size_t kMaxPlanted = 64;

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "property violated: %s\n", what);
  std::abort();
}

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

void FuzzControlData(const uint8_t* data, size_t size) {
  // An exact-size heap copy: a read past its end is an AddressSanitizer
  // report. operator new aligns it for cmsghdr.
  std::vector<unsigned char> control(data, data + size);
  msghdr msg{};
  msg.msg_control = control.empty() ? nullptr : control.data();
  msg.msg_controllen = control.size();

  static const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  std::vector<int> planted;
  uid_t expected_uid = 0;
  bool has_credentials = false;
  for (cmsghdr* c = FirstCmsg(&msg); c != nullptr; c = NextCmsg(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    const size_t payload = CmsgPayloadBytes(&msg, c);
    if (c->cmsg_type == SCM_CREDENTIALS && payload >= sizeof(ucred) && !has_credentials) {
      ucred cred;
      std::memcpy(&cred, CMSG_DATA(c), sizeof(cred));
      expected_uid = cred.uid;
      has_credentials = true;
    }
    if (c->cmsg_type != SCM_RIGHTS) continue;
    for (size_t i = 0; i < payload / sizeof(int); ++i) {
      int fd = -1;
      if (planted.size() < kMaxPlanted) {
        fd = ::fcntl(null_fd, F_DUPFD_CLOEXEC, 0);
        Check(fd >= 0, "dup for planting");
        planted.push_back(fd);
      }
      std::memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof(int));
    }
  }

  uid_t uid = 0;
  const bool found = SenderUidOf(&msg, &uid);
  Check(found == has_credentials, "SenderUidOf finds the first SCM_CREDENTIALS");
  Check(!found || uid == expected_uid, "SenderUidOf returns its uid");

  // The receiver's limit (ReceiveFds' max) comes from the input's last
  // byte (often padding); 1 is TakeFirstFdCloseRest's case.
  const size_t max = size == 0 ? 1 : 1 + data[size - 1] % kMaxFdsPerMessage;
  int taken[kMaxFdsPerMessage];
  size_t count;
  if (max == 1) {
    taken[0] = TakeFirstFdCloseRest(&msg);
    count = taken[0] >= 0 ? 1 : 0;
  } else {
    count = TakeFdsCloseRest(&msg, taken, max);
  }
  Check(count == (planted.size() < max ? planted.size() : max), "min(fds, max) are taken");
  for (size_t i = 0; i < planted.size(); ++i) {
    if (i < count) {
      Check(taken[i] == planted[i], "the first planted fds are taken, in order");
      Check(IsOpen(taken[i]), "a taken fd is open");
      ::close(taken[i]);
    } else {
      Check(!IsOpen(planted[i]), "every other planted fd is closed");
    }
  }
}

void FuzzReceiverMessage(const uint8_t* data, size_t size) {
  ReceiverMessage m;
  if (!DecodeReceiverMessage(data, size, &m)) return;
  Check(m.kind == ReceiverMessageKind::kHello ? m.max_fds >= 1 && m.max_fds <= kMaxFdsPerMessage
                                              : m.count > 0,
        "a decoded message is in range");
  unsigned char encoded[kReceiverMessageBytes];
  EncodeReceiverMessage(m, encoded);
  Check(size == kReceiverMessageBytes && std::memcmp(encoded, data, size) == 0,
        "a decoded receiver message re-encodes to the same bytes");
}

void FuzzRegistration(bool request, const uint8_t* data, size_t size) {
  if (request) {
    const auto group = DecodeRegisterRequest(data, size);
    if (!group) return;
    const auto encoded = EncodeRegisterRequest(*group);
    Check(size == encoded.size() && std::memcmp(encoded.data(), data, size) == 0,
          "a decoded request re-encodes to the same bytes");
    return;
  }
  const auto success = DecodeRegisterResponse(data, size);
  if (!success) {
    Check(size < kRegisterResponseSize, "only short responses are malformed");
    return;
  }
  Check(*success == (data[0] == kRegisterSuccess), "success is byte 0 == 0x80");
  Check(EncodeRegisterResponse(*success)[0] == data[0] || !*success,
        "a successful response re-encodes its first byte");
}

}  // namespace
}  // namespace sbx

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  switch (data[0]) {
    case 0:
      sbx::FuzzControlData(data + 1, size - 1);
      break;
    case 1:
      sbx::FuzzRegistration(true, data + 1, size - 1);
      break;
    case 2:
      sbx::FuzzRegistration(false, data + 1, size - 1);
      break;
    case 3:
      sbx::FuzzReceiverMessage(data + 1, size - 1);
      break;
    default:
      break;
  }
  return 0;
}
