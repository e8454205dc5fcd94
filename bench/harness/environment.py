"""What a reader needs to trust (or reproduce) the numbers."""
import os
import platform
import shlex
import subprocess
import sys
import time


def _out(*argv):
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def collect(topo, binaries, args, profile, names, ctx):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "command": "scripts/bench " + shlex.join(sys.argv[1:]),
        "profile": args.profile,
        "profile_parameters": profile,
        "scenarios": names,
        "externals": args.externals,
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "loadavg_at_start": os.getloadavg(),
        "sysctls": topo.sysctls(),
        "client_namespaces": len(topo.clients),
        "tproxy": bool(topo.tproxy),
        "capacity": args.capacity,
        "cpu_budget": "auto" if getattr(args, "auto_budget", False) else args.cpu_budget,
        "engine_threads": ctx.engine_threads,
        "sink_threads": ctx.sink_threads,
        "sink_fds": ctx.sink_fds,
        "sink_ack": ctx.sink_ack,
        # engine-kernel: whether the engine ran with --kernel-dispatch on here.
        "kernel_dispatch": getattr(ctx, "kernel_dispatch", None),
        "layout": {
            "addresses": ctx.layout.addrs,
            "ports": ctx.layout.ports,
            "backends": ctx.layout.names,
            "config": ctx.layout.config_text(),
        },
        "versions": {
            "socketbox": _out(binaries["socketbox"], "--version"),
            "git": _out("git", "-C", root, "describe", "--always", "--dirty"),
            "compiler": _out("c++", "--version").splitlines()[0]
            if _out("c++", "--version")
            else "",
            "liburing": _out("pkg-config", "--modversion", "liburing"),
            "python": platform.python_version(),
            "strace": _out("strace", "-V").splitlines()[0] if _out("strace", "-V") else "",
            "gnuplot": _out("gnuplot", "--version"),
        },
    }
