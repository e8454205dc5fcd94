"""The capacity section of the report (see capacity.py for the method)."""


def _fmt(v, digits=0):
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}"


def per_cpu_at_capacity(c):
    """Connections per server CPU-second at the zero-loss capacity."""
    return c.at_capacity.conns_per_cpu_s if c.at_capacity else None


from capacity import CAP_BOUND


def _budget(step):
    used = step.budget_used
    if used is None:
        return "n/a"
    return f"{used:.0%}" + ("" if used >= CAP_BOUND else " (not cap-bound)")


def _p99_at_half(c):
    """p99 at 50% of the scenario's own capacity, or None."""
    step = c.latency.get("50") if c else None
    return step.p99_us if step else None


def table(results):
    cap = results.capacity
    if not cap:
        return []
    c0 = cap.cap
    fractions = [
        str(int(f * 100)) for f in results.environment["profile_parameters"]["cap_lat_fractions"]
    ]
    cal = cap.calibration
    lines = ["", f"### Capacity: each server under a CPU budget ({c0['description']})", ""]
    if cal:
        lines += [
            f"Budget `auto`: {cal.scenario} at saturation under {cal.start_budget:g} CPU used "
            f"{cal.used_cpus:.3f} CPU ({cal.conn_per_s:,.0f} conn/s); "
            + (
                f"{cal.budget:g} CPU, a share of that, is the budget of every server below, so "
                "that the server, not the load generator, is the limit."
                if cal.budget != cal.start_budget
                else "that binds: the budget stays."
            )
            + " Budgets of different runs may differ: compare per-CPU-second figures.",
            "",
        ]
    lines += [
        "Only the accepting process is capped (for direct: the sink, which accepts"
        + (
            "; for engine-kernel: the engine and its sinks together, since the sinks accept what "
            "the kernel steers); the load generator and the sinks behind any other engine run "
            "outside the cap, so engine-kernel carries its sinks' cost and engine does not: "
            "compare engine-kernel with direct."
            if "engine-kernel" in cap.scenarios
            else "); the load generator and the sinks behind an engine run outside the cap."
        )
        + f" Saturation: closed "
        f"loop, {cap.saturation_in_flight} in flight. Zero-loss capacity: the highest open-loop "
        f"rate (steps of {cap.step_s} s, searched) with no connection lost (generator: "
        f"no greeting, reset, refused, or no greeting within {cap.step_timeout_ms} ms; "
        f"server: its drop counters) and kept up: at least {cap.kept_up:.0%} of the offered "
        f"connections finished, the last of them within {1 - cap.kept_up:.0%} of the step "
        f"+ {cap.drain_slack_s * 1000:.0f} ms after the step's end; [held–failed] is the bracket the search ended "
        f"with. Per connection: io_uring_enter and all syscalls by `perf stat` attached to the server"
        f"{'' if cap.perf else ' (perf unavailable: n/a)'}, the engine's own uring_enter "
        f"counter in brackets; context switches from /proc (all threads).",
        "",
        "| scenario | zero-loss capacity conn/s [held–failed] | conn per server CPU-s at capacity "
        "| CPU µs/conn at capacity | saturation conn/s | conn per CPU-s at saturation "
        "| budget used at saturation | lost at saturation | io_uring_enter/conn at saturation | syscalls/conn at saturation "
        "| ctx switches/conn at saturation | p99 µs at " + "/".join(fractions) + "% of capacity |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in cap.scenarios.items():
        sat, at = c.saturation, c.at_capacity
        counter = sat.enters_per_conn_counter
        enters = _fmt(sat.enters_per_conn, 3) + (f" ({counter:.3f})" if counter else "")
        lost = sat.losses + (sat.server_dropped or 0)
        p99 = " / ".join(_fmt(c.latency[k].p99_us) if k in c.latency else "n/a" for k in fractions)
        lines.append(
            f"| {name} | {_fmt(c.capacity)} [{_fmt(c.bracket[0])}–{_fmt(c.bracket[1])}] | "
            f"{_fmt(per_cpu_at_capacity(c))} | {_fmt(at.cpu_us_per_conn if at else None, 2)} | "
            f"{_fmt(sat.conn_per_s)} | {_fmt(sat.conns_per_cpu_s)} | {_budget(sat)} | {lost:,} | "
            f"{enters} | "
            f"{_fmt(sat.syscalls_per_conn, 2)} | {_fmt(sat.ctx_switches_per_conn, 3)} | "
            f"{p99} |"
        )
    lines += [
        "",
        "Below capacity, per open-loop latency step: CPU µs per connection, share of the budget "
        "used, and quota periods throttled. A server that batches costs more per connection at "
        "a lower rate (fewer connections per wake-up), so at a fraction of its capacity it can "
        "still spend its whole budget and be throttled, which is what its p99 then shows.",
        "",
        "| scenario | "
        + " | ".join(f"at {k}%: µs/conn, budget, throttled" for k in fractions)
        + " |",
        "|---|" + "---|" * len(fractions),
    ]
    for name, c in cap.scenarios.items():
        cells = []
        for k in fractions:
            s = c.latency.get(k)
            used = s.budget_used if s else None
            cells.append(
                "n/a"
                if not s
                else f"{_fmt(s.cpu_us_per_conn, 2)}, "
                f"{'n/a' if used is None else f'{used:.0%}'}, "
                f"{_fmt(s.throttled_periods)}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    scen = cap.scenarios
    loose = [n for n, c in scen.items() if (c.saturation.budget_used or 0) < CAP_BOUND]
    if loose:
        lines += [
            "",
            f"Not cap-bound: {', '.join(loose)} used less than {CAP_BOUND:.0%} of the budget at "
            "saturation, so the load generator or the shared machine was the limit there, not "
            "the server: its capacity is a lower bound (a smaller --cpu-budget, auto, or a "
            "quieter machine, moves the limit back to the server).",
        ]
    spread = []
    for name, c in scen.items():
        w = c.saturation.worker_accepted
        if w and sum(w):
            spread.append(f"{name} " + " / ".join(f"{x / sum(w):.0%}" for x in w))
    if spread:
        lines += [
            "",
            "Accepts per worker at saturation (one SO_REUSEPORT listener per worker, the "
            "kernel's 4-tuple hash picks one): " + "; ".join(spread) + ".",
        ]
    ratios = []
    for a, b in (
        (("engine", "engine-sync"), ("engine", "direct"))
        + tuple(
            ("engine", n)
            for n in scen
            if n not in ("direct", "engine", "engine-sync", "engine-kernel")
        )
        + (("engine-kernel", "direct"),)
    ):
        x = per_cpu_at_capacity(scen[a]) if a in scen else None
        y = per_cpu_at_capacity(scen[b]) if b in scen else None
        if x and y:
            ratios.append(f"{a}/{b} {x / y:.2f} x")
    if ratios:
        lines += [
            "",
            "Zero-loss capacity per server CPU-second, ratios in this run: "
            + "; ".join(ratios)
            + " (target engine/engine-sync >= 1.7 x).",
        ]
    return lines


def target_rows(results):
    """The issue's capacity targets as (metric, wanted, measured, met, note)."""
    cap = results.capacity
    if not cap:
        return []
    scen = cap.scenarios
    eng, sync, direct = scen.get("engine"), scen.get("engine-sync"), scen.get("direct")
    rows = []
    loose = [
        n
        for n in ("engine", "engine-sync")
        if n in scen and (scen[n].saturation.budget_used or 0) < CAP_BOUND
    ]
    note = f"not cap-bound: {', '.join(loose)} (lower bounds)" if loose else ""
    if eng and sync:
        x, y = per_cpu_at_capacity(eng), per_cpu_at_capacity(sync)
        ratio = x / y if x and y else None
        rows.append(
            (
                "zero-loss capacity per server CPU-s, engine vs engine-sync (capped)",
                ">= 1.7 x",
                f"{_fmt(x)} vs {_fmt(y)} = {_fmt(ratio, 2)} x",
                None if ratio is None else ratio >= 1.7,
                note,
            )
        )
    if eng:
        e = eng.saturation.enters_per_conn
        if e is None:
            e = eng.saturation.enters_per_conn_counter
        rows.append(
            (
                "io_uring_enter per connection at saturation (capped)",
                "<= 0.05",
                _fmt(e, 3),
                None if e is None else e <= 0.05,
                note,
            )
        )
        p_e, p_s, p_d = (_p99_at_half(c) for c in (eng, sync, direct))
        if p_e and p_s and p_d:
            met = p_e <= p_s and p_e <= 2 * p_d
            rows.append(
                (
                    "p99 at 50% of each one's capacity (capped)",
                    "<= engine-sync and <= 2 x direct",
                    f"{_fmt(p_e)} vs {_fmt(p_s)} (sync), {_fmt(p_d)} (direct) µs",
                    met,
                    "each at its own capacity; the quota's period adds its throttling waits",
                )
            )
    return rows
