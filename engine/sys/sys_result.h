// SysResult<T>: a value or the errno of the call that failed, captured at the
// call site so that nobody reads the global errno later.
//
// Free of abseil and exceptions: the preload library links it too.
#ifndef SBX_ENGINE_SYS_SYS_RESULT_H_
#define SBX_ENGINE_SYS_SYS_RESULT_H_

#include <cerrno>
#include <utility>

namespace sbx {

template <typename T>
class [[nodiscard]] SysResult {
 public:
  SysResult(T value) : value_(std::move(value)) {}  // NOLINT: implicit on purpose
  static SysResult Error(int err) { return SysResult(err, 0); }
  // The errno left by the call that just failed.
  static SysResult FromErrno() { return Error(errno); }

  bool ok() const { return err_ == 0; }
  int error() const { return err_; }
  T& value() { return value_; }
  const T& value() const { return value_; }
  T& operator*() { return value_; }
  T* operator->() { return &value_; }

 private:
  SysResult(int err, int /*tag*/) : value_(), err_(err == 0 ? EIO : err) {}
  T value_{};
  int err_ = 0;
};

// For calls that return nothing but success or an errno.
struct Ok {};
using SysStatus = SysResult<Ok>;

}  // namespace sbx

#endif  // SBX_ENGINE_SYS_SYS_RESULT_H_
