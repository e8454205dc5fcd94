"""Relay benchmark (bench.py --relay): socketbox-relay beside the relays a
user already has, each listening on [::]:80 in the server namespace and
relaying to a target on the server's loopback, driven from the client
namespace:

  bulk   STREAMS connections send for SECONDS through the relay to a
         discarding server (relay_bulk.py): bytes/s, and bytes per second of
         the relay's CPU (user + system, its threads and children)
  rate   load_generator (closed loop, CONCURRENCY) through the relay to the
         sink, which greets and closes: connections/s, and per relay CPU-s

Relays: socketbox-relay (--copy buffer and --copy splice), HAProxy (mode
tcp), socat (fork per connection) and systemd-socket-proxyd (through
systemd-socket-activate); any other as --external NAME=COMMAND with {port}
(the target port; listen on [::]:80). Every relay runs with one thread (the
machine's other core runs the client). Rounds are interleaved; medians are
reported.
"""
import json
import os
import shutil
import signal
import statistics
import sys
import time
from dataclasses import dataclass

import procs
import records
from topology import ANYIP6, Topology

LISTEN_PORT = 80
BULK_PORT = 9001
SINK_PORT = 9000
HERE = os.path.dirname(os.path.abspath(__file__))
BULK = os.path.join(HERE, "relay_bulk.py")
SERVER = ANYIP6.split("::")[0] + "::1"

PROFILES = {
    "smoke": dict(rounds=1, bulk_s=1, rate_s=1, streams=2, concurrency=16),
    "quick": dict(rounds=3, bulk_s=4, rate_s=3, streams=4, concurrency=64),
    "full": dict(rounds=5, bulk_s=8, rate_s=6, streams=8, concurrency=64),
}

# Binds [::]:PORT and execs the relay with the socket as fd 0 (its -l 0).
LISTEN_AS_FD0 = (
    "import os, socket, sys; s = socket.socket(socket.AF_INET6); "
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
    "s.bind(('::', int(sys.argv[1]))); os.dup2(s.fileno(), 0); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def relay_commands(build, topo, externals):
    relay = os.path.join(build, "relay", "socketbox-relay")
    haproxy_cfg = topo.path("relay-haproxy.cfg")

    def sbx(copy):
        return lambda port: [
            "python3",
            "-c",
            LISTEN_AS_FD0,
            str(LISTEN_PORT),
            relay,
            "-l",
            "0",
            "-c",
            "::1",
            "-p",
            str(port),
            "--quiet",
            "--copy",
            copy,
        ]

    def haproxy(port):
        with open(haproxy_cfg, "w") as f:
            f.write(
                f"""global
  nbthread 1
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend relay
  bind [::]:{LISTEN_PORT}
  default_backend target
backend target
  server t [::1]:{port}
"""
            )
        return ["haproxy", "-db", "-f", haproxy_cfg]

    cmds = {"socketbox-relay": sbx("buffer"), "socketbox-relay-splice": sbx("splice")}
    if shutil.which("haproxy"):
        cmds["haproxy-tcp"] = haproxy
    if shutil.which("socat"):
        cmds["socat"] = lambda port: [
            "socat",
            f"TCP6-LISTEN:{LISTEN_PORT},reuseaddr,fork,backlog=4096",
            f"TCP6:[::1]:{port}",
        ]
    proxyd = "/lib/systemd/systemd-socket-proxyd"
    if shutil.which("systemd-socket-activate") and os.access(proxyd, os.X_OK):
        cmds["systemd-socket-proxyd"] = lambda port: [
            "systemd-socket-activate",
            "-l",
            str(LISTEN_PORT),
            proxyd,
            "--connections-max=65536",
            f"::1:{port}",
        ]  # its parser takes no brackets
    for name, cmd in externals.items():
        cmds[name] = lambda port, cmd=cmd: ["sh", "-c", cmd.format(port=port)]
    return cmds


def cpu_with_children(pid):
    """utime + stime of the process, plus that of its reaped children."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / procs.CLK_TCK


def listening(topo, port):
    out = topo.ns(topo.server, "ss", "-Hltn", f"sport = :{port}", check=False).stdout
    return bool(out.strip())


def measure(topo, name, argv, kind, p, binaries, n):
    server = procs.Proc(
        argv, topo.server, topo.path(f"r{n:03d}-{name}.out"), topo.path(f"r{n:03d}-{name}.err")
    )
    try:
        server.wait_for(lambda: listening(topo, LISTEN_PORT), 10, f"{name} listening")
        cpu0 = cpu_with_children(server.pid)
        if kind == "bulk":
            client = [
                sys.executable,
                BULK,
                "client",
                SERVER,
                str(LISTEN_PORT),
                str(p["streams"]),
                str(p["bulk_s"]),
            ]
        else:
            client = [
                binaries["load_generator"],
                "--target",
                f"[{SERVER}]:{LISTEN_PORT}=a",
                "--concurrency",
                str(p["concurrency"]),
                "--duration",
                str(p["rate_s"]),
                "--threads",
                "1",
                "--timeout-ms",
                "5000",
            ]
        gen = procs.Proc(
            client,
            topo.clients[0],
            topo.path(f"r{n:03d}-client.out"),
            topo.path(f"r{n:03d}-client.err"),
        )
        gen.run_to_end(max(p["bulk_s"], p["rate_s"]) + 60)
        time.sleep(0.5)  # forked children (socat) exit and are reaped
        cpu = cpu_with_children(server.pid) - cpu0
        lines = gen.json_lines()
        if not lines:
            raise RuntimeError(f"{name} {kind}: the client printed nothing: {gen.err()[-1000:]}")
        out = lines[-1]
    finally:
        server.stop(signal.SIGTERM, timeout=5)
    if kind == "bulk":
        value = out["bytes_per_s"]
        per_cpu = out["bytes"] / cpu if cpu > 0 else float("inf")
        note = "" if out.get("complete") else "incomplete"
    else:
        value = out["conn_per_s"]
        per_cpu = out["finished"] / cpu if cpu > 0 else float("inf")
        failed = out["started"] - out["finished"] if "started" in out else 0
        note = f"{failed} failed" if failed else ""
    return RelaySample(relay=name, kind=kind, value=value, per_cpu_s=per_cpu, cpu_s=cpu, note=note)


@dataclass
class RelaySample:
    """One relay measured once: bulk bytes/s or connections/s."""

    relay: str
    kind: str  # "bulk" or "rate"
    value: float  # bytes/s (bulk), conn/s (rate)
    per_cpu_s: float  # bytes or connections per relay CPU-second
    cpu_s: float
    note: str  # why the sample is incomplete, or ""


def table(samples, names):
    def med(name, kind, key):
        vals = [getattr(s, key) for s in samples if s.relay == name and s.kind == kind]
        return statistics.median(vals) if vals else float("nan")

    rows = [
        "| relay | bulk MB/s | bulk MB per relay CPU-s | conn/s | conn per relay CPU-s |",
        "|---|---:|---:|---:|---:|",
    ]
    for n in names:
        rows.append(
            f"| {n} | {med(n, 'bulk', 'value') / 1e6:,.0f} | "
            f"{med(n, 'bulk', 'per_cpu_s') / 1e6:,.0f} | {med(n, 'rate', 'value'):,.0f} | "
            f"{med(n, 'rate', 'per_cpu_s'):,.0f} |"
        )
    ours = [n for n in names if n.startswith("socketbox-relay")]
    others = [n for n in names if n not in ours]
    if ours and others:
        for kind, label in (("bulk", "bulk per CPU-s"), ("rate", "conn per CPU-s")):
            best_ours = max(med(n, kind, "per_cpu_s") for n in ours)
            best_other, who = max((med(n, kind, "per_cpu_s"), n) for n in others)
            rows.append(
                f"\n{label}: best socketbox-relay / best other ({who}) = "
                f"{best_ours / best_other:.2f}x"
            )
    return "\n".join(rows)


def main(args, build):
    p = PROFILES.get(args.profile, PROFILES["quick"])
    binaries = {
        "load_generator": os.path.join(build, "bench", "load_generator"),
        "sink": os.path.join(build, "bench", "sink"),
    }
    topo = Topology(clients=1)
    out_dir = args.out or os.path.join(
        build, "bench-results", "relay-" + time.strftime("%Y%m%d-%H%M%S")
    )
    os.makedirs(out_dir, exist_ok=True)
    try:
        topo.create()
        cmds = relay_commands(build, topo, args.externals)
        if args.scenarios:
            cmds = {k: v for k, v in cmds.items() if k in args.scenarios.split(",")}
        bulk = procs.Proc(
            [sys.executable, BULK, "server", f"[::1]:{BULK_PORT}"],
            topo.server,
            topo.path("bulk.out"),
            topo.path("bulk.err"),
        )
        bulk.wait_for(lambda: "ready" in bulk.out(), 10, "bulk server ready")
        sink = procs.Proc(
            [
                binaries["sink"],
                "--listen",
                f"a=[::1]:{SINK_PORT}",
                "--threads",
                "1",
                "--lifetime",
                "3600",
            ],
            topo.server,
            topo.path("sink.out"),
            topo.path("sink.err"),
        )
        sink.wait_for(lambda: "ready" in sink.out(), 10, "sink ready")
        samples = []
        n = 0
        total = p["rounds"] * len(cmds) * 2
        for _ in range(p["rounds"]):
            for name, cmd in cmds.items():
                for kind, port in (("bulk", BULK_PORT), ("rate", SINK_PORT)):
                    n += 1
                    s = measure(topo, name, cmd(port), kind, p, binaries, n)
                    samples.append(s)
                    unit = "MB/s" if kind == "bulk" else "conn/s"
                    scale = 1e6 if kind == "bulk" else 1
                    print(
                        f"[{n}/{total}] {kind:<5} {name:<24} {s.value / scale:>10,.0f} {unit}  "
                        f"{s.per_cpu_s / scale:>10,.0f} per CPU-s {s.note}",
                        file=sys.stderr,
                        flush=True,
                    )
        text = table(samples, list(cmds))
        with open(os.path.join(out_dir, "relay-results.json"), "w") as f:
            json.dump(
                {
                    "profile": args.profile,
                    "parameters": p,
                    "samples": [records.to_json(s) for s in samples],
                    "kernel": os.uname().release,
                },
                f,
                indent=1,
            )
        with open(os.path.join(out_dir, "relay-report.md"), "w") as f:
            f.write(text + "\n")
        print(text)
        print(f"bench: relay report in {out_dir}", file=sys.stderr)
        # Ours must deliver every byte (the receiver's count) and connection.
        broken = [
            f"{s.relay} {s.kind}: {s.note}"
            for s in samples
            if s.relay.startswith("socketbox-relay") and s.note
        ]
        for b in broken:
            print(f"bench: PROBLEM: {b}", file=sys.stderr)
        return 1 if broken else 0
    finally:
        procs.kill_all()
        topo.remove()
