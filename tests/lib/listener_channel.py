"""The receiver's side of kernel dispatch, in Python, for the suites: ask the
engine for a backend's listener (engine/core/listener_request.h)."""
import os
import platform
import socket
import struct

MAGIC = b"SBXR"


REPLY_CHANNEL_ONLY = 1


def request_listener(
    receiving, engine_path, hint=None, timeout=5.0, fds=None, expect_answer=True, flags=0
):
    """Sends the request carrying `receiving` (the datagram socket bound at the
    backend's path; `fds` overrides what is carried) and a fresh channel.
    Returns (status, listener socket or None, channel socket); with
    `expect_answer` false, sends and returns None. `flags`
    REPLY_CHANNEL_ONLY asks for the channel alone."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    request = (
        MAGIC
        + bytes([3, 1, 0, 0])
        + struct.pack(">I", flags)
        + bytes(4)
        + (hint.encode() if hint else b"")
    )
    carried = fds if fds is not None else [receiving.fileno(), theirs.fileno()]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.sendmsg(
            [request],
            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(carried)}i", *carried))],
            0,
            engine_path,
        )
    theirs.close()
    if not expect_answer:
        ours.close()
        return None
    ours.settimeout(timeout)
    data, fds, _flags, _addr = socket.recv_fds(ours, 64, 4)
    if len(data) != 16 or data[:4] != MAGIC or data[4] != 4:
        for fd in fds:
            socket.close(fd)
        raise ValueError(f"not a listener answer: {data!r}")
    status = struct.unpack(">I", data[8:12])[0]
    listener = socket.socket(fileno=fds[0]) if fds else None
    return status, listener, ours


def relayed_reply(reply, sender_name):
    """A hello or ack (16 bytes) for the sender whose msg_name was
    `sender_name` (bytes, sun_path as recvmsg gave it), to send on a channel."""
    return reply + sender_name


def kernel_lacks_bpf():
    """Why this kernel cannot load the steering program, or None: it needs
    the bpf(2) syscall, sk_lookup programs (Linux 5.9) and bpf_loop (5.17)."""
    release = platform.release().split("-")[0].split(".")
    try:
        if (int(release[0]), int(release[1])) < (5, 17):
            return f"kernel {platform.release()} lacks sk_lookup or bpf_loop (5.17 or later)"
    except (ValueError, IndexError):
        pass
    if not os.path.exists("/proc/sys/kernel/unprivileged_bpf_disabled"):
        return "this kernel has no bpf(2) syscall (CONFIG_BPF_SYSCALL)"
    return None
