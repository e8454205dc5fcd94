#include "preload/published_address.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace sbx::preload {
namespace {

constexpr char kPrefix[] = "socketbox-preload/";
constexpr char kHex[] = "0123456789abcdef";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// " @socketbox-preload/<ino>/" as /proc/net/unix shows an abstract name.
int Needle(ino_t ino, char* out, size_t size) {
  return std::snprintf(out, size, " @%s%llu/", kPrefix, static_cast<unsigned long long>(ino));
}

// The hex bytes after the needle, up to the end of the line.
bool ParseAddress(const char* p, const char* end, sockaddr_storage* out, socklen_t* len) {
  unsigned char bytes[sizeof(sockaddr_in6)];
  size_t n = 0;
  while (p + 1 < end && n < sizeof bytes) {
    const int hi = HexValue(p[0]);
    const int lo = HexValue(p[1]);
    if (hi < 0 || lo < 0) break;
    bytes[n++] = static_cast<unsigned char>(hi << 4 | lo);
    p += 2;
  }
  if (p < end && *p != '\n') return false;  // not all hex, or too long
  sa_family_t family;
  if (n < sizeof family) return false;
  std::memcpy(&family, bytes, sizeof family);
  const size_t want = family == AF_INET6  ? sizeof(sockaddr_in6)
                      : family == AF_INET ? sizeof(sockaddr_in)
                                          : 0;
  if (want == 0 || n != want) return false;
  std::memset(out, 0, sizeof *out);
  std::memcpy(out, bytes, n);
  *len = static_cast<socklen_t>(n);
  return true;
}

}  // namespace

bool PublishedName(ino_t ino, const sockaddr* addr, socklen_t len, char* out, size_t size) {
  if (len > sizeof(sockaddr_in6)) return false;
  const int head =
      std::snprintf(out, size, "%s%llu/", kPrefix, static_cast<unsigned long long>(ino));
  if (head < 0 || static_cast<size_t>(head) + 2 * len + 1 > size) return false;
  const auto* bytes = reinterpret_cast<const unsigned char*>(addr);
  char* p = out + head;
  for (socklen_t i = 0; i < len; ++i) {
    *p++ = kHex[bytes[i] >> 4];
    *p++ = kHex[bytes[i] & 0xf];
  }
  *p = '\0';
  return true;
}

int PublishAddress(ino_t ino, const sockaddr* addr, socklen_t len) {
  sockaddr_un name{};
  name.sun_family = AF_UNIX;
  // sun_path[0] stays NUL: an abstract name.
  if (!PublishedName(ino, addr, len, name.sun_path + 1, sizeof name.sun_path - 1)) return -1;
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const socklen_t name_len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + std::strlen(name.sun_path + 1));
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&name), name_len) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool FindPublishedIn(const char* text, size_t text_len, ino_t ino, sockaddr_storage* out,
                     socklen_t* len) {
  char needle[64];
  const int n = Needle(ino, needle, sizeof needle);
  if (n <= 0 || static_cast<size_t>(n) >= sizeof needle) return false;
  const char* end = text + text_len;
  for (const char* p = text; p + n <= end;) {
    const char* hit = static_cast<const char*>(memmem(p, static_cast<size_t>(end - p), needle, n));
    if (hit == nullptr) return false;
    const char* line_end = static_cast<const char*>(memchr(hit, '\n', end - hit));
    if (line_end == nullptr) line_end = end;
    if (ParseAddress(hit + n, line_end, out, len)) return true;
    p = hit + n;
  }
  return false;
}

bool FindPublished(ino_t ino, sockaddr_storage* out, socklen_t* len) {
  const int fd = ::open("/proc/net/unix", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  // Whole lines only: the unfinished last line of a piece moves to the front.
  char buffer[16384];
  size_t kept = 0;
  bool found = false;
  for (;;) {
    const ssize_t got = ::read(fd, buffer + kept, sizeof buffer - kept);
    if (got <= 0) {
      found = kept > 0 && FindPublishedIn(buffer, kept, ino, out, len);
      break;
    }
    const size_t filled = kept + static_cast<size_t>(got);
    const char* last_newline = static_cast<const char*>(memrchr(buffer, '\n', filled));
    const size_t whole =
        last_newline == nullptr ? 0 : static_cast<size_t>(last_newline - buffer) + 1;
    if (whole > 0 && FindPublishedIn(buffer, whole, ino, out, len)) {
      found = true;
      break;
    }
    kept = filled - whole;
    if (kept == sizeof buffer) kept = 0;  // a line longer than the buffer: not ours
    std::memmove(buffer, buffer + whole, kept);
  }
  ::close(fd);
  return found;
}

}  // namespace sbx::preload
