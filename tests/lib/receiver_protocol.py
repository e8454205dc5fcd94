"""The receiver protocol from the sender's side, for tests (standard library).

engine/core/receiver_protocol.h is the spec: a receiver answers the sender's
address (msg_name) with 16-byte hellos and acks. A sender is autobound (an
abstract name the kernel picks) and connected to the receiver's path, as the
engine's sending sockets are.
"""
import socket
import struct
import time

HELLO, ACK = 1, 2
MAX_FDS_PER_MESSAGE = 64
PROBE = b"SBXP"


def autobound_sender(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("")  # addrlen = sizeof(sa_family_t): autobind
    s.connect(path)
    return s


def send_fds(sock, fds, payload=b"\0"):
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
    return sock.sendmsg([payload], anc if fds else [])


def decode(data):
    """(HELLO, max_fds, acks) or (ACK, count, None); raises on anything else."""
    if len(data) != 16 or data[:4] != b"SBXR" or data[5] != 1 or data[12:] != b"\0" * 4:
        raise ValueError(f"not a receiver message: {data!r}")
    kind, word, value = (
        data[4],
        struct.unpack(">H", data[6:8])[0],
        struct.unpack(">I", data[8:12])[0],
    )
    if kind == HELLO:
        if not 1 <= word <= MAX_FDS_PER_MESSAGE or value & ~1:
            raise ValueError(f"bad hello: {data!r}")
        return (HELLO, word, bool(value & 1))
    if kind == ACK and word == 0 and value > 0:
        return (ACK, value, None)
    raise ValueError(f"bad message: {data!r}")


def replies(sock, quiet=0.3):
    """Every message the receiver sent back, until none came for `quiet` s."""
    out = []
    sock.settimeout(quiet)
    while True:
        try:
            out.append(decode(sock.recv(64)))
        except socket.timeout:
            return out


def replies_until(sock, acked, timeout=10.0):
    """Reads replies until the acks add up to `acked` (or fails)."""
    out = []
    deadline = time.monotonic() + timeout
    while sum(m[1] for m in out if m[0] == ACK) < acked:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"acks for {acked} fds did not arrive: {out}")
        sock.settimeout(left)
        out.append(decode(sock.recv(64)))
    return out + replies(sock)


def hellos(messages):
    return [m for m in messages if m[0] == HELLO]


def acked(messages):
    return sum(m[1] for m in messages if m[0] == ACK)
