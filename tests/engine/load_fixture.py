"""Client load for upgrade tests (tests/engine/handover_test.py and
tests/package/deb_test.py): connections counted one by one, and the pid
behind a handover socket."""
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import sbxtest  # noqa: E402


class Load:
    """Client threads connecting from the client namespace until stopped;
    each connection ends as a greeting (its backend's name) or a failure."""

    def __init__(self, ns, host, port, threads=4):
        self.ns, self.host, self.port = ns, host, port
        self.greetings = {}
        self.failures = []
        self.lock = threading.Lock()
        self.running = True
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _one(self):
        s = sbxtest.socket_in(self.ns)
        s.settimeout(10)
        try:
            s.connect((self.host, self.port))
            data = b""
            while True:
                chunk = s.recv(64)
                if not chunk:
                    return data.decode(errors="replace") or "closed without greeting"
                data += chunk
        except OSError as e:
            return f"error: {e!r}"
        finally:
            s.close()

    def _run(self):
        while self.running:
            result = self._one()
            with self.lock:
                if result.startswith("error") or result.startswith("closed"):
                    self.failures.append(result)
                else:
                    self.greetings[result] = self.greetings.get(result, 0) + 1

    def total(self):
        with self.lock:
            return sum(self.greetings.values()) + len(self.failures)

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join(timeout=20)


def peer_pid(path):
    """The pid of the daemon serving the handover socket at `path`."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.connect(path)
        cred = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        return int.from_bytes(cred[:4], "little")
    finally:
        s.close()


def wait_gone(pid, timeout=20):
    sbxtest.wait_for(
        lambda: not os.path.exists(f"/proc/{pid}")
        or open(f"/proc/{pid}/stat").read().split(") ")[1].startswith("Z"),
        timeout=timeout,
        what=f"pid {pid} to exit",
    )


def fetch_once(ns, host, port):
    load = Load(ns, host, port, threads=0)
    return load._one()
