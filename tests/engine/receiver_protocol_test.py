"""The receiver protocol against the real daemon (docs/receiver-protocol.md):
several fds per message only to a receiver that declared it, exactly one to
one that did not, and acknowledged delivery that loses nothing when the
receiver's socket goes away with connections queued in it."""
import errno
import os
import selectors
import signal
import socket
import struct
import threading
import time

from engine_fixture import BUILD, Engine, TopologyTest, fetch, sbxtest, write

A = "2001:db8:1::"
HELLO, ACK = 1, 2


def receiver_message(kind, max_fds=0, flags=0, count=0):
    if kind == HELLO:
        return b"SBXR" + bytes([HELLO, 1]) + struct.pack(">HI", max_fds, flags) + bytes(4)
    return b"SBXR" + bytes([ACK, 1]) + struct.pack(">HI", 0, count) + bytes(4)


class ProtocolBackend:
    """A receiver written from the protocol's description: answers each new
    sender with a hello (max_fds, acks) and, with acks, acknowledges every
    fd-carrying message; greets each connection with `name`. Records how
    many fds each message carried. `reading` can be cleared to stop reading
    (connections then queue in its socket)."""

    def __init__(self, path, name, max_fds=1, acks=False, ns=None):
        self.path, self.name, self.max_fds, self.acks = path, name.encode(), max_fds, acks
        self.per_message = []
        self.lock = threading.Lock()
        self.reading = threading.Event()
        self.reading.set()
        self.idle = threading.Event()  # set by the serving thread while it reads nothing
        self.greeted = set()
        # The daemon's sending sockets have abstract names, which exist per
        # network namespace: a receiver answers from a socket made in the
        # daemon's namespace (`ns`), or its answers find nobody.
        self.sock = (
            sbxtest.socket_in(ns, socket.AF_UNIX, socket.SOCK_DGRAM)
            if ns
            else socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        )
        self.sock.bind(path)
        self.answers_refused = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.sock.settimeout(0.1)
        while not self.stopped:
            if not self.reading.is_set():
                self.idle.set()
                self.reading.wait(timeout=0.1)
                continue
            self.idle.clear()
            try:
                _, anc, _, sender = self.sock.recvmsg(16, socket.CMSG_SPACE(64 * 4))
            except socket.timeout:
                continue
            except OSError:
                return
            fds = []
            for level, typ, data in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds.extend(struct.unpack(f"{len(data) // 4}i", data[: len(data) // 4 * 4]))
            if sender and sender not in self.greeted:
                flags = 1 if self.acks else 0
                if self._answer(receiver_message(HELLO, self.max_fds, flags), sender):
                    with self.lock:
                        self.greeted.add(sender)
            if fds and self.acks and sender in self.greeted:
                self._answer(receiver_message(ACK, count=len(fds)), sender)
            with self.lock:
                if fds:
                    self.per_message.append(len(fds))
            for fd in fds:
                conn = socket.socket(fileno=fd)
                try:
                    conn.sendall(self.name)
                except OSError:
                    pass
                conn.close()

    def _answer(self, message, sender):
        try:
            self.sock.sendto(message, sender)
            return True
        except OSError:  # e.g. a sender in another network namespace
            self.answers_refused += 1
            return False

    def stop_reading(self):
        """Returns once the serving thread reads no more: a receive already
        waiting when this is called has ended."""
        self.reading.clear()
        if not self.idle.wait(timeout=5):
            raise AssertionError(f"{self.path}: the receiver did not stop reading")

    def said_hello(self):
        with self.lock:
            return bool(self.greeted)

    def received(self):
        with self.lock:
            return sum(self.per_message)

    def most_per_message(self):
        with self.lock:
            return max(self.per_message, default=0)

    def crash(self):
        """What a killed receiver's socket does: released with its queue
        unread (the kernel closes the queued fds)."""
        self.stopped = True
        self.sock.close()
        self.thread.join(timeout=2)
        os.unlink(self.path)

    close = crash


def burst(ns, host, port, total, in_flight):
    """`total` connections, `in_flight` at a time; returns the greetings."""
    sel = selectors.DefaultSelector()
    started, greetings = 0, []
    deadline = time.monotonic() + 30
    while (started < total or sel.get_map()) and time.monotonic() < deadline:
        while started < total and len(sel.get_map()) < in_flight:
            s = sbxtest.socket_in(ns)
            s.setblocking(False)
            if s.connect_ex((host, port)) not in (0, errno.EINPROGRESS):
                s.close()
                greetings.append(b"")
            else:
                sel.register(s, selectors.EVENT_READ, [b""])
            started += 1
        for key, _ in sel.select(timeout=0.5):
            try:
                chunk = key.fileobj.recv(64)
            except OSError:
                chunk = b""
            if chunk:
                key.data[0] += chunk
                continue
            sel.unregister(key.fileobj)
            key.fileobj.close()
            greetings.append(key.data[0])
    for key in list(sel.get_map().values()):
        key.fileobj.close()
        greetings.append(b"")
    return greetings


def answers_read(eng, ns):
    """True once no datagram waits in any of the engine's Unix datagram
    sockets: every hello or ack sent to it has been read. (ss's Recv-Q of a
    datagram socket is the size of the first datagram queued.)"""
    out = sbxtest.sh("ip", "netns", "exec", ns, "ss", "-Hxap").stdout
    mine = [
        line.split()
        for line in out.splitlines()
        if line.startswith("u_dgr") and f"pid={eng.proc.pid}," in line
    ]
    return bool(mine) and all(fields[2] == "0" for fields in mine)


def sent_messages(eng, n):
    """True once the engine has queued `n` fd-carrying messages in all."""
    return eng.stats(settle=False)["messages"] == n


def read_and_close(socks):
    """What each connected client reads first (b"" if closed or reset)."""
    greetings = []
    for s in socks:
        try:
            greetings.append(s.recv(64))
        except OSError:
            greetings.append(b"")
        s.close()
    return greetings


class ReceiverProtocolTest(TopologyTest):
    def receivers(self, *made):
        self.backends.extend(made)
        return made

    def test_several_fds_per_message_only_to_a_receiver_that_declared_it(self):
        (multi,) = self.receivers(
            ProtocolBackend(self.topo.path("multi.sock"), "multi", max_fds=8, ns=self.topo.server)
        )
        (plain,) = self.receivers(
            ProtocolBackend(self.topo.path("plain.sock"), "plain", max_fds=1, ns=self.topo.server)
        )
        conf = write(
            self.topo.path("c.conf"),
            f"max-rules:1\nrule-set:0 size:2\nip:{A}1 jump-unix:{multi.path}\n"
            f"default jump-unix:{plain.path}\n",
        )
        eng = Engine(["-f", conf, "-p", "80", "--threads", "1"], ns=self.topo.server)
        for host, name, receiver in ((f"{A}1", b"multi", multi), (f"{A}2", b"plain", plain)):
            self.assertEqual(fetch(self.topo.client, host, 80), name)  # the hello goes back
            greetings = burst(self.topo.client, host, 80, total=1500, in_flight=200)
            self.assertEqual(greetings.count(name), 1500, f"{name}: {greetings.count(b'')} lost")
            self.assertEqual(receiver.received(), 1501)
        st = eng.stats()
        self.assertEqual(st["dispatched"], 3002)
        self.assertEqual(st["dropped"], 0)
        self.assertEqual(plain.most_per_message(), 1)
        self.assertLessEqual(multi.most_per_message(), 8)
        self.assertGreater(multi.most_per_message(), 1, "no message carried several fds")
        print(
            f"# multi: {len(multi.per_message)} messages for 1501 connections, at most "
            f"{multi.most_per_message()} per message; messages counter {st['messages']}",
            flush=True,
        )
        self.assertEqual(eng.stop(), 0)

    def test_receiver_in_another_network_namespace_gets_one_fd_per_message(self):
        """Its answers cannot reach the daemon's abstract names: it is served
        as a receiver that never answered, and loses nothing."""
        (outside,) = self.receivers(
            ProtocolBackend(self.topo.path("out.sock"), "outside", max_fds=8, acks=True)
        )
        conf = write(
            self.topo.path("n.conf"),
            f"max-rules:1\nrule-set:0 size:1\ndefault jump-unix:{outside.path}\n",
        )
        eng = Engine(["-f", conf, "-p", "80", "--threads", "1"], ns=self.topo.server)
        greetings = burst(self.topo.client, f"{A}1", 80, total=500, in_flight=200)
        self.assertEqual(greetings.count(b"outside"), 500)
        self.assertEqual(outside.most_per_message(), 1)
        self.assertGreater(outside.answers_refused, 0)
        st = eng.stats()
        self.assertEqual((st["dispatched"], st["messages"], st["dropped"]), (500, 500, 0))
        self.assertEqual(eng.stop(), 0)

    def test_original_receiver_gets_one_fd_per_message(self):
        """A receiver that never answers (the original's, or any other) is
        never sent more than one fd: Backend closes extra fds, so a packed
        message would lose connections here."""
        original = self.backend("original")
        conf = write(
            self.topo.path("o.conf"),
            f"max-rules:1\nrule-set:0 size:1\ndefault jump-unix:{original.path}\n",
        )
        eng = Engine(["-f", conf, "-p", "80", "--threads", "1"], ns=self.topo.server)
        greetings = burst(self.topo.client, f"{A}1", 80, total=1000, in_flight=200)
        self.assertEqual(greetings.count(b"original"), 1000)
        st = eng.stats()
        self.assertEqual(st["messages"], 1000)
        self.assertEqual(eng.stop(), 0)

    def _crash_with_queued_connections(self, acks):
        """A receiver that stops reading with connections queued in its
        socket, then goes away; a new one binds the path. Returns the
        greetings of the queued clients and the daemon's counters."""
        path = self.topo.path("r.sock")
        first = ProtocolBackend(path, "first", acks=acks, ns=self.topo.server)
        conf = write(
            self.topo.path("r.conf"), f"max-rules:1\nrule-set:0 size:1\ndefault jump-unix:{path}\n"
        )
        eng = Engine(
            ["-f", conf, "-p", "80", "--threads", "1", "--dispatch-timeout", "10000"],
            ns=self.topo.server,
        )
        try:
            self.assertEqual(fetch(self.topo.client, f"{A}1", 80), b"first")
            sbxtest.wait_for(first.said_hello, what="the receiver's hello sent")
            sbxtest.wait_for(lambda: answers_read(eng, self.topo.server), what="the hello read")
            first.stop_reading()
            queued = []
            for _ in range(8):  # fewer than the queue holds (net.unix.max_dgram_qlen)
                s = sbxtest.socket_in(self.topo.client)
                s.settimeout(15)
                s.connect((f"{A}1", 80))
                queued.append(s)
            # One fd per message (max_fds 1): all 9 sent, 8 in the receiver's queue.
            sbxtest.wait_for(lambda: sent_messages(eng, 9), what="9 messages sent")
            first.crash()
            second = ProtocolBackend(path, "second")
            self.backends.append(second)
            greetings = read_and_close(queued)
            st = eng.stats()
            self.assertEqual(eng.stop(), 0)
            return greetings, st
        finally:
            if eng.proc.poll() is None:
                eng.stop()

    def test_acknowledging_receiver_that_crashes_loses_nothing(self):
        greetings, st = self._crash_with_queued_connections(acks=True)
        self.assertEqual(greetings, [b"second"] * 8, st)
        self.assertEqual(st["redelivered"], 8, st)
        self.assertEqual(st["dropped"], 0, st)
        self.assertEqual(st["accepted"], st["dispatched"], st)
        self.assertEqual(st["unconfirmed"], 0, st)

    def test_receiver_without_acks_that_crashes_loses_its_queue(self):
        """The baseline the acks are for: the kernel closes what was queued,
        and the daemon cannot tell (docs/receiver-protocol.md)."""
        greetings, st = self._crash_with_queued_connections(acks=False)
        self.assertEqual(greetings, [b""] * 8, st)
        self.assertEqual(st["redelivered"], 0, st)
        self.assertEqual(st["dispatched"], 9, st)  # counted as handed over: it was

    def _inetd_killed_with_queued_connections(self, acknowledge):
        """socketbox-inetd, stopped (SIGSTOP) with 6 connections queued in its
        socket, then killed (SIGKILL); a new one binds the path. Returns what
        the queued clients read and the daemon's counters."""
        inetd = os.path.join(BUILD, "inetd", "socketbox-inetd")
        path = self.topo.path("inetd.sock")
        env = {"SKBOX_ACKNOWLEDGE": "1"} if acknowledge else {}

        def start(word):
            p = sbxtest.spawn(
                [inetd, path, "sh", "-c", f"echo {word}"], ns=self.topo.server, env=env
            )
            sbxtest.wait_for(lambda: os.path.exists(path), what="inetd socket")
            return p

        first = start("first")
        conf = write(
            self.topo.path("i.conf"), f"max-rules:1\nrule-set:0 size:1\ndefault jump-unix:{path}\n"
        )
        eng = Engine(
            ["-f", conf, "-p", "80", "--threads", "1", "--dispatch-timeout", "10000"],
            ns=self.topo.server,
        )
        second = None
        try:
            self.assertEqual(fetch(self.topo.client, f"{A}1", 80), b"first\n")
            # It answered the hello before it started the child that greeted.
            sbxtest.wait_for(lambda: answers_read(eng, self.topo.server), what="its hello read")
            first.send_signal(signal.SIGSTOP)
            queued = []
            for i in range(6):
                s = sbxtest.socket_in(self.topo.client)
                s.settimeout(15)
                s.connect((f"{A}1", 80))
                queued.append(s)
                # One at a time, so that each goes in a message of its own:
                # the count of messages is then the count of fds sent.
                sbxtest.wait_for(lambda: sent_messages(eng, 2 + i), what=f"message {2 + i} sent")
            first.kill()
            first.wait()
            os.unlink(path)
            second = start("second")
            greetings = read_and_close(queued)
            st = eng.stats()
            self.assertEqual(eng.stop(), 0)
            return greetings, st
        finally:
            for p in (first, second):
                if p is not None:
                    sbxtest.stop(p, signal.SIGKILL)
            if eng.proc.poll() is None:
                eng.stop()

    def test_socketbox_inetd_killed_with_acks_loses_nothing(self):
        greetings, st = self._inetd_killed_with_queued_connections(acknowledge=True)
        self.assertEqual(greetings, [b"second\n"] * 6, st)
        self.assertEqual((st["redelivered"], st["dropped"], st["unconfirmed"]), (6, 0, 0), st)
        self.assertEqual(st["accepted"], st["dispatched"], st)

    def test_socketbox_inetd_killed_without_acks_loses_its_queue(self):
        greetings, st = self._inetd_killed_with_queued_connections(acknowledge=False)
        self.assertEqual(greetings, [b""] * 6, st)
        self.assertEqual(st["redelivered"], 0, st)


if __name__ == "__main__":
    sbxtest.run_tap(ReceiverProtocolTest, skip_reason=sbxtest.require_root_and_netns())
