"""A hostile backend for the suites (issue 18's cases): a receiver that
speaks the receiver protocol to take as much of the engine as it can.

  never_ack  declares acks in its hello, takes every fd, never acks: the
             engine holds each connection for it;
  rebind     the same, and re-binds its path every `rebind_s` seconds: the
             engine loses its socket and sends what it held again;
  honest     not hostile: acks every message it takes (the yardstick: what
             the same burst costs the others from a backend that behaves);
  flood      declares acks, and answers every message with `flood` empty
             datagrams and overacks: what it costs the engine to read them.

It runs in a process of its own (HostileProcess: run in the engine's
network namespace, where the engine's sending sockets' abstract names
exist), so that it takes no turns from the test's own clients; its counts
come back as JSON lines. The fds it takes are kept open (a tenant that
hoards), up to `hoard`, then closed.
"""
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time


def hello(max_fds, acks):
    return b"SBXR" + bytes([1, 1]) + struct.pack(">HI", max_fds, 1 if acks else 0) + bytes(4)


def ack(count):
    return b"SBXR" + bytes([2, 1]) + struct.pack(">HI", 0, count) + bytes(4)


class HostileReceiver:
    def __init__(self, path, mode, rebind_s=0.5, flood=64, hoard=512):
        self.path, self.mode = path, mode
        self.rebind_s, self.flood, self.hoard = rebind_s, flood, hoard
        self.taken = 0
        self.sent = 0  # datagrams it answered with (that the engine's socket took)
        self.refused = 0  # ... and those it did not: the engine left them to fill its buffer
        self.rebinds = 0
        self.error = None  # what ended its loop early
        self.kept = []
        self.stopped = False
        self.sock = self._bind()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _bind(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        s.bind(self.path)
        os.chmod(self.path, 0o666)
        # Non-blocking, not a timeout: Python waits out a timeout on EAGAIN
        # even with MSG_DONTWAIT, and a flooder must not slow itself down.
        s.setblocking(False)
        return s

    def _run(self):
        greeted = set()
        next_rebind = time.monotonic() + self.rebind_s
        while not self.stopped:
            if self.mode == "rebind" and time.monotonic() >= next_rebind:
                old, self.sock = self.sock, self._bind()
                old.close()  # what was queued in it goes with it
                greeted.clear()
                self.rebinds += 1
                next_rebind = time.monotonic() + self.rebind_s
            if not select.select([self.sock], [], [], 0.05)[0]:
                continue
            try:
                _, anc, _, sender = self.sock.recvmsg(16, socket.CMSG_SPACE(64 * 4))
            except BlockingIOError:
                continue
            except OSError as e:
                self.error = e
                return
            fds = 0
            for level, typ, data in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds += len(data) // 4
                    for fd in struct.unpack(f"{len(data) // 4}i", data[: len(data) // 4 * 4]):
                        self.taken += 1
                        self.kept.append(fd)
                        if len(self.kept) > self.hoard:
                            os.close(self.kept.pop(0))
            if not sender:
                continue
            if sender not in greeted:
                greeted.add(sender)
                self._answer(hello(1, True), sender)
            if self.mode == "flood":
                for i in range(self.flood):
                    self._answer(b"" if i % 2 else ack(1000), sender)
            if self.mode == "honest" and fds:
                self._answer(ack(fds), sender)

    def _answer(self, data, sender):
        try:
            self.sock.sendto(data, socket.MSG_DONTWAIT, sender)
            self.sent += 1
        except OSError:
            self.refused += 1  # its send buffer is full: a flood goes on regardless

    def close(self):
        self.stopped = True
        self.thread.join(timeout=5)
        self.sock.close()
        for fd in self.kept:
            os.close(fd)
        self.kept = []
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class HostileProcess:
    """A HostileReceiver in a process of its own, in namespace `ns`; its
    counts (taken, sent, refused, rebinds) as attributes, kept current."""

    def __init__(self, path, ns, mode, **options):
        argv = [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            os.path.abspath(__file__),
            path,
            mode,
            json.dumps(options),
        ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True)
        self.taken = self.sent = self.refused = self.rebinds = 0
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.ready.wait(10):
            raise AssertionError(f"hostile receiver at {path} did not start")

    def _read(self):
        for line in self.proc.stdout:
            self.__dict__.update(json.loads(line))
            self.ready.set()

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=2)


def main(path, mode, options):
    r = HostileReceiver(path, mode, **json.loads(options))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.1):
        print(
            json.dumps(
                {"taken": r.taken, "sent": r.sent, "refused": r.refused, "rebinds": r.rebinds}
            ),
            flush=True,
        )
    r.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
