// The 64 bits of an io_uring request's user_data, as this project uses
// them: an operation code in the top byte, then either a 24-bit sub-index
// and a 32-bit index, or a user-space pointer (x86-64 and arm64 user
// addresses fit in 56 bits).
#ifndef SBX_ENGINE_SYS_USER_DATA_H_
#define SBX_ENGINE_SYS_USER_DATA_H_

#include <cstdint>

namespace sbx {

inline constexpr uint64_t kUserDataPointerMask = (uint64_t{1} << 56) - 1;

constexpr uint64_t PackUserData(uint8_t op, uint32_t index, uint32_t sub = 0) {
  return static_cast<uint64_t>(op) << 56 | static_cast<uint64_t>(sub & 0xffffff) << 32 | index;
}
constexpr uint8_t UserDataOp(uint64_t data) { return static_cast<uint8_t>(data >> 56); }
constexpr uint32_t UserDataIndex(uint64_t data) { return static_cast<uint32_t>(data); }
constexpr uint32_t UserDataSub(uint64_t data) {
  return static_cast<uint32_t>(data >> 32) & 0xffffff;
}

template <typename T>
uint64_t PackUserPointer(uint8_t op, const T* p) {
  return static_cast<uint64_t>(op) << 56 | reinterpret_cast<uintptr_t>(p);
}
template <typename T>
T* UserDataPointer(uint64_t data) {
  return reinterpret_cast<T*>(static_cast<uintptr_t>(data & kUserDataPointerMask));
}

static_assert(UserDataOp(PackUserData(9, 7, 5)) == 9);
static_assert(UserDataIndex(PackUserData(9, 7, 5)) == 7);
static_assert(UserDataSub(PackUserData(9, 7, 5)) == 5);

}  // namespace sbx

#endif  // SBX_ENGINE_SYS_USER_DATA_H_
