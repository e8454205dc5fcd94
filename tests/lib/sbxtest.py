"""Shared helpers for the integration suites (Python 3 standard library only).

- Test output is TAP (meson parses it per test case): call `run_tap(...)` from
  a suite's `__main__` with unittest.TestCase classes.
- Topology: real network namespaces made for one test run and always removed
  (context manager, atexit, SIGTERM/SIGINT, and a sweep of namespaces left by
  runs whose process is gone).  Traffic goes only to addresses inside these
  namespaces: 2001:db8::/32 (IPv6 documentation prefix) and 192.0.2.0/24 /
  198.51.100.0/24 (IPv4 TEST-NETs), never to anything outside.
- Processes started through `Topology.spawn` / `spawn` are killed at the end.
"""
import atexit
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NS_PREFIX = "sbxt"

# Server side: an AnyIP /64 routed to lo, so every address in it is local.
ANYIP_PREFIX = "2001:db8:1::/64"
SERVER_LINK6 = "2001:db8:ffff::1"
CLIENT_LINK6 = "2001:db8:ffff::2"
SERVER_LINK4 = "192.0.2.1"
CLIENT_LINK4 = "192.0.2.2"
ANYIP_PREFIX4 = "198.51.100.0/24"

_live_processes = []
_live_namespaces = []


def _cleanup_all():
    for p in list(_live_processes):
        _kill(p)
    for ns in list(_live_namespaces):
        _delete_netns(ns)


def _on_signal(signum, _frame):
    _cleanup_all()
    os._exit(128 + signum)


atexit.register(_cleanup_all)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def _kill(p):
    if p in _live_processes:
        _live_processes.remove(p)
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            p.kill()
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _delete_netns(ns):
    if ns in _live_namespaces:
        _live_namespaces.remove(ns)
    # Kill anything still inside before deleting.
    pids = subprocess.run(
        ["ip", "netns", "pids", ns], capture_output=True, text=True
    ).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def sweep_stale_namespaces():
    """Removes namespaces of earlier runs whose owning process is gone."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(rf"{NS_PREFIX}(\d+)[a-z]+\d*$", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            _delete_netns(name)


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


def fd_table_size(pid):
    """The fd table's size of process `pid` ("FDSize" in its status)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("FDSize:"))


def spawn(argv, ns=None, env=None, **kw):
    """Starts a process (in namespace `ns` if given), killed at exit."""
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    kw.setdefault("stdout", subprocess.DEVNULL)
    kw.setdefault("stderr", subprocess.PIPE)
    p = subprocess.Popen(cmd, env=full_env, start_new_session=True, **kw)
    _live_processes.append(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=10):
    """Sends `sig`, waits, and returns the exit status (kills after `timeout`)."""
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(p)
    if p in _live_processes:
        _live_processes.remove(p)
    return p.returncode


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def require_root_and_netns():
    """Reason to skip, or None: only a machine that lacks the feature skips."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not shutil.which("ip"):
        return "iproute2 not installed"
    return None


class Topology:
    """A server namespace and a client namespace joined by a veth pair.

    Server: AnyIP 2001:db8:1::/64 and 198.51.100.0/24 routed to lo; link
    addresses 2001:db8:ffff::1 and 192.0.2.1.  Client: 2001:db8:ffff::2 and
    192.0.2.2, with routes to both prefixes through the server.
    """

    _counter = 0

    def __init__(self, tproxy=False):
        Topology._counter += 1
        tag = f"{NS_PREFIX}{os.getpid()}"
        self.server = f"{tag}srv{Topology._counter}"
        self.client = f"{tag}cli{Topology._counter}"
        self.tmp = tempfile.mkdtemp(prefix="sbx-test-")
        self.tproxy = tproxy

    def __enter__(self):
        sweep_stale_namespaces()
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def _create(self):
        for ns in (self.server, self.client):
            sh("ip", "netns", "add", ns)
            _live_namespaces.append(ns)
            self.ns_sh(ns, "ip", "link", "set", "lo", "up")
        vs, vc = (
            f"vs{os.getpid() % 100000}{Topology._counter}",
            f"vc{os.getpid() % 100000}{Topology._counter}",
        )
        sh(
            "ip",
            "link",
            "add",
            vs,
            "netns",
            self.server,
            "type",
            "veth",
            "peer",
            "name",
            vc,
            "netns",
            self.client,
        )
        s, c = self.server, self.client
        for ns, dev, a6, a4 in (
            (s, vs, SERVER_LINK6, SERVER_LINK4),
            (c, vc, CLIENT_LINK6, CLIENT_LINK4),
        ):
            self.ns_sh(ns, "ip", "addr", "add", f"{a6}/64", "dev", dev, "nodad")
            self.ns_sh(ns, "ip", "addr", "add", f"{a4}/24", "dev", dev)
            self.ns_sh(ns, "ip", "link", "set", dev, "up")
        self.ns_sh(s, "ip", "-6", "route", "add", "local", ANYIP_PREFIX, "dev", "lo")
        self.ns_sh(s, "ip", "route", "add", "local", ANYIP_PREFIX4, "dev", "lo")
        self.ns_sh(c, "ip", "-6", "route", "add", ANYIP_PREFIX, "via", SERVER_LINK6)
        self.ns_sh(c, "ip", "route", "add", ANYIP_PREFIX4, "via", SERVER_LINK4)
        # Many short connections from one client: reuse TIME_WAIT ports.
        self.ns_sh(c, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1")
        self.ns_sh(c, "sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000")
        if self.tproxy:
            self._add_tproxy()

    def _add_tproxy(self):
        # Policy routing so that TPROXY-marked packets are delivered locally.
        s = self.server
        self.ns_sh(s, "ip", "-6", "rule", "add", "fwmark", "1", "lookup", "100")
        self.ns_sh(s, "ip", "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "100")

    def tproxy_ports(self, prefix, ports, to_port):
        """nftables: TCP to `prefix` on `ports` (e.g. "1000-1999") goes to `to_port`."""
        rules = f"""
table inet sbxtest {{
  chain pre {{
    type filter hook prerouting priority mangle; policy accept;
    ip6 daddr {prefix} tcp dport {ports} tproxy ip6 to :{to_port} meta mark set 1 accept
  }}
}}
"""
        self.ns_sh(self.server, "nft", "-f", "-", input=rules)

    def ns_sh(self, ns, *args, check=True, **kw):
        return sh("ip", "netns", "exec", ns, *args, check=check, **kw)

    def spawn_server(self, argv, **kw):
        return spawn(argv, ns=self.server, **kw)

    def spawn_client(self, argv, **kw):
        return spawn(argv, ns=self.client, **kw)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def close(self):
        for ns in (self.server, self.client):
            _delete_netns(ns)
        shutil.rmtree(self.tmp, ignore_errors=True)


_libc = None
CLONE_NEWNET = 0x40000000


def socket_in(ns, family=socket.AF_INET6, type=socket.SOCK_STREAM):
    """A socket created inside namespace `ns` (then usable from anywhere:
    a socket stays in the namespace it was created in).  Switches only the
    calling thread, and back."""
    global _libc
    import ctypes

    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
        try:
            return socket.socket(family, type)
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


def connect_from(ns, host, port, timeout=5.0):
    """A TCP connection to [host]:port made from inside namespace `ns`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket_in(ns, family)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


# --- socket passing from Python (for backends written in tests) -----------


def recv_fd(sock, bufsize=16):
    """Receives one fd by the "A" protocol; returns (fd, payload) or (None, b"")."""
    fds = []
    msg, anc, _flags, _addr = sock.recvmsg(bufsize, socket.CMSG_SPACE(64 * 4))
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            n = len(data) // 4
            fds.extend(struct.unpack(f"{n}i", data[: n * 4]))
    for extra in fds[1:]:
        os.close(extra)
    return (fds[0] if fds else None), msg


def send_fd(sock, fd, address=None):
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))]
    if address is None:
        return sock.sendmsg([b"\0"], anc)
    return sock.sendmsg([b"\0"], anc, 0, address)


NOBODY = 65534


def inject_fd_as(uid, path, fd):
    """Sends `fd` to the datagram socket at `path` from a child process
    running as `uid` (what anyone who can write to a backend socket can do:
    the original's fault 13). True if the send succeeded."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                send_fd(s, fd, path)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def open_to(path, mode=0o666):
    """Makes the socket at `path` writable by everyone, and its directories
    passable: a permissive deployment, to test what guards it instead."""
    os.chmod(path, mode)
    d = os.path.dirname(path)
    while d not in ("/", ""):
        os.chmod(d, os.stat(d).st_mode | 0o111)
        d = os.path.dirname(d)


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


# --- TAP output ------------------------------------------------------------


class _TapResult(unittest.TestResult):
    """One TAP line per test method, printed when it ends: "not ok" with the
    tracebacks of its failures (its own and its subtests'), "ok # SKIP" when
    it was skipped, "ok" otherwise. Each failure's diagnostics end with a
    line "# failure: <the exception's first line>", the one line a CI log's
    summary quotes (scripts/lib/summarize_tests.py). A class or module
    fixture that fails or skips (setUpClass raising SkipTest when a server
    is not installed) is reported outside any test: finish() gives each test
    it kept from running its line, so the stream keeps to its plan."""

    FAILURE_MARK = "failure: "

    def __init__(self):
        super().__init__()
        self.n = 0
        self.current = None
        self.started = set()
        self.fixtures = []  # [description, skip reason or None, error or None]

    def startTest(self, test):
        super().startTest(test)
        self.current = test
        self.started.add(test.id())
        self.parts_failed, self.skip_reason, self.skipped_subtests = [], None, []

    def stopTest(self, test):
        super().stopTest(test)
        if self.parts_failed:
            self._line(False, test)
            for label, err in self.parts_failed:
                self._diag(label, err)
        elif self.skip_reason is not None:
            self._line(True, test, f" # SKIP {self.skip_reason}")
        else:
            self._line(True, test)
            for label, reason in self.skipped_subtests:
                print(f"# skipped{label}: {reason}", flush=True)
        self.current = None

    def _line(self, ok, test, extra=""):
        self.n += 1
        # A fixture's holder (or its name) is "setUpClass (module.Class)".
        name = test.id().split(".", 1)[-1] if isinstance(test, unittest.TestCase) else str(test)
        print(f"{'ok' if ok else 'not ok'} {self.n} - {name}{extra}", flush=True)

    def _failed(self, test, err, label=""):
        if test is self.current:
            self.parts_failed.append((label, err))
        else:  # a class or module fixture's error, outside any test
            self.fixtures.append([str(test), None, err])

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._failed(test, err)

    def addError(self, test, err):
        super().addError(test, err)
        self._failed(test, err)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._failed(test, err, f" {subtest._subDescription()}")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if test is self.current:
            self.skip_reason = reason
        elif self.current is not None and getattr(test, "test_case", None) is self.current:
            self.skipped_subtests.append((f" {test._subDescription()}", reason))
        else:  # a class or module fixture skipped
            self.fixtures.append([str(test), reason, None])

    def finish(self, tests):
        """A line for each of `tests` a fixture kept from starting (a skip
        or a failure, with its diagnostics under the first), then one for
        each fixture failure that kept none (a tearDownClass's)."""
        shown = set()
        for test in tests:
            if test.id() in self.started:
                continue
            cls = type(test)
            fixture = next(
                (
                    f
                    for f in self.fixtures
                    if f"({cls.__module__}.{cls.__qualname__})" in f[0]
                    or f[0].endswith(f"({cls.__module__})")
                ),
                None,
            )
            if fixture is None:
                self._line(False, test, " # never ran")
            elif fixture[2] is None:
                self._line(True, test, f" # SKIP {fixture[1]}")
            else:
                self._line(False, test)
                if id(fixture) in shown:
                    print(f"# {self._first_line(fixture[2])} ({fixture[0]})", flush=True)
                else:
                    self._diag(f" ({fixture[0]})", fixture[2])
                    shown.add(id(fixture))
        for fixture in self.fixtures:
            if fixture[2] is not None and id(fixture) not in shown:
                self._line(False, fixture[0])
                self._diag("", fixture[2])

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.parts_failed.append(("", (AssertionError, AssertionError("unexpected success"), None)))

    def _first_line(self, err):
        first = traceback.format_exception_only(err[0], err[1])[0].splitlines()[0]
        return f"{self.FAILURE_MARK}{first}"

    def _diag(self, label, err):
        # Also on stderr: meson prints a failed test's stderr, not its TAP stream.
        lines = "".join(traceback.format_exception(*err)).splitlines()
        lines.append(f"{self._first_line(err)}{label}")
        for line in lines:
            print(f"# {line}", flush=True)
            print(f"# {line}", file=sys.stderr, flush=True)


def _tests_of(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _tests_of(t)
        else:
            yield t


def run_tap(*case_classes, skip_reason=None):
    """Runs the given TestCase classes, printing TAP; exits 1 on failure."""
    loader = unittest.TestLoader()
    suite = unittest.TestSuite(loader.loadTestsFromTestCase(c) for c in case_classes)
    total = suite.countTestCases()
    if skip_reason:
        print(f"1..0 # SKIP {skip_reason}", flush=True)
        sys.exit(0)
    print(f"1..{total}", flush=True)
    tests = list(_tests_of(suite))  # the suite lets go of each test it ran
    result = _TapResult()
    suite.run(result)
    result.finish(tests)
    _cleanup_all()
    sys.exit(0 if result.wasSuccessful() else 1)
