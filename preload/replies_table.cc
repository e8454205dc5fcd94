#include "preload/replies_table.h"

#include <cerrno>
#include <optional>

#include "preload/socket_identity.h"

namespace sbx::preload {
namespace {

constexpr int kCapacity = 32;

struct Entry {
  int fd = -1;
  dev_t dev = 0;
  ino_t ino = 0;
  std::optional<SenderReplies> replies;  // constant-initialized while empty
};

// Static storage, constant-initialized: no global constructor runs.
constinit pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;
constinit Entry g_entries[kCapacity];

void Lock() { pthread_mutex_lock(&g_mutex); }
void Unlock() { pthread_mutex_unlock(&g_mutex); }

bool Live(const Entry& e) {
  dev_t dev;
  ino_t ino;
  return e.fd >= 0 && IdentifySocket(e.fd, &dev, &ino) && dev == e.dev && ino == e.ino;
}

// Called with the mutex held.
Entry* FindOrClaimLocked(int fd, dev_t dev, ino_t ino) {
  Entry* free_slot = nullptr;
  for (Entry& e : g_entries) {
    if (e.fd == fd && e.dev == dev && e.ino == ino) return &e;
    if (free_slot == nullptr && !Live(e)) free_slot = &e;
  }
  if (free_slot == nullptr) return nullptr;
  // A new socket (or a reused fd) starts afresh: a hello to every sender.
  free_slot->fd = fd;
  free_slot->dev = dev;
  free_slot->ino = ino;
  free_slot->replies.emplace(kPreloadCapabilities);
  return free_slot;
}

}  // namespace

void InstallRepliesTableForkHandlers() {
  // The child of a fork taken while another thread held the mutex would
  // otherwise inherit it locked forever.
  pthread_atfork(Lock, Unlock, Unlock);
}

SharedReplies RepliesFor(int fd, int relay) {
  const int saved = errno;
  SharedReplies out;
  dev_t dev;
  ino_t ino;
  if (IdentifySocket(fd, &dev, &ino)) {
    Lock();
    Entry* e = FindOrClaimLocked(fd, dev, ino);
    // The pointer outlives the lock: an entry is only reclaimed once its fd
    // no longer names its socket, i.e. after the program closed the socket
    // that a thread may still be receiving on (its bookkeeping then mixes
    // with the new socket's, under the mutex: harmless).
    if (e != nullptr) {
      e->replies->set_relay(relay);
      out = {&*e->replies, &g_mutex};
    }
    Unlock();
  }
  errno = saved;
  return out;
}

}  // namespace sbx::preload
