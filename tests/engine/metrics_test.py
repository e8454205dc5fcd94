#!/usr/bin/env python3
"""--metrics-listen: the counters in Prometheus text format over HTTP, from
inside the server namespace; they agree with the traffic, survive bad and
silent scrapers, and a listener that cannot be bound is a clear error."""
import os
import re
import resource
import signal
import socket
import sys
import time
import unittest

from engine_fixture import Backend, Engine, fetch, sbxtest

A = "2001:db8:1::"
METRICS = ("::1", 9100)


def http(ns, request, timeout=10):
    """Sends `request` to the metrics port from namespace `ns`; the reply."""
    s = sbxtest.socket_in(ns)
    s.settimeout(timeout)
    try:
        s.connect(METRICS)
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data.decode()
            data += chunk
    finally:
        s.close()


def metrics_clients_settled(ns):
    """No client of the metrics port is still in its handshake, and the
    daemon has taken every connected one from the listen queue."""
    listener = sbxtest.sh("ip", "netns", "exec", ns, "ss", "-Hltn", "sport = :9100").stdout.split()
    handshaking = sbxtest.sh(
        "ip", "netns", "exec", ns, "ss", "-Htn", "state", "syn-sent", "dport = :9100"
    ).stdout.strip()
    return bool(listener) and listener[1] == "0" and not handshaking


def scrape(ns):
    """{(name, labels-text): value} from GET /metrics."""
    reply = http(ns, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = reply.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.0 200 OK"), head
    length = int(re.search(r"Content-Length: (\d+)", head).group(1))
    assert length == len(body.encode()), (length, len(body))
    samples = {}
    for line in body.splitlines():
        if line.startswith("#") or not line:
            continue
        m = re.fullmatch(r"(\w+)(\{.*\})? (\d+)", line)
        assert m, line
        samples[(m.group(1), m.group(2) or "")] = int(m.group(3))
    return samples


def cpu_seconds(pid):
    """User + system CPU of process `pid` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def total(samples, name, **labels):
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for (n, lab), v in samples.items() if n == name and all(w in lab for w in want))


class MetricsTest(unittest.TestCase):
    def test_counters_follow_traffic_and_reloads(self):
        with sbxtest.Topology() as topo:
            b = Backend(topo.path("b.sock"), "b")
            try:
                conf = topo.path("m.conf")
                with open(conf, "w") as f:
                    f.write(
                        f"max-rules:1\nrule-set:0 size:1\nport:80 jump-unix:{b.path}\ndefault fail\n"
                    )
                eng = Engine(
                    [
                        "-f",
                        conf,
                        "--listen",
                        "[::]:80",
                        "--listen",
                        "[::]:81",
                        "--threads",
                        "2",
                        "--metrics-listen",
                        "[::1]:9100",
                    ],
                    ns=topo.server,
                )
                self.assertIn("metrics at http://[::1]:9100/metrics", eng.output())
                for _ in range(3):
                    self.assertEqual(fetch(topo.client, f"{A}1", 80), b"b")
                for _ in range(2):
                    self.assertEqual(fetch(topo.client, f"{A}1", 81, timeout=3), b"")
                sbxtest.wait_for(
                    lambda: total(scrape(topo.server), "socketbox_accepted_total") == 5,
                    what="5 accepted in the metrics",
                )
                m = scrape(topo.server)
                self.assertEqual(total(m, "socketbox_dispatched_total"), 3)
                self.assertEqual(total(m, "socketbox_dropped_total", reason="fail"), 2)
                self.assertEqual(total(m, "socketbox_dropped_total"), 2)
                self.assertEqual(
                    m[("socketbox_backend_delivered_total", f'{{backend="{b.path}"}}')], 3
                )
                self.assertEqual(
                    {lab for (n, lab) in m if n == "socketbox_accepted_total"},
                    {'{worker="0"}', '{worker="1"}'},
                )
                # The same numbers as SIGUSR1's.
                st = eng.stats()
                self.assertEqual((st["accepted"], st["dispatched"], st["dropped"]), (5, 3, 2))
                # Reloads: one refused, one taken.
                with open(conf, "w") as f:
                    f.write("max-rules:1\nrule-set:0 size:1\nport:nope fail\n")
                eng.proc.send_signal(signal.SIGHUP)
                sbxtest.wait_for(
                    lambda: total(scrape(topo.server), "socketbox_config_reload_failures_total")
                    == 1,
                    what="a refused reload counted",
                )
                with open(conf, "w") as f:
                    f.write(f"max-rules:1\nrule-set:0 size:1\ndefault jump-unix:{b.path}\n")
                eng.proc.send_signal(signal.SIGHUP)
                sbxtest.wait_for(
                    lambda: total(scrape(topo.server), "socketbox_config_reloads_total") == 1,
                    what="a reload counted",
                )
                self.assertEqual(eng.stop(), 0)
            finally:
                b.close()

    def test_bad_and_silent_scrapers(self):
        with sbxtest.Topology() as topo:
            b = Backend(topo.path("b.sock"), "b")
            try:
                eng = Engine(
                    ["-S", b.path, "-p", "80", "--metrics-listen", "[::1]:9100"], ns=topo.server
                )
                self.assertIn("404 Not Found", http(topo.server, b"GET /other HTTP/1.0\r\n\r\n"))
                self.assertIn(
                    "400 Bad Request", http(topo.server, b"POST /metrics HTTP/1.0\r\n\r\n")
                )
                self.assertIn("400 Bad Request", http(topo.server, b"\x00\xff garbage\r\n\r\n"))
                self.assertIn("400 Bad Request", http(topo.server, b"A" * 10000))
                # A client that says nothing does not hold up the scrape
                # beside it, and is told 408 and closed at its deadline (2 s).
                silent = sbxtest.socket_in(topo.server)
                silent.connect(METRICS)
                m = scrape(topo.server)
                self.assertIn(("socketbox_accepted_total", '{worker="0"}'), m)
                silent.settimeout(5)
                self.assertTrue(silent.recv(100).startswith(b"HTTP/1.0 408 Request Timeout"))
                silent.close()
                # The accept path never waited for any of it.
                self.assertEqual(fetch(topo.client, f"{A}1", 80), b"b")
                self.assertEqual(eng.stop(), 0)
            finally:
                b.close()

    def test_idle_clients_do_not_delay_a_scrape(self):
        """Issue 9 §5: 20 idle connections delayed a scrape by 39 s when the
        server answered one client at a time. Now each client has its own
        2 s deadline, and one peer has at most 8 clients: a newer one takes
        the place of its oldest that has not sent a request (503)."""
        with sbxtest.Topology() as topo:
            b = Backend(topo.path("b.sock"), "b")
            idle = []
            try:
                eng = Engine(
                    ["-S", b.path, "-p", "80", "--metrics-listen", "[::1]:9100"], ns=topo.server
                )
                opened = time.monotonic()
                for _ in range(20):
                    s = sbxtest.socket_in(topo.server)
                    s.connect(METRICS)
                    idle.append(s)
                started = time.monotonic()
                m = scrape(topo.server)
                took = time.monotonic() - started
                self.assertIn(("socketbox_accepted_total", '{worker="0"}'), m)
                print(f"# a scrape beside 20 idle clients took {took:.3f} s", file=sys.stderr)
                self.assertLess(took, 1.0, "a scrape waited behind idle clients")
                # The 13 oldest made room (12 for the newer idle ones, one
                # for the scrape): told 503 at once. The 7 newest are told
                # 408 and closed at their deadline, 2 s after they came.
                replies = []
                for s in idle:
                    s.settimeout(5)
                    reply = b""
                    while True:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        reply += chunk
                    replies.append(reply.split(b"\r\n")[0])
                closed_after = time.monotonic() - opened
                self.assertEqual(
                    replies,
                    [b"HTTP/1.0 503 Service Unavailable"] * 13
                    + [b"HTTP/1.0 408 Request Timeout"] * 7,
                )
                self.assertGreater(closed_after, 1.5)
                self.assertLess(closed_after, 4.0)
                print(
                    f"# the idle clients were closed {closed_after:.3f} s after they connected",
                    file=sys.stderr,
                )
                # The deadline is for the whole exchange, not per read: a
                # client that sends a byte every 0.25 s is cut off at 2 s too.
                drip = sbxtest.socket_in(topo.server)
                drip.connect(METRICS)
                started = time.monotonic()
                try:
                    for byte in b"GET /metrics HTTP/1.0\r\nX: " + b"y" * 40:
                        drip.send(bytes([byte]))
                        time.sleep(0.25)  # the slow client's pace, not a wait
                except (BrokenPipeError, ConnectionResetError):
                    pass
                cut_after = time.monotonic() - started
                drip.close()
                self.assertLess(cut_after, 3.0, "a slow client held its slot past its deadline")
                self.assertEqual(eng.stop(), 0)
            finally:
                for s in idle:
                    s.close()
                b.close()

    def test_a_thousand_idle_connections_do_not_delay_scrapes(self):
        """Issue 18 item 9: 1,000 idle connections from one host made 2 of 4
        scrapes time out at 10 s (32 clients were served at once, the rest
        waited in the backlog for 2 s deadlines). Now a peer holds at most
        8 clients and 64 are served in all, a new client taking the place of
        the oldest idle one: every scrape is answered within 1 s, from the
        same host as the idle ones or from another."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
        with sbxtest.Topology() as topo:
            b = Backend(topo.path("b.sock"), "b")
            idle = []
            try:
                # [::]: IPv4 peers 127.0.0.N too, each a peer of its own.
                eng = Engine(
                    ["-S", b.path, "-p", "80", "--metrics-listen", "[::]:9100"], ns=topo.server
                )
                for _ in range(1000):
                    s = sbxtest.socket_in(topo.server)
                    s.setblocking(False)
                    try:
                        s.connect(METRICS)
                    except BlockingIOError:
                        pass
                    idle.append(s)
                sbxtest.wait_for(
                    lambda: metrics_clients_settled(topo.server),
                    timeout=15,
                    what="1,000 idle clients connected and accepted",
                )
                took = []
                for _ in range(4):
                    started = time.monotonic()
                    m = scrape(topo.server)
                    took.append(time.monotonic() - started)
                    self.assertIn(("socketbox_accepted_total", '{worker="0"}'), m)
                print(
                    "# scrapes beside 1,000 idle connections from the same host: "
                    + ", ".join(f"{t:.3f} s" for t in took),
                    file=sys.stderr,
                )
                self.assertLess(max(took), 1.0, "a scrape waited behind idle connections")
                # 12 more hosts with 10 idle connections each: past the
                # overall bound (64), a scrape still takes the place of an
                # idle one, of the host with the most.
                for n in range(12):
                    for _ in range(10):
                        s = sbxtest.socket_in(topo.server, socket.AF_INET)
                        s.bind((f"127.0.0.{n + 2}", 0))
                        s.connect(("127.0.0.1", 9100))
                        idle.append(s)
                sbxtest.wait_for(
                    lambda: metrics_clients_settled(topo.server),
                    timeout=15,
                    what="120 more idle clients accepted",
                )
                took = []
                for _ in range(4):
                    started = time.monotonic()
                    scrape(topo.server)
                    took.append(time.monotonic() - started)
                print(
                    "# scrapes beside 120 idle connections from 12 other hosts: "
                    + ", ".join(f"{t:.3f} s" for t in took),
                    file=sys.stderr,
                )
                self.assertLess(max(took), 1.0, "a scrape waited behind idle connections")
                self.assertEqual(fetch(topo.client, f"{A}1", 80), b"b")
                self.assertEqual(eng.stop(), 0)
            finally:
                for s in idle:
                    s.close()
                b.close()
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    def test_out_of_fds_the_listener_pauses(self):
        """Issue 18 item 8: with the daemon's fd table full, one scrape made
        the metrics thread spin on poll -> accept4 = EMFILE (15,351 system
        calls in 0.5 s, 2.07 CPU-seconds in 3 s). Now the listener pauses
        (5 ms doubling to 1 s), says so once, and the scrape is answered by
        itself once fds are free again."""
        with sbxtest.Topology() as topo:
            # A backend that reads nothing: the daemon holds every connection
            # (up to the dispatch timeout), each an fd, until the table is full.
            b = Backend(topo.path("b.sock"), "b", stall=3600)
            clients = []
            try:
                eng = Engine(
                    [
                        "-S",
                        b.path,
                        "-p",
                        "80",
                        "--threads",
                        "1",
                        "--dispatch-timeout",
                        "60000",
                        "--metrics-listen",
                        "[::1]:9100",
                    ],
                    ns=topo.server,
                    wrapper=["prlimit", "--nofile=64:64"],
                )
                for _ in range(100):
                    s = sbxtest.socket_in(topo.client)
                    s.setblocking(False)
                    try:
                        s.connect((f"{A}1", 80))
                    except BlockingIOError:
                        pass
                    clients.append(s)
                sbxtest.wait_for(
                    lambda: sbxtest.fd_count(eng.proc.pid) >= 64, what="the fd table full"
                )
                scraper = sbxtest.socket_in(topo.server)
                scraper.connect(METRICS)
                scraper.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
                sbxtest.wait_for(
                    lambda: eng.has_line("metrics: accept: Too many open files"),
                    what="the metrics listener paused",
                )
                cpu = cpu_seconds(eng.proc.pid)
                time.sleep(2.0)  # the window the CPU is measured over, not a wait
                cpu = cpu_seconds(eng.proc.pid) - cpu
                print(
                    f"# daemon CPU over 2 s with the fd table full and a scrape queued: {cpu:.2f} s",
                    file=sys.stderr,
                )
                self.assertLess(cpu, 0.3, "the daemon spins while it has no fds")
                self.assertTrue(
                    eng.has_line(
                        "metrics: accept: Too many open files; the metrics listener " "pauses"
                    ),
                    eng.output(),
                )
                pauses = [l for l in eng.output().splitlines() if "metrics: accept:" in l]
                self.assertEqual(len(pauses), 1, pauses)
                # The backend reads: the held connections leave, fds are free,
                # the listener takes the queued scrape within its back-off.
                b.stall_until = 0
                scraper.settimeout(5)
                self.assertTrue(scraper.recv(100).startswith(b"HTTP/1.0 200 OK"))
                scraper.close()
                sbxtest.wait_for(
                    lambda: eng.has_line("metrics: accepting again after"),
                    what="the resumption logged",
                )
                self.assertEqual(eng.stop(), 0)
            finally:
                for s in clients:
                    s.close()
                b.close()

    def test_port_in_use_is_an_error_and_nothing_stays_bound(self):
        with sbxtest.Topology() as topo:
            taken = sbxtest.socket_in(topo.server)
            taken.bind(METRICS)
            taken.listen(1)
            try:
                eng = Engine(
                    ["-S", "/tmp/x.sock", "-p", "80", "--metrics-listen", "[::1]:9100"],
                    ns=topo.server,
                    wait_ready=False,
                )
                self.assertEqual(eng.proc.wait(timeout=10), 1)
                eng.reader.join(timeout=2)
                self.assertIn(
                    "--metrics-listen: bind [::1]:9100: Address already in use", eng.output()
                )
                out = topo.ns_sh(topo.server, "ss", "-Hltn", "sport = :80").stdout
                self.assertEqual(out.strip(), "")
            finally:
                taken.close()


if __name__ == "__main__":
    sbxtest.run_tap(MetricsTest, skip_reason=sbxtest.require_root_and_netns())
