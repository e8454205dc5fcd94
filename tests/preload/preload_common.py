"""Helpers shared by the preload suites (Python 3 standard library only).

A real server runs under libsocketbox-preload.so in the server namespace of
an sbxtest.Topology; the real socketbox daemon listens on an AnyIP address
there (FREEBIND) and sends every connection to the server's datagram socket
(-S PATH, the "A" protocol); the client namespace connects to that address.
"""
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ.get("SBX_SOURCE", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")), "tests", "lib"))
import sbxtest  # noqa: E402

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


def start_engine(topo, backend_path, port=80, address=PUBLIC6):
    """The real socketbox daemon: accept on [address]:port, send to backend."""
    p = topo.spawn_server([ENGINE, "-l", address, "-p", str(port), "-F", "-S", backend_path])
    return p


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
