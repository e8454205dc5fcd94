// What each request of the io_uring worker is, as its user_data says
// (engine/sys/user_data.h): the operation in the top byte, then a slot or
// listener index, or a pointer to the state the completion belongs to.
// Shared by the worker and the parts it submits through (SendChain,
// AnswerReceives), so that the worker's completion switch names them all.
#ifndef SBX_ENGINE_DISPATCH_URING_OPS_H_
#define SBX_ENGINE_DISPATCH_URING_OPS_H_

#include <cstdint>

#include "engine/sys/user_data.h"

namespace sbx {

enum class UringOp : uint8_t {
  kAccept = 1,   // multishot, index: the listener
  kAcceptOne,    // single-shot with an address, index: listener, sub: its address slot
  kSend,         // SENDMSG, index: the dispatch slot of the message's first connection
  kLinkedClose,  // CLOSE behind a send (a completion only on failure), index: its slot
  kClose,        // CLOSE of a connection not delivered (a completion only on failure)
  kWake,         // READ of the worker's wake eventfd
  kRecv,         // RECVMSG on the -P registration channel
  kCancel,       // ASYNC_CANCEL
  kPoll,         // POLLOUT, pointer: the congested Backend
  kAnswer,       // RECV of a receiver's answers, pointer: its AnswerReceives entry
};

constexpr uint64_t UringTag(UringOp op, uint32_t index, uint32_t sub = 0) {
  return PackUserData(static_cast<uint8_t>(op), index, sub);
}
template <typename T>
uint64_t UringTag(UringOp op, const T* p) {
  return PackUserPointer(static_cast<uint8_t>(op), p);
}
constexpr UringOp UringOpOf(uint64_t user_data) {
  return static_cast<UringOp>(UserDataOp(user_data));
}

}  // namespace sbx

#endif  // SBX_ENGINE_DISPATCH_URING_OPS_H_
