"""One sample: start a scenario, drive load from the client namespaces,
measure the server, stop everything, and check the books.

Correctness (what makes a run fail): every greeting matched the backend its
address maps to (no misrouted connection), and every connection the
generator lost is explained by a server counter (the engine's drop counters,
the sink's failed greetings). Speed never fails a run.
"""
import json
import os
import re
import signal
import subprocess
import time

import interference
import merge
import procs
import records
import syscount
from records import Sample, StraceCount
from topology import counter_delta, net_counters


def run_load(ctx, scenario, load_args, timeout_s, kind):
    scenario.start()
    try:
        server = scenario.server
        rss_start = server.rss_kib()
        c0 = scenario.counters()
        clients = ctx.topo.clients
        net0 = {ns: net_counters(ctx.topo, ns) for ns in [ctx.topo.server] + clients}
        cpu0 = server.cpu_seconds()
        sink_cpu0 = scenario.sink.cpu_seconds() if scenario.sink is not server else None
        handling = {server.pid, scenario.sink.pid}
        switches0 = _switches(handling)
        outside0 = interference.snapshot()
        gens = start_generators(ctx, load_args)
        rss_series = []
        t0 = time.monotonic()
        while any(g.alive() for g in gens) and time.monotonic() - t0 < timeout_s:
            rss_series.append((round(time.monotonic() - t0, 2), server.rss_kib()))
            time.sleep(0.25)
        codes_gen = [g.run_to_end(max(1, timeout_s - (time.monotonic() - t0))) for g in gens]
        cpu1 = server.cpu_seconds()
        switches1 = _switches(handling)
        steal_ms, squeezed, ksoftirqd_ms, ksoftirqd_wait_ms = interference.delta(
            outside0, interference.snapshot()
        )
        net = {
            "server": counter_delta(net0[ctx.topo.server], net_counters(ctx.topo, ctx.topo.server)),
            "client": _sum_counters(
                counter_delta(net0[ns], net_counters(ctx.topo, ns)) for ns in clients
            ),
        }
        sink_cpu = scenario.sink.cpu_seconds() - sink_cpu0 if sink_cpu0 is not None else None
        c1 = scenario.counters()
        rss_end = server.rss_kib()
    except BaseException:
        scenario.stop()
        raise
    final, summary, codes = scenario.stop()
    g = merged_summary(gens, codes_gen)
    finished = g.finished
    s = Sample(
        scenario=scenario.name,
        kind=kind,
        gen=g,
        sink=summary,
        exit_codes=codes,
        server_cpu_s=round(cpu1 - cpu0, 4),
        sink_cpu_s=sink_cpu,
        rss_kib_start=rss_start,
        rss_kib_end=rss_end,
        rss_series=rss_series,
        net=net,
        engine_start=c0,
        engine_before_stop=c1,
        engine_exit=final,
        gen_cpu_us_per_conn=g.cpu_us_per_conn,
        loadavg_after=list(os.getloadavg()),
        sink_cpu_us_per_conn=sink_cpu * 1e6 / finished
        if sink_cpu is not None and finished
        else None,
        server_cpu_us_per_conn=(cpu1 - cpu0) * 1e6 / finished if finished else None,
        switches_per_conn=(switches1 - switches0) / finished
        if finished and None not in (switches0, switches1)
        else None,
        steal_ms=steal_ms,
        softirq_squeezed=squeezed,
        ksoftirqd_ms=ksoftirqd_ms,
        ksoftirqd_wait_ms=ksoftirqd_wait_ms,
    )
    # Only the io_uring path counts all its syscalls (the sync path's accept,
    # sendmsg and close are not counted: strace gives those).
    if scenario.name == "engine" and c0 and c1 and c1.get("accepted", 0) > c0.get("accepted", 0):
        accepted = c1["accepted"] - c0["accepted"]
        calls = sum(
            c1.get(k, 0) - c0.get(k, 0) for k in ("uring_enter", "getsockname", "getpeername")
        )
        s.syscalls_per_conn_counter = calls / accepted
    check_books(scenario, s)
    return s


def _switches(pids):
    """Context switches of every thread of `pids`, summed; None when one of
    them is gone."""
    counts = [syscount.context_switches(pid) for pid in pids]
    return None if None in counts else sum(counts)


def start_generators(ctx, load_args):
    """One load generator per client namespace, each with its share of the load."""
    clients = ctx.topo.clients
    return [
        procs.Proc(
            [ctx.binaries["load_generator"]] + merge.share(load_args, len(clients), i),
            ns,
            ctx.topo.path(f"{ctx.next_id():03d}-gen.out"),
            ctx.topo.path(f"{ctx.next_id():03d}-gen.err"),
        )
        for i, ns in enumerate(clients)
    ]


def merged_summary(gens, exit_codes):
    """The generators' summaries merged into one record (raises if one failed)."""
    summaries = []
    for gen, rc in zip(gens, exit_codes):
        lines = gen.json_lines()
        if rc != 0 or not lines:
            raise RuntimeError(f"load_generator failed ({rc}): {gen.err()[-2000:]}")
        summaries.append(lines[-1])
    return records.from_json(records.GenSummary, merge.merge(summaries), "load_generator summary")


def _sum_counters(deltas):
    total = {}
    for d in deltas:
        for k, v in d.items():
            total[k] = total.get(k, 0) + v
    return total


def check_books(scenario, s):
    """Fills s.problems (correctness) and s.losses (connections the
    generator saw closed or failed without the greeting)."""
    g, summary, final = s.gen, s.sink, s.engine_exit
    e = g.errors
    problems = []
    losses = e.lost()
    s.losses = losses
    if e.wrong_greeting:
        ex = [t for t in g.targets if t["wrong"]]
        problems.append(
            f"{e.wrong_greeting} misrouted connection(s), e.g. {ex[0]['target']} "
            f"expected {ex[0]['expected']!r} got {ex[0].get('wrong_example')!r}"
        )
    if summary is None:
        problems.append("the sink printed no summary")
        s.problems = problems
        return
    explained = sum(b["send_errors"] for b in summary["backends"].values())
    # engine-kernel: what the sinks accepted from the listeners the kernel
    # program steered into never passed through the engine.
    via_listener = summary.get("total_via_listener", 0)
    if scenario.kernel:
        s.via_listener = via_listener
        s.kernel = (final or {}).get("kernel")
        if g.finished and not via_listener:
            problems.append(
                "no connection came through the listeners the sinks took: "
                "kernel dispatch steered nothing"
            )
    if final:
        explained += final.get("dropped", 0)
        s.engine_dropped = final.get("dropped", 0)
        delivered = final.get("dispatched", 0)
        if delivered != summary["total_received"] - via_listener:
            problems.append(
                f"engine dispatched {delivered} but the sinks received "
                f"{summary['total_received'] - via_listener} from it "
                f"({summary['total_received']} in all, {via_listener} "
                "accepted from the listeners)"
            )
    unexplained = losses - explained
    s.unexplained_losses = max(0, unexplained)
    if unexplained > 0:
        problems.append(
            f"{unexplained} connection(s) lost without a server counter saying why "
            f"({losses} lost: {e})"
        )
    if e.local:
        problems.append(
            f"{e.local} connection(s) failed in the generator itself "
            f"(errno {g.first_errno.get('local')})"
        )
    for code_name, code in s.exit_codes.items():
        if code != 0:
            problems.append(f"{code_name} exited with {code}")
    s.problems = problems


def run_strace(ctx, scenario, load_args, connections):
    """Syscalls per connection by strace -c -f, attached to every thread of
    the server (every accepting process: for engine-kernel, the engine and
    its sinks) after start-up and detached before shutdown."""
    scenario.start()
    try:
        out = ctx.topo.path(f"{ctx.next_id():03d}-strace.txt")
        argv = ["strace", "-c", "-f", "-o", out]
        for pid in scenario.server_pids():
            for tid in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")):
                argv += ["-p", str(tid)]
        tracer = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        time.sleep(0.5)  # attach
        gen = procs.Proc(
            [ctx.binaries["load_generator"]] + load_args,
            ctx.topo.clients[0],
            ctx.topo.path(f"{ctx.next_id():03d}-gen.out"),
            ctx.topo.path(f"{ctx.next_id():03d}-gen.err"),
        )
        gen.run_to_end(120)
        tracer.send_signal(signal.SIGINT)  # detach and write the summary
        tracer.wait(timeout=20)
    finally:
        scenario.stop()
    g = gen.json_lines()[-1]
    try:
        with open(out) as f:
            text = f.read()
    except FileNotFoundError:
        # strace ended before it opened its output (it could attach to none
        # of the threads, say): a missing figure, not a failed run.
        why = tracer.stderr.read().decode(errors="replace")[-2000:]
        return StraceCount(
            scenario.name, error=f"strace wrote nothing (exit {tracer.returncode})", raw=why
        )
    per_call = {}
    total = None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and re.fullmatch(r"[\d.]+", fields[0]) and fields[3].isdigit():
            if fields[-1] == "total":
                total = int(fields[3])
            else:
                per_call[fields[-1]] = int(fields[3])
    finished = g["finished"]
    if total is None or not finished:
        return StraceCount(scenario.name, error="no strace summary", raw=text[-2000:])
    return StraceCount(
        scenario.name,
        connections=finished,
        syscalls=total,
        per_conn=total / finished,
        top=dict(sorted(per_call.items(), key=lambda kv: -kv[1])[:6]),
    )


MICROBENCHMARKS = ("dispatch_benchmark", "route_lookup_benchmark", "hop_benchmark")


def run_microbenchmarks(ctx, min_time, repetitions):
    """Each microbenchmark binary's results ({name: {items_per_second, ...}},
    the median of the repetitions), and its raw Google Benchmark JSON (kept
    in results.json for compare.py, which tests the repetitions of two runs
    against each other)."""
    results, raw = {}, {}
    for name in MICROBENCHMARKS:
        path = ctx.binaries.get(name)
        if not path or not os.path.exists(path):
            results[name] = {"error": "not built (libbenchmark-dev missing?)"}
            continue
        r = subprocess.run(
            [
                path,
                "--benchmark_format=json",
                f"--benchmark_min_time={min_time}",
                f"--benchmark_repetitions={repetitions}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        try:
            data = json.loads(r.stdout)
        except ValueError:
            results[name] = {"error": r.stderr[-1000:]}
            continue
        raw[name] = data
        benches = data.get("benchmarks", [])
        # With repetitions, the median aggregate; without, the one run.
        medians = [b for b in benches if b.get("aggregate_name") == "median"]
        chosen = medians or [b for b in benches if b.get("run_type", "iteration") == "iteration"]
        results[name] = {
            b.get("run_name", b["name"]): {
                "items_per_second": b.get("items_per_second"),
                "cpu_time_ns": b.get("cpu_time"),
                "real_time_ns": b.get("real_time"),
            }
            for b in chosen
        }
    return results, raw
