"""Network namespaces for one benchmark run, always removed afterwards.

A server namespace (engine and sinks) with an AnyIP prefix routed to lo, and
one client namespace per generator, joined by veth pairs. With TPROXY, the
server namespace also gets the policy route that delivers marked packets
locally; the nftables rule that marks them (and sends every benchmarked port
to one listener) is added and removed around each scenario that wants it. Names carry the
harness's pid (sbxb<pid>s, sbxb<pid>c<i>) so that a later run can tell
leftovers of a killed run (pid gone) from a run still going, and sweep them
with every process inside and their temporary directory.

Traffic stays inside: 2001:db8::/32 and 192.0.2.0/24 only.
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import tempfile

PREFIX = "sbxb"
ANYIP6 = "2001:db8:1::/64"
SERVER_LINK6 = "2001:db8:ffff:{i}::1"
CLIENT_LINK6 = "2001:db8:ffff:{i}::2"

# Set inside the namespaces only, and recorded in results.json.
SERVER_SYSCTLS = {
    "net.core.somaxconn": "65535",
    "net.ipv4.tcp_max_syn_backlog": "65535",
    # net.unix.max_dgram_qlen stays at the kernel default (10): the burst
    # shows how each scenario copes with the defaults.
}
CLIENT_SYSCTLS = {
    "net.ipv4.ip_local_port_range": "10000 65000",
    "net.ipv4.tcp_tw_reuse": "1",
}
RECORDED_SYSCTLS = sorted(set(SERVER_SYSCTLS) | set(CLIENT_SYSCTLS) | {"net.unix.max_dgram_qlen"})


def run(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


def kill_namespace(ns):
    """Kills every process inside `ns`, then deletes it."""
    pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    run("ip", "netns", "delete", ns, check=False)


def sweep_stale():
    """Removes namespaces and directories of runs whose harness is gone."""
    swept = []
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(rf"{PREFIX}(\d+)(s|c\d+)", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            kill_namespace(name)
            swept.append(name)
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{PREFIX}-*-*")):
        m = re.search(rf"{PREFIX}-(\d+)-", os.path.basename(path))
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            shutil.rmtree(path, ignore_errors=True)
            swept.append(path)
    return swept


NFT_TABLE = "sbxbench"
TPROXY_MARK = "1"
TPROXY_TABLE = "100"


class Topology:
    def __init__(self, clients=1, tproxy=False):
        pid = os.getpid()
        self.tproxy = tproxy
        self.server = f"{PREFIX}{pid}s"
        self.clients = [f"{PREFIX}{pid}c{i}" for i in range(clients)]
        self.tmp = tempfile.mkdtemp(prefix=f"{PREFIX}-{pid}-")
        os.chmod(self.tmp, 0o755)
        self.created = []

    def ns(self, ns, *args, check=True, **kw):
        return run("ip", "netns", "exec", ns, *args, check=check, **kw)

    def create(self):
        for ns in [self.server] + self.clients:
            run("ip", "netns", "add", ns)
            self.created.append(ns)
            self.ns(ns, "ip", "link", "set", "lo", "up")
        s = self.server
        self.ns(s, "ip", "-6", "route", "add", "local", ANYIP6, "dev", "lo")
        for i, c in enumerate(self.clients):
            vs, vc = f"bv{os.getpid()}s{i}", f"bv{os.getpid()}c{i}"
            run("ip", "link", "add", vs, "netns", s, "type", "veth", "peer", "name", vc, "netns", c)
            self.ns(s, "ip", "addr", "add", SERVER_LINK6.format(i=i) + "/64", "dev", vs, "nodad")
            self.ns(c, "ip", "addr", "add", CLIENT_LINK6.format(i=i) + "/64", "dev", vc, "nodad")
            self.ns(s, "ip", "link", "set", vs, "up")
            self.ns(c, "ip", "link", "set", vc, "up")
            self.ns(c, "ip", "-6", "route", "add", ANYIP6, "via", SERVER_LINK6.format(i=i))
            # The server answers through the right veth without neighbour
            # discovery races: the client's link address is on-link anyway.
        if self.tproxy:
            self.ns(s, "ip", "-6", "rule", "add", "fwmark", TPROXY_MARK, "lookup", TPROXY_TABLE)
            self.ns(
                s, "ip", "-6", "route", "add", "local", "::/0", "dev", "lo", "table", TPROXY_TABLE
            )
        for key, value in SERVER_SYSCTLS.items():
            self.ns(s, "sysctl", "-qw", f"{key}={value}")
        for c in self.clients:
            for key, value in CLIENT_SYSCTLS.items():
                self.ns(c, "sysctl", "-qw", f"{key}={value}")

    def tproxy_on(self, ports, to_port):
        """TCP to the AnyIP prefix on `ports` goes to the listener on
        `to_port` (IP_TRANSPARENT), with the original destination kept."""
        rules = f"""table inet {NFT_TABLE} {{
  chain pre {{
    type filter hook prerouting priority mangle; policy accept;
    ip6 daddr {ANYIP6} tcp dport {{ {', '.join(map(str, ports))} }} tproxy ip6 to :{to_port} meta mark set {TPROXY_MARK} accept
  }}
}}
"""
        self.ns(self.server, "nft", "-f", "-", input=rules)

    def tproxy_off(self):
        self.ns(self.server, "nft", "delete", "table", "inet", NFT_TABLE, check=False)

    def sysctls(self):
        """The recorded sysctls as each namespace sees them."""
        out = {}
        for ns, role in [(self.server, "server")] + [(c, "client") for c in self.clients[:1]]:
            values = {}
            for key in RECORDED_SYSCTLS:
                r = self.ns(ns, "sysctl", "-n", key, check=False)
                values[key] = r.stdout.strip().replace("\t", " ")
            out[role] = values
        return out

    def path(self, name):
        return os.path.join(self.tmp, name)

    def remove(self):
        for ns in reversed(self.created):
            kill_namespace(ns)
        self.created = []
        shutil.rmtree(self.tmp, ignore_errors=True)


WATCHED = (
    "TcpExt:ListenOverflows",
    "TcpExt:ListenDrops",
    "TcpExt:TCPSynRetrans",
    "TcpExt:TCPTimeouts",
    "Tcp:RetransSegs",
    "Tcp:AttemptFails",
)


def net_counters(topo, ns):
    """The watched TCP counters of namespace `ns` (/proc/net/netstat and
    /proc/net/snmp are per namespace): they explain latency tails (a SYN
    dropped on a full queue is retried after a second)."""
    text = topo.ns(ns, "cat", "/proc/net/netstat", "/proc/net/snmp", check=False).stdout
    values = {}
    lines = text.splitlines()
    for header, data in zip(lines, lines[1:]):
        names, nums = header.split(), data.split()
        if names and nums and names[0] == nums[0] and not nums[1].lstrip("-").isalpha():
            prefix = names[0]
            for key, value in zip(names[1:], nums[1:]):
                if f"{prefix}{key}" in WATCHED and value.lstrip("-").isdigit():
                    values[f"{prefix}{key}"] = int(value)
    return values


def counter_delta(before, after):
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}
