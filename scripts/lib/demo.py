#!/usr/bin/env python3
"""The live demo: a server namespace with an AnyIP prefix, the engine with
examples/socketbox.conf, one backend per socket path the configuration
names, and a client namespace that connects to each sample address.  Prints
which backend answered each connection (next to what --test-route predicted)
and the engine's counters, then removes everything."""
import os
import shutil
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "engine"))
os.environ.setdefault("SBX_BUILD", os.path.join(ROOT, "build"))
import sbxtest  # noqa: E402
from engine_fixture import SOCKETBOX, Backend, Engine, fetch  # noqa: E402

CONFIG = os.path.join(ROOT, "examples", "socketbox.conf")
SAMPLES = os.path.join(ROOT, "examples", "sample-connections.txt")
SOCKET_DIR = "/run/socketbox-demo"
# Client source prefixes the example's remote-address rules talk about.
CLIENT_PREFIXES = ["2001:db8:cafe::/48", "2001:db8:ad::/48", "2001:db8:bad::/48"]


def main():
    reason = sbxtest.require_root_and_netns()
    if reason:
        print(f"demo needs root and network namespaces: {reason}")
        return 1
    samples = [l.split() for l in open(SAMPLES) if l.strip() and not l.startswith("#")]
    predicted = subprocess.run(
        [SOCKETBOX, "-f", CONFIG, "--test-route"],
        capture_output=True,
        text=True,
        input="".join(" ".join(s) + "\n" for s in samples),
    ).stdout.split("\n")
    paths = sorted(
        {
            line.split(":", 1)[1]
            for line in open(CONFIG)
            for line in [t for t in line.split() if t.startswith("jump-unix:")]
        }
    )
    shutil.rmtree(SOCKET_DIR, ignore_errors=True)
    os.makedirs(SOCKET_DIR)
    backends = []
    try:
        with sbxtest.Topology() as topo:
            dev = (
                sbxtest.sh(
                    "ip", "netns", "exec", topo.client, "ip", "-o", "link", "show", "type", "veth"
                )
                .stdout.split(":")[1]
                .strip()
                .split("@")[0]
            )
            for remote in sorted({s[2] for s in samples}):
                topo.ns_sh(topo.client, "ip", "addr", "add", f"{remote}/128", "dev", dev, "nodad")
            for prefix in CLIENT_PREFIXES:
                topo.ns_sh(
                    topo.server, "ip", "-6", "route", "add", prefix, "via", sbxtest.CLIENT_LINK6
                )
            for path in paths:
                backends.append(Backend(path, os.path.basename(path).removesuffix(".sock")))
            ports = sorted({int(s[1]) for s in samples})
            listen = [arg for p in ports for arg in ("--listen", f"[::]:{p}")]
            print(f"engine: socketbox -f examples/socketbox.conf {' '.join(listen)}")
            engine = Engine(["-f", CONFIG, "--threads", "2"] + listen, ns=topo.server)
            print(f"\n{'connection':58} {'backend that answered':24} --test-route said")
            for sample, want in zip(samples, predicted):
                local, lport, remote, rport = sample
                got = (
                    fetch(
                        topo.client, local, int(lport), timeout=3, source=(remote, int(rport))
                    ).decode()
                    or "(closed, no backend)"
                )
                label = f"[{remote}]:{rport} -> [{local}]:{lport}"
                print(f"{label:58} {got:24} {want}")
            stats = engine.stats()
            print(
                "\nengine counters:",
                ", ".join(
                    f"{k}={v}"
                    for k, v in stats.items()
                    if not k.startswith("backend:")
                    and (v or k in ("accepted", "dispatched", "dropped"))
                ),
            )
            for k, v in stats.items():
                if k.startswith("backend:"):
                    print(f"  delivered to {k[8:]}: {v}")
            engine.stop(signal.SIGTERM)
    finally:
        for b in backends:
            b.close()
        shutil.rmtree(SOCKET_DIR, ignore_errors=True)
    print("\ncleaned up: namespaces, backends and sockets removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
