"""Python 3 servers under libsocketbox-preload.so, fed by the real socketbox
daemon: the compatibility page's AF_UNIX datagram + accept() loop, and
socket.create_server() on fe8f:: addresses (record file and directory2);
each with kernel dispatch off and on (the preload takes the listener at
bind, or at listen() for the datagram socket the program binds itself)."""
import os
import subprocess
import sys
import unittest

import preload_common as pc
from preload_common import sbxtest

# Debian's python3 (the servers); the suite itself may run under another.
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

# Answers each connection with one line naming the peer, then closes.
SERVE = r"""
import socket, sys
def serve(s, count):
    for _ in range(count):
        conn, peer = s.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(f"HTTP/1.0 200 OK\r\n\r\npeer={peer[0]} family={conn.family}\n".encode())
"""

DGRAM_LOOP = (
    SERVE
    + r"""
# The compatibility page's recipe: an AF_UNIX datagram socket and accept().
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.listen()   # a no-op under the preload, as the original
serve(s, 5)
"""
)

CREATE_SERVER = (
    SERVE
    + r"""
s = socket.create_server((sys.argv[1], 80), family=socket.AF_INET6)
print("bound", s.getsockname(), flush=True)
serve(s, 5)
"""
)

# Non-blocking listener watched with epoll (selectors), as event loops do.
SELECT_LOOP = (
    SERVE
    + r"""
import selectors
s = socket.create_server((sys.argv[1], 80), family=socket.AF_INET6)
s.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(s, selectors.EVENT_READ)
print("selector", type(sel).__name__, flush=True)
served = 0
while served < 5:
    for key, _ in sel.select(timeout=20):
        while True:
            try:
                conn, peer = s.accept()
            except BlockingIOError:
                break
            conn.setblocking(True)
            with conn:
                conn.recv(1024)
                conn.sendall(f"HTTP/1.0 200 OK\r\n\r\npeer={peer[0]}\n".encode())
            served += 1
"""
)


class PythonServerTest(pc.BothModes, unittest.TestCase):
    def serve_and_check(self, topo, code, arg, backend, env):
        p = self.serve(
            topo,
            backend,
            lambda extra: topo.spawn_server(
                [PYTHON, "-c", code, arg], env={**env, **extra}, stdout=subprocess.PIPE
            ),
        )
        for _ in range(5):
            status, _, body = pc.http_get_eventually(topo, pc.PUBLIC6, proc=p)
            self.assertEqual(status, 200)
            self.assertIn(f"peer={pc.CLIENT6}", body)
        self.assertEqual(p.wait(timeout=10), 0, p.stderr.read())
        self.assert_steered(5)
        return p.stdout.read().decode()

    def test_unix_dgram_socket_accept_loop(self):
        with sbxtest.Topology() as topo:
            backend = topo.path("python.sock")
            self.serve_and_check(topo, DGRAM_LOOP, backend, backend, {"LD_PRELOAD": pc.LIBRARY})

    def test_create_server_on_directory2_address(self):
        with sbxtest.Topology() as topo:
            env = pc.preload_env(topo)
            backend = pc.directory2_path(env["SKBOX_DIRECTORY_ROOT2"], 0, 1, 80)
            out = self.serve_and_check(topo, CREATE_SERVER, pc.FE8F_DIR2, backend, env)
            # getsockname answers with the address the program bound.
            self.assertIn("bound ('fe8f::2:0:1', 80, 0, 0)", out)

    def test_create_server_on_record_file_address(self):
        with sbxtest.Topology() as topo:
            root = topo.path("records")
            os.makedirs(root)
            backend_template = topo.path("rec_@SB_.sock")
            record = backend_template.encode().ljust(128, b"\0")
            with open(os.path.join(root, "skbox_dir_00007"), "wb") as f:
                f.write(b"\0" * 128 * 2 + record)  # record 2
            env = {"LD_PRELOAD": pc.LIBRARY, "SKBOX_DIRECTORY_ROOT": root}
            out = self.serve_and_check(
                topo, CREATE_SERVER, "fe8f::7:2", topo.path("rec00080.sock"), env
            )
            self.assertIn("bound ('fe8f::7:2', 80, 0, 0)", out)
            self.assertEqual(os.stat(topo.path("rec00080.sock")).st_mode & 0o777, 0o660)

    def test_nonblocking_listener_with_epoll(self):
        with sbxtest.Topology() as topo:
            env = pc.preload_env(topo)
            backend = pc.directory2_path(env["SKBOX_DIRECTORY_ROOT2"], 0, 1, 80)
            out = self.serve_and_check(topo, SELECT_LOOP, pc.FE8F_DIR2, backend, env)
            self.assertIn("selector EpollSelector", out)


if __name__ == "__main__":
    sbxtest.run_tap(
        PythonServerTest,
        pc.with_kernel_dispatch(PythonServerTest),
        skip_reason=pc.skip_reason(pc.ENGINE),
    )
