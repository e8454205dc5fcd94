#!/usr/bin/env python3
"""The benchmark harness: scenarios side by side from network namespaces.

Usage: bench.py [--profile quick|full|smoke] [--out DIR] [--build DIR]
                [--external NAME=COMMAND]... [--scenarios a,b,...] [--relay]
                [--ports P,...] [--clients N] [--tproxy] [--engine-threads N]
                [--capacity on|off|only] [--cpu-budget CPUS|auto]
                [--compare OLD/results.json]
       bench.py --write-docs [RESULTS.json]
--capacity (default on) adds the capacity phase: each server confined to
--cpu-budget CPUs (a cgroup cpu quota; default auto: 0.3, lowered when the
server cannot use it all at saturation), load raised until loss.
--compare prints, after the run, the change of every scenario metric and
microbenchmark against an earlier results.json and whether it is beyond the
noise of the two runs. --write-docs regenerates the generated section of
docs/benchmarks.md from a results file (default bench/results/latest) and
runs nothing.
--clients N runs N client namespaces, each with a generator carrying 1/N of
the load (results merged exactly). --tproxy diverts every benchmarked port
to one transparent listener with nftables TPROXY (all but direct).
The default scenarios are direct, engine, engine-kernel (kernel dispatch:
--kernel-dispatch on, sinks with --take-listener; left out, with the reason,
where the kernel or --tproxy does not allow it) and engine-sync.
COMMAND may use {config} (the configuration file), {port} (the first port,
80) and {ports} (all ports, comma list); it must serve every port, e.g.
  --external 'original=/opt/socketbox/socketbox -f {config} -l :: -p {port}'
(the original listens on one port: add --ports 80).

Writes DIR/results.json, DIR/report.md and PNG plots; prints the report.
Exit 0: ran (whatever the speed); 1: a correctness problem (misrouted or
unexplained loss) in our own scenarios, or the harness failed; 2: bad usage;
77: this machine cannot run it (not root, no namespaces).
"""
import argparse
import atexit
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import capacity  # noqa: E402
import compare  # noqa: E402
import cpucap  # noqa: E402
import docs_writer  # noqa: E402
import environment  # noqa: E402
import figures  # noqa: E402
import procs  # noqa: E402
import report  # noqa: E402
from records import Results  # noqa: E402
import sample  # noqa: E402
from scenarios import (
    BUILTIN,
    KERNEL_SCENARIO,
    TPROXY_PORT,
    Layout,
    Scenario,  # noqa: E402
    kernel_dispatch_usable,
)
from topology import Topology, sweep_stale  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Open-loop phases keep at most this many connections in flight (each is an
# fd of the generator; the hard RLIMIT_NOFILE here is 20,000).
OPEN_LOOP_MAX_IN_FLIGHT = 8000


def round_order(names, r):
    """The order of round r: as given on even rounds, mirrored on odd ones
    (A B C, C B A, ...). Over an even number of rounds every scenario's mean
    slot is the same, so a drift during the phase, or a slot that is noisier
    than the others, weighs on all alike; neighbours stay neighbours, so a
    round's samples of two scenarios still share the moment's noise."""
    return list(names) if r % 2 == 0 else list(reversed(names))


PROFILES = {
    # Under 3 minutes on 2 cores, build excluded.
    "quick": dict(
        rounds=3,
        duration=3,
        addresses=4,
        ports=[80, 443],
        backends=4,
        concurrency=64,
        gen_threads=2,
        lat_rounds=4,
        lat_duration=2,
        lat_fractions=[0.5],
        burst=10000,
        burst_rounds=1,
        strace_connections=3000,
        soak_connections=200000,
        micro_min_time=0.05,
        micro_repetitions=5,
        gen_rounds=2,
        cap_step=1.5,
        cap_refine=3,
        cap_lat_fractions=[0.25, 0.5, 0.75],
    ),
    # A check of the harness itself (seconds): every phase once, tiny.
    "smoke": dict(
        rounds=1,
        duration=1,
        addresses=2,
        ports=[80, 443],
        backends=2,
        concurrency=16,
        gen_threads=1,
        lat_rounds=1,
        lat_duration=1,
        lat_fractions=[0.5],
        burst=1000,
        burst_rounds=1,
        strace_connections=500,
        soak_connections=5000,
        micro_min_time=0.01,
        micro_repetitions=2,
        gen_rounds=1,
        cap_step=0.5,
        cap_refine=1,
        cap_lat_fractions=[0.5],
    ),
    # For people: minutes.
    "full": dict(
        rounds=7,
        duration=10,
        addresses=16,
        ports=[80, 443, 8080],
        backends=4,
        concurrency=64,
        gen_threads=2,
        lat_rounds=4,
        lat_duration=5,
        lat_fractions=[0.25, 0.5, 0.75],
        burst=10000,
        burst_rounds=3,
        strace_connections=20000,
        soak_connections=1000000,
        micro_min_time=1.0,
        micro_repetitions=5,
        gen_rounds=4,
        cap_step=3,
        cap_refine=5,
        cap_lat_fractions=[0.25, 0.5, 0.75],
    ),
}


MAX_CLIENTS = 8


class Context:
    def __init__(self, topo, layout, binaries, profile):
        self.topo, self.layout, self.binaries, self.p = topo, layout, binaries, profile
        self.tproxy = topo.tproxy
        self.sink_threads = 2
        self.sink_fds = 16  # --sink-fds
        self.sink_ack = False  # --sink-ack
        # The engine's own default (one worker per two CPUs), unless --engine-threads.
        self.engine_threads = max(1, (os.cpu_count() or 2) // 2)
        # engine-kernel: {"usable": bool, "reason": str} once probed.
        self.kernel_dispatch = None
        self.cap = None
        self._id = 0

    def next_id(self):
        self._id += 1
        return self._id


class Interrupted(Exception):
    pass


def _on_signal(signum, _frame):
    raise Interrupted(f"signal {signum}")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument(
        "--out", default=None, help="report directory (default build-bench/bench-results/TIME)"
    )
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--external", action="append", default=[], metavar="NAME=COMMAND")
    ap.add_argument("--scenarios", default=None, help="comma list (default: all)")
    ap.add_argument(
        "--ports", default=None, help="comma list of TCP ports (default: the profile's)"
    )
    ap.add_argument(
        "--clients",
        type=int,
        default=1,
        help=f"client namespaces, each with a generator (1-{MAX_CLIENTS}; default 1)",
    )
    ap.add_argument(
        "--relay",
        action="store_true",
        help="run the relay benchmark instead (relay_bench.py): socketbox-relay beside "
        "HAProxy, socat and systemd-socket-proxyd",
    )
    ap.add_argument(
        "--tproxy",
        action="store_true",
        help=f"engine scenarios: nftables TPROXY sends every port to one listener (:{TPROXY_PORT})",
    )
    ap.add_argument(
        "--sink-fds",
        type=int,
        default=16,
        metavar="N",
        help="the sinks declare they take N fds per message (receiver protocol; "
        "default 16; 1: they do not answer)",
    )
    ap.add_argument(
        "--sink-ack",
        action="store_true",
        help="the sinks also acknowledge (the engine then holds each fd until acked)",
    )
    ap.add_argument(
        "--engine-threads",
        type=int,
        default=None,
        help="the engine's --threads (default: its own, one per two CPUs)",
    )
    ap.add_argument(
        "--lat-rounds",
        type=int,
        default=None,
        metavar="N",
        help="open-loop latency rounds per scenario (default: the profile's); "
        "a p99 ratio steadier than the profile's gives needs more, and an even "
        "number balances the mirrored order",
    )
    ap.add_argument(
        "--capacity",
        choices=("on", "off", "only"),
        default="on",
        help="the capacity phase: servers under a CPU budget (default on)",
    )
    ap.add_argument(
        "--cpu-budget",
        default="auto",
        metavar="CPUS|auto",
        help="capacity phase: CPU quota of the server under test; auto (default): "
        f"{capacity.AUTO_START_BUDGET}, lowered until the server is the limit",
    )
    ap.add_argument(
        "--compare",
        default=None,
        metavar="OLD/results.json",
        help="after the run, compare with this earlier run (file or its directory)",
    )
    ap.add_argument(
        "--write-docs",
        nargs="?",
        const=os.path.join(ROOT, "bench", "results", "latest"),
        default=None,
        metavar="RESULTS",
        help="regenerate docs/benchmarks.md's generated section from RESULTS and exit",
    )
    args = ap.parse_args(argv)
    if not 1 <= args.sink_fds <= 64:
        ap.error(f"--sink-fds wants 1 to 64, not {args.sink_fds}")
    if args.lat_rounds is not None and not 1 <= args.lat_rounds <= 100:
        ap.error(f"--lat-rounds wants 1 to 100, not {args.lat_rounds}")
    if args.engine_threads is not None and not 1 <= args.engine_threads <= 256:
        ap.error(f"--engine-threads wants 1 to 256, not {args.engine_threads}")
    args.auto_budget = args.cpu_budget == "auto"
    try:
        args.cpu_budget = capacity.AUTO_START_BUDGET if args.auto_budget else float(args.cpu_budget)
    except ValueError:
        ap.error(f"--cpu-budget wants a number of CPUs or auto, not {args.cpu_budget!r}")
    if not 0.01 <= args.cpu_budget <= (os.cpu_count() or 1):
        ap.error(f"--cpu-budget wants 0.01 to {os.cpu_count()} CPUs, not {args.cpu_budget}")
    if not 1 <= args.clients <= MAX_CLIENTS:
        ap.error(f"--clients wants 1 to {MAX_CLIENTS}, not {args.clients}")
    externals = {}
    for item in args.external:
        name, eq, cmd = item.partition("=")
        if not eq or not name or not cmd or name in BUILTIN:
            ap.error(f"--external wants NAME=COMMAND with a new NAME: {item!r}")
        externals[name] = cmd
    args.externals = externals
    return args


def main(argv):
    args = parse_args(argv)
    if args.write_docs:
        return docs_writer.main(args.write_docs, os.path.join(ROOT, "docs", "benchmarks.md"))
    baseline = None
    if args.compare:
        baseline, error = compare.load(args.compare)
        if error:
            print(f"bench: --compare: {error}", file=sys.stderr)
            return 2
    if os.geteuid() != 0 or not shutil.which("ip"):
        print("bench: SKIP: needs root and iproute2 (network namespaces)", file=sys.stderr)
        return 77
    if args.relay:
        import relay_bench

        sweep_stale()
        return relay_bench.main(args, args.build)
    p = dict(PROFILES[args.profile])
    if args.lat_rounds is not None:
        p["lat_rounds"] = args.lat_rounds
    if args.ports:
        try:
            p["ports"] = [int(x) for x in args.ports.split(",") if 0 < int(x) < 65536]
        except ValueError:
            p["ports"] = []
        if not p["ports"]:
            print(f"bench: --ports wants a comma list of ports: {args.ports!r}", file=sys.stderr)
            return 2
    if args.tproxy and TPROXY_PORT in p["ports"]:
        print(
            f"bench: with --tproxy, port {TPROXY_PORT} is the transparent listener's: "
            f"leave it out of --ports",
            file=sys.stderr,
        )
        return 2
    if args.tproxy and not shutil.which("nft"):
        print("bench: SKIP: --tproxy needs nft (nftables)", file=sys.stderr)
        return 77
    binaries = {
        n: os.path.join(args.build, "bench", n)
        for n in ("sink", "load_generator") + sample.MICROBENCHMARKS
    }
    binaries["socketbox"] = os.path.join(args.build, "engine", "socketbox")
    for n in ("sink", "load_generator", "socketbox"):
        if not os.access(binaries[n], os.X_OK):
            print(f"bench: {binaries[n]} is not built (scripts/bench builds it)", file=sys.stderr)
            return 1
    # engine-kernel beside engine; not with TPROXY, which assigns the socket
    # before any sk_lookup program could run.
    names = (
        ["direct", "engine"]
        + ([] if args.tproxy else [KERNEL_SCENARIO])
        + ["engine-sync"]
        + list(args.externals)
    )
    kernel_by_default = not args.scenarios
    if args.scenarios:
        names = [n for n in args.scenarios.split(",") if n]
        unknown = [n for n in names if n not in BUILTIN and n not in args.externals]
        if unknown or "direct" not in names:
            print(
                f"bench: unknown scenarios {unknown} (direct is required: the baseline)",
                file=sys.stderr,
            )
            return 2
        if args.tproxy and KERNEL_SCENARIO in names:
            print(
                f"bench: {KERNEL_SCENARIO} does not combine with --tproxy (a socket TPROXY "
                "assigned is used as it is: no sk_lookup program runs)",
                file=sys.stderr,
            )
            return 2
    out = args.out or os.path.join(args.build, "bench-results", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    swept = sweep_stale() + cpucap.sweep_stale()
    if swept:
        print(f"bench: removed leftovers of an earlier run: {' '.join(swept)}", file=sys.stderr)
    topo = Topology(clients=args.clients, tproxy=args.tproxy)
    atexit.register(topo.remove)
    atexit.register(procs.kill_all)
    started = time.time()
    ctx = None
    try:
        topo.create()
        ctx = Context(topo, Layout(topo, p["addresses"], p["backends"], p["ports"]), binaries, p)
        if args.engine_threads:
            ctx.engine_threads = args.engine_threads
        ctx.sink_fds, ctx.sink_ack = args.sink_fds, args.sink_ack
        ctx.auto_budget = args.auto_budget
        if KERNEL_SCENARIO in names:
            usable, why = kernel_dispatch_usable(ctx)
            ctx.kernel_dispatch = {"usable": usable, "reason": why}
            if not usable and kernel_by_default:
                names.remove(KERNEL_SCENARIO)
                print(
                    f"bench: {KERNEL_SCENARIO} left out: the engine cannot run with "
                    f"--kernel-dispatch on here: {why}",
                    file=sys.stderr,
                )
            elif not usable:
                print(
                    f"bench: SKIP: {KERNEL_SCENARIO}: the engine cannot run with "
                    f"--kernel-dispatch on here: {why}",
                    file=sys.stderr,
                )
                return 77
        if args.capacity != "off":
            ctx.cap = cpucap.CpuCap(args.cpu_budget)
            atexit.register(ctx.cap.remove)
        env = environment.collect(topo, binaries, args, p, names, ctx)
        results = run_all(ctx, names, args.externals, args.capacity)
        results.environment = env
        results.elapsed_s = round(time.time() - started, 1)
    except Interrupted as e:
        print(f"\nbench: interrupted ({e}); cleaning up", file=sys.stderr)
        return 130
    finally:
        procs.kill_all()
        topo.remove()
        if ctx is not None and ctx.cap is not None:
            ctx.cap.remove()
    text = report.write(out, results)
    print(text)
    if baseline is not None:
        table = compare.report(baseline, results, args.compare)
        with open(os.path.join(out, "compare.md"), "w") as f:
            f.write(table)
        print(table)
    print(f"bench: report in {out} ({results.elapsed_s} s)", file=sys.stderr)
    return 1 if results.problems else 0


def progress(i, total, what):
    print(f"[{i}/{total}] {what}", file=sys.stderr, flush=True)


def run_all(ctx, names, externals, capacity_mode="off"):
    p = ctx.p
    scen = {n: Scenario(n, ctx, externals.get(n)) for n in names}
    cap_result = None
    if capacity_mode != "off":
        print(f"capacity: servers under {ctx.cap.describe()}", file=sys.stderr, flush=True)
        cap_result = capacity.run_all(
            ctx,
            names,
            scen,
            ctx.cap,
            lambda what: print(f"[capacity] {what}", file=sys.stderr, flush=True),
            ctx.auto_budget,
        )
    if capacity_mode == "only":
        return Results(
            scenarios=names,
            capacity=cap_result,
            capacity_only=True,
            problems=cap_result.problems(only=BUILTIN),
        )
    lay = ctx.layout
    total = (
        p["rounds"] * len(names)
        + (p["lat_rounds"] * len(names) + 1) * len(p["lat_fractions"])
        + p["burst_rounds"] * len(names)
        + 2 * p["gen_rounds"]
        + len(names)
        + 1
        + ("engine" in names)
    )
    step = 0
    samples = []

    def load(name, kind, args, timeout):
        nonlocal step
        step += 1
        s = sample.run_load(ctx, scen[name], args, timeout, kind)
        g = s.gen
        note = f" PROBLEM: {'; '.join(s.problems)}" if s.problems else ""
        progress(
            step,
            total,
            f"{kind:<10} {name:<12} {g.conn_per_s:>9.0f} conn/s  "
            f"p99 {g.latency_us.p99:>8.0f} us  losses {s.losses}{note}",
        )
        samples.append(s)
        return s

    common = ["--threads", str(p["gen_threads"]), "--timeout-ms", "5000"]
    # Throughput: closed loop, interleaved A B C C B A A B C (the profiles'
    # odd round counts leave A one first slot more than C).
    for r in range(p["rounds"]):
        for n in round_order(names, r):
            load(
                n,
                "throughput",
                lay.targets()
                + common
                + ["--concurrency", str(p["concurrency"]), "--duration", str(p["duration"])],
                p["duration"] + 30,
            )
    direct_rate = (
        figures.median(
            [s.gen.conn_per_s for s in samples if s.kind == "throughput" and s.scenario == "direct"]
        )
        or 0
    )
    # Latency: open loop at fractions of the direct scenario's saturated rate.
    for frac in p["lat_fractions"]:
        rate = max(100, int(direct_rate * frac))
        # In flight at most what the fd limit leaves room for: an
        # overloaded server makes an open loop pile up connections.
        open_loop = (
            lay.targets()
            + common
            + [
                "--rate",
                str(rate),
                "--duration",
                str(p["lat_duration"]),
                "--max-in-flight",
                str(OPEN_LOOP_MAX_IN_FLIGHT),
            ]
        )
        # The first open-loop samples after the closed loop's hundreds of
        # thousands of connections often had the phase's slowest tail,
        # whichever scenario they were: a warm-up on direct takes that slot
        # and is left out of the figures (its losses and misroutes count).
        load("direct", "warmup", open_loop, p["lat_duration"] + 30)
        for r in range(p["lat_rounds"]):
            for n in round_order(names, r):
                load(n, f"latency{int(frac * 100)}", open_loop, p["lat_duration"] + 30)
    # Burst: all at once to one backend, default max_dgram_qlen.
    for _ in range(p["burst_rounds"]):
        for n in names:
            load(
                n,
                "burst",
                lay.targets(lay.dests[:1])
                + [
                    "--threads",
                    str(p["gen_threads"]),
                    "--timeout-ms",
                    "20000",
                    "--concurrency",
                    str(p["burst"]),
                    "--connections",
                    str(p["burst"]),
                ],
                90,
            )
    # Generator: io_uring against epoll, same load on the direct scenario.
    for _ in range(p["gen_rounds"]):
        for io in ("uring", "epoll"):
            load(
                "direct",
                f"gen-{io}",
                lay.targets()
                + common
                + [
                    "--io",
                    io,
                    "--concurrency",
                    str(p["concurrency"]),
                    "--duration",
                    str(p["lat_duration"]),
                ],
                p["lat_duration"] + 30,
            )
    # Memory: the engine's RSS over a long run.
    if "engine" in names:
        load(
            "engine",
            "soak",
            lay.targets()
            + common
            + ["--concurrency", str(p["concurrency"]), "--connections", str(p["soak_connections"])],
            600,
        )
    # Syscalls per connection, cross-checked by strace.
    straces = []
    if shutil.which("strace"):
        for n in names:
            step += 1
            st = sample.run_strace(
                ctx,
                scen[n],
                lay.targets()
                + common
                + ["--concurrency", "32", "--connections", str(p["strace_connections"])],
                p["strace_connections"],
            )
            progress(
                step,
                total,
                f"strace     {n:<12} {st.per_conn if st.per_conn is not None else float('nan'):.3f} syscalls/conn",
            )
            straces.append(st)
    step += 1
    micro, micro_raw = sample.run_microbenchmarks(ctx, p["micro_min_time"], p["micro_repetitions"])
    progress(step, total, "microbenchmarks done")
    problems = [
        f"{s.scenario} {s.kind}: {pr}"
        for s in samples
        for pr in s.problems
        if s.scenario in BUILTIN
    ]
    if cap_result:
        problems += cap_result.problems(only=BUILTIN)
    notes = [
        f"{s.scenario} {s.kind}: {pr}"
        for s in samples
        for pr in s.problems
        if s.scenario not in BUILTIN
    ]
    return Results(
        scenarios=names,
        samples=samples,
        strace=straces,
        micro=micro,
        micro_raw=micro_raw,
        capacity=cap_result,
        direct_saturated_rate=direct_rate,
        problems=problems,
        external_notes=notes,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
