"""Helpers shared by the preload suites (Python 3 standard library only).

A real server runs under libsocketbox-preload.so in the server namespace of
an sbxtest.Topology; the real socketbox daemon listens on an AnyIP address
there (FREEBIND) and sends every connection to the server's datagram socket
(-S PATH, the "A" protocol); the client namespace connects to that address.

With kernel dispatch (`start_engine(..., kernel_dispatch=True)`, and the
`BothModes` mixin that runs a suite's cases both ways) the daemon routes the
same address and port to the same path from a configuration file, with
`--kernel-dispatch on`, and the server takes its listener from it.
"""
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(
    0,
    os.path.join(
        os.environ.get(
            "SBX_SOURCE", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
        ),
        "tests",
        "lib",
    ),
)
import sbxtest  # noqa: E402
from listener_channel import kernel_lacks_bpf  # noqa: E402

sys.path.insert(0, os.path.join(sbxtest.ROOT, "tests", "engine"))

BUILD = os.environ.get("SBX_BUILD", os.path.join(sbxtest.ROOT, "build"))
LIBRARY = os.path.join(BUILD, "preload", "libsocketbox-preload.so")
ENGINE = os.path.join(BUILD, "engine", "socketbox")

# The address the daemon listens on (inside the server's AnyIP prefix) and
# the client's own address, which servers must report as the peer.
# Debian's python3 for programs run under the preload.
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

PUBLIC6 = "2001:db8:1::10"
CLIENT6 = sbxtest.CLIENT_LINK6

# fe8f::2:0:1 port 80 -> $SKBOX_DIRECTORY_ROOT2/00000/00001_00080
FE8F_DIR2 = "fe8f::2:0:1"


def skip_reason(*programs):
    reason = sbxtest.require_root_and_netns()
    if reason:
        return reason
    for p in programs:
        if not shutil.which(p) and not os.path.exists(p):
            return f"{p} not installed"
    if not os.path.exists(LIBRARY):
        return f"{LIBRARY} not built"
    return None


def directory2_path(root, group6, group7, port, x_prefix=False):
    g = f"{group6:05d}"
    if x_prefix:
        g = "X" + g[1:]
    return os.path.join(root, g, f"{group7:05d}_{port:05d}")


def preload_env(topo, **extra):
    """Environment for a program under the preload, directory2 in topo.tmp."""
    root2 = topo.path("sb2")
    for sub in ("00000", "X0000", "X0004"):
        os.makedirs(os.path.join(root2, sub), exist_ok=True)
    env = {"LD_PRELOAD": LIBRARY, "SKBOX_DIRECTORY_ROOT2": root2}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def wait_for_path(path, proc=None, timeout=15.0):
    def ready():
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise AssertionError(f"server exited with {proc.returncode}: {err}")
        return os.path.exists(path)

    sbxtest.wait_for(ready, timeout=timeout, what=f"socket {path}")


def start_engine(
    topo, backend_path, port=80, address=PUBLIC6, kernel_dispatch=False, extra_args=()
):
    """The real socketbox daemon: accept on [address]:port, send to backend
    (-S: kernel dispatch is off), a process. With `kernel_dispatch`, a
    configuration file routes [address]:port to jump-unix:backend_path and
    the daemon runs with --kernel-dispatch on and its listener socket at
    topo.path("listeners.sock") (and `extra_args`): an engine_fixture.Engine,
    ready, whose `listener_socket` the server under the preload must be
    given (SKBOX_LISTENER_SOCKET) before it binds."""
    if not kernel_dispatch:
        return topo.spawn_server([ENGINE, "-l", address, "-p", str(port), "-F", "-S", backend_path])
    from engine_fixture import Engine, write

    conf = write(
        topo.path("socketbox-kd.conf"),
        f"max-rules:1\nrule-set:0 size:2\nip:{address} port:{port} "
        f"jump-unix:{backend_path}\ndefault fail\n",
    )
    listener_socket = topo.path("listeners.sock")
    engine = Engine(
        [
            "-f",
            conf,
            "-l",
            address,
            "-p",
            str(port),
            "-F",
            "--kernel-dispatch",
            "on",
            "--listener-socket",
            listener_socket,
            *extra_args,
        ],
        ns=topo.server,
    )
    engine.listener_socket = listener_socket
    return engine


def kernel_stats(engine):
    """The 'stats kernel' counters of `engine` (an engine_fixture.Engine;
    SIGUSR1), and each 'stats backend PATH steered=N listener=STATE' line as
    'backend:PATH' -> 'steered=N listener=STATE'."""
    with engine.lock:
        start = len(engine.lines)
    engine.proc.send_signal(signal.SIGUSR1)
    sbxtest.wait_for(
        lambda: any(l.startswith("stats kernel") for l in engine.lines[start:]),
        timeout=5,
        what="kernel stats",
    )
    with engine.lock:
        lines = engine.lines[start:]
    out = {}
    for line in lines:
        if line.startswith("stats kernel"):
            out.update({k: int(v) for k, v in (w.split("=") for w in line.split()[2:])})
        elif line.startswith("stats backend ") and " steered=" in line:
            words = line.split()
            out["backend:" + words[2]] = " ".join(words[3:])
    return out


class BothModes:
    """Mixin for a real-server suite's TestCase: its cases run with kernel
    dispatch off (the class itself: the daemon with -S, exactly as before)
    and on (the subclass `with_kernel_dispatch` makes). A case starts the
    daemon and its server through `serve` and ends with `assert_steered`,
    which in the "on" mode proves the kernel steered every connection (the
    daemon accepted none itself: nothing came through the fallback path)."""

    kernel_dispatch = False

    def setUp(self):
        super().setUp()
        self.engine = None
        if self.kernel_dispatch:
            reason = kernel_lacks_bpf()
            if reason:
                self.skipTest(reason)

    def serve(self, topo, backend, start_server, port=80, address=PUBLIC6):
        """Starts the daemon and `start_server(env)` (a process under the
        preload that binds `backend`; `env` is what to add to its
        environment) in the order the mode needs, and returns the server.
        Off: the server first, then the daemon (-S). On: the daemon first
        (the preload asks for the listener when the server binds or
        listens), then the server, which must take its listener."""
        self.backend = backend
        if not self.kernel_dispatch:
            p = start_server({})
            wait_for_path(backend, p)
            self.engine = start_engine(topo, backend, port, address)
            # A case may connect once, without retrying: wait for the listen.
            sbxtest.wait_for(
                lambda: self.engine.poll() is not None
                or f"[{address}]:{port} " in topo.ns_sh(topo.server, "ss", "-Hltn").stdout,
                timeout=10,
                interval=0.05,
                what="the daemon listening",
            )
            return p
        try:
            self.engine = start_engine(topo, backend, port, address, kernel_dispatch=True)
        except AssertionError as e:
            if "load the kernel dispatch program" in str(e):
                self.skipTest(f"the kernel cannot run the steering program: {str(e)[-300:]}")
            raise
        p = start_server({"SKBOX_LISTENER_SOCKET": self.engine.listener_socket})
        wait_for_path(backend, p)

        def granted():
            if p.poll() is not None:
                err = p.stderr.read().decode(errors="replace") if p.stderr else ""
                raise AssertionError(f"server exited with {p.returncode}: {err}")
            return kernel_stats(self.engine).get("listeners.granted", 0) >= 1

        try:
            sbxtest.wait_for(granted, timeout=15, interval=0.1, what="the server's listener")
        except AssertionError as e:
            said = b""
            if p.stderr:  # what the server said so far (the library says why)
                os.set_blocking(p.stderr.fileno(), False)
                try:
                    said = os.read(p.stderr.fileno(), 65536)
                except BlockingIOError:
                    pass
            said = said.decode(errors="replace")[-1500:]
            raise AssertionError(f"{e}; the server said: {said}") from None
        return p

    def assert_steered(self, served):
        """In the "on" mode: the kernel steered at least the `served`
        connections the case made, all to its backend, and the daemon
        accepted none itself. Nothing to check when off."""
        if not self.kernel_dispatch:
            return
        ks, st = kernel_stats(self.engine), self.engine.stats()
        self.assertGreaterEqual(ks["steered"], served, ks)
        self.assertGreaterEqual(ks["listeners.granted"], 1, ks)
        # All of them to this backend; "unattended" once a server that
        # served its count exited (its listener taken, not held any more).
        self.assertRegex(
            ks.get("backend:" + self.backend, ""),
            f"^steered={ks['steered']} listener=(taken|unattended)$",
            ks,
        )
        self.assertEqual(st.get("accepted", 0), 0, f"the daemon accepted some itself: {st}")
        print(
            f"# {self.id().split('.', 1)[-1]}: {served} served, steered={ks['steered']} "
            f"listeners.granted={ks['listeners.granted']} accepted by the daemon=0",
            flush=True,
        )


def with_kernel_dispatch(cls):
    """`cls` (a BothModes TestCase) with kernel dispatch on: the same cases."""
    return type(
        cls.__name__ + "KernelDispatch",
        (cls,),
        {"kernel_dispatch": True, "__doc__": f"{cls.__name__}, kernel dispatch on."},
    )


def http_get(topo, host, port=80, path="/", timeout=5.0):
    """One HTTP/1.0 GET from the client namespace: (status, headers, body)."""
    s = sbxtest.connect_from(topo.client, host, port, timeout=timeout)
    try:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: test\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    return status, lines[1:], body.decode(errors="replace")


def http_get_eventually(topo, host, port=80, path="/", timeout=15.0, proc=None):
    """Retries until the daemon and the server both answer."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise AssertionError(f"server exited with {proc.returncode}: {err}")
        try:
            return http_get(topo, host, port, path, timeout=3.0)
        except (OSError, IndexError, ValueError) as e:
            last = e
            time.sleep(0.1)
    raise AssertionError(f"no HTTP answer from [{host}]:{port} within {timeout}s: {last}")


def run_under_preload(code, env, timeout=20, ns=None):
    """Runs Python `code` under the preload: CompletedProcess (text)."""
    full = dict(os.environ)
    full.update({"LD_PRELOAD": LIBRARY})
    full.update({k: str(v) for k, v in env.items()})
    cmd = (["ip", "netns", "exec", ns] if ns else []) + [PYTHON, "-c", code]
    return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=timeout)


def program_version(argv, pattern_line=0):
    out = subprocess.run(argv, capture_output=True, text=True)
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[pattern_line] if text else "unknown"
