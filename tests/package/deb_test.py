"""The Debian package on this machine: scripts/package builds it from the
tree, apt installs it, the programs, manual pages and units are in place,
and an upgrade to a newer version under load (its postinst runs
socketbox --upgrade) hands a running daemon's listeners to the new binary
with every connection delivered. The package is removed at the end.

SBX_DEB=PATH uses an already built .deb instead of building one."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "engine"))
from engine_fixture import Backend, Engine, sbxtest  # noqa: E402
from load_fixture import Load, peer_pid, wait_gone  # noqa: E402

PACKAGE = "socketbox-uring"
A = "2001:db8:1::"
PORT = 8096
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300"]


def skip_reason():
    reason = sbxtest.require_root_and_netns()
    if reason:
        return reason
    if not shutil.which("apt-get") or not shutil.which("dpkg-buildpackage"):
        return "apt-get or dpkg-buildpackage missing (scripts/lib/packages.d/package.list)"
    r = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", PACKAGE], capture_output=True, text=True
    )
    if "install ok installed" in r.stdout:
        return f"{PACKAGE} is installed on this machine already; not replacing it"
    return None


def apt(*args):
    r = subprocess.run(
        APT + list(args),
        capture_output=True,
        text=True,
        env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
    )
    if r.returncode != 0:
        raise AssertionError(f"apt-get {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r


def with_version(deb, version, out_dir):
    """The same package with another version (what an upgrade installs)."""
    tree = os.path.join(out_dir, "tree")
    subprocess.run(["dpkg-deb", "-R", deb, tree], check=True)
    control = os.path.join(tree, "DEBIAN", "control")
    with open(control) as f:
        text = "".join(f"Version: {version}\n" if l.startswith("Version:") else l for l in f)
    with open(control, "w") as f:
        f.write(text)
    out = os.path.join(out_dir, f"{PACKAGE}_{version}_amd64.deb")
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-b", tree, out], check=True, capture_output=True
    )
    shutil.rmtree(tree)
    return out


class DebTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sbx-deb-")
        cls.deb = os.environ.get("SBX_DEB")
        if not cls.deb:
            r = subprocess.run(
                [os.path.join(sbxtest.ROOT, "scripts", "package"), "--out", cls.tmp],
                capture_output=True,
                text=True,
                timeout=1500,
            )
            if r.returncode != 0:
                raise AssertionError(f"scripts/package failed:\n{r.stderr[-4000:]}")
            cls.deb = r.stdout.strip().splitlines()[-1]
        cls.had_user = (
            subprocess.run(["getent", "passwd", "socketbox"], capture_output=True).returncode == 0
        )
        cls.had_run_dir = os.path.isdir("/run/socketbox")
        apt("install", "--no-install-recommends", os.path.abspath(cls.deb))

    @classmethod
    def tearDownClass(cls):
        try:
            apt("purge", PACKAGE)
        finally:
            if not cls.had_user:
                subprocess.run(["deluser", "--system", "--quiet", "socketbox"], capture_output=True)
            if not cls.had_run_dir:
                shutil.rmtree("/run/socketbox", ignore_errors=True)
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_1_installed_programs_pages_and_units(self):
        r = subprocess.run(["/usr/sbin/socketbox", "--version"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^socketbox \(socketbox-uring\) \d")
        for prog in (
            "/usr/sbin/socketbox-inetd",
            "/usr/sbin/socketbox-inetd-p",
            "/usr/bin/socket-query",
            "/usr/bin/send-receive-fd",
            "/usr/bin/socketbox-bind-exec",
            "/usr/bin/run-with-socketbox",
            "/usr/bin/socketbox-relay",
        ):
            self.assertTrue(os.access(prog, os.X_OK), prog)
        for page, section in (
            ("socketbox", "8"),
            ("socketbox.conf", "5"),
            ("socketbox-inetd-p", "8"),
            ("run-with-socketbox", "1"),
            ("socket-query", "1"),
        ):
            r = subprocess.run(["man", "-w", section, page], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, f"man -w {section} {page}: {r.stderr}")
        for unit in ("socketbox.service", "socketbox.socket", "socketbox-inetd-sshd.service"):
            with open(f"/lib/systemd/system/{unit}") as f:
                self.assertNotIn("/usr/local/", f.read(), unit)
        self.assertEqual(
            subprocess.run(["getent", "passwd", "socketbox"], capture_output=True).returncode, 0
        )
        # The installed launcher finds the installed library.
        r = subprocess.run(
            ["run-with-socketbox", "sh", "-c", 'echo "$LD_PRELOAD"'], capture_output=True, text=True
        )
        self.assertEqual(
            r.stdout.strip(), "/usr/lib/x86_64-linux-gnu/socketbox/libsocketbox-preload.so"
        )

    def test_2_upgrade_under_load_through_postinst(self):
        os.makedirs("/run/socketbox", exist_ok=True)
        handover = f"/run/socketbox/sbxtest{os.getpid()}.handover"
        new_pid = None
        with sbxtest.Topology() as topo:
            backend = Backend(topo.path("b.sock"), "pkg")
            # The installed binary, not the build tree's.
            old = Engine(
                ["-S", backend.path, "-p", str(PORT), "--threads", "2", "--handover", handover],
                ns=topo.server,
                wrapper=["sh", "-c", 'shift; exec /usr/sbin/socketbox "$@"', "sh"],
            )
            load = Load(topo.client, f"{A}9", PORT)
            try:
                sbxtest.wait_for(lambda: load.total() >= 200, timeout=30, what="load before")
                newer = with_version(self.deb, "99.0.0", self.tmp)
                # The postinst runs in the host's network namespace; the
                # handover socket is a path, so it reaches the daemon anyway.
                r = apt("install", "--no-install-recommends", newer)
                self.assertIn("upgrading pid", r.stdout + r.stderr)
                self.assertEqual(old.proc.wait(timeout=30), 0)
                new_pid = peer_pid(handover)
                self.assertEqual(os.readlink(f"/proc/{new_pid}/exe"), "/usr/sbin/socketbox")
                before = load.total()
                sbxtest.wait_for(
                    lambda: load.total() >= before + 200, timeout=30, what="load after"
                )
            finally:
                load.stop()
                if new_pid:
                    os.kill(new_pid, 15)
                    wait_gone(new_pid)
                backend.close()
            self.assertEqual(load.failures, [], old.output())
            self.assertTrue(old.has_line("took over from pid"), old.output())


if __name__ == "__main__":
    sbxtest.run_tap(DebTest, skip_reason=skip_reason())
