// The registration protocol (reference §4.2): a client connects to a
// SOCK_SEQPACKET control socket, sends an 8-byte request (byte 0 = 1, bytes
// 1-3 = 0, bytes 4-7 = group, big-endian), reads a 4-byte response (byte 0 =
// 0x80 on success), then receives one socket per message on the same
// connection, "A"-protocol style, until the server goes away (ENOLINK).
//
// Free of abseil and exceptions: the inetd tools and the preload use it too.
#ifndef SBX_ENGINE_CORE_REGISTRATION_H_
#define SBX_ENGINE_CORE_REGISTRATION_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "engine/sys/sys_result.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

inline constexpr size_t kRegisterRequestSize = 8;
inline constexpr size_t kRegisterResponseSize = 4;
inline constexpr uint8_t kRegisterCommand = 1;
inline constexpr uint8_t kRegisterSuccess = 0x80;
// What the reference server (python-socketbox) sends with each socket.
inline constexpr std::array<uint8_t, 4> kRegisteredFdPayload = {3, 0, 0, 0};

std::array<uint8_t, kRegisterRequestSize> EncodeRegisterRequest(uint32_t group);
// The group, or nullopt if `data` is not a well-formed request.
std::optional<uint32_t> DecodeRegisterRequest(const uint8_t* data, size_t size);

std::array<uint8_t, kRegisterResponseSize> EncodeRegisterResponse(bool success);
// nullopt if malformed; else whether the server accepted.
std::optional<bool> DecodeRegisterResponse(const uint8_t* data, size_t size);

// How long a registration waits for the server's answer: a server that
// accepts the connection but never answers must not hang the caller.
inline constexpr int kRegisterTimeoutMs = 10'000;

// Connects to the control socket at `path`, registers as `group` and returns
// the connection, ready for ReceiveFd. Errors: those of socket/connect;
// EPROTO for a malformed or missing response; EACCES when refused;
// ETIMEDOUT when no answer came within `timeout_ms`. `sender_credentials`
// turns on SO_PASSCRED before connecting, so that every socket the server
// sends carries its uid for a SenderFilter.
SysResult<UniqueFd> RegisterWithServer(std::string_view path, uint32_t group,
                                       int timeout_ms = kRegisterTimeoutMs,
                                       bool sender_credentials = false);

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_REGISTRATION_H_
