"""Helpers for the socketbox-relay suites (Python 3 standard library only).

The usual path: a client in the client namespace connects to an AnyIP
address of the server namespace; our engine (`socketbox -S PATH`) accepts it
and passes it to the relay's receiving socket (`socketbox-relay -s PATH`);
the relay connects to a target on the server namespace's loopback.
"""
import hashlib
import os
import re
import signal
import socket
import sys
import threading

sys.path.insert(0, os.path.join(os.environ.get("SBX_SOURCE", ""), "tests", "lib"))
import sbxtest  # noqa: E402

BUILD = os.environ.get("SBX_BUILD", os.path.join(sbxtest.ROOT, "build"))
RELAY = os.path.join(BUILD, "relay", "socketbox-relay")
ENGINE = os.path.join(BUILD, "engine", "socketbox")
SERVER_IP6 = "2001:db8:1::10"
SERVER_IP4 = "198.51.100.10"
CLIENT_IP6 = sbxtest.CLIENT_LINK6
CLIENT_IP4 = sbxtest.CLIENT_LINK4


def skip_reason():
    return sbxtest.require_root_and_netns()


class Relay:
    """socketbox-relay in a namespace, its stderr collected line by line."""

    def __init__(self, args, ns=None, pass_fds=(), wait_path=None, prefix=(), **kw):
        self.lines = []
        self.lock = threading.Lock()
        # SBX_RELAY_ARGS: extra options for every relay of a run (meson runs
        # the behaviour suite once more with --copy splice).
        extra = os.environ.get("SBX_RELAY_ARGS", "").split()
        # `prefix`: a launcher the relay runs under (failing_waits.py).
        self.proc = sbxtest.spawn(
            [*prefix, RELAY, *args, *extra], ns=ns, pass_fds=pass_fds, text=True, **kw
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if wait_path:
            sbxtest.wait_for(
                lambda: is_live(wait_path) or self.proc.poll() is not None,
                what=f"relay bound at {wait_path}",
            )
            if self.proc.poll() is not None:
                raise AssertionError(f"relay exited {self.proc.returncode}: {self.output()}")

    def _read(self):
        for line in self.proc.stderr:
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def output(self):
        with self.lock:
            return "\n".join(self.lines)

    def count_lines(self, text):
        with self.lock:
            return sum(text in line for line in self.lines)

    def stats(self):
        """Counters (SIGUSR1) as a dict: accepted, active, closed.REASON..."""
        with self.lock:
            start = len(self.lines)
        self.proc.send_signal(signal.SIGUSR1)

        def ready():
            with self.lock:
                return any(" stats " in l for l in self.lines[start:])

        sbxtest.wait_for(ready, timeout=5, what="relay stats")
        with self.lock:
            line = [l for l in self.lines[start:] if " stats " in l][-1]
        return {k: int(v) for k, v in re.findall(r"(\S+)=(\d+)", line)}

    def wait_stat(self, key, value, timeout=10):
        sbxtest.wait_for(
            lambda: self.stats().get(key) == value,
            timeout=timeout,
            what=f"relay {key}={value} (now {self.stats().get(key)})",
        )

    def stop(self, sig=signal.SIGTERM, timeout=20):
        code = sbxtest.stop(self.proc, sig, timeout)
        self.reader.join(timeout=2)
        return code


class Engine:
    """Our engine accepting on [host]:port and passing to `path`."""

    def __init__(self, topo, host, port, path):
        listen = host if ":" in host else f"::ffff:{host}"
        self.proc = topo.spawn_server(
            [ENGINE, "-l", listen, "-p", str(port), "-F", "-S", path, "--threads", "1"]
        )

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"engine exited: {self.proc.stderr.read().decode()}")
            out = topo.ns_sh(topo.server, "ss", "-Htln", f"sport = :{port}").stdout
            return str(port) in out

        sbxtest.wait_for(listening, what=f"engine listening on port {port}")

    def close(self):
        sbxtest.stop(self.proc)


def is_live(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class TargetServer:
    """A TCP server in namespace `ns` on [::1]:port (or `host`), or with
    family AF_UNIX a Unix stream server at the path `host`; each connection
    runs `handler(conn)` in its own thread."""

    def __init__(self, ns, handler, host="::1", port=0, family=socket.AF_INET6):
        self.sock = sbxtest.socket_in(ns, family) if ns else socket.socket(family)
        if family == socket.AF_UNIX:
            self.sock.bind(host)
            self.port = None
        else:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            self.port = self.sock.getsockname()[1]
        self.sock.listen(1024)
        self.handler = handler
        self.errors = []
        self.accepted = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            self.handler(conn)
        except Exception as e:  # reported by the test that reads .errors
            self.errors.append(repr(e))
        finally:
            conn.close()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def echo(conn):
    while True:
        data = conn.recv(1 << 16)
        if not data:
            break
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def read_all(sock, timeout=10.0):
    sock.settimeout(timeout)
    chunks = []
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def read_header(conn):
    """The PROXY header the target received: v1 text line or v2 bytes."""
    first = conn.recv(16, socket.MSG_WAITALL)
    if first.startswith(b"PROXY "):
        rest = b""
        while not (first + rest).endswith(b"\r\n"):
            rest += conn.recv(1)
        return (first + rest).decode()
    length = int.from_bytes(first[14:16], "big")
    return first + (conn.recv(length, socket.MSG_WAITALL) if length else b"")


class Stream:
    """A deterministic byte stream of `size` bytes (a random 1 MiB block
    repeated with a counter) and its SHA-1, cheap enough for GiBs."""

    def __init__(self, size, seed):
        self.size = size
        block = hashlib.sha256(seed.encode()).digest() * (1 << 15)  # 1 MiB
        self.block = block
        digest = hashlib.sha1()
        for i in range(0, size, len(block)):
            digest.update(self.chunk(i))
        self.sha1 = digest.hexdigest()

    def chunk(self, offset):
        n = min(len(self.block), self.size - offset)
        return (
            (offset // len(self.block)).to_bytes(8, "big") + self.block[8:n]
            if n > 8
            else self.block[:n]
        )

    def send(self, sock):
        for i in range(0, self.size, len(self.block)):
            sock.sendall(self.chunk(i))


def receive_sha1(sock, limit=None):
    """Reads to EOF; returns (bytes, sha1 hex)."""
    digest = hashlib.sha1()
    total = 0
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while True:
        n = sock.recv_into(view)
        if n == 0:
            return total, digest.hexdigest()
        digest.update(view[:n])
        total += n
