"""The scenarios: who accepts the connections, in front of the same sinks.

  direct       the sink listens on TCP itself (multishot accept): the baseline
  engine       our daemon, io_uring path, in front of datagram sinks
  engine-sync  the same binary with --io=sync
  engine-1fd   (on request) engine, its sinks declaring one fd per message
  engine-ack   (on request) engine, its sinks also acknowledging (the cost of
               acknowledged delivery)
  engine-kernel  engine with --kernel-dispatch on, its sinks started with
               --take-listener: the kernel's sk_lookup program puts each
               connection into the listener of its backend, which the sink
               accepts from; the engine sees only what the program cannot
               steer. Started engine first (a sink asks once, at start-up),
               and only where the kernel allows it (kernel_dispatch_usable)
  NAME         (external) any command line, given with {config}, {port} (the
               first port) and {ports} (comma list) placeholders, in front of
               the same sinks; it must listen on every port of the layout

Every scenario maps address i of the layout to backend i % B, so a greeting
names the backend and the generator counts misrouted connections.

The sinks behind every engine scenario declare --sink-fds (default 16) by
the receiver protocol: the io_uring engine then packs several connections into
one message under load; engine-sync and externals send one per message anyway.

With --tproxy, every scenario but direct has one transparent listener on
TPROXY_PORT and an nftables rule sends all the layout's ports there: the
engine then learns each connection's destination from getsockname(2), the
cost TPROXY adds. direct stays the kernel's own baseline (a listener per
address and port). engine-kernel does not combine with TPROXY: a socket that
TPROXY assigned is used as it is, so no sk_lookup program runs.

Who is "the server" (capped in capacity mode, measured by perf and strace):
the accepting process. For direct that is the sink, for the engine scenarios
the engine, and for engine-kernel both the engine and its sinks, since the
sinks accept there (server_pids).
"""
import re
import shlex
import signal
import time

import procs
from topology import ANYIP6

TPROXY_PORT = 7000


class Layout:
    """Addresses x ports, backends, and the configuration that maps one to
    the other: destination k (in address-major order) goes to backend k % B."""

    def __init__(self, topo, addresses, backends, ports=(80,)):
        self.topo = topo
        base = ANYIP6.split("::")[0]
        self.addrs = [f"{base}::{i + 1:x}" for i in range(addresses)]
        self.ports = list(ports)
        self.names = [chr(ord("a") + i) for i in range(backends)]
        self.dests = [(a, p) for a in self.addrs for p in self.ports]
        self.backend_of = {d: self.names[k % backends] for k, d in enumerate(self.dests)}
        self.paths = {n: topo.path(f"backend-{n}.sock") for n in self.names}
        self.config = topo.path("socketbox.conf")
        with open(self.config, "w") as f:
            f.write(self.config_text())

    def config_text(self):
        lines = ["max-rules:1", "max-maps:1", f"rule-set:0 size:{len(self.dests)}"]
        for a, p in self.dests:
            lines.append(f"ip:{a} port:{p} jump-unix:{self.paths[self.backend_of[(a, p)]]}")
        lines.append("default fail")
        return "\n".join(lines) + "\n"

    def targets(self, dests=None):
        args = []
        for a, p in dests or self.dests:
            args += ["--target", f"[{a}]:{p}={self.backend_of[(a, p)]}"]
        return args


def parse_engine_stats(text):
    """The last 'stats total k=v ...' line of the engine's log, as ints."""
    last = None
    for line in text.splitlines():
        if "stats total " in line:
            last = line
    if last is None:
        return None
    stats = {k: int(v) for k, v in re.findall(r"([\w.]+)=(\d+)", last)}
    # The per-worker lines printed just before it: how SO_REUSEPORT spread
    # the connections over the workers' listeners.
    workers = {}
    for line in text.splitlines():
        m = re.search(r"stats worker=(\d+) accepted=(\d+)", line)
        if m:
            workers[int(m.group(1))] = int(m.group(2))
    stats["worker_accepted"] = [workers[i] for i in sorted(workers)]
    # Kernel dispatch (--kernel-dispatch on): the last "stats kernel" line,
    # printed after the total in the same block: steered=N passed.*=N ...
    kernel = None
    for line in text.splitlines():
        if "stats kernel " in line:
            kernel = {k: int(v) for k, v in re.findall(r"([\w.]+)=(\d+)", line)}
    if kernel is not None:
        stats["kernel"] = kernel
    return stats


# Built-in engine scenarios that differ in their sinks (and engine-kernel in
# one engine option) only.
ENGINE_VARIANTS = {
    "engine-1fd": {"sink_fds": 1},
    "engine-ack": {"sink_ack": True},
    "engine-kernel": {"kernel": True},
}
BUILTIN = ("direct", "engine", "engine-sync") + tuple(ENGINE_VARIANTS)
KERNEL_SCENARIO = "engine-kernel"
# Where the engine takes listener requests in engine-kernel (in the run's
# temporary directory, not /run/socketbox).
LISTENER_SOCKET = "listeners.sock"


class Scenario:
    def __init__(self, name, ctx, external_cmd=None):
        self.name, self.ctx, self.external_cmd = name, ctx, external_cmd
        self.sink = self.server = None
        # Capacity mode: a cpucap.CpuCap the server (only) runs under.
        self.cap = None
        self.has_counters = name in BUILTIN and name != "direct"
        self.variant = ENGINE_VARIANTS.get(name, {})
        self.kernel = bool(self.variant.get("kernel"))

    # -- processes ----------------------------------------------------------
    def _spawn(self, tag, argv):
        topo = self.ctx.topo
        n = self.ctx.next_id()
        return procs.Proc(
            argv, topo.server, topo.path(f"{n:03d}-{tag}.out"), topo.path(f"{n:03d}-{tag}.err")
        )

    def server_pids(self):
        """The processes that accept: capped, and measured as the server."""
        if self.kernel:
            return [self.server.pid, self.sink.pid]
        return [self.server.pid]

    def _engine_argv(self):
        layout, b = self.ctx.layout, self.ctx.binaries
        ports = self.listen_ports()
        argv = [
            b["socketbox"],
            "-f",
            layout.config,
            "-l",
            "::",
            "-p",
            str(ports[0]),
            "-b",
            "65535",
            "--threads",
            str(self.ctx.engine_threads),
        ]
        for p in ports[1:]:
            argv += ["--listen", f"[::]:{p}"]
        if self.ctx.tproxy:
            argv.append("-t")
        if self.name == "engine-sync":
            argv += ["--io", "sync"]
        if self.kernel:
            argv += [
                "--kernel-dispatch",
                "on",
                "--listener-socket",
                self.ctx.topo.path(LISTENER_SOCKET),
            ]
        return argv

    def _start_engine(self):
        self.server = self._spawn(self.name, self._engine_argv())
        if self.cap:
            self.cap.add(self.server.pid)
        self.server.wait_for(lambda: "socketbox: ready" in self.server.err(), 10, "engine ready")

    def start(self):
        layout, b = self.ctx.layout, self.ctx.binaries
        if self.kernel:
            # The engine first: each sink asks for its listeners once, when
            # it starts.
            self._start_engine()
        sink_args = [b["sink"], "--threads", str(self.ctx.sink_threads), "--lifetime", "900"]
        if self.name == "direct":
            for a, p in layout.dests:
                sink_args += ["--listen", f"{layout.backend_of[(a, p)]}=[{a}]:{p}"]
        else:
            for n in layout.names:
                sink_args += ["--backend", f"{n}={layout.paths[n]}"]
            fds = self.variant.get("sink_fds", self.ctx.sink_fds)
            if fds > 1:
                sink_args += ["--max-fds", str(fds)]
            if self.variant.get("sink_ack", self.ctx.sink_ack):
                sink_args.append("--ack")
            if self.kernel:
                sink_args += [
                    "--take-listener",
                    "--listener-socket",
                    self.ctx.topo.path(LISTENER_SOCKET),
                ]
        self.sink = self._spawn("sink", sink_args)
        self.sink.wait_for(lambda: "ready" in self.sink.out(), 10, "sink ready")
        if self.kernel:
            if self.cap:
                self.cap.add(self.sink.pid)  # it accepts: it is the server too
            taken = self.sink.err().count("listener taken")
            if taken != len(layout.names):
                raise RuntimeError(
                    f"{self.name}: the sink took {taken} of {len(layout.names)} "
                    f"listeners from the engine: {self.sink.err()[-2000:]}"
                )
            return
        if self.name == "direct":
            self.server = self.sink
            if self.cap:
                self.cap.add(self.server.pid)
            return
        ports = self.listen_ports()
        if self.ctx.tproxy:
            self.ctx.topo.tproxy_on(layout.ports, TPROXY_PORT)
        if self.external_cmd is None:
            self._start_engine()
        else:
            cmd = self.external_cmd.format(
                config=layout.config, port=ports[0], ports=",".join(map(str, ports))
            )
            self.server = self._spawn("external", shlex.split(cmd))
            if self.cap:
                self.cap.add(self.server.pid)
            self.server.wait_for(self._listening, 10, f"a listener on port {ports[0]}")

    def listen_ports(self):
        """The ports the server listens on: the layout's, or with TPROXY the
        one port every benchmarked port is diverted to."""
        return [TPROXY_PORT] if self.ctx.tproxy else self.ctx.layout.ports

    def _listening(self):
        out = self.ctx.topo.ns(
            self.ctx.topo.server, "ss", "-Hltn", f"sport = :{self.listen_ports()[0]}", check=False
        ).stdout
        return bool(out.strip())

    def counters(self):
        """A fresh snapshot of the engine's counters (None for others)."""
        if not self.has_counters:
            return None
        # engine-kernel: its "stats kernel" line ends the block.
        mark = "stats kernel " if self.kernel else "stats total "
        before = self.server.err().count(mark)
        self.server.send(signal.SIGUSR1)
        self.server.wait_for(
            lambda: self.server.err().count(mark) > before, 5, "stats after SIGUSR1"
        )
        return parse_engine_stats(self.server.err())

    def stop(self):
        """Stops the server, then the sink. Returns (server exit counters,
        sink summary, exit codes)."""
        codes = {}
        final = None
        if self.server is not self.sink:
            codes["server"] = self.server.stop(signal.SIGTERM)
            if self.has_counters:
                final = parse_engine_stats(self.server.err())
        if self.server is not self.sink and self.ctx.tproxy:
            self.ctx.topo.tproxy_off()
        codes["sink"] = self.sink.stop(signal.SIGTERM)
        summary = next((j for j in self.sink.json_lines() if j.get("event") == "sink-exit"), None)
        return final, summary, codes


def kernel_dispatch_usable(ctx):
    """(True, "") when the engine runs with --kernel-dispatch on here (the
    kernel has sk_lookup and BPF, we may load it), else (False, its reason):
    the engine is started once on the run's layout and stopped again."""
    sc = Scenario(KERNEL_SCENARIO, ctx)
    proc = sc._spawn("kernel-probe", sc._engine_argv())
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            err = proc.err()
            if "socketbox: ready" in err:
                return True, ""
            if not proc.alive():
                lines = [l for l in err.splitlines() if l.strip()]
                return False, (lines[-1] if lines else f"the engine exited {proc.popen.returncode}")
            time.sleep(0.02)
        return False, "the engine did not get ready within 10 s"
    finally:
        proc.stop(signal.SIGTERM)
