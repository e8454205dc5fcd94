"""meson install into a DESTDIR: the programs, the preload library, the
manual pages (each clean under mandoc -Tlint and man's own formatter), the
systemd units (pointing at the installed programs) and the example
configuration land where the build's options say, and nothing else does."""
import json
import re
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import sbxtest  # noqa: E402

BUILD = os.environ.get("SBX_BUILD", os.path.join(sbxtest.ROOT, "build"))

MAN_PAGES = [
    "man1/run-with-socketbox.1",
    "man1/send-receive-fd.1",
    "man1/socket-query.1",
    "man1/socketbox-bind-exec.1",
    "man1/socketbox-relay.1",
    "man5/socketbox.conf.5",
    "man8/socketbox-inetd.8",
    "man8/socketbox-inetd-p.8",
    "man8/socketbox.8",
]
UNITS = ["socketbox.service", "socketbox.socket", "socketbox-inetd-sshd.service"]


def build_options():
    out = subprocess.run(
        ["meson", "introspect", "--buildoptions", BUILD], check=True, capture_output=True, text=True
    ).stdout
    return {o["name"]: o["value"] for o in json.loads(out)}


def unit_dir(options):
    if options["systemdunitdir"]:
        return options["systemdunitdir"]
    r = subprocess.run(
        ["pkg-config", "--variable=systemdsystemunitdir", "systemd"], capture_output=True, text=True
    )
    return (
        r.stdout.strip()
        if r.returncode == 0
        else os.path.join(options["prefix"], "lib/systemd/system")
    )


class InstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dest = tempfile.mkdtemp(prefix="sbx-install-")
        r = subprocess.run(
            ["meson", "install", "-C", BUILD, "--destdir", cls.dest, "--no-rebuild", "--quiet"],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise AssertionError(f"meson install failed:\n{r.stdout}\n{r.stderr}")
        cls.options = build_options()
        cls.files = set()
        for top, _dirs, names in os.walk(cls.dest):
            for n in names:
                cls.files.add(os.path.relpath(os.path.join(top, n), cls.dest))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dest, ignore_errors=True)

    def path(self, option, *rest):
        base = self.options[option]
        base = base if os.path.isabs(base) else os.path.join(self.options["prefix"], base)
        return os.path.join(base, *rest).lstrip("/")

    def test_the_file_list_is_exactly_the_expected_one(self):
        o = self.options
        doc = os.path.join(o["prefix"], o["datadir"], "doc", "socketbox-uring").lstrip("/")
        expected = {
            self.path("sbindir", n) for n in ("socketbox", "socketbox-inetd", "socketbox-inetd-p")
        }
        expected |= {
            self.path("bindir", n)
            for n in (
                "send-receive-fd",
                "socket-query",
                "socketbox-bind-exec",
                "run-with-socketbox",
                "socketbox-relay",
            )
        }
        expected.add(self.path("libdir", "socketbox", "libsocketbox-preload.so"))
        expected |= {self.path("mandir", m) for m in MAN_PAGES}
        expected |= {os.path.join(unit_dir(o), u).lstrip("/") for u in UNITS}
        expected |= {
            os.path.join(doc, f)
            for f in ("README.md", "examples/socketbox.conf", "examples/sample-connections.txt")
        }
        expected |= {
            os.path.join(doc, "docs", f)
            for f in os.listdir(os.path.join(sbxtest.ROOT, "docs"))
            if f.endswith(".md")
        }
        self.assertEqual(sorted(self.files - expected), [], "installed but not expected")
        self.assertEqual(sorted(expected - self.files), [], "expected but not installed")

    def test_installed_programs_run(self):
        r = subprocess.run(
            [os.path.join(self.dest, self.path("sbindir", "socketbox")), "--version"],
            capture_output=True,
            text=True,
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("socketbox-uring", r.stdout)
        # The launcher finds the library under the installation prefix.
        runner = os.path.join(self.dest, self.path("bindir", "run-with-socketbox"))
        r = subprocess.run(
            [runner, "sh", "-c", 'echo "$LD_PRELOAD"'], capture_output=True, text=True
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.strip().startswith(self.dest), r.stdout)
        self.assertTrue(r.stdout.strip().endswith("libsocketbox-preload.so"), r.stdout)

    def test_units_point_at_the_installed_programs(self):
        sbin = "/" + self.path("sbindir")
        for unit in UNITS:
            with open(os.path.join(self.dest, unit_dir(self.options).lstrip("/"), unit)) as f:
                text = f.read()
            for line in text.splitlines():
                if line.startswith("ExecStart="):
                    self.assertTrue(line.startswith(f"ExecStart={sbin}/"), line)

    def test_manual_pages_are_clean(self):
        if not shutil.which("mandoc"):
            self.skipTest("mandoc not installed")
        mandir = os.path.join(self.dest, self.path("mandir"))
        for page in MAN_PAGES:
            full = os.path.join(mandir, page)
            r = subprocess.run(
                ["mandoc", "-Tlint", "-W", "warning", full], capture_output=True, text=True
            )
            self.assertEqual(r.stdout + r.stderr, "", page)
            # man-db's formatter (groff) with its warnings on.
            r = subprocess.run(
                ["man", "--warnings", "-l", "-Tutf8", full],
                capture_output=True,
                text=True,
                env=dict(os.environ, MANWIDTH="80"),
                cwd=mandir,
            )
            self.assertEqual((r.returncode, r.stderr), (0, ""), page)
            self.assertIn("NAME", re.sub(".\b", "", r.stdout), page)  # overstrike bold


if __name__ == "__main__":
    sbxtest.run_tap(InstallTest)
