"""Privilege separation as Postfix's and Dovecot's masters do it, under
libsocketbox-preload.so, fed by the real socketbox daemon, with kernel
dispatch off and on.

A master (Debian's python3) binds and listens on fe8f::2:0:1 port 80 as
root, drops to nobody (65534) and forks two children that accept from the
inherited listening fd: one in a blocking accept(), one waiting in epoll
first (as Postfix's and Dovecot's event loops do; the listener stays
blocking, its O_NONBLOCK being shared with the other child). Each answers
with its kind, pid and uid. With kernel dispatch on, the master took the
daemon's listener at bind, as root; the children, as nobody, accept from
it. Which child a connection wakes is the kernel's choice, so each kind is
made to serve alone by stopping the other (SIGSTOP), then both together.

And the real thing: Debian's Dovecot (dovecot-core, dovecot-pop3d). Its
master binds the POP3 listener as root and stays root; it forks and execs
pop3-login processes that run as dovenull, chrooted, and accept from the
listening fd they inherit across exec (where the library's memory of it
is lost: with kernel dispatch the fd is the daemon's TCP listener, which
the kernel's own accept serves; without, the datagram socket, which the
library in the login process accepts from as from any). Debian's postfix
cannot be installed beside exim4-daemon-light (the inetd suites' exim:
both are the mail-transport-agent)."""
import os
import pwd
import re
import shutil
import signal
import subprocess
import threading
import unittest

import preload_common as pc
from preload_common import sbxtest

NOBODY = 65534

MASTER = r"""
import os, select, socket, sys
s = socket.create_server((sys.argv[1], 80), family=socket.AF_INET6)
# One write(2) per line: the children's lines must not interleave.
say = lambda *words: os.write(1, (" ".join(map(str, words)) + "\n").encode())
say("master bound", os.getuid(), s.getsockname()[:2])
os.setgroups([])
os.setgid(65534)
os.setuid(65534)

def serve(kind):
    ep = None
    if kind == "epoll":
        ep = select.epoll()
        ep.register(s.fileno(), select.EPOLLIN)
    say("ready", kind, os.getpid())
    while True:
        if ep is not None:
            ep.poll()
        # Blocking: another child may take the connection first; this one
        # then waits here for the next.
        conn, peer = s.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(f"{kind} pid={os.getpid()} uid={os.getuid()} peer={peer[0]}\n".encode())

for kind in ("blocking", "epoll"):
    if os.fork() == 0:
        try:
            serve(kind)
        finally:
            os._exit(1)
# The master keeps the listener, as Postfix's and Dovecot's do.
while True:
    os.wait()
"""

ROUND = 6  # connections per phase

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
POP3_LOGIN = "/usr/lib/dovecot/pop3-login"

# Only what a POP3 greeting needs, everything under the test's directory.
# import_environment: Dovecot clears its children's environment.
DOVECOT_CONF = """
base_dir = {tmp}/run
state_dir = {tmp}/state
log_path = {tmp}/dovecot.log
protocols = pop3
listen = {listen}
ssl = no
login_greeting = Dovecot through socketbox ready.
disable_plaintext_auth = no
mail_location = maildir:{tmp}/mail/%u
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={tmp}/mail/%u
}}
import_environment = TZ LD_PRELOAD SKBOX_DIRECTORY_ROOT2 SKBOX_LISTENER_SOCKET
service pop3-login {{
  inet_listener pop3 {{
    port = 110
  }}
  inet_listener pop3s {{
    port = 0
  }}
  process_min_avail = 2
}}
"""


def process_state(pid):
    """R, S, T...: the state of process `pid` (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def uid_of(pid):
    return int(sbxtest.proc_status(pid)["Uid"].split()[0])


class PrivsepTest(pc.BothModes, unittest.TestCase):
    def ask(self, topo):
        c = sbxtest.connect_from(topo.client, pc.PUBLIC6, 80, timeout=10)
        try:
            c.sendall(b"hello\n")
            data = b""
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    return data.decode(errors="replace")
                data += chunk
        finally:
            c.close()

    def test_root_binds_nobody_children_accept(self):
        with sbxtest.Topology() as topo:
            env = pc.preload_env(topo)
            backend = pc.directory2_path(env["SKBOX_DIRECTORY_ROOT2"], 0, 1, 80)
            p = self.serve(
                topo,
                backend,
                lambda extra: topo.spawn_server(
                    [pc.PYTHON, "-c", MASTER, pc.FE8F_DIR2],
                    env={**env, **extra},
                    stdout=subprocess.PIPE,
                ),
            )
            raw = []
            threading.Thread(target=lambda: raw.extend(p.stdout), daemon=True).start()
            lines = []

            def ready():
                lines[:] = [l.decode(errors="replace").split() for l in list(raw)]
                return sum(l[:1] == ["ready"] for l in lines) == 2 or p.poll() is not None

            try:
                sbxtest.wait_for(ready, timeout=15, what="both children ready")
            except AssertionError as e:
                raise AssertionError(f"{e}: {raw}") from None
            if p.poll() is not None:
                err = p.stderr.read().decode(errors="replace")
                self.fail(f"master exited {p.returncode}: {err}")
            # Bound as root, and the program sees the address it bound.
            self.assertEqual(lines[0], ["master", "bound", "0", "('fe8f::2:0:1',", "80)"])
            children = {l[1]: int(l[2]) for l in lines if l[:1] == ["ready"]}
            for pid in (p.pid, *children.values()):
                self.assertEqual(uid_of(pid), NOBODY, f"pid {pid}")

            def phase(alone=None):
                """ROUND connections, served by the child of kind `alone`
                (the other stopped), or by either; the kinds that served."""
                others = [pid for kind, pid in children.items() if alone and kind != alone]
                for pid in others:
                    os.kill(pid, signal.SIGSTOP)
                # Stopped, not about to stop: a child woken by a connection
                # before it handles SIGSTOP would take it and then stop.
                for pid in others:
                    sbxtest.wait_for(
                        lambda: process_state(pid) == "T", timeout=5, what=f"child {pid} stopped"
                    )
                try:
                    kinds = []
                    for i in range(ROUND):
                        words = self.ask(topo).split()
                        self.assertEqual(len(words), 4, f"connection {i}: {words}")
                        kind = words[0]
                        self.assertIn(kind, children, words)
                        self.assertEqual(
                            words[1:],
                            [f"pid={children[kind]}", f"uid={NOBODY}", f"peer={pc.CLIENT6}"],
                        )
                        kinds.append(kind)
                    return set(kinds)
                finally:
                    for pid in others:
                        os.kill(pid, signal.SIGCONT)

            self.assertEqual(phase("blocking"), {"blocking"})
            self.assertEqual(phase("epoll"), {"epoll"})
            self.assertLessEqual(phase(), set(children))
            self.assert_steered(3 * ROUND)
            sbxtest.stop(p)

    def test_dovecot_login_processes(self):
        if not os.path.exists(DOVECOT) or not os.path.exists(POP3_LOGIN):
            self.skipTest("dovecot-core and dovecot-pop3d not installed")
        dovenull = pwd.getpwnam("dovenull").pw_uid
        with sbxtest.Topology() as topo:
            os.chmod(topo.tmp, 0o755)  # the login processes' chroot is in it
            env = pc.preload_env(topo)
            backend = pc.directory2_path(env["SKBOX_DIRECTORY_ROOT2"], 0, 1, 110)
            conf = topo.path("dovecot.conf")
            with open(conf, "w") as f:
                f.write(DOVECOT_CONF.format(tmp=topo.tmp, listen=pc.FE8F_DIR2))
            p = self.serve(
                topo,
                backend,
                lambda extra: topo.spawn_server([DOVECOT, "-F", "-c", conf], env={**env, **extra}),
                port=110,
            )
            served_by = set()
            for i in range(ROUND):
                c = sbxtest.connect_from(topo.client, pc.PUBLIC6, 110, timeout=10)
                with c, c.makefile("rb") as lines:
                    self.assertEqual(
                        lines.readline(),
                        b"+OK Dovecot through socketbox ready.\r\n",
                        f"connection {i}",
                    )
                    # Who holds the connection: a pop3-login process, as dovenull.
                    ss = topo.ns_sh(
                        topo.server, "ss", "-Htnp", "state", "established", "sport", "=", ":110"
                    ).stdout
                    # (Without kernel dispatch the daemon may not have
                    # closed its copy yet.)
                    holders = [
                        h for h in re.findall(r'\("([^"]+)",pid=(\d+),', ss) if h[0] != "socketbox"
                    ]
                    self.assertEqual(len(holders), 1, ss)
                    self.assertEqual(holders[0][0], "pop3-login", ss)
                    pid = int(holders[0][1])
                    self.assertEqual(uid_of(pid), dovenull, ss)
                    served_by.add(pid)
                    c.sendall(b"QUIT\r\n")
                    self.assertEqual(lines.readline(), b"+OK Logging out\r\n", f"connection {i}")
            # A login process serves one connection (service_count 1).
            self.assertGreaterEqual(len(served_by), 2, served_by)
            self.assertEqual(uid_of(p.pid), 0)
            self.assert_steered(ROUND)
            sbxtest.stop(p)


if __name__ == "__main__":
    sbxtest.run_tap(
        PrivsepTest, pc.with_kernel_dispatch(PrivsepTest), skip_reason=pc.skip_reason(pc.ENGINE)
    )
