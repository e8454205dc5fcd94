"""Helpers shared by the socketbox-inetd suites (Python 3 standard library).

Connections come from the client namespace to an address of the server
namespace's AnyIP prefix, are accepted by our engine (`socketbox -l ADDR -p
PORT -F -S PATH`) and passed to the backend's datagram socket at PATH.
While the engine is not usable yet (it is being written concurrently), a
stand-in acceptor (a thread: accept in the server namespace, send_fd to
PATH) takes its place; `ACCEPTOR_KIND` says which one ran and every suite
prints it.  SBX_INETD_STANDIN=1 forces the stand-in.
"""
import os
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.environ.get("SBX_SOURCE", ""), "tests", "lib"))
import sbxtest  # noqa: E402

BUILD = os.environ.get("SBX_BUILD", "")
SERVER_IP6 = "2001:db8:1::10"
SERVER_IP4 = "198.51.100.10"


def binary(name):
    return os.path.join(BUILD, "inetd", name)


ENGINE = os.path.join(BUILD, "engine", "socketbox")


def _engine_usable():
    if os.environ.get("SBX_INETD_STANDIN") == "1" or not os.access(ENGINE, os.X_OK):
        return False
    out = subprocess.run([ENGINE, "--help"], capture_output=True, text=True, timeout=10)
    text = out.stdout + out.stderr
    return "-S" in text and "-l" in text


ACCEPTOR_KIND = "engine" if _engine_usable() else "stand-in"


def skip_reason():
    return sbxtest.require_root_and_netns()


class StandInAcceptor:
    """accept() in the server namespace, pass each connection to `path`."""

    def __init__(self, topo, host, port, path):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = sbxtest.socket_in(topo.server, fam)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # AnyIP addresses are local by route only: bind needs FREEBIND (as -F).
        self.listener.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
        self.listener.bind((host, port))
        self.listener.listen(128)
        self.path = path
        self.sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                sbxtest.send_fd(self.sender, conn.fileno(), self.path)
            except OSError as e:
                print(f"# stand-in acceptor: send to {self.path}: {e}", flush=True)
            conn.close()

    def close(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(5)
        self.sender.close()


class EngineAcceptor:
    def __init__(self, topo, host, port, path):
        listen = host if ":" in host else f"::ffff:{host}"
        self.proc = topo.spawn_server([ENGINE, "-l", listen, "-p", str(port), "-F", "-S", path])

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"engine exited: {self.proc.stderr.read().decode()}")
            # This address and port (another acceptor may share the port).
            out = topo.ns_sh(topo.server, "ss", "-Htln", f"sport = :{port}").stdout
            wanted = (f"[{listen}]:{port}", f"{host}:{port}", f"[{host}]:{port}")
            return any(w in out for w in wanted)

        sbxtest.wait_for(listening, what=f"engine listening on port {port}")

    def close(self):
        sbxtest.stop(self.proc)


def acceptor(topo, host, port, path):
    cls = EngineAcceptor if ACCEPTOR_KIND == "engine" else StandInAcceptor
    return cls(topo, host, port, path)


def start_inetd(topo, path, program, options=(), name="socketbox-inetd", env=None):
    """Starts socketbox-inetd in the server namespace; waits for its socket."""
    p = topo.spawn_server([binary(name), *options, path, *program], env=env)
    if name == "socketbox-inetd":
        sbxtest.wait_for(lambda: is_live(path) or p.poll() is not None, what=f"{path} to be bound")
        if p.poll() is not None:
            raise AssertionError(f"{name} exited {p.returncode}: {p.stderr.read().decode()}")
    return p


def is_live(path):
    """Whether a process is bound to the datagram socket at `path` (a stale
    file refuses the connect)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def read_all(sock, timeout=10.0, limit=1 << 20):
    sock.settimeout(timeout)
    data = b""
    while len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def stop_and_log(p):
    """SIGTERM; returns (exit status, stderr text)."""
    rc = sbxtest.stop(p)
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    return rc, err


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def announce():
    print(f"# acceptor: {ACCEPTOR_KIND}", flush=True)
