"""The preload as a receiver of the receiver protocol
(docs/receiver-protocol.md): python3 under libsocketbox-preload.so accepts on
an AF_UNIX datagram socket; the test sends from an autobound socket connected
to it (as the engine does) and reads what the preload answers."""
import os
import shutil
import socket
import subprocess
import tempfile
import unittest

import preload_common as pc
from preload_common import sbxtest
import receiver_protocol as rp  # noqa: E402  (tests/lib, on the path by preload_common)

# Accepts `count` connections on argv[1] with `threads` threads at once,
# writes "served" to each; says "bound" once the socket is there.
SERVER = r"""
import socket, sys, threading
path, count, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
print("bound", flush=True)
def work(n):
    for _ in range(n):
        conn, _ = s.accept()
        conn.sendall(b"served\n")
        conn.close()
ts = [threading.Thread(target=work, args=(count // threads,)) for _ in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
print("done", flush=True)
"""


class PreloadReceiverProtocol(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.mkdtemp(prefix="sbx-rp-")
        self.addCleanup(shutil.rmtree, tmp, True)
        self.path = os.path.join(tmp, "app.sock")

    def start(self, count, threads=1, **env):
        p = sbxtest.spawn(
            [pc.PYTHON, "-c", SERVER, self.path, str(count), str(threads)],
            env={"LD_PRELOAD": pc.LIBRARY, **env},
            stdout=subprocess.PIPE,
        )
        self.assertEqual(p.stdout.readline(), b"bound\n", p.stderr.read() if p.poll() else "")
        return p

    def pass_connections(self, sender, n, per_message=1):
        pairs = [socket.socketpair() for _ in range(n)]
        for i in range(0, n, per_message):
            rp.send_fds(sender, [theirs.fileno() for _, theirs in pairs[i : i + per_message]])
        for _, theirs in pairs:
            theirs.close()
        return [ours for ours, _ in pairs]

    def finish(self, p, served):
        out, err = p.communicate(timeout=20)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(out, b"done\n")
        for ours in served:
            ours.settimeout(10)
            self.assertEqual(ours.recv(16), b"served\n")
            ours.close()
        return err.decode()

    def test_acknowledges_with_max_fds_one(self):
        p = self.start(5, SKBOX_ACKNOWLEDGE="1")
        sender = rp.autobound_sender(self.path)
        self.addCleanup(sender.close)
        served = self.pass_connections(sender, 5)
        self.finish(p, served)
        got = rp.replies_until(sender, 5)
        self.assertEqual(got[0], (rp.HELLO, 1, True))
        self.assertEqual(len(rp.hellos(got)), 1)
        self.assertEqual(rp.acked(got), 5)

    def test_threads_accepting_on_one_socket_keep_acks_exact(self):
        p = self.start(200, threads=4, SKBOX_ACKNOWLEDGE="1")
        sender = rp.autobound_sender(self.path)
        self.addCleanup(sender.close)
        served = []
        got = []
        for _ in range(20):  # in rounds, reading replies between them
            served += self.pass_connections(sender, 10)
            got += rp.replies(sender, quiet=0.05)
        self.finish(p, served)
        got += rp.replies(sender)
        self.assertEqual(len(rp.hellos(got)), 1, got[:5])
        self.assertEqual(rp.acked(got), 200)

    def test_without_the_variable_nothing_is_sent_back(self):
        p = self.start(2)
        sender = rp.autobound_sender(self.path)
        self.addCleanup(sender.close)
        served = self.pass_connections(sender, 2)
        self.finish(p, served)
        self.assertEqual(rp.replies(sender), [])

    def test_several_fds_in_one_message_give_the_first(self):
        # The preload never declares more than one fd: an engine that sends
        # several anyway loses the rest (closed), as with the original.
        p = self.start(1, SKBOX_ACKNOWLEDGE="1")
        sender = rp.autobound_sender(self.path)
        self.addCleanup(sender.close)
        served = self.pass_connections(sender, 3, per_message=3)
        self.finish(p, served[:1])
        for ours in served[1:]:
            ours.settimeout(10)
            self.assertEqual(ours.recv(16), b"")
            ours.close()
        self.assertEqual(rp.acked(rp.replies_until(sender, 3)), 3)  # fds, the two closed too

    def test_errno_is_the_applications(self):
        # A non-blocking accept with nothing queued: EAGAIN, whatever the
        # protocol's bookkeeping did before.
        code = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
            f"s.bind({self.path!r})\n"
            "s.setblocking(False)\n"
            "try:\n"
            "    s.accept()\n"
            "except BlockingIOError as e:\n"
            "    print('EAGAIN', e.errno)\n"
        )
        r = pc.run_under_preload(code, {"SKBOX_ACKNOWLEDGE": "1"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("EAGAIN 11", r.stdout)

    def test_malformed_value_is_reported(self):
        r = pc.run_under_preload("print('ran')", {"SKBOX_ACKNOWLEDGE": "yes"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('SKBOX_ACKNOWLEDGE="yes" is malformed: expected 0 or 1', r.stderr)


if __name__ == "__main__":
    sbxtest.run_tap(PreloadReceiverProtocol, skip_reason=pc.skip_reason())
