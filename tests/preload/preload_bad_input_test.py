"""Bad input: malformed variables, unreadable or short record files, paths
longer than sun_path, missing directories. The bind fails with a sensible
errno, one clear message is printed (once), and nothing else in the program
breaks. Python 3 is the host program; no network namespace is needed."""
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import unittest

import preload_common as pc
from preload_common import sbxtest

# Tries one bind per argument address, prints "OK" or the errno name, then
# proves the rest of the program works: a real loopback TCP round trip.
PROGRAM = r"""
import errno, os, socket, sys
for spec in sys.argv[1:]:
    host, port = spec.rsplit(",", 1)
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        s.bind((host, int(port)))
        print("OK", flush=True)
    except OSError as e:
        print(errno.errorcode[e.errno], flush=True)
    s.close()
l = socket.create_server(("127.0.0.1", 0))
c = socket.create_connection(l.getsockname())
a, _ = l.accept()
c.sendall(b"ping")
assert a.recv(4) == b"ping"
print("ALIVE", flush=True)
"""


class BadInputTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sbx-preload-bad-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_binds(self, env, *addresses, own_netns=False):
        """With own_netns, the program runs in a network namespace of its
        own (gone with it), where well-known ports are surely free."""
        full = {k: str(v) for k, v in env.items()}
        argv = [pc.PYTHON, "-c", PROGRAM, *addresses]
        if own_netns:
            # Only the program under the library: unshare, sh and ip not.
            argv = [
                "unshare",
                "--net",
                "sh",
                "-c",
                'ip link set lo up && LD_PRELOAD="$SBX_TEST_LIBRARY" exec "$@"',
                "sh",
                *argv,
            ]
            full = {**full, "SBX_TEST_LIBRARY": pc.LIBRARY}
        else:
            full = {**full, "LD_PRELOAD": pc.LIBRARY}
        r = subprocess.run(
            argv, env={**os.environ, **full}, capture_output=True, text=True, timeout=30
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.split()
        self.assertEqual(lines[-1], "ALIVE")
        return lines[:-1], r.stderr

    def messages(self, stderr):
        return [l for l in stderr.splitlines() if l.startswith("socketbox-preload[")]

    def test_silent_when_all_is_well(self):
        results, stderr = self.run_binds({"SKBOX_DIRECTORY_ROOT2": self.tmp}, "fe8f::2:0:1,80")
        self.assertEqual(results, ["ENOENT"])  # no 00000 directory: see below
        self.assertEqual(stderr, "")

    def test_malformed_port_filter(self):
        os.makedirs(os.path.join(self.tmp, "00000"))
        results, stderr = self.run_binds(
            {"SKBOX_DIRECTORY_ROOT2": self.tmp, "SKBOX_PORT_FILTER_IPV6": "1024,99999"},
            "fe8f::2:0:1,80",
            "2001:db8::1,80",
        )
        # The class the filter covers fails; other addresses are untouched
        # (2001:db8::1 is not local here: the real bind's own error).
        self.assertEqual(results, ["EINVAL", "EADDRNOTAVAIL"])
        msgs = self.messages(stderr)
        self.assertEqual(len(msgs), 1, stderr)
        self.assertIn('SKBOX_PORT_FILTER_IPV6="1024,99999" is malformed', msgs[0])

    def test_empty_port_filters_count_as_unset(self):
        # Issue 20 item 3: with SKBOX_DIRECTORY_ROOT2 set, an empty
        # SKBOX_PORT_FILTER_IPV4_WILDCARD= made ordinary binds to 0.0.0.0:80
        # fail with EINVAL, and an empty SKBOX_PORT_FILTER_IPV6= every fe8f::
        # bind. The original treats an empty value as unset: 0.0.0.0 and ::
        # are real binds, fe8f:: keeps its default filter (below 1024).
        os.makedirs(os.path.join(self.tmp, "00000"))
        empty = {
            name: ""
            for name in (
                "SKBOX_PORT_FILTER_IPV6",
                "SKBOX_PORT_FILTER_IPV4",
                "SKBOX_PORT_FILTER_IPV6_WILDCARD",
                "SKBOX_PORT_FILTER_IPV4_WILDCARD",
            )
        }
        results, stderr = self.run_binds(
            {"SKBOX_DIRECTORY_ROOT2": self.tmp, **empty},
            "0.0.0.0,80",
            "::,80",
            "127.180.0.1,80",
            "fe8f::2:0:1,80",
            own_netns=True,
        )
        self.assertEqual(results, ["OK", "OK", "OK", "OK"])
        self.assertEqual(stderr, "")
        self.assertTrue(
            stat.S_ISSOCK(os.lstat(os.path.join(self.tmp, "00000", "00001_00080")).st_mode)
        )  # fe8f:: went to its Unix socket
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "X0004")))

    def test_port_filter_numbers_read_as_the_original_read_them(self):
        # Issue 20 item 4: "0x400" and "1024x" count as 1024 and "010" as 8
        # (C strtoul, base 0), as in the original; a warning names the
        # variable and the value, once per process however many binds.
        os.makedirs(os.path.join(self.tmp, "00000"))
        for value, passing, refused in (
            ("0x400", 1023, 1024),
            ("1024x", 1023, 1024),
            ("010", 7, 8),
        ):
            results, stderr = self.run_binds(
                {"SKBOX_DIRECTORY_ROOT2": self.tmp, "SKBOX_PORT_FILTER_IPV6": value},
                f"fe8f::2:0:1,{passing}",
                f"fe8f::2:0:1,{passing - 2}",
            )
            self.assertEqual(results, ["OK", "OK"], value)
            msgs = self.messages(stderr)
            self.assertEqual(len(msgs), 1, stderr)
            self.assertIn(f'SKBOX_PORT_FILTER_IPV6="{value}" is not plain decimal', msgs[0])
            self.assertIn(f"odd ports below {refused}, even ports below {refused}", msgs[0])
            # Not redirected: the kernel's answer to fe8f:: without a scope.
            results, _ = self.run_binds(
                {"SKBOX_DIRECTORY_ROOT2": self.tmp, "SKBOX_PORT_FILTER_IPV6": value},
                f"fe8f::2:0:1,{refused}",
            )
            self.assertEqual(results, ["EINVAL"], value)

    def test_malformed_flags_reported_once_each(self):
        _, stderr = self.run_binds(
            {
                "SKBOX_STEALTH_MODE": "yes",
                "SKBOX_ENABLE_CONNECT": "b",
                "SKBOX_STRICT_STREAM_MODE": "x",
            }
        )
        msgs = self.messages(stderr)
        self.assertEqual(len(msgs), 3, stderr)
        self.assertTrue(any('SKBOX_ENABLE_CONNECT="b"' in m for m in msgs))

    def test_values_are_echoed_escaped(self):
        # Issue 18 item 12: a value with a newline was echoed raw and forged
        # a log line of its own. Now every echoed value is escaped.
        forged = "1\nsocketbox-preload[1]: all is well"
        _, stderr = self.run_binds(
            {"SKBOX_STEALTH_MODE": forged, "SKBOX_STRICT_STREAM_MODE": "\x1b[2J2"}
        )
        lines = stderr.splitlines()
        self.assertEqual(len(lines), 2, stderr)
        self.assertEqual(self.messages(stderr), lines)
        self.assertIn(
            'SKBOX_STEALTH_MODE="1\\x0asocketbox-preload[1]: all is well" is malformed', stderr
        )
        self.assertIn('SKBOX_STRICT_STREAM_MODE="\\x1b[2J2" is malformed', stderr)
        self.assertNotIn("\x1b", stderr)

    def test_out_of_range_levels_reported(self):
        # The original took any digit; above the highest level it acts as
        # the highest, and now says so like any other malformed value.
        _, stderr = self.run_binds({"SKBOX_STRICT_STREAM_MODE": "7"})
        msgs = self.messages(stderr)
        self.assertEqual(len(msgs), 1, stderr)
        self.assertIn('SKBOX_STRICT_STREAM_MODE="7" is malformed: expected 0, 1 or 2', msgs[0])

    def test_message_once_per_process_not_per_call(self):
        os.makedirs(os.path.join(self.tmp, "00000"))
        _, stderr = self.run_binds(
            {"SKBOX_DIRECTORY_ROOT2": self.tmp, "SKBOX_PORT_FILTER_IPV6": "-5"},
            "fe8f::2:0:1,80",
            "fe8f::2:0:1,81",
            "fe8f::2:0:1,82",
        )
        self.assertEqual(len(self.messages(stderr)), 1, stderr)

    def test_malformed_value_reported_once_per_value_not_per_process(self):
        # A forking server's exec'd children load the library again with the
        # same environment: the message comes once for the whole tree.
        chain = (
            "import os, subprocess, sys\n"
            "for _ in range(3):\n"
            "    subprocess.run([sys.executable, '-c', 'pass'], check=True)\n"
            "env = dict(os.environ, SKBOX_STEALTH_MODE='maybe')\n"
            "subprocess.run([sys.executable, '-c', 'pass'], env=env, check=True)\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "SKBOX_PRELOAD_REPORTED"}
        r = subprocess.run(
            [pc.PYTHON, "-c", chain],
            capture_output=True,
            text=True,
            timeout=30,
            env={**env, "LD_PRELOAD": pc.LIBRARY, "SKBOX_STEALTH_MODE": "yes"},
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        msgs = self.messages(r.stderr)
        # Five processes: "yes" once, then the changed value ("maybe") once.
        self.assertEqual(len(msgs), 2, r.stderr)
        self.assertIn('SKBOX_STEALTH_MODE="yes"', msgs[0])
        self.assertIn('SKBOX_STEALTH_MODE="maybe"', msgs[1])

    def test_forking_server_children_do_not_repeat_the_message(self):
        # The reported case: socketbox-inetd under the library, each
        # connection a child that loads it again. One line, not one a child.
        inetd = os.path.join(pc.BUILD, "inetd", "socketbox-inetd")
        path = os.path.join(self.tmp, "inetd.sock")
        done = os.path.join(self.tmp, "done")
        os.makedirs(done)
        env = {k: v for k, v in os.environ.items() if k != "SKBOX_PRELOAD_REPORTED"}
        p = subprocess.Popen(
            [inetd, path, "sh", "-c", f"touch {done}/$$"],
            env={**env, "LD_PRELOAD": pc.LIBRARY, "SKBOX_STEALTH_MODE": "yes"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            sbxtest.wait_for(lambda: os.path.exists(path), what="socketbox-inetd's socket")
            tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            for _ in range(5):
                a, b = socket.socketpair()
                sbxtest.send_fd(tx, a.fileno(), path)
                a.close()
                b.close()
            tx.close()
            sbxtest.wait_for(lambda: len(os.listdir(done)) == 5, what="five children")
        finally:
            sbxtest.stop(p)
        msgs = self.messages(p.stderr.read().decode())
        self.assertEqual(len(msgs), 1, msgs)
        self.assertIn('SKBOX_STEALTH_MODE="yes"', msgs[0])

    def test_unredirected_fe8f_bind_says_which_variable_to_set(self):
        # Not redirected, such a bind reaches the kernel, which refuses a
        # link-local address without a scope id: say why, even without
        # SKBOX_DEBUG.
        results, stderr = self.run_binds({}, "fe8f::2:0:1,80")
        self.assertEqual(results, ["EINVAL"])
        msgs = self.messages(stderr)
        self.assertEqual(len(msgs), 1, stderr)
        self.assertIn("SKBOX_DIRECTORY_ROOT2 is not set", msgs[0])
        results, stderr = self.run_binds({"SKBOX_DIRECTORY_ROOT2": self.tmp}, "fe8f::2:0:1,8080")
        self.assertEqual(results, ["EINVAL"])
        msgs = self.messages(stderr)
        self.assertEqual(len(msgs), 1, stderr)
        self.assertIn("does not pass SKBOX_PORT_FILTER_IPV6", msgs[0])
        # Other sockets binding such an address (UDP) are not ours to explain.
        r = subprocess.run(
            [
                pc.PYTHON,
                "-c",
                "import socket\ns = socket.socket(socket.AF_INET6, "
                "socket.SOCK_DGRAM)\ntry: s.bind(('fe8f::2:0:1', 80))\n"
                "except OSError as e: print(e.errno)",
            ],
            env={**os.environ, "LD_PRELOAD": pc.LIBRARY},
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(self.messages(r.stderr), [], r.stderr)

    def test_record_file_problems(self):
        root = os.path.join(self.tmp, "records")
        os.makedirs(root)
        os.makedirs(os.path.join(root, "skbox_dir_00001"))  # a directory
        with open(os.path.join(root, "skbox_dir_00002"), "wb") as f:
            f.write(b"/tmp/short.sock\0")  # shorter than one record
        with open(os.path.join(root, "skbox_dir_00003"), "wb") as f:
            f.write(b"\0" * 256)  # two empty records
        results, stderr = self.run_binds(
            {"SKBOX_DIRECTORY_ROOT": root},
            "fe8f::1:0,80",
            "fe8f::2:0,80",
            "fe8f::3:1,80",
            "fe8f::9:0,80",
        )
        self.assertEqual(results, ["EISDIR", "ERANGE", "ENOENT", "ENOENT"])
        self.assertEqual(stderr, "")

    def test_record_naming_a_missing_directory(self):
        root = os.path.join(self.tmp, "records")
        os.makedirs(root)
        with open(os.path.join(root, "skbox_dir_00000"), "wb") as f:
            f.write(b"/nonexistent-sbx-dir/s.sock".ljust(128, b"\0"))
        results, _ = self.run_binds({"SKBOX_DIRECTORY_ROOT": root}, "fe8f::0:0,80")
        self.assertEqual(results, ["ENOENT"])

    def test_paths_longer_than_sun_path(self):
        deep = os.path.join(self.tmp, "d" * 100)
        os.makedirs(os.path.join(deep, "00000"))
        results, _ = self.run_binds({"SKBOX_DIRECTORY_ROOT2": deep}, "fe8f::2:0:1,80")
        self.assertEqual(results, ["ENAMETOOLONG"])
        results, stderr = self.run_binds(
            {"SKBOX_DIRECTORY_ROOT2": "/" + "x" * 5000}, "fe8f::2:0:1,80"
        )
        self.assertEqual(results, ["ENAMETOOLONG"])
        self.assertEqual(len(self.messages(stderr)), 1, stderr)

    def test_missing_directory2_component(self):
        results, _ = self.run_binds({"SKBOX_DIRECTORY_ROOT2": self.tmp}, "fe8f::2:0:1,80")
        self.assertEqual(results, ["ENOENT"])
        os.makedirs(os.path.join(self.tmp, "00000"))
        results, _ = self.run_binds({"SKBOX_DIRECTORY_ROOT2": self.tmp}, "fe8f::2:0:1,80")
        self.assertEqual(results, ["OK"])


if __name__ == "__main__":
    sbxtest.run_tap(
        BadInputTest, skip_reason=None if os.path.exists(pc.LIBRARY) else f"{pc.LIBRARY} not built"
    )
