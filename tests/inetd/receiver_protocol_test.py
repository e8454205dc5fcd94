"""socketbox-inetd as a receiver of the receiver protocol
(docs/receiver-protocol.md): its hello, its acks with SKBOX_ACKNOWLEDGE=1,
a child per fd of a several-fd message. The sender is a test socket
(autobound, connected to the path), so no engine is needed.
"""
import os
import shutil
import socket
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inetd_lib as il  # noqa: E402
from inetd_lib import sbxtest  # noqa: E402
import receiver_protocol as rp  # noqa: E402  (tests/lib, on the path by inetd_lib)

HELLO_PROG = ["sh", "-c", "echo served; env"]


class InetdReceiverProtocol(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.mkdtemp(prefix="sbx-rp-")
        self.addCleanup(shutil.rmtree, tmp, True)
        self.path = os.path.join(tmp, "inetd.sock")

    def start(self, env=None, options=(), program=HELLO_PROG):
        p = sbxtest.spawn([il.binary("socketbox-inetd"), *options, self.path, *program], env=env)
        sbxtest.wait_for(
            lambda: il.is_live(self.path) or p.poll() is not None, what=f"{self.path} to be bound"
        )
        self.assertIsNone(p.poll(), "socketbox-inetd exited")
        return p

    def connections(self, n):
        """n socketpairs: (ours, theirs); theirs is what is passed."""
        pairs = [socket.socketpair() for _ in range(n)]
        for ours, theirs in pairs:
            self.addCleanup(ours.close)
            self.addCleanup(theirs.close)
        return pairs

    def assert_served(self, pairs):
        for ours, theirs in pairs:
            theirs.close()
            out = il.read_all(ours, timeout=10)
            self.assertTrue(out.startswith(b"served\n"), out)

    def test_acknowledges_every_message_after_one_hello(self):
        p = self.start(env={"SKBOX_ACKNOWLEDGE": "1"})
        sender = rp.autobound_sender(self.path)
        self.addCleanup(sender.close)
        pairs = self.connections(3)
        for _ours, theirs in pairs:
            rp.send_fds(sender, [theirs.fileno()])
        got = rp.replies_until(sender, 3)
        self.assertEqual(rp.hellos(got), [(rp.HELLO, rp.MAX_FDS_PER_MESSAGE, True)])
        self.assertEqual(got[0][0], rp.HELLO, "the hello comes first")
        self.assertEqual(rp.acked(got), 3)
        self.assert_served(pairs)
        rc, err = il.stop_and_log(p)
        self.assertEqual(rc, 0, err)
        self.assertIn("received=3 spawned=3", err)

    def test_several_fds_in_one_message_start_a_child_each(self):
        p = self.start(env={"SKBOX_ACKNOWLEDGE": "1"})
        sender = rp.autobound_sender(self.path)
        self.addCleanup(sender.close)
        pairs = self.connections(3)
        rp.send_fds(sender, [theirs.fileno() for _ours, theirs in pairs])
        got = rp.replies_until(sender, 1)
        self.assertEqual(rp.acked(got), 3, "acks count fds: one message of 3")
        self.assert_served(pairs)
        rc, err = il.stop_and_log(p)
        self.assertEqual(rc, 0, err)
        self.assertIn("received=3 spawned=3", err)

    def test_fds_beyond_the_child_limit_wait_for_a_free_slot(self):
        # -c 1 and three fds in one message: served one after another, none
        # closed, and the socket is not read meanwhile.
        p = self.start(options=("-c", "1"), program=["sh", "-c", "echo served; sleep 0.2"])
        sender = rp.autobound_sender(self.path)
        self.addCleanup(sender.close)
        pairs = self.connections(3)
        rp.send_fds(sender, [theirs.fileno() for _ours, theirs in pairs])
        self.assert_served(pairs)
        sbxtest.wait_for(lambda: il.children_of(p.pid) == [], what="children reaped")
        rc, err = il.stop_and_log(p)
        self.assertEqual(rc, 0, err)
        self.assertIn("received=3 spawned=3", err)
        self.assertIn("closed_at_exit=0", err)

    def test_without_the_variable_a_hello_but_no_acks(self):
        p = self.start()
        sender = rp.autobound_sender(self.path)
        self.addCleanup(sender.close)
        pairs = self.connections(2)
        for _ours, theirs in pairs:
            rp.send_fds(sender, [theirs.fileno()])
        self.assert_served(pairs)
        self.assertEqual(rp.replies(sender), [(rp.HELLO, rp.MAX_FDS_PER_MESSAGE, False)])
        sbxtest.stop(p)

    def test_probe_is_not_acknowledged(self):
        p = self.start(env={"SKBOX_ACKNOWLEDGE": "1"})
        sender = rp.autobound_sender(self.path)
        self.addCleanup(sender.close)
        sender.send(rp.PROBE)
        pairs = self.connections(1)
        rp.send_fds(sender, [pairs[0][1].fileno()])
        sender.send(rp.PROBE)
        self.assert_served(pairs)
        got = rp.replies_until(sender, 1)
        self.assertEqual(len(rp.hellos(got)), 1)
        self.assertEqual(rp.acked(got), 1)
        rc, err = il.stop_and_log(p)
        self.assertIn("received=1 spawned=1", err)

    def test_child_does_not_inherit_the_setting(self):
        p = self.start(env={"SKBOX_ACKNOWLEDGE": "1"})
        pairs = self.connections(1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            sbxtest.send_fd(s, pairs[0][1].fileno(), self.path)
        pairs[0][1].close()
        out = il.read_all(pairs[0][0], timeout=10).decode()
        self.assertIn("PROTO=UNIX", out)
        self.assertNotIn("SKBOX_ACKNOWLEDGE", out)
        sbxtest.stop(p)

    def test_unnamed_sender_is_served_without_replies(self):
        p = self.start(env={"SKBOX_ACKNOWLEDGE": "1"})
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sender.close)
        sender.connect(self.path)
        pairs = self.connections(1)
        rp.send_fds(sender, [pairs[0][1].fileno()])
        self.assert_served(pairs)
        self.assertEqual(rp.replies(sender), [])
        sbxtest.stop(p)

    def test_malformed_value_is_an_error_naming_the_variable(self):
        for value in ("2", "yes", ""):
            with self.subTest(value=value):
                r = sbxtest.sh(
                    il.binary("socketbox-inetd"),
                    self.path,
                    "true",
                    check=False,
                    env=dict(os.environ, SKBOX_ACKNOWLEDGE=value),
                )
                self.assertEqual(r.returncode, 1)
                self.assertIn(f"SKBOX_ACKNOWLEDGE='{value}': expected 0 or 1", r.stderr)
                self.assertFalse(os.path.exists(self.path))

    def test_registration_mode_accepts_the_variable(self):
        # -p has no sender address to answer: the variable is read (so a
        # malformed one is still an error) and otherwise changes nothing.
        r = sbxtest.sh(
            il.binary("socketbox-inetd-p"),
            self.path,
            "1",
            "true",
            check=False,
            env=dict(os.environ, SKBOX_ACKNOWLEDGE="x"),
        )
        self.assertEqual(r.returncode, 1)
        self.assertIn("SKBOX_ACKNOWLEDGE='x'", r.stderr)


class InetdAcrossNamespaces(unittest.TestCase):
    """An autobound name belongs to its network namespace: a receiver in
    another one cannot answer, and is served one fd per message as ever."""

    def test_receiver_in_another_netns_cannot_answer(self):
        topo = sbxtest.Topology().__enter__()
        self.addCleanup(topo.close)
        path = topo.path("inetd.sock")
        p = il.start_inetd(topo, path, HELLO_PROG, env={"SKBOX_ACKNOWLEDGE": "1"})
        sender = rp.autobound_sender(path)
        self.addCleanup(sender.close)
        ours, theirs = socket.socketpair()
        rp.send_fds(sender, [theirs.fileno()])
        theirs.close()
        self.assertTrue(il.read_all(ours, timeout=10).startswith(b"served\n"))
        ours.close()
        self.assertEqual(rp.replies(sender, quiet=0.5), [])
        rc, err = il.stop_and_log(p)
        self.assertEqual(rc, 0, err)
        self.assertIn("received=1 spawned=1", err)


if __name__ == "__main__":
    sbxtest.run_tap(InetdReceiverProtocol, InetdAcrossNamespaces, skip_reason=il.skip_reason())
