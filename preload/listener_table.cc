#include "preload/listener_table.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "preload/socket_identity.h"

namespace sbx::preload {
namespace {

constexpr int kCapacity = 128;

// Static storage, constant-initialized: no global constructor runs.
constinit pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;
constinit ListenerInfo g_entries[kCapacity];
// Fast path: most sockets in a process are never replaced.
constinit std::atomic<int> g_used{0};

void Lock() { pthread_mutex_lock(&g_mutex); }
void Unlock() { pthread_mutex_unlock(&g_mutex); }

// The live entry for fd, or null. Called with the mutex held.
ListenerInfo* FindLocked(int fd) {
  const int used = g_used.load(std::memory_order_relaxed);
  for (int i = 0; i < used; ++i) {
    ListenerInfo& e = g_entries[i];
    if (e.fd != fd) continue;
    dev_t dev;
    ino_t ino;
    if (IdentifySocket(fd, &dev, &ino) && dev == e.dev && ino == e.ino) return &e;
    e.fd = -1;  // stale: the program closed it and the fd was reused
    return nullptr;
  }
  return nullptr;
}

ListenerInfo* FreeSlotLocked() {
  const int used = g_used.load(std::memory_order_relaxed);
  for (int i = 0; i < used; ++i) {
    ListenerInfo& e = g_entries[i];
    dev_t dev;
    ino_t ino;
    if (e.fd < 0 || !IdentifySocket(e.fd, &dev, &ino) || dev != e.dev || ino != e.ino) return &e;
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

bool RecordListenerOption(int fd, int level, int name, const void* value, socklen_t len) {
  if (g_used.load(std::memory_order_acquire) == 0) return false;
  Lock();
  ListenerInfo* e = FindLocked(fd);
  const bool answered = e != nullptr && e->options.Record(level, name, value, len);
  Unlock();
  return answered;
}

}  // namespace sbx::preload
