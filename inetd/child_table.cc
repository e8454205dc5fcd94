#include "inetd/child_table.h"

namespace sbx::inetd {

bool ChildTable::SourceHasRoom(const std::string& source) const {
  return max_per_source_ == 0 || source.empty() || CountFor(source) < max_per_source_;
}

void ChildTable::Add(pid_t pid, std::string source) {
  if (!source.empty()) ++per_source_[source];
  children_.emplace(pid, std::move(source));
}

bool ChildTable::Remove(pid_t pid) {
  auto it = children_.find(pid);
  if (it == children_.end()) return false;
  if (!it->second.empty()) {
    auto count = per_source_.find(it->second);
    if (count != per_source_.end() && --count->second == 0) per_source_.erase(count);
  }
  children_.erase(it);
  return true;
}

size_t ChildTable::CountFor(const std::string& source) const {
  auto it = per_source_.find(source);
  return it == per_source_.end() ? 0 : it->second;
}

}  // namespace sbx::inetd
