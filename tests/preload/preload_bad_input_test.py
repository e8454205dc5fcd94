"""Bad input: malformed variables, unreadable or short record files, paths
longer than sun_path, missing directories. The bind fails with a sensible
errno, one clear message is printed (once), and nothing else in the program
breaks. Python 3 is the host program; no network namespace is needed."""
import os
import shutil
import subprocess
import sys
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

    def run_binds(self, env, *addresses):
        full = {k: str(v) for k, v in env.items()}
        r = subprocess.run([pc.PYTHON, "-c", PROGRAM, *addresses],
                           env={**os.environ, "LD_PRELOAD": pc.LIBRARY, **full},
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.split()
        self.assertEqual(lines[-1], "ALIVE")
        return lines[:-1], r.stderr

    def messages(self, stderr):
        return [l for l in stderr.splitlines() if l.startswith("socketbox-preload[")]

    def test_silent_when_all_is_well(self):
        results, stderr = self.run_binds({"SKBOX_DIRECTORY_ROOT2": self.tmp},
                                         "fe8f::2:0:1,80")
        self.assertEqual(results, ["ENOENT"])  # no 00000 directory: see below
        self.assertEqual(stderr, "")

    def test_malformed_port_filter(self):
        os.makedirs(os.path.join(self.tmp, "00000"))
        results, stderr = self.run_binds(
            {"SKBOX_DIRECTORY_ROOT2": self.tmp, "SKBOX_PORT_FILTER_IPV6": "1024,abc"},
            "fe8f::2:0:1,80", "2001:db8::1,80")
        # The class the filter covers fails; other addresses are untouched
        # (2001:db8::1 is not local here: the real bind's own error).
        self.assertEqual(results, ["EINVAL", "EADDRNOTAVAIL"])
        msgs = self.messages(stderr)
        self.assertEqual(len(msgs), 1, stderr)
        self.assertIn('SKBOX_PORT_FILTER_IPV6="1024,abc" is malformed', msgs[0])

    def test_malformed_flags_reported_once_each(self):
        _, stderr = self.run_binds({"SKBOX_STEALTH_MODE": "yes", "SKBOX_ENABLE_CONNECT": "b",
                                    "SKBOX_STRICT_STREAM_MODE": "x"})
        msgs = self.messages(stderr)
        self.assertEqual(len(msgs), 3, stderr)
        self.assertTrue(any("SKBOX_ENABLE_CONNECT=\"b\"" in m for m in msgs))

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
            {"SKBOX_DIRECTORY_ROOT2": self.tmp, "SKBOX_PORT_FILTER_IPV6": "x"},
            "fe8f::2:0:1,80", "fe8f::2:0:1,81", "fe8f::2:0:1,82")
        self.assertEqual(len(self.messages(stderr)), 1, stderr)

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
            "fe8f::1:0,80", "fe8f::2:0,80", "fe8f::3:1,80", "fe8f::9:0,80")
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
        results, stderr = self.run_binds({"SKBOX_DIRECTORY_ROOT2": "/" + "x" * 5000},
                                         "fe8f::2:0:1,80")
        self.assertEqual(results, ["ENAMETOOLONG"])
        self.assertEqual(len(self.messages(stderr)), 1, stderr)

    def test_missing_directory2_component(self):
        results, _ = self.run_binds({"SKBOX_DIRECTORY_ROOT2": self.tmp}, "fe8f::2:0:1,80")
        self.assertEqual(results, ["ENOENT"])
        os.makedirs(os.path.join(self.tmp, "00000"))
        results, _ = self.run_binds({"SKBOX_DIRECTORY_ROOT2": self.tmp}, "fe8f::2:0:1,80")
        self.assertEqual(results, ["OK"])


if __name__ == "__main__":
    sbxtest.run_tap(BadInputTest, skip_reason=None if os.path.exists(pc.LIBRARY)
                    else f"{pc.LIBRARY} not built")
