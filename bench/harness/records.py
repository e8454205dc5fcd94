"""The harness's results as typed records: one load sample, one strace count,
one capacity step, a scenario's capacity, a whole run.

results.json is these records as JSON (field names are its keys), and
from_json() reads them back, from this run or an older one: a key the
record lacks is left out, a field the file lacks takes its default. What
other programs print (the sink's summary, the engine's counters, Google
Benchmark's output, network counters) stays as they print it: dicts keyed
by their own names.
"""
import dataclasses
import types
import typing
from dataclasses import dataclass, field


@dataclass
class Latency:
    """Connect to greeting, microseconds (the load generator's histogram)."""

    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    p999: float = 0.0
    max: float = 0.0
    mean: float = 0.0


@dataclass
class GenErrors:
    """Connections the load generator counted as failed, by cause."""

    wrong_greeting: int = 0
    refused: int = 0
    reset: int = 0
    timeout: int = 0
    no_greeting: int = 0
    local: int = 0
    other: int = 0

    def lost(self):
        """Connections closed or failed without their greeting (misrouted
        and the generator's own failures are counted apart)."""
        return self.no_greeting + self.reset + self.timeout + self.refused + self.other


@dataclass
class GenSummary:
    """The load generator's summary (merged over client namespaces)."""

    io: str = ""
    mode: str = ""
    threads: int = 0
    concurrency: int = 0
    rate_target: float = 0
    elapsed_s: float = 0.0
    started: int = 0
    finished: int = 0
    completed: int = 0
    conn_per_s: float = 0.0
    errors: GenErrors = field(default_factory=GenErrors)
    first_errno: dict[str, int] = field(default_factory=dict)
    targets: list[dict] = field(default_factory=list)
    latency_us: Latency = field(default_factory=Latency)
    cpu_s: dict[str, float] = field(default_factory=dict)
    cpu_us_per_conn: float = 0.0
    cdf: list[list[float]] = field(default_factory=list)
    buckets: list[list[int]] = field(default_factory=list)
    # The slowest connections (bench/common/slowest.h): [start_us, handshake_us,
    # latency_us, target], by start; several generators' lists side by side.
    slowest: list[list[int]] = field(default_factory=list)
    start_ns: int = 0  # the earliest generator's start, CLOCK_MONOTONIC
    generators: int = 1


@dataclass
class Sample:
    """One load run against one scenario, and its books."""

    scenario: str
    kind: str
    gen: GenSummary = field(default_factory=GenSummary)
    sink: dict | None = None  # the sink's own summary line
    exit_codes: dict[str, int] = field(default_factory=dict)
    server_cpu_s: float | None = None
    sink_cpu_s: float | None = None
    rss_kib_start: int | None = None
    rss_kib_end: int | None = None
    rss_series: list[list[float]] = field(default_factory=list)
    net: dict[str, dict[str, int]] = field(default_factory=dict)  # server/client counter deltas
    engine_start: dict | None = None  # the engine's counters, as it prints them
    engine_before_stop: dict | None = None
    engine_exit: dict | None = None
    gen_cpu_us_per_conn: float | None = None
    loadavg_after: list[float] = field(default_factory=list)
    sink_cpu_us_per_conn: float | None = None
    server_cpu_us_per_conn: float | None = None
    syscalls_per_conn_counter: float | None = None
    # Context switches (voluntary and not) of the server and of its sink, when
    # that is another process, per connection: how often the server side slept
    # and woke, or was preempted.
    switches_per_conn: float | None = None
    # Disturbance from outside while the load ran (bench/harness/interference.py):
    # CPU time stolen by the hypervisor, and softirq budgets run out.
    steal_ms: float | None = None
    softirq_squeezed: int | None = None
    # ksoftirqd's time on a CPU and waiting for one (all CPUs' threads
    # together): softirq work the kernel deferred, and how long it queued.
    ksoftirqd_ms: float | None = None
    ksoftirqd_wait_ms: float | None = None
    losses: int = 0
    unexplained_losses: int = 0
    engine_dropped: int | None = None
    via_listener: int | None = None  # engine-kernel: accepted from the taken listeners
    kernel: dict | None = None  # engine-kernel: the engine's kernel dispatch counters
    problems: list[str] = field(default_factory=list)


@dataclass
class StraceCount:
    """strace -c -f over a short run: syscalls per connection, or why not."""

    scenario: str
    connections: int | None = None
    syscalls: int | None = None
    per_conn: float | None = None
    top: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    raw: str | None = None


@dataclass
class CapacityStep:
    """One step of the capacity phase: the server under its CPU budget."""

    kind: str
    offered: int | None = None  # open-loop rate; None: closed loop
    conn_per_s: float = 0.0
    finished: int = 0
    started: int = 0
    losses: int = 0
    server_dropped: int | None = None
    misrouted: int = 0
    local_errors: int = 0
    p50_us: float = 0.0
    p99_us: float = 0.0
    server_cpu_s: float = 0.0
    cpu_us_per_conn: float | None = None
    conns_per_cpu_s: float | None = None
    enters_per_conn: float | None = None
    syscalls_per_conn: float | None = None
    enters_per_conn_counter: float | None = None
    ctx_switches_per_conn: float | None = None
    throttled_periods: int | None = None
    drain_s: float = 0.0
    kept_up: bool = True
    budget_used: float | None = None
    worker_accepted: list[int] | None = None
    holds: bool = False


@dataclass
class ScenarioCapacity:
    """A scenario's capacity phase: saturation, the search, the latencies."""

    scenario: str
    saturation: CapacityStep
    capacity: int = 0
    bracket: list[int] = field(default_factory=lambda: [0, 0])
    at_capacity: CapacityStep | None = None
    latency: dict[str, CapacityStep] = field(default_factory=dict)  # by % of capacity
    steps: list[CapacityStep] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class Calibration:
    """--cpu-budget auto: the budget after one saturation step."""

    scenario: str
    start_budget: float
    used_cpus: float
    conn_per_s: float
    budget: float


@dataclass
class CapacityRun:
    """The capacity phase of a run, with its method's parameters."""

    cap: dict  # cpucap.CpuCap.as_dict()
    perf: bool = False
    kept_up: float = 0.0
    drain_slack_s: float = 0.0
    saturation_in_flight: int = 0
    step_s: float = 0.0
    step_timeout_ms: int = 0
    calibration: Calibration | None = None
    scenarios: dict[str, ScenarioCapacity] = field(default_factory=dict)
    loadavg_after: list[float] = field(default_factory=list)

    def problems(self, only=None):
        """Correctness problems of every scenario (of those in `only`)."""
        return [
            pr
            for c in self.scenarios.values()
            if only is None or c.scenario in only
            for pr in c.problems
        ]


@dataclass
class Results:
    """One run of the harness: results.json."""

    scenarios: list[str]
    samples: list[Sample] = field(default_factory=list)
    strace: list[StraceCount] = field(default_factory=list)
    micro: dict = field(default_factory=dict)  # by binary, by benchmark name
    micro_raw: dict = field(default_factory=dict)  # Google Benchmark's JSON, by binary
    capacity: CapacityRun | None = None
    capacity_only: bool = False
    direct_saturated_rate: float | None = None
    problems: list[str] = field(default_factory=list)
    external_notes: list[str] = field(default_factory=list)
    environment: dict = field(default_factory=dict)  # environment.collect()
    elapsed_s: float | None = None
    plots: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)  # report.summarize(), as written
    targets: list[dict] = field(default_factory=list)

    def samples_of(self, scenario=None, kind=None):
        return [
            s
            for s in self.samples
            if (scenario is None or s.scenario == scenario) and (kind is None or s.kind == kind)
        ]


def to_json(record):
    """The record as plain JSON values (dicts, lists, numbers, strings)."""
    return dataclasses.asdict(record)


def from_json(cls, data, where="results"):
    """A `cls` record from its JSON form; ValueError naming the place when
    the JSON does not have the record's shape."""
    if not isinstance(data, dict):
        raise ValueError(
            f"{where}: expected an object for {cls.__name__}, got {type(data).__name__}"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = _convert(hints[f.name], data[f.name], f"{where}.{f.name}")
    try:
        return cls(**values)
    except TypeError as e:  # a required field missing
        raise ValueError(f"{where}: {e}") from None


def _convert(tp, value, where):
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(inner[0], value, where) if len(inner) == 1 else value
    if origin is list and typing.get_args(tp):
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(tp)
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict and typing.get_args(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
        item = typing.get_args(tp)[1]
        return {k: _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_json(tp, value, where)
    return value
