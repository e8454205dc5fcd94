// libFuzzer target: the receive side's parsing of what arrives with a
// message, as bytes. The input is one of:
//   0x00 + control data: TakeFirstFdCloseRest and SenderUidOf walk it. Every
//        SCM_RIGHTS slot the walk can see is first filled with a fresh fd of
//        our own, so the property is exact: the first one comes back open,
//        every other one is closed, and nothing else is touched.
//   0x01 + bytes: a registration request (DecodeRegisterRequest).
//   0x02 + bytes: a registration response (DecodeRegisterResponse).
// Both decoders must agree with their encoders on everything they accept.
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

  const int first = TakeFirstFdCloseRest(&msg);
  Check(first == (planted.empty() ? -1 : planted[0]), "the first planted fd is taken");
  for (size_t i = 1; i < planted.size(); ++i) {
    Check(!IsOpen(planted[i]), "every other planted fd is closed");
  }
  if (first >= 0) {
    Check(IsOpen(first), "the taken fd is open");
    ::close(first);
  }
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
    default:
      break;
  }
  return 0;
}
