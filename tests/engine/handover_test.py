"""Upgrades without loss (--handover, --upgrade): a successor takes the
running daemon's listening sockets while clients keep connecting, and every
connection is delivered (or counted by the engine); a successor that gives
up leaves the old daemon serving."""
import os
import signal
import socket
import stat
import unittest

from engine_fixture import SOCKETBOX, Backend, Engine, sbxtest
from load_fixture import Load, fetch_once, peer_pid, wait_gone
from metrics_test import scrape

A = "2001:db8:1::"
PORT = 8095


class HandoverTest(unittest.TestCase):
    def test_upgrade_under_load_loses_nothing(self):
        # Five generations in a row under load from 4 client threads; the
        # daemons' own counters must add up to what the clients received.
        with sbxtest.Topology() as topo:
            backend = Backend(topo.path("b.sock"), "served")
            handover = topo.path("handover.sock")
            args = ["-S", backend.path, "-p", str(PORT), "--threads", "2", "--handover", handover,
                    "--metrics-listen", "[::1]:9100"]
            daemons = [Engine(args, ns=topo.server)]
            self.assertEqual(stat.S_IMODE(os.stat(handover).st_mode), 0o600)
            load = Load(topo.client, f"{A}5", PORT)
            try:
                for _ in range(4):
                    before = load.total()
                    sbxtest.wait_for(lambda: load.total() >= before + 200, timeout=20, what="load")
                    daemons.append(Engine(args, ns=topo.server))
                    # The old daemon stops on its own once the new one serves.
                    self.assertEqual(daemons[-2].proc.wait(timeout=20), 0, daemons[-2].output())
                before = load.total()
                sbxtest.wait_for(lambda: load.total() >= before + 200, timeout=20, what="load after")
            finally:
                load.stop()
            last_stats = daemons[-1].stats()
            # Nothing of the predecessors' stays open in the last daemon: one pipe (its own
            # stderr), and sockets: 2 listeners, metrics, handover, at most 2 to the backend.
            fd_dir = f"/proc/{daemons[-1].proc.pid}/fd"
            links = [os.readlink(os.path.join(fd_dir, f)) for f in os.listdir(fd_dir)]
            self.assertEqual(sum(link.startswith("pipe:") for link in links), 1, links)
            self.assertLessEqual(sum(link.startswith("socket:") for link in links), 6, links)
            # The metrics listener came along.
            accepted = [v for (name, _), v in scrape(topo.server).items() if name == "socketbox_accepted_total"]
            self.assertGreater(sum(accepted), 0)
            self.assertEqual(daemons[-1].stop(), 0)
            backend.close()
            stats = []
            for old in daemons[:-1]:
                old.reader.join(timeout=5)
                stats.append(old.final_stats())
                self.assertTrue(old.has_line("takes over: no longer accepting"), old.output())
            stats.append(last_stats)
            logs = "\n".join(d.output() for d in daemons)
            self.assertEqual(load.failures, [], logs)
            for st in stats:
                self.assertGreater(st.get("dispatched", 0), 0, logs)
                self.assertEqual(st.get("dropped", 0), 0, logs)
            self.assertEqual(sum(st["dispatched"] for st in stats), load.greetings["served"], logs)
            for new in daemons[1:]:
                self.assertTrue(new.has_line("took over from pid"), new.output())

    def test_successor_that_gives_up_leaves_the_old_one_serving(self):
        with sbxtest.Topology() as topo:
            backend = Backend(topo.path("b.sock"), "still")
            handover = topo.path("handover.sock")
            old = Engine(["-S", backend.path, "-p", str(PORT), "--threads", "1", "--handover", handover],
                         ns=topo.server)
            try:
                # A successor that takes the listeners, then vanishes.
                s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                s.connect(handover)
                s.send(b"REQUEST")
                fds = []

                def receive():
                    msg, ancdata, _flags, _addr = s.recvmsg(65536, socket.CMSG_SPACE(4 * 300))
                    for level, kind, data in ancdata:
                        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                            fds.extend(int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4))
                    return msg
                offer = receive()
                self.assertTrue(offer.startswith(b"OFFER 1 0\0"), offer)  # one listener, no metrics
                self.assertTrue(receive().startswith(b"FDS 1"))
                self.assertEqual(len(fds), 2)  # the daemon's stderr and its listener
                s.close()
                for fd in fds:
                    os.close(fd)
                sbxtest.wait_for(lambda: old.has_line("did not take over"), timeout=10, what="give-up line")
                load = Load(topo.client, f"{A}6", PORT, threads=2)
                sbxtest.wait_for(lambda: load.total() >= 50, timeout=20, what="load")
                load.stop()
                self.assertEqual(load.failures, [])
                self.assertIsNone(old.proc.poll())
                # Garbage instead of a request: refused, still serving.
                s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                s.connect(handover)
                s.send(b"GIVE ME EVERYTHING")
                self.assertEqual(s.recv(100), b"")
                s.close()
                sbxtest.wait_for(lambda: old.has_line("no valid request"), timeout=10, what="refusal")
                self.assertEqual(fetch_once(topo.client, f"{A}6", PORT), "still")
            finally:
                self.assertEqual(old.stop(), 0)
                backend.close()
            self.assertFalse(os.path.exists(handover), "the handover socket is removed at exit")

    def test_upgrade_command_reuses_the_command_line_and_directory(self):
        with sbxtest.Topology() as topo:
            backend = Backend(topo.path("b.sock"), "upgraded")
            with open(topo.path("socketbox.conf"), "w") as f:
                f.write(f"max-rules:1\nrule-set:0 size:1\nport:{PORT} jump-unix:{backend.path}\n")
            handover = topo.path("handover.sock")
            # A relative configuration path: the successor must run where
            # the old daemon started.
            old = Engine(["-f", "socketbox.conf", "-p", str(PORT), "--handover", handover], ns=topo.server,
                         wrapper=["sh", "-c", f'cd {topo.tmp} && exec "$@"', "sh"])
            load = Load(topo.client, f"{A}7", PORT, threads=2)
            new_pid = None
            try:
                sbxtest.wait_for(lambda: load.total() >= 100, timeout=20, what="load before")
                r = sbxtest.sh("ip", "netns", "exec", topo.server, SOCKETBOX, "--upgrade", handover,
                               check=False, timeout=30)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("upgrading pid", r.stderr)
                self.assertEqual(old.proc.wait(timeout=20), 0)
                new_pid = peer_pid(handover)
                self.assertNotEqual(new_pid, old.proc.pid)
                before = load.total()
                sbxtest.wait_for(lambda: load.total() >= before + 100, timeout=20, what="load after")
            finally:
                load.stop()
                if new_pid:
                    os.kill(new_pid, signal.SIGTERM)
                    wait_gone(new_pid)
                backend.close()
            self.assertEqual(load.failures, [])
            # The successor logs to the old daemon's standard error.
            self.assertTrue(old.has_line("took over from pid"), old.output())

    def test_upgrade_with_nothing_to_upgrade_says_so(self):
        with sbxtest.Topology() as topo:
            r = sbxtest.sh(SOCKETBOX, "--upgrade", topo.path("nobody.sock"), check=False)
            self.assertEqual(r.returncode, 1)
            self.assertIn("no daemon serves this path", r.stderr)
            r = sbxtest.sh(SOCKETBOX, "-S", "/x", "--handover", "", check=False)
            self.assertEqual(r.returncode, 1)
            self.assertIn("--handover", r.stderr)
            r = sbxtest.sh(SOCKETBOX, "-P", "1:/x", "--handover", topo.path("h.sock"), check=False)
            self.assertEqual(r.returncode, 1)
            self.assertIn("cannot be combined with -P or -e", r.stderr)


if __name__ == "__main__":
    sbxtest.run_tap(HandoverTest, skip_reason=sbxtest.require_root_and_netns())
