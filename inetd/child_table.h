// The running children and the limits on them (-c, -C).
//
// Each child is recorded with its source key (the remote IP address as text,
// or empty for sources that are not limited, e.g. AF_UNIX peers). Remove is
// called for every reaped pid, so a slot is never leaked even when the child
// failed (the systemd#20685 fault). Single-threaded: owned by the main loop.
#ifndef SBX_INETD_CHILD_TABLE_H_
#define SBX_INETD_CHILD_TABLE_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <unordered_map>

namespace sbx::inetd {

class ChildTable {
 public:
  // 0 means no limit.
  ChildTable(uint64_t max_children, uint64_t max_per_source)
      : max_children_(max_children), max_per_source_(max_per_source) {}

  // Whether another child may start at all (-c): the loop stops receiving
  // while this is false.
  bool HasRoom() const { return max_children_ == 0 || children_.size() < max_children_; }
  // Whether another child may start for `source` (-C).
  bool SourceHasRoom(const std::string& source) const;

  void Add(pid_t pid, std::string source);
  // False if `pid` was not ours (e.g. a grandchild reparented to us).
  bool Remove(pid_t pid);

  size_t size() const { return children_.size(); }
  size_t CountFor(const std::string& source) const;

 private:
  uint64_t max_children_;
  uint64_t max_per_source_;
  std::unordered_map<pid_t, std::string> children_;
  std::unordered_map<std::string, size_t> per_source_;
};

}  // namespace sbx::inetd

#endif  // SBX_INETD_CHILD_TABLE_H_
