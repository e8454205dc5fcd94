"""Spawn rate of socketbox-inetd: fork vs posix_spawn (a benchmark, not a test).

Usage: SBX_BUILD=build python3 tests/inetd/spawn_rate.py [N] [ROUNDS]

Starts socketbox-inetd -m METHOD with PROG=/bin/true, sends it N connected
AF_UNIX stream sockets (one socketpair end each) as fast as the datagram
queue takes them, and times until every child has run and closed its end
(the other end reads EOF). Prints connections per second for each method
and round, then the median.
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import sbxtest  # noqa: E402

BIN = os.path.join(os.environ.get("SBX_BUILD", "build"), "inetd", "socketbox-inetd")


def one_round(method, n):
    d = tempfile.mkdtemp(prefix="sbx-spawn-")
    path = os.path.join(d, "s.sock")
    p = subprocess.Popen([BIN, "-m", method, path, "/bin/true"], stderr=subprocess.PIPE)
    try:
        while not os.path.exists(path):
            time.sleep(0.01)
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        keep = []
        start = time.perf_counter()
        for _ in range(n):
            a, b = socket.socketpair()
            sbxtest.send_fd(sender, b.fileno(), path)  # blocks while the queue is full
            b.close()
            keep.append(a)
        for a in keep:
            a.settimeout(30)
            assert a.recv(1) == b""  # EOF: the child exited and the daemon closed
            a.close()
        elapsed = time.perf_counter() - start
        return n / elapsed
    finally:
        p.terminate()
        err = p.communicate(timeout=10)[1].decode()
        if f"spawned={n}" not in err:
            print(err, file=sys.stderr)
        os.unlink(path) if os.path.exists(path) else None
        os.rmdir(d)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    results = {"fork": [], "spawn": []}
    for r in range(rounds):
        for method in ("fork", "spawn"):
            rate = one_round(method, n)
            results[method].append(rate)
            print(f"round {r + 1} {method:5s}: {rate:8.0f} children/s", flush=True)
    for method, rates in results.items():
        print(f"median {method:5s}: {statistics.median(rates):8.0f} children/s ({n} each)")


if __name__ == "__main__":
    main()
