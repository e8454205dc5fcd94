"""Capacity mode: the server under test confined to a fixed CPU budget
(cpucap.CpuCap), the generator and the sinks outside it; load raised until
the server loses connections or falls behind.

Per scenario, against one server started once:
  1. saturation: closed loop with many connections in flight; gives the rate
     the capped server tops out at, and the wake-ups per connection there;
  2. zero-loss capacity: open-loop steps, searched (halving down from 3/4 of
     saturation until one holds, then bisecting up to 1.1 x saturation). A
     step holds when no connection is lost (generator: closed without the
     greeting, reset, refused, timed out; server: its drop counters) and the
     server kept up: connections completed per second, counting the drain,
     the server kept up: at least KEPT_UP of the offered connections
     finished, and the step's drain (the time after the last start until the
     last finish) under (1 - KEPT_UP) of the step plus DRAIN_SLACK_S (a server
     that queues more than it serves falls behind long before it loses
     anything: the listen queue is deep);
  3. latency: open loop at 25/50/75% of that capacity, p99.
Every step records server CPU (schedstat, exact), io_uring_enter and all
syscalls (perf stat attached to the server), context switches (/proc), and
the quota's throttling; connections per server CPU-second follow. The server
is every process the scenario caps (Scenario.server_pids: for engine-kernel
the engine and its sinks, which accept), summed.
Misrouted connections are correctness problems; losses are what the search
looks for, not problems.
"""
import os
import time

import sample
import syscount
from records import Calibration, CapacityRun, CapacityStep, ScenarioCapacity

KEPT_UP = 0.97
# The last connections of a step take their latency to finish: a drain this
# long is not falling behind (a quota period is 10 ms; a busy shared machine
# adds its own waits).
DRAIN_SLACK_S = 0.05
SATURATION_IN_FLIGHT = 512
STEP_TIMEOUT_MS = 2000
# Below this share of its budget at saturation a server was not the limit.
# Saturated servers measured here use 97-102% of a CFS quota (direct 100%,
# engine-sync 97%, the engine 98% at 0.149 CPU); at 0.85 an engine that the
# generator held at 0.269 of 0.3 CPU (90%) passed as the limit, and its
# capacity was the generator's.
CAP_BOUND = 0.95
# --cpu-budget auto: where it starts, and what share of the CPU the engine
# managed to use uncapped-by-us becomes the budget when that was too little.
# Half: at 0.6 (0.166 CPU in one run) the packing engine's saturation was
# again about the generator's rate (36,000 conn/s); at 0.1 CPU it batched
# 37 connections per io_uring_enter against 17 at 0.166.
AUTO_START_BUDGET = 0.3
CALIBRATED_SHARE = 0.5
MIN_AUTO_BUDGET = 0.02


def search(holds, saturation, refine_steps, floor_fraction=1 / 16):
    """The highest rate for which holds(rate) is true, between
    floor_fraction and 1.1 x saturation: (capacity, [highest held, lowest
    failed]). holds() is called for each tried rate, in order."""
    ceiling = max(1, int(saturation * 1.1))
    floor = max(1, int(saturation * floor_fraction))
    rate, lo, hi = max(1, int(saturation * 0.75)), None, ceiling
    while lo is None:
        if holds(rate):
            lo = rate
        else:
            hi = rate
            rate //= 2
            if rate < floor:
                return 0, [0, hi]
    for _ in range(refine_steps):
        mid = (lo + hi) // 2
        if mid in (lo, hi):
            break
        if holds(mid):
            lo = mid
        else:
            hi = mid
    return lo, [lo, hi]


def _delta(before, after, key):
    if before is None or after is None:
        return None
    return after.get(key, 0) - before.get(key, 0)


def _worker_deltas(before, after):
    """Connections each engine worker accepted during the step (SO_REUSEPORT
    spreading), or None for servers without counters."""
    if (
        not before
        or not after
        or len(before.get("worker_accepted", [])) != len(after.get("worker_accepted", []))
    ):
        return None
    return [b - a for a, b in zip(before["worker_accepted"], after["worker_accepted"])]


def _per(value, conns):
    return value / conns if value is not None and conns else None


class CappedServer:
    """One scenario's server under the cap, measured step by step."""

    def __init__(self, ctx, scenario, cap, perf_ok):
        self.ctx, self.scenario, self.cap, self.perf_ok = ctx, scenario, cap, perf_ok

    def cpu_seconds(self):
        pids = self.scenario.server_pids()
        exact = [syscount.on_cpu_seconds(pid) for pid in pids]
        if None not in exact:
            return sum(exact)
        procs = [self.scenario.server] + ([self.scenario.sink] if len(pids) > 1 else [])
        return sum(p.cpu_seconds() for p in procs)

    def context_switches(self):
        counts = [syscount.context_switches(pid) for pid in self.scenario.server_pids()]
        return None if None in counts else sum(counts)

    def step(self, kind, load_args, rate, duration):
        sc, ctx = self.scenario, self.ctx
        counting = syscount.Counting(
            ",".join(map(str, sc.server_pids())),
            ctx.topo.path(f"{ctx.next_id():03d}-perf.txt"),
            self.perf_ok,
        )
        counting.start()
        c0, cs0, th0, cpu0 = (
            sc.counters(),
            self.context_switches(),
            self.cap.throttled(),
            self.cpu_seconds(),
        )
        gens = sample.start_generators(ctx, load_args)
        codes = [g.run_to_end(duration + 30) for g in gens]
        cpu1, th1, cs1, c1 = (
            self.cpu_seconds(),
            self.cap.throttled(),
            self.context_switches(),
            sc.counters(),
        )
        perf = counting.stop()
        g = sample.merged_summary(gens, codes)
        e = g.errors
        losses = e.lost()
        conns = g.finished
        cpu = cpu1 - cpu0
        dropped = _delta(c0, c1, "dropped")
        drain_s = g.elapsed_s - duration
        kept_up = rate is None or (
            conns >= KEPT_UP * rate * duration
            and drain_s <= (1 - KEPT_UP) * duration + DRAIN_SLACK_S
        )
        s = CapacityStep(
            kind=kind,
            offered=rate,
            conn_per_s=g.conn_per_s,
            finished=conns,
            started=g.started,
            losses=losses,
            server_dropped=dropped,
            misrouted=e.wrong_greeting,
            local_errors=e.local,
            p50_us=g.latency_us.p50,
            p99_us=g.latency_us.p99,
            server_cpu_s=round(cpu, 4),
            cpu_us_per_conn=_per(cpu * 1e6, conns),
            conns_per_cpu_s=conns / cpu if cpu > 0 else None,
            enters_per_conn=_per((perf or {}).get("io_uring_enter"), conns),
            syscalls_per_conn=_per((perf or {}).get("syscalls"), conns),
            # The engine's own count; not for engine-kernel, whose engine
            # accepts only what the kernel could not steer.
            enters_per_conn_counter=None
            if sc.kernel
            else _per(_delta(c0, c1, "uring_enter"), _delta(c0, c1, "accepted")),
            ctx_switches_per_conn=_per(
                cs1 - cs0 if cs0 is not None and cs1 is not None else None, conns
            ),
            throttled_periods=th1[0] - th0[0] if th0 and th1 else None,
            drain_s=round(drain_s, 4),
            kept_up=kept_up,
            # Of the budget, how much the server used: near 1 at saturation
            # means the cap was the limit; well below, the generator or the
            # machine was (the report says which).
            budget_used=cpu / g.elapsed_s / self.cap.budget if g.elapsed_s > 0 else None,
            worker_accepted=_worker_deltas(c0, c1),
            holds=losses == 0 and not dropped and kept_up and not e.local,
        )
        return s


def run(ctx, scenario, cap, perf_ok, progress):
    """Capacity of one scenario; returns its record (steps included)."""
    p = ctx.p
    d = p["cap_step"]
    common = ctx.layout.targets() + [
        "--threads",
        str(p["gen_threads"]),
        "--timeout-ms",
        str(STEP_TIMEOUT_MS),
    ]
    steps = []
    scenario.cap = cap
    scenario.start()
    try:
        srv = CappedServer(ctx, scenario, cap, perf_ok)

        def measured(kind, args, rate):
            s = srv.step(kind, common + args, rate, d)
            steps.append(s)
            progress(
                f"capacity   {scenario.name:<12} {kind:<10} "
                f"{'closed' if rate is None else f'{rate:>7}/s'} -> {s.conn_per_s:>8.0f} conn/s "
                f"drain {s.drain_s * 1000:.0f} ms p99 {s.p99_us / 1000:.1f} ms "
                f"loss {s.losses}{'' if s.server_dropped in (None, 0) else '+' + str(s.server_dropped)} "
                f"{'holds' if s.holds else 'FAILS'}"
            )
            if not s.holds:
                time.sleep(0.3)  # the backlog of a failed step drains
            return s

        open_loop = ["--max-in-flight", str(8000), "--duration", str(d)]
        sat = measured(
            "saturation", ["--concurrency", str(SATURATION_IN_FLIGHT), "--duration", str(d)], None
        )
        capacity, bracket = search(
            lambda r: measured("search", ["--rate", str(r)] + open_loop, r).holds,
            sat.conn_per_s,
            p["cap_refine"],
        )
        at_cap = next(
            (
                s
                for s in reversed(steps)
                if s.kind == "search" and s.offered == capacity and s.holds
            ),
            None,
        )
        latency = {}
        for frac in p["cap_lat_fractions"] if capacity else []:
            rate = max(1, int(capacity * frac))
            latency[str(int(frac * 100))] = measured(
                f"latency{int(frac * 100)}", ["--rate", str(rate)] + open_loop, rate
            )
    finally:
        scenario.stop()
        scenario.cap = None
    return ScenarioCapacity(
        scenario=scenario.name,
        saturation=sat,
        capacity=capacity,
        bracket=bracket,
        at_capacity=at_cap,
        latency=latency,
        steps=steps,
        problems=[
            f"{scenario.name} capacity {s.kind}: {s.misrouted} misrouted"
            for s in steps
            if s.misrouted
        ],
    )


def calibrate(ctx, names, scenarios, cap, perf_ok, progress):
    """--cpu-budget auto: one saturation step of the cheapest server (the
    engine when it runs) under the starting budget. When it used less than
    CAP_BOUND of it, the generator or the machine was the limit, so the
    budget becomes CALIBRATED_SHARE of what it did use: every server is then
    the limit of its own run (the others cost more per connection)."""
    name = "engine" if "engine" in names else names[0]
    sc = scenarios[name]
    start = cap.budget
    sc.cap = cap
    sc.start()
    try:
        args = ctx.layout.targets() + [
            "--threads",
            str(ctx.p["gen_threads"]),
            "--timeout-ms",
            str(STEP_TIMEOUT_MS),
            "--concurrency",
            str(SATURATION_IN_FLIGHT),
            "--duration",
            str(ctx.p["cap_step"]),
        ]
        s = CappedServer(ctx, sc, cap, perf_ok).step("calibration", args, None, ctx.p["cap_step"])
    finally:
        sc.stop()
        sc.cap = None
    used = (s.budget_used or 0) * start
    if s.budget_used is not None and s.budget_used < CAP_BOUND:
        cap.set_budget(max(MIN_AUTO_BUDGET, round(used * CALIBRATED_SHARE, 3)))
    progress(
        f"calibration {name}: used {used:.3f} of {start:g} CPU at saturation "
        f"({s.conn_per_s:.0f} conn/s) -> budget {cap.budget:g} CPU"
    )
    return Calibration(
        scenario=name,
        start_budget=start,
        used_cpus=round(used, 4),
        conn_per_s=s.conn_per_s,
        budget=cap.budget,
    )


def run_all(ctx, names, scenarios, cap, progress, auto_budget=False):
    perf_ok = syscount.perf_usable()
    calibration = (
        calibrate(ctx, names, scenarios, cap, perf_ok, progress)
        if auto_budget and cap.method != "affinity"
        else None
    )
    out = CapacityRun(
        cap=cap.as_dict(),
        perf=perf_ok,
        kept_up=KEPT_UP,
        drain_slack_s=DRAIN_SLACK_S,
        saturation_in_flight=SATURATION_IN_FLIGHT,
        step_s=ctx.p["cap_step"],
        step_timeout_ms=STEP_TIMEOUT_MS,
        calibration=calibration,
    )
    for n in names:
        out.scenarios[n] = run(ctx, scenarios[n], cap, perf_ok, progress)
    out.loadavg_after = list(os.getloadavg())
    return out
