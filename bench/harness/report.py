"""results.json, report.md (metrics with medians and spreads, targets marked
met or not) and PNG plots (gnuplot) from the samples of one run."""
import dataclasses
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field

import records
import report_capacity
from figures import median as _med
from figures import pooled_quantile, pooled_ratio, rank_correlation, tail_shape
from figures import spread as _spread

OWN = ("direct", "engine", "engine-kernel", "engine-sync")


@dataclass
class ScenarioSummary:
    """A scenario's figures over the run: one value per round in the lists."""

    rates: list[float]  # closed-loop conn/s
    ratios: list[float]  # rates / direct's, round by round (a round's two share the noise)
    p50: list[float]
    p99: list[float]
    p99_at_50: list[float]  # open loop at 50% of direct's saturated rate
    p999_at_50: list[float]
    # Every round's histogram at 50% load added together: a round's stall
    # weighs what it lasted, not one vote of the median's.
    pooled_p99_at_50: float | None
    # Against direct's: (ratio, low, high), a 90% bootstrap interval over rounds.
    pooled_p99_at_50_vs_direct: tuple | None
    # The same over the calmer half of the rounds: those where the hypervisor
    # stole the least CPU time from either sample (bench/harness/interference.py).
    calm_p99_at_50_vs_direct: tuple | None
    calm_rounds_at_50: int
    steal_ms_at_50: list[float]  # CPU time the hypervisor took, per round
    switches_at_50: list[float]  # the server side's context switches per connection
    syn_retrans: int  # SYNs the client had to send again (a dropped SYN costs a second)
    listen_overflows: int
    cpu_us: list[float]  # the accepting process, per connection
    sink_cpu_us: list[float]  # the backend behind it (None left out)
    syscalls_counter: list[float]
    syscalls_strace: float | None
    rss_kib: list[int]
    losses: int  # all samples but bursts
    burst_losses: list[int]
    misrouted: int
    connections: int
    # engine-kernel: of what the sinks received, accepted from the
    # listeners the kernel program steered into.
    sink_received: int
    via_listener: int
    steered: int


@dataclass
class GeneratorSummary:
    """The load generator's own figures with one I/O method."""

    rates: list[float]
    cpu_us: list[float]


@dataclass
class SoakSummary:
    """The engine's RSS over the long run."""

    connections: int
    rss_after_warmup_kib: int
    rss_end_kib: int
    growth_kib: int


@dataclass
class Summary:
    scenarios: dict[str, ScenarioSummary]
    generator: dict[str, GeneratorSummary] = field(default_factory=dict)  # by "uring"/"epoll"
    soak: SoakSummary | None = None

    def get(self, name):
        return self.scenarios.get(name)

    def as_json(self):
        """results.json's "summary": the scenarios by name, with _generator and _soak."""
        out = {n: dataclasses.asdict(s) for n, s in self.scenarios.items()}
        out["_generator"] = {io: dataclasses.asdict(g) for io, g in self.generator.items()}
        if self.soak:
            out["_soak"] = dataclasses.asdict(self.soak)
        return out


def _fmt(v, digits=0):
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}"


def _with_range(values, digits=0):
    m = _med(values)
    lo, hi = _spread(values)
    if m is None:
        return "n/a"
    if len(values) < 2:
        return _fmt(m, digits)
    return f"{_fmt(m, digits)} ({_fmt(lo, digits)}–{_fmt(hi, digits)})"


def _calmer_half(pairs):
    """The rounds (pairs of samples) where the more of the two steal figures
    is at most its median over the rounds; none without steal figures."""
    stolen = [max(a.steal_ms, b.steal_ms) for a, b in pairs if None not in (a.steal_ms, b.steal_ms)]
    if len(stolen) != len(pairs) or not pairs:
        return []
    cut = _med(stolen)
    return [p for p, s in zip(pairs, stolen) if s <= cut]


def _us(ns):
    return ns / 1000 if ns is not None else None


def _net(sample, side, counter):
    return sample.net.get(side, {}).get(counter, 0)


def summarize(results):
    direct = [s.gen.conn_per_s for s in results.samples_of("direct", "throughput")]
    direct_lat = results.samples_of("direct", "latency50")
    out = {}
    for name in results.scenarios:
        mine = results.samples_of(name)
        thr = [s for s in mine if s.kind == "throughput"]
        lat = [s for s in mine if s.kind == "latency50"]
        burst = [s for s in mine if s.kind == "burst"]
        pairs = (
            list(zip(lat, direct_lat)) if name != "direct" and len(lat) == len(direct_lat) else []
        )
        calm = _calmer_half(pairs)
        rates = [s.gen.conn_per_s for s in thr]
        st = next((x for x in results.strace if x.scenario == name), None)
        out[name] = ScenarioSummary(
            rates=rates,
            ratios=[r / d for r, d in zip(rates, direct) if d],
            p50=[s.gen.latency_us.p50 for s in thr],
            p99=[s.gen.latency_us.p99 for s in thr],
            p99_at_50=[s.gen.latency_us.p99 for s in lat],
            p999_at_50=[s.gen.latency_us.p999 for s in lat],
            pooled_p99_at_50=_us(pooled_quantile([s.gen.buckets for s in lat], 0.99)),
            # Round by round with direct's: only when both have every round.
            pooled_p99_at_50_vs_direct=(
                pooled_ratio([(s.gen.buckets, d.gen.buckets) for s, d in pairs], 0.99)
                if pairs
                else None
            ),
            calm_p99_at_50_vs_direct=(
                pooled_ratio([(s.gen.buckets, d.gen.buckets) for s, d in calm], 0.99)
                if calm
                else None
            ),
            calm_rounds_at_50=len(calm),
            steal_ms_at_50=[s.steal_ms for s in lat if s.steal_ms is not None],
            switches_at_50=[s.switches_per_conn for s in lat if s.switches_per_conn is not None],
            syn_retrans=sum(_net(s, "client", "TcpExt:TCPSynRetrans") for s in mine),
            listen_overflows=sum(_net(s, "server", "TcpExt:ListenOverflows") for s in mine),
            cpu_us=[s.server_cpu_us_per_conn for s in thr],
            sink_cpu_us=[s.sink_cpu_us_per_conn for s in thr if s.sink_cpu_us_per_conn is not None],
            syscalls_counter=[s.syscalls_per_conn_counter for s in thr],
            syscalls_strace=st.per_conn if st else None,
            rss_kib=[s.rss_kib_end for s in thr],
            losses=sum(s.losses for s in mine if s.kind != "burst"),
            burst_losses=[s.losses for s in burst],
            misrouted=sum(s.gen.errors.wrong_greeting for s in mine),
            connections=sum(s.gen.finished for s in mine),
            sink_received=sum((s.sink or {}).get("total_received", 0) for s in mine),
            via_listener=sum(s.via_listener or 0 for s in mine),
            steered=sum((s.kernel or {}).get("steered") or 0 for s in mine),
        )
    summ = Summary(out)
    for io in ("uring", "epoll"):
        mine = results.samples_of(kind=f"gen-{io}")
        if mine:
            summ.generator[io] = GeneratorSummary(
                rates=[s.gen.conn_per_s for s in mine], cpu_us=[s.gen_cpu_us_per_conn for s in mine]
            )
    soak = next(iter(results.samples_of(kind="soak")), None)
    if soak and soak.rss_series:
        series = soak.rss_series
        warm = series[len(series) // 4][1]
        summ.soak = SoakSummary(
            connections=soak.gen.finished,
            rss_after_warmup_kib=warm,
            rss_end_kib=soak.rss_kib_end,
            growth_kib=soak.rss_kib_end - warm,
        )
    return summ


def targets(results, summ):
    rows = []
    eng, sync = summ.get("engine"), summ.get("engine-sync")

    def row(metric, target, value, met, why=""):
        rows.append(
            (metric, target, value, "met" if met else ("not met" if met is False else "n/a"), why)
        )

    if eng:
        r = _med(eng.ratios)
        d = summ.get("direct")
        side = (_med(eng.cpu_us) or 0) + (_med(eng.sink_cpu_us) or 0)
        row(
            "throughput ratio engine/direct",
            ">= 0.95",
            _fmt(r, 3),
            r is not None and r >= 0.95,
            f"generator-bound on shared cores: server side uses {_fmt(side, 1)} µs/conn "
            f"(engine + sink) against {_fmt(_med(d.cpu_us) if d else None, 1)} (direct), "
            "CPU the generator then lacks",
        )
        if sync:
            e, s = _med(eng.cpu_us), _med(sync.cpu_us)
            ratio = e / s if e and s else None
            row(
                "server CPU/conn engine vs engine-sync",
                "<= 0.8 x",
                f"{_fmt(e, 2)} vs {_fmt(s, 2)} us = {_fmt(ratio, 2)} x",
                ratio is not None and ratio <= 0.8,
            )
        for ext in [n for n in results.scenarios if n not in OWN]:
            x = _med(summ.get(ext).cpu_us)
            e = _med(eng.cpu_us)
            ratio = e / x if e and x else None
            row(
                f"server CPU/conn engine vs {ext}",
                "<= 0.8 x",
                f"{_fmt(e, 2)} vs {_fmt(x, 2)} us = {_fmt(ratio, 2)} x",
                ratio is not None and ratio <= 0.8,
            )
        sc = _med(eng.syscalls_counter)
        row(
            "syscalls/conn (engine counters)",
            "<= 0.05",
            _fmt(sc, 4),
            sc is not None and sc <= 0.05,
            f"about {_fmt(1 / sc, 1)} connections per io_uring_enter at this rate" if sc else "",
        )
        ss = eng.syscalls_strace
        row(
            "syscalls/conn (strace -c -f, short run)",
            "<= 0.05",
            _fmt(ss, 4),
            ss is not None and ss <= 0.05,
            "cross-check: light load batches less",
        )
    for name in OWN:
        if summ.get(name):
            s = summ.get(name)
            total = s.losses + sum(s.burst_losses)
            row(
                f"drops, {name} (incl. burst of {results.environment['profile_parameters']['burst']})",
                "0",
                f"{s.losses} + burst {s.burst_losses}",
                total == 0,
            )
    if eng and summ.get("direct"):
        e, d = _med(eng.p99_at_50), _med(summ.get("direct").p99_at_50)
        ratio = e / d if e and d else None
        row(
            "p99 latency at 50% of direct's rate",
            "<= 1.2 x direct",
            f"{_fmt(e)} vs {_fmt(d)} us = {_fmt(ratio, 2)} x",
            ratio is not None and ratio <= 1.2,
            "two more wake-ups than direct (engine, then sink), each may wait for a busy CPU",
        )
    for metric, target, value, met, why in report_capacity.target_rows(results):
        row(metric, target, value, met, why)
    micro = results.micro.get("dispatch_benchmark", {})
    uring = max(
        (v["items_per_second"] or 0 for k, v in micro.items() if "Uring" in k), default=None
    )
    loop = max(
        (v["items_per_second"] or 0 for k, v in micro.items() if "Sendmsg" in k), default=None
    )
    if uring and loop:
        row(
            "dispatch capacity (microbenchmark, one core)",
            ">= 1,000,000 fds/s and >= 1.5 x sendmsg",
            f"{_fmt(uring)} fds/s = {_fmt(uring / loop, 2)} x",
            uring >= 1e6 and uring >= 1.5 * loop,
        )
    soak = summ.soak
    if soak:
        growth = soak.growth_kib
        flat = growth <= max(512, soak.rss_after_warmup_kib * 0.02)
        row(
            "engine RSS after warm-up",
            "flat",
            f"{soak.rss_after_warmup_kib} -> {soak.rss_end_kib} KiB "
            f"over {soak.connections:,} conn",
            flat,
            ""
            if soak.connections >= 1000000
            else "this profile soaks fewer than 1,000,000 connections",
        )
    return rows


def pooled_tail_lines(results, summ):
    """The p99 at 50% load with every round pooled, and each scenario's
    ratio to direct's with its interval: per-round p99s on shared cores
    move by 2x and more, and the median of a few of them cannot tell a
    10% difference from none."""
    d = summ.get("direct")
    if not d or d.pooled_p99_at_50 is None:
        return []
    parts = [f"direct {_fmt(d.pooled_p99_at_50)} µs"]
    for name in results.scenarios:
        s = summ.get(name)
        if name == "direct" or s.pooled_p99_at_50 is None:
            continue
        r = s.pooled_p99_at_50_vs_direct
        parts.append(
            f"{name} {_fmt(s.pooled_p99_at_50)} µs"
            + (f" = {_fmt(r[0], 2)}x direct ({_fmt(r[1], 2)}–{_fmt(r[2], 2)})" if r else "")
        )
    how = (
        f"over all {len(d.p99_at_50)} rounds pooled (their histograms added; in brackets a "
        "90% interval of the ratio, the rounds drawn again with replacement, a round's "
        "samples of both scenarios together; from few rounds it is narrower than the truth)"
        if len(d.p99_at_50) > 1
        else "in its one round"
    )
    lines = ["", f"p99 at 50% load {how}: " + "; ".join(parts) + "."]
    steal = [
        f"{name} {_with_range(summ.get(name).steal_ms_at_50)}"
        for name in results.scenarios
        if summ.get(name).steal_ms_at_50
    ]
    if not steal:
        return lines
    lat = [
        s
        for s in results.samples
        if s.kind == "latency50" and s.steal_ms is not None and s.gen.latency_us.p99
    ]
    rho = rank_correlation([s.steal_ms for s in lat], [s.gen.latency_us.p99 for s in lat])
    calm = [
        f"{name} {_fmt(r[0], 2)}x ({_fmt(r[1], 2)}–{_fmt(r[2], 2)}) over "
        f"{summ.get(name).calm_rounds_at_50} rounds"
        for name in results.scenarios
        if name != "direct"
        for r in [summ.get(name).calm_p99_at_50_vs_direct]
        if r
    ]
    lines += [
        "",
        "CPU time the hypervisor gave to other guests while each sample at 50% load ran "
        "(steal, bench/harness/interference.py), CPU-ms over all CPUs per round: "
        + "; ".join(steal)
        + f". Its rank correlation with the samples' p99, every scenario's samples together: "
        f"{_fmt(rho, 2)}. Over the calmer half of the rounds (those where the more of the "
        "pair's two steal figures is at most its median; from half the rounds, its interval "
        "is narrower than the truth), the ratio of pooled p99s to direct's: "
        + ("; ".join(calm) if calm else "n/a")
        + ".",
    ]
    return lines


def tail_shape_lines(results):
    """What each scenario's slowest connections at 50% load are made of:
    a tail of stalls or of a cost per connection, in the handshake or after
    it, on every backend or on one (figures.tail_shape)."""
    parts, completed, kept, elapsed = [], 0, 0, []
    for name in results.scenarios:
        lat = results.samples_of(name, "latency50")
        t = tail_shape(
            [(s.gen.slowest, [x.get("expected", "?") for x in s.gen.targets]) for s in lat]
        )
        if t is None:
            continue
        completed += sum(s.gen.completed for s in lat)
        elapsed += [s.gen.elapsed_s for s in lat]
        parts.append(
            f"{name}: handshake {_fmt(t.handshake_us)} µs then {_fmt(t.after_us)} µs to the "
            f"first byte (medians), {_fmt(100 * t.densest_share)}% of a sample's in its "
            f"densest 50 ms (median of samples), {_fmt(100 * t.top_backend_share)}% to "
            f"backend {t.top_backend}"
        )
        kept += t.kept
    if not parts:
        return []
    even = 100 * 0.05 / max(_med(elapsed), 0.05)
    return [
        "",
        "What the slowest connections at 50% load are made of (each sample's generator "
        f"keeps its slowest, here {_fmt(100 * kept / max(completed, 1), 1)}% of them; spread "
        f"evenly over a sample, a 50 ms window would hold {_fmt(even, 1)}%, and each "
        "backend its share; crowded into one window, they are a stall): " + "; ".join(parts) + ".",
    ]


def kernel_lines(results, summ):
    """engine-kernel's paragraph: how much the kernel steered, and the whole
    server side's CPU per connection beside engine's and direct's."""
    k = summ.get("engine-kernel")
    if not k or not k.sink_received:
        return []

    def side(name):
        s = summ.get(name)
        if not s:
            return None
        server = _med(s.cpu_us)
        sink = _med(s.sink_cpu_us) if name != "direct" else 0
        return server + (sink or 0) if server is not None else None

    return [
        "",
        f"Kernel dispatch (engine-kernel): {k.via_listener:,} of the "
        f"{k.sink_received:,} connections its sinks received "
        f"({k.via_listener / k.sink_received:.1%}) were accepted from the listeners they "
        f"took, where the kernel's sk_lookup program put them (the engine's count: "
        f"{k.steered:,} steered); the rest came from the engine. Server side per connection, "
        f"engine + sink, uncapped: engine-kernel {_fmt(side('engine-kernel'), 2)} µs, engine "
        f"{_fmt(side('engine'), 2)} µs, direct {_fmt(side('direct'), 2)} µs.",
    ]


def markdown(results, summ, rows):
    env = results.environment
    lines = [
        f"## Benchmark report ({env['profile']} profile, {env['date_utc']} UTC)",
        "",
        f"`{env['command']}` — kernel {env['kernel']}, {env['cpus']} CPUs ({env['cpu_model']}), "
        f"socketbox {env['versions']['socketbox']} ({env['versions']['git']}); "
        f"engine threads {env['engine_threads']}, sink threads {env['sink_threads']} "
        f"(declaring {env.get('sink_fds', 1)} fds per message{', acknowledging' if env.get('sink_ack') else ''}), "
        f"{len(env['layout']['addresses'])} addresses x ports {env['layout'].get('ports', [80])} -> "
        f"{len(env['layout']['backends'])} backends; "
        f"{env.get('client_namespaces', 1)} client namespace(s)"
        f"{'; TPROXY: every port to one transparent listener (not for direct)' if env.get('tproxy') else ''}; "
        f"load average at start {', '.join(f'{x:.1f}' for x in env['loadavg_at_start'])} "
        "(shared machine: compare ratios within this run).",
        "",
        "Medians over interleaved rounds, (min–max) in brackets. Server CPU = utime+stime "
        "of the accepting process (for direct: the sink itself; for engine-kernel: the engine, "
        "which accepts only what the kernel could not steer) per connection; the sink "
        "column is the backend's own share behind the engine (for engine-kernel it accepts "
        "the steered connections itself). Client, server and backends "
        f"share the same {env['cpus']} cores, so end-to-end rates are bound by the load generator: "
        "an accepting process that uses CPU takes it from the generator. These phases run "
        "uncapped; the capacity section below (when the run has one) caps each server.",
        "",
        "| scenario | conn/s | vs direct | p50 / p99 µs | p99 µs at 50% load | server CPU µs/conn "
        "| sink CPU µs/conn | syscalls/conn (counters / strace) | RSS KiB | drops | burst drops | misrouted "
        "| SYN retrans / listen overflows |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in results.scenarios:
        s = summ.get(name)
        lines.append(
            f"| {name} | {_with_range(s.rates)} | {_with_range(s.ratios, 3)} | "
            f"{_fmt(_med(s.p50))} / {_fmt(_med(s.p99))} | {_with_range(s.p99_at_50)} | "
            f"{_with_range(s.cpu_us, 2)} | "
            f"{_with_range(s.sink_cpu_us, 2) if name != 'direct' else '(is the server)'} | "
            f"{_fmt(_med(s.syscalls_counter), 4)} / "
            f"{_fmt(s.syscalls_strace, 3)} | {_fmt(_med(s.rss_kib))} | {s.losses} | "
            f"{', '.join(str(x) for x in s.burst_losses) or 'n/a'} | {s.misrouted} | "
            f"{s.syn_retrans} / {s.listen_overflows} |"
        )
    switches = [
        f"{name} {_with_range(summ.get(name).switches_at_50, 2)}"
        for name in results.scenarios
        if summ.get(name).switches_at_50
    ]
    if switches:
        lines += [
            "",
            "Context switches of the server side per connection at 50% load (the server and "
            "its sink, voluntary and not; each is a sleep and a wake-up or a preemption, "
            "where a tail on shared CPUs comes from): " + "; ".join(switches) + ".",
        ]
    lines += pooled_tail_lines(results, summ)
    lines += tail_shape_lines(results)
    lines += kernel_lines(results, summ)
    lines += ["", "| target | wanted | measured | status | note |", "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    kinds = sorted(
        {s.kind for s in results.samples if s.kind.startswith("latency")}, key=lambda k: int(k[7:])
    )
    if len(kinds) > 1:
        lines += [
            "",
            "p99 latency (µs) by open-loop load, as % of direct's saturated rate "
            f"({_fmt(results.direct_saturated_rate)} conn/s):",
            "",
            "| scenario | " + " | ".join(f"{k[7:]}%" for k in kinds) + " |",
            "|---|" + "---|" * len(kinds),
        ]
        for name in results.scenarios:
            cells = [
                _with_range([s.gen.latency_us.p99 for s in results.samples_of(name, k)])
                for k in kinds
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    gens = summ.generator
    if gens:
        lines += [
            "",
            "Load generator, io_uring against epoll (direct scenario, closed loop, "
            "generator CPU per connection from its own getrusage):",
            "",
            "| generator | conn/s | generator CPU µs/conn |",
            "|---|---|---|",
        ]
        for io, g in gens.items():
            lines.append(f"| {io} | {_with_range(g.rates)} | {_with_range(g.cpu_us, 2)} |")
    micro = results.micro
    lines += ["", "Microbenchmarks (items/s, CPU time):", ""]
    for binary, benches in micro.items():
        if "error" in benches:
            lines.append(f"- {binary}: {benches['error']}")
            continue
        for name, v in benches.items():
            lines.append(
                f"- {name}: {_fmt(v['items_per_second'])}/s"
                if v["items_per_second"]
                else f"- {name}: {_fmt(v['cpu_time_ns'])} ns"
            )
    st = results.strace
    if st:
        lines += [
            "",
            "strace -c -f (server, short closed-loop run at concurrency 32): "
            + "; ".join(f"{x.scenario} {_fmt(x.per_conn, 3)}/conn {x.top}" for x in st),
        ]
    lines += report_capacity.table(results)
    sysctls = env["sysctls"]
    lines += [
        "",
        "Sysctls (set in the namespaces only): "
        + "; ".join(
            f"{role}: " + ", ".join(f"{k}={v}" for k, v in vals.items())
            for role, vals in sysctls.items()
        ),
    ]
    if results.problems:
        lines += ["", "**Correctness problems:**", ""] + [f"- {p}" for p in results.problems]
    else:
        lines += [
            "",
            f"Correctness: every connection reached the backend its address maps to; "
            f"every loss is explained by a server counter "
            f"({sum(summ.get(n).connections for n in results.scenarios):,} connections).",
        ]
    if results.external_notes:
        lines += ["", "External servers (reported, not judged):", ""] + [
            f"- {p}" for p in results.external_notes
        ]
    if results.plots:
        lines += ["", " ".join(f"![{p}]({p})" for p in results.plots)]
    return "\n".join(lines) + "\n"


def plots(out, results, summ):
    if not shutil.which("gnuplot"):
        return []
    names = results.scenarios
    with open(os.path.join(out, "throughput.dat"), "w") as f:
        for i, n in enumerate(names):
            lo, hi = _spread(summ.get(n).rates)
            f.write(f"{i} {n} {_med(summ.get(n).rates) or 0} {lo or 0} {hi or 0}\n")
    cdf_files = []
    for n in names:
        lat = results.samples_of(n, "latency50")
        if not lat:
            continue
        lat.sort(key=lambda s: s.gen.latency_us.p99)
        path = os.path.join(out, f"cdf-{n}.dat")
        with open(path, "w") as f:
            # The round of the median p99 (of an even number, the lower one).
            for us, frac in lat[(len(lat) - 1) // 2].gen.cdf:
                f.write(f"{max(us, 1)} {frac}\n")
        cdf_files.append((n, path))
    script = f"""
set terminal pngcairo size 800,480
set output '{out}/throughput.png'
set title 'Connections/s per scenario (median, min-max)'
set style fill solid 0.5
set boxwidth 0.6
set yrange [0:*]
set xtics rotate by 0
plot '{out}/throughput.dat' using 1:3:xtic(2) with boxes notitle, '' using 1:3:4:5 with yerrorbars notitle lc rgb 'black'
set output '{out}/latency_cdf.png'
set title 'Latency CDF, connect to first byte, open loop at 50% of direct rate'
set logscale x
set xlabel 'microseconds'
set ylabel 'fraction'
set yrange [0:1]
set key bottom right
plot {', '.join(f"'{p}' using 1:2 with lines lw 2 title '{n}'" for n, p in cdf_files)}
"""
    r = subprocess.run(["gnuplot"], input=script, capture_output=True, text=True)
    if r.returncode != 0:
        return []
    return ["throughput.png", "latency_cdf.png"]


def capacity_only(results):
    """The report of a run with --capacity only: the header and the capacity table."""
    env = results.environment
    lines = [
        f"## Capacity report ({env['profile']} profile, {env['date_utc']} UTC)",
        "",
        f"`{env['command']}` — kernel {env['kernel']}, {env['cpus']} CPUs ({env['cpu_model']}), "
        f"socketbox {env['versions']['socketbox']} ({env['versions']['git']}); "
        f"engine threads {env['engine_threads']}, sink threads {env['sink_threads']} "
        f"(declaring {env.get('sink_fds', 1)} fds per message{', acknowledging' if env.get('sink_ack') else ''}); "
        f"load average at start {', '.join(f'{x:.1f}' for x in env['loadavg_at_start'])}.",
    ]
    lines += report_capacity.table(results)
    rows = report_capacity.target_rows(results)
    if rows:
        lines += ["", "| target | wanted | measured | status | note |", "|---|---|---|---|---|"]
        lines += [
            f"| {a} | {b} | {c} | {'met' if d else ('not met' if d is False else 'n/a')} | {e} |"
            for a, b, c, d, e in rows
        ]
    if results.problems:
        lines += ["", "**Correctness problems:**", ""] + [f"- {p}" for p in results.problems]
    return "\n".join(lines) + "\n"


def _save(out, results, text):
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(records.to_json(results), f, indent=1)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    return text


def write(out, results):
    """results.json and report.md in `out` (and the plots); returns the report."""
    if results.capacity_only:
        return _save(out, results, capacity_only(results))
    summ = summarize(results)
    rows = targets(results, summ)
    results.plots = plots(out, results, summ)
    results.summary = summ.as_json()
    results.targets = [
        dict(zip(("metric", "target", "measured", "status", "note"), r)) for r in rows
    ]
    return _save(out, results, markdown(results, summ, rows))
