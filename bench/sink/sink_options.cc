#include "bench/sink/sink_options.h"

#include <cstdio>
#include <string_view>

#include "bench/common/args.h"
#include "engine/core/receiver_protocol.h"

namespace sbx::bench {
namespace {

constexpr char kUsage[] =
    "usage: sink [--backend NAME=PATH]... [--register NAME=GROUP:CTLPATH]...\n"
    "            [--listen NAME=[ADDR]:PORT]... [--threads N] [--lifetime S]\n"
    "            [--recv-depth N] [--max-fds N] [--ack]\n"
    "            [--take-listener [--listener-socket PATH]]\n"
    "Greets every socket it receives or accepts with NAME, closes it, and counts\n"
    "per NAME. Prints 'ready' once listening, a JSON summary on SIGUSR1 and at\n"
    "exit (SIGTERM, SIGINT, or after --lifetime seconds, default 600).\n"
    "--max-fds N (1..64) and --ack speak the receiver protocol on --backend\n"
    "sockets (docs/receiver-protocol.md).\n"
    "--take-listener asks the engine (at --listener-socket, $SKBOX_LISTENER_SOCKET\n"
    "or /run/socketbox/listeners.sock) for each --backend socket's listener\n"
    "(kernel dispatch) and accepts from it beside receiving on the socket.\n";

bool Fail(const char* what, std::string_view arg) {
  std::fprintf(stderr, "sink: %s: '%.*s'\n%s", what, static_cast<int>(arg.size()), arg.data(),
               kUsage);
  return false;
}

bool ParseSource(std::string_view flag, std::string_view arg, SinkOptions& options) {
  auto assign = SplitAssign(arg);
  if (!assign) return Fail("expected NAME=VALUE", arg);
  SinkSource source;
  source.name = std::string(assign->first);
  std::string_view value = assign->second;
  if (source.name.size() > 64) return Fail("backend name longer than 64 bytes", arg);
  if (flag == "--backend") {
    source.kind = SinkSource::Kind::kDatagram;
    source.path = std::string(value);
  } else if (flag == "--register") {
    source.kind = SinkSource::Kind::kRegister;
    size_t colon = value.find(':');
    auto group = colon == std::string_view::npos ? std::nullopt
                                                 : ParseUint(value.substr(0, colon), 0, UINT32_MAX);
    if (!group || colon + 1 == value.size()) return Fail("expected NAME=GROUP:CTLPATH", arg);
    source.group = static_cast<uint32_t>(*group);
    source.path = std::string(value.substr(colon + 1));
  } else {
    source.kind = SinkSource::Kind::kListen;
    auto address = ParseHostPort(value);
    if (!address || address->port == 0) return Fail("expected NAME=[ADDR]:PORT", arg);
    source.address = *address;
  }
  if (source.kind != SinkSource::Kind::kListen && source.path.size() >= 108) {
    return Fail("socket path too long", arg);
  }
  options.sources.push_back(std::move(source));
  return true;
}

}  // namespace

std::optional<SinkOptions> ParseSinkOptions(int argc, char** argv, int* exit_code) {
  SinkOptions options;
  const bool parsed =
      ForEachFlagValue(argc, argv, kUsage, exit_code,
                       [&](std::string_view flag, std::string_view arg) -> bool {
                         if (flag == "--backend" || flag == "--register" || flag == "--listen") {
                           return ParseSource(flag, arg, options);
                         }
                         if (flag == "--threads") {
                           auto n = ParseUint(arg, 1, 64);
                           if (!n) return Fail("--threads wants 1..64", arg);
                           options.threads = static_cast<unsigned>(*n);
                           return true;
                         }
                         if (flag == "--recv-depth") {
                           auto n = ParseUint(arg, 1, 64);
                           if (!n) return Fail("--recv-depth wants 1..64", arg);
                           options.recv_depth = static_cast<unsigned>(*n);
                           return true;
                         }
                         if (flag == "--ack") {
                           options.ack = true;
                           return true;
                         }
                         if (flag == "--take-listener") {
                           options.take_listener = true;
                           return true;
                         }
                         if (flag == "--listener-socket") {
                           if (arg.empty() || arg.size() >= 108) {
                             return Fail("--listener-socket wants a socket path", arg);
                           }
                           options.listener_socket = std::string(arg);
                           return true;
                         }
                         if (flag == "--max-fds") {
                           auto n = ParseUint(arg, 1, kMaxFdsPerMessage);
                           if (!n) return Fail("--max-fds wants 1..64", arg);
                           options.max_fds = static_cast<unsigned>(*n);
                           return true;
                         }
                         if (flag == "--lifetime") {
                           auto seconds = ParseSeconds(arg);
                           if (!seconds || *seconds <= 0)
                             return Fail("--lifetime wants seconds > 0", arg);
                           options.lifetime_s = *seconds;
                           return true;
                         }
                         return Fail("unknown option", flag);
                       },
                       Fail, {"--ack", "--take-listener"});
  if (!parsed) return std::nullopt;
  if (options.sources.empty()) {
    Fail("nothing to do: give --backend, --register or --listen", "");
    return std::nullopt;
  }
  bool datagram = false;
  for (const SinkSource& source : options.sources) {
    datagram = datagram || source.kind == SinkSource::Kind::kDatagram;
  }
  if (options.take_listener && !datagram) {
    Fail("--take-listener asks with a --backend socket: give one", "--take-listener");
    return std::nullopt;
  }
  return options;
}

}  // namespace sbx::bench
