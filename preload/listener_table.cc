#include "preload/listener_table.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "preload/published_address.h"
#include "preload/socket_identity.h"

namespace sbx::preload {
namespace {

constexpr int kCapacity = 128;

// Static storage, constant-initialized: no global constructor runs.
constinit pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;
constinit ListenerInfo g_entries[kCapacity];
// Fast path: most sockets in a process are never replaced.
constinit std::atomic<int> g_used{0};
// Live-or-not-yet-found-stale kernel entries.
constinit std::atomic<int> g_kernel{0};
// The fd of each kernel entry plus one (0: none), by slot, read without the
// mutex: the calls that only care about kernel entries (epoll_ctl, poll)
// take the mutex only for an fd number that matches.
constinit std::atomic<int> g_kernel_fd[kCapacity] = {};

void Lock() { pthread_mutex_lock(&g_mutex); }
void Unlock() { pthread_mutex_unlock(&g_mutex); }

bool Names(int fd, dev_t want_dev, ino_t want_ino) {
  dev_t dev;
  ino_t ino;
  return fd >= 0 && IdentifySocket(fd, &dev, &ino) && dev == want_dev && ino == want_ino;
}

bool Names(const OwnedSocket& s) { return Names(s.fd, s.dev, s.ino); }

void CloseOwned(const OwnedSocket& s) {
  if (Names(s)) ::close(s.fd);
}

bool Own(int fd, OwnedSocket* out) {
  out->fd = fd;
  return fd < 0 || IdentifySocket(fd, &out->dev, &out->ino);
}

// Forgets entry `e`. A kernel entry's receiving socket and channel are
// closed (if their fds still name them): the program closed the listener,
// so the engine learns it is no longer served from this process.
void DropLocked(ListenerInfo& e) {
  if (e.kernel) {
    CloseOwned(e.receiving);
    CloseOwned(e.channel);
    CloseOwned(e.published);
    g_kernel.fetch_sub(1, std::memory_order_relaxed);
    g_kernel_fd[&e - g_entries].store(0, std::memory_order_relaxed);
  }
  e = ListenerInfo{};
}

// The live entry for fd, or null. Called with the mutex held.
ListenerInfo* FindLocked(int fd) {
  const int used = g_used.load(std::memory_order_relaxed);
  for (int i = 0; i < used; ++i) {
    ListenerInfo& e = g_entries[i];
    if (e.fd != fd) continue;
    if (Names(fd, e.dev, e.ino)) return &e;
    DropLocked(e);  // stale: the program closed it and the fd was reused
    return nullptr;
  }
  return nullptr;
}

ListenerInfo* FreeSlotLocked() {
  const int used = g_used.load(std::memory_order_relaxed);
  for (int i = 0; i < used; ++i) {
    ListenerInfo& e = g_entries[i];
    if (e.fd < 0) return &e;
    if (!Names(e.fd, e.dev, e.ino)) {
      DropLocked(e);
      return &e;
    }
  }
  if (used == kCapacity) return nullptr;
  g_used.store(used + 1, std::memory_order_release);
  return &g_entries[used];
}

}  // namespace

void InstallListenerTableForkHandlers() {
  // The child of a fork taken while another thread held the mutex would
  // otherwise inherit it locked forever.
  pthread_atfork(Lock, Unlock, Unlock);
}

bool RememberListener(int fd, const sockaddr* addr, socklen_t len, const OptionSet& options) {
  dev_t dev;
  ino_t ino;
  if (!IdentifySocket(fd, &dev, &ino)) return false;
  Lock();
  ListenerInfo* slot = FindLocked(fd);
  if (slot == nullptr) slot = FreeSlotLocked();
  if (slot != nullptr) {
    slot->fd = fd;
    slot->dev = dev;
    slot->ino = ino;
    slot->bound_len = std::min<socklen_t>(len, sizeof(slot->bound));
    std::memset(&slot->bound, 0, sizeof(slot->bound));
    std::memcpy(&slot->bound, addr, slot->bound_len);
    slot->options = options;
  }
  Unlock();
  return slot != nullptr;
}

bool FindListener(int fd, ListenerInfo* out) {
  if (g_used.load(std::memory_order_acquire) == 0) return false;
  Lock();
  const ListenerInfo* e = FindLocked(fd);
  if (e != nullptr) *out = *e;
  Unlock();
  return e != nullptr;
}

bool InstallKernelListener(int fd, int listener, int dup3_flags, int receiving_fd, int channel_fd) {
  ListenerInfo incoming;
  if (receiving_fd < 0 || channel_fd < 0 || !Own(receiving_fd, &incoming.receiving) ||
      !Own(channel_fd, &incoming.channel)) {
    return false;
  }
  Lock();
  ListenerInfo* slot = FindLocked(fd);
  if (slot != nullptr) {
    incoming.bound = slot->bound;
    incoming.bound_len = slot->bound_len;
    incoming.options = slot->options;
  } else {
    slot = FreeSlotLocked();
  }
  bool done = false;
  if (slot != nullptr && ::dup3(listener, fd, dup3_flags) == fd &&
      IdentifySocket(fd, &incoming.dev, &incoming.ino)) {
    incoming.fd = fd;
    incoming.kernel = true;
    if (incoming.bound_len > 0) {
      const int published = PublishAddress(
          incoming.ino, reinterpret_cast<const sockaddr*>(&incoming.bound), incoming.bound_len);
      if (!Own(published, &incoming.published)) {
        ::close(published);
        incoming.published = OwnedSocket{};
      }
    }
    *slot = incoming;
    g_kernel_fd[slot - g_entries].store(fd + 1, std::memory_order_relaxed);
    g_kernel.fetch_add(1, std::memory_order_release);
    done = true;
  } else if (slot != nullptr && slot->fd != fd) {
    *slot = ListenerInfo{};  // a fresh slot left unused
  }
  Unlock();
  return done;
}

void NoteKernelError(int fd, int error) {
  Lock();
  ListenerInfo* e = FindLocked(fd);
  if (e != nullptr) e->kernel_error = error;
  Unlock();
}

bool AdoptKernelListener(int fd, const sockaddr* addr, socklen_t len) {
  ListenerInfo incoming;
  if (!IdentifySocket(fd, &incoming.dev, &incoming.ino)) return false;
  incoming.fd = fd;
  incoming.kernel = true;
  incoming.bound_len = std::min<socklen_t>(len, sizeof(incoming.bound));
  std::memcpy(&incoming.bound, addr, incoming.bound_len);
  Lock();
  if (FindLocked(fd) != nullptr) {  // known already
    Unlock();
    return false;
  }
  ListenerInfo* slot = FreeSlotLocked();
  if (slot != nullptr) {
    *slot = incoming;
    g_kernel_fd[slot - g_entries].store(fd + 1, std::memory_order_relaxed);
    g_kernel.fetch_add(1, std::memory_order_release);
  }
  Unlock();
  return slot != nullptr;
}

bool KernelListenersExist() { return g_kernel.load(std::memory_order_acquire) > 0; }

bool PeekKernelListener(int fd, ListenerInfo* out) {
  if (!KernelListenersExist()) return false;
  const int used = g_used.load(std::memory_order_acquire);
  bool maybe = false;
  for (int i = 0; i < used && !maybe; ++i) {
    maybe = g_kernel_fd[i].load(std::memory_order_relaxed) == fd + 1;
  }
  if (!maybe) return false;
  Lock();
  bool found = false;
  for (int i = 0; i < used && !found; ++i) {
    if (g_entries[i].fd == fd && g_entries[i].kernel) {
      *out = g_entries[i];
      found = true;
    }
  }
  Unlock();
  return found;
}

bool IsLive(const ListenerInfo& info) {
  if (Names(info.fd, info.dev, info.ino)) return true;
  Lock();
  FindLocked(info.fd);  // drops the stale entry
  Unlock();
  return false;
}

bool ReceivingIsLive(const ListenerInfo& info) { return Names(info.receiving); }

bool RecordListenerOption(int fd, int level, int name, const void* value, socklen_t len) {
  if (g_used.load(std::memory_order_acquire) == 0) return false;
  Lock();
  ListenerInfo* e = FindLocked(fd);
  const bool answered = e != nullptr && e->options.Record(level, name, value, len);
  Unlock();
  return answered;
}

}  // namespace sbx::preload
