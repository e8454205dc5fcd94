"""HAProxy (Debian's) under run-with-socketbox, fed by the real socketbox
daemon, kernel dispatch off and on: `bind [fe8f::2:0:1]:80` in a frontend,
started as `run-with-socketbox haproxy -W -S CLI -f CFG` (master-worker).

- Every answer (`http-request return` with `%[src]` and `%[dst]`) shows the
  client's real address and the address the client connected to: HAProxy
  needs no relay and no PROXY header under the preload.
- A reload (SIGUSR2 to the master) while clients connect without pause:
  every connection made before, during and after it is answered (counted;
  none refused or cut), the new worker answers afterwards, and the old one
  has exited."""
import os
import re
import shutil
import signal
import socket
import threading
import time
import unittest

import preload_common as pc
from preload_common import sbxtest

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
WRAPPER = os.path.join(pc.BUILD, "preload", "run-with-socketbox")

CONFIG = """global
  master-worker
defaults
  mode http
  timeout client 5s
  timeout connect 5s
  timeout server 5s
frontend fe
  bind [fe8f::2:0:1]:80
  http-request return status 200 content-type text/plain lf-string \
"src=%[src] dst=%[dst] dst_port=%[dst_port] pid=%pid\\n"
"""

ANSWER = re.compile(r"src=(\S+) dst=(\S+) dst_port=(\d+) pid=(\d+)\n")


def master_cli(path, command):
    """One command on HAProxy's master CLI (-S PATH): its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)  # one command: the master answers and closes
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data.decode(errors="replace")
            data += chunk


def worker_pids(cli):
    """The pids `show proc` lists as workers (current and old)."""
    out = master_cli(cli, "show proc")
    workers = out.split("# workers", 1)[1].split("#", 1)[0] if "# workers" in out else ""
    return [int(line.split()[0]) for line in workers.splitlines() if line.strip()]


class Clients:
    """Threads in the client namespace that connect one after another to
    [PUBLIC6]:80 until stopped, keeping each answer's worker pid and every
    failure (a refused, cut or unanswered connection)."""

    def __init__(self, topo, threads=2):
        self.topo = topo
        self.lock = threading.Lock()
        self.answers = []  # (time, pid)
        self.failures = []  # (time, what)
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self):
        while not self.stopping.is_set():
            try:
                status, _, body = pc.http_get(self.topo, pc.PUBLIC6, timeout=5.0)
                m = ANSWER.fullmatch(body)
                if status != 200 or not m:
                    raise AssertionError(f"status {status}, body {body!r}")
                with self.lock:
                    self.answers.append((time.monotonic(), int(m.group(4))))
            except (OSError, AssertionError, IndexError, ValueError) as e:
                with self.lock:
                    self.failures.append((time.monotonic(), repr(e)))

    def count(self, pid=None, since=0.0):
        with self.lock:
            return sum(1 for t, p in self.answers if t >= since and (pid is None or p == pid))

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=15)


class HaproxyTest(pc.BothModes, unittest.TestCase):
    def start_haproxy(self, topo):
        """HAProxy, master-worker, under run-with-socketbox (which sets
        LD_PRELOAD itself): (master process, master CLI path)."""
        cfg = topo.path("haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(CONFIG)
        cli = topo.path("master.sock")
        env = pc.preload_env(topo)
        del env["LD_PRELOAD"]
        backend = pc.directory2_path(env["SKBOX_DIRECTORY_ROOT2"], 0, 1, 80)
        master = self.serve(
            topo,
            backend,
            lambda extra: topo.spawn_server(
                [WRAPPER, HAPROXY, "-W", "-db", "-S", cli, "-f", cfg], env={**env, **extra}
            ),
        )

        def one_worker():
            self.assertIsNone(master.poll(), "HAProxy's master exited")
            try:
                return len(worker_pids(cli)) == 1
            except OSError:  # not listening yet
                return False

        sbxtest.wait_for(
            one_worker, timeout=15, interval=0.05, what="HAProxy's master CLI and its worker"
        )
        return master, cli

    def test_real_addresses_without_a_relay(self):
        print("# " + pc.program_version([HAPROXY, "-v"]), flush=True)
        with sbxtest.Topology() as topo:
            master, _ = self.start_haproxy(topo)
            for _ in range(10):
                status, _, body = pc.http_get_eventually(topo, pc.PUBLIC6, proc=master)
                self.assertEqual(status, 200, body)
                m = ANSWER.fullmatch(body)
                self.assertIsNotNone(m, body)
                self.assertEqual(m.group(1), pc.CLIENT6, body)  # the client's address
                self.assertEqual(m.group(2), pc.PUBLIC6, body)  # the one it connected to
                self.assertEqual(m.group(3), "80", body)
            self.assert_steered(10)
            print(f"# {body.strip()}", flush=True)
            sbxtest.stop(master)

    def test_reload_refuses_no_connection(self):
        with sbxtest.Topology() as topo:
            master, cli = self.start_haproxy(topo)
            old = worker_pids(cli)[0]
            pc.http_get_eventually(topo, pc.PUBLIC6, proc=master)
            clients = Clients(topo)
            try:
                sbxtest.wait_for(
                    lambda: clients.count(old) >= 20,
                    timeout=20,
                    what="20 answers before the reload",
                )
                reload_at = time.monotonic()
                os.kill(master.pid, signal.SIGUSR2)

                def replaced():
                    self.assertIsNone(master.poll(), "the master exited")
                    try:
                        pids = worker_pids(cli)
                    except OSError:  # the master is executing itself again
                        return False
                    return len(pids) == 1 and pids[0] != old

                sbxtest.wait_for(
                    replaced, timeout=20, interval=0.05, what="the new worker, and the old one gone"
                )
                reloaded_at = time.monotonic()
                new = worker_pids(cli)[0]
                sbxtest.wait_for(
                    lambda: clients.count(new, since=reloaded_at) >= 20,
                    timeout=20,
                    what="20 answers from the new worker after the reload",
                )
            finally:
                clients.stop()
            during = clients.count(since=reload_at) - clients.count(since=reloaded_at)
            total = clients.count()
            self.assertEqual(clients.failures, [], f"of {total + len(clients.failures)}")
            self.assertGreater(during, 0, "no connection was made during the reload")
            print(
                f"# reload: {total} answered, 0 failed; {during} during the reload "
                f"({reloaded_at - reload_at:.2f} s), {clients.count(old)} by the old worker, "
                f"{clients.count(new)} by the new one",
                flush=True,
            )
            self.assert_steered(total)
            sbxtest.stop(master)


if __name__ == "__main__":
    sbxtest.run_tap(
        HaproxyTest,
        pc.with_kernel_dispatch(HaproxyTest),
        skip_reason=pc.skip_reason(pc.ENGINE, HAPROXY),
    )
