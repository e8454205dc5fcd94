#!/usr/bin/env python3
"""What changed between two benchmark runs, and whether it is beyond noise.

  compare.py OLD NEW      (each a results.json or the directory holding it)
  scripts/bench --compare OLD ...   (the run just made is NEW)

Scenario metrics are recomputed from the samples of both runs (so an older
results.json compares too). Each metric has one value per round; a change is
"beyond noise" when the two runs' ranges (min-max over their rounds) do not
overlap, "within noise" when they do, and "no spread" when a run has a single
value (the capacity search gives one value per scenario, bracketed by the
rates it held and failed at: that bracket is its range). The
microbenchmarks are compared by Google Benchmark's own tool (compare.py of
Debian's libbenchmark-tools: a Mann-Whitney U test over the repetitions)
from the raw JSON each run keeps. Reported, never judged: exit 0 whatever
changed; 2 on unreadable input.
"""
import json
import os
import subprocess
import sys
import tempfile

import records
from figures import median as _med
from records import Results

GBENCH_COMPARE = "/usr/share/benchmark/compare.py"
# Debian's Python carries scipy and numpy, which compare.py needs.
DEBIAN_PYTHON = "/usr/bin/python3"


def load(path):
    """(results, None) or (None, why not)."""
    if os.path.isdir(path):
        path = os.path.join(path, "results.json")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        return None, f"cannot read {path}: {e}"
    if not isinstance(data, dict) or "scenarios" not in data or "samples" not in data:
        return None, f"{path} is not a results.json of scripts/bench (no scenarios/samples)"
    try:
        return records.from_json(Results, data, path), None
    except ValueError as e:
        return None, f"{path} is not a results.json of scripts/bench: {e}"


def _samples(results, scenario, kind, value):
    return [value(s) for s in results.samples_of(scenario, kind)]


def _capacity(results, scenario):
    return results.capacity.scenarios.get(scenario) if results.capacity else None


def _bracket(c):
    return c.bracket if c and c.capacity else []


def _per_cpu_at_capacity(c):
    return [c.at_capacity.conns_per_cpu_s] if c and c.at_capacity else []


def _enters_at_saturation(c):
    return [c.saturation.enters_per_conn] if c else []


# (label, better: +1 higher is better / -1 lower is better, values(results, scenario))
METRICS = [
    (
        "conn/s (closed loop)",
        +1,
        lambda r, n: _samples(r, n, "throughput", lambda s: s.gen.conn_per_s),
    ),
    (
        "server CPU µs/conn",
        -1,
        lambda r, n: _samples(r, n, "throughput", lambda s: s.server_cpu_us_per_conn),
    ),
    (
        "sink CPU µs/conn",
        -1,
        lambda r, n: _samples(r, n, "throughput", lambda s: s.sink_cpu_us_per_conn),
    ),
    (
        "p99 µs at 50% load",
        -1,
        lambda r, n: _samples(r, n, "latency50", lambda s: s.gen.latency_us.p99),
    ),
    ("zero-loss capacity conn/s (capped)", +1, lambda r, n: _bracket(_capacity(r, n))),
    ("conn per server CPU-s at capacity", +1, lambda r, n: _per_cpu_at_capacity(_capacity(r, n))),
    ("io_uring_enter/conn at saturation", -1, lambda r, n: _enters_at_saturation(_capacity(r, n))),
]


def judge(old, new, better):
    """(change as a fraction, verdict) for two lists of per-round values."""
    old = [v for v in old if v is not None]
    new = [v for v in new if v is not None]
    mo, mn = _med(old), _med(new)
    if mo is None or mn is None:
        return None, "n/a"
    change = (mn - mo) / mo if mo else None
    if len(old) < 2 or len(new) < 2:
        return change, "no spread"
    if min(new) > max(old) or max(new) < min(old):
        improved = (mn > mo) == (better > 0)
        return change, "beyond noise: " + ("better" if improved else "WORSE")
    return change, "within noise"


def scenario_rows(old, new):
    rows = []
    for name in [n for n in new.scenarios if n in old.scenarios]:
        for label, better, values in METRICS:
            a, b = values(old, name), values(new, name)
            change, verdict = judge(a, b, better)
            if verdict == "n/a":
                continue
            rows.append((name, label, _range(a), _range(b), change, verdict))
    return rows


def _range(values):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    digits = 3 if max(abs(v) for v in values) < 10 else 0 if max(values) >= 1000 else 1
    m = _med(values)
    if len(values) == 1:
        return f"{m:,.{digits}f}"
    return f"{m:,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def micro_compare(old, new):
    """Google Benchmark's compare.py on each microbenchmark's raw JSON, or
    a line saying why it could not run."""
    lines = []
    raw_old, raw_new = old.micro_raw or {}, new.micro_raw or {}
    python = DEBIAN_PYTHON if os.path.exists(DEBIAN_PYTHON) else sys.executable
    for name in sorted(set(raw_old) | set(raw_new)):
        if not raw_old:
            break  # an older baseline: see below
        if name not in raw_old or name not in raw_new:
            lines.append(f"{name}: only in the {'new' if name in raw_new else 'old'} run")
            continue
        if not os.path.exists(GBENCH_COMPARE):
            lines.append(f"{name}: {GBENCH_COMPARE} missing (Debian package libbenchmark-tools)")
            continue
        with tempfile.TemporaryDirectory(prefix="sbx-compare-") as tmp:
            a, b = os.path.join(tmp, "old.json"), os.path.join(tmp, "new.json")
            for path, data in ((a, raw_old[name]), (b, raw_new[name])):
                with open(path, "w") as f:
                    json.dump(data, f)
            r = subprocess.run(
                [python, GBENCH_COMPARE, "--no-color", "-a", "benchmarks", a, b],
                capture_output=True,
                text=True,
                timeout=120,
            )
        if r.returncode != 0:
            lines.append(f"{name}: compare.py failed: {r.stderr.strip()[-500:]}")
            continue
        lines += [
            f"{name} (compare.py: Time/CPU columns are (new-old)/old; the U test "
            "p-value over the repetitions says whether it is beyond noise):",
            "```",
            r.stdout.rstrip(),
            "```",
        ]
    if not raw_old and not raw_new:
        lines.append("no raw microbenchmark output in either run")
    elif not raw_old:
        lines.append(
            "the baseline has no raw microbenchmark output (a run before compare existed): "
            "items/s of its single runs, noise unknown:"
        )
        lines += [""] + _micro_fallback(old.micro or {}, new.micro or {})
    return lines


def _micro_fallback(old, new):
    rows = ["| benchmark | baseline items/s | this run items/s | change |", "|---|---|---|---|"]
    for binary in sorted(set(old) & set(new)):
        for name, v in new[binary].items():
            before = old[binary].get(name) if isinstance(old[binary], dict) else None
            if not isinstance(v, dict) or not isinstance(before, dict):
                continue
            a, b = before.get("items_per_second"), v.get("items_per_second")
            if a and b:
                rows.append(f"| {name} | {a:,.0f} | {b:,.0f} | {(b - a) / a:+.1%} |")
    return rows


def report(old, new, old_label):
    env_o, env_n = old.environment, new.environment
    lines = [
        f"## Compared with {old_label}",
        "",
        f"Baseline: {env_o.get('date_utc', '?')} UTC, {env_o.get('profile', '?')} profile, "
        f"{env_o.get('versions', {}).get('git', '?')}; this run: {env_n.get('date_utc', '?')} UTC, "
        f"{env_n.get('profile', '?')} profile, {env_n.get('versions', {}).get('git', '?')}. "
        "Median (min–max over rounds); beyond noise = the two ranges do not overlap. "
        "Reported, never judged: the machine is shared and noisy."
        + (
            " **The profiles differ: the figures are not comparable.**"
            if env_o.get("profile") != env_n.get("profile")
            else ""
        ),
        "",
        "| scenario | metric | baseline | this run | change | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for name, label, a, b, change, verdict in scenario_rows(old, new):
        ch = "n/a" if change is None else f"{change:+.1%}"
        lines.append(f"| {name} | {label} | {a} | {b} | {ch} | {verdict} |")
    budgets = [r.capacity.cap.get("budget_cpus") if r.capacity else None for r in (old, new)]
    if all(budgets) and budgets[0] != budgets[1]:
        lines += [
            "",
            f"The capacity phases ran under different budgets ({budgets[0]:g} and {budgets[1]:g} "
            "CPU): compare connections per server CPU-second, not capacity rates.",
        ]
    lines += ["", "Microbenchmarks:", ""] + micro_compare(old, new)
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) != 2:
        print("usage: compare.py OLD NEW (each a results.json or its directory)", file=sys.stderr)
        return 2
    old, err = load(argv[0])
    new, err2 = (None, None) if err else load(argv[1])
    if err or err2:
        print(f"compare: {err or err2}", file=sys.stderr)
        return 2
    print(report(old, new, argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
