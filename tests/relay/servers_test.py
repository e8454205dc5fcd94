#!/usr/bin/env python3
"""Real servers from Debian's packages behind socketbox-relay, reached from
the client namespace through our engine:
  - HAProxy with accept-proxy sees (and logs) the client's real address;
  - nginx with `listen ... proxy_protocol` shows $proxy_protocol_addr;
  - Caddy (a Go program: no preload reaches it) serves a file, over TCP and
    over a Unix socket target.
Run one class per meson test: servers_test.py Haproxy|Nginx|Caddy."""
import hashlib
import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relay_lib as rl  # noqa: E402
from relay_lib import sbxtest  # noqa: E402

PORT = 8080


def http_get(topo, host, path="/", timeout=10.0):
    """A plain HTTP/1.0 GET from the client namespace: (status line, body)."""
    c = sbxtest.connect_from(topo.client, host, PORT, timeout=timeout)
    c.sendall(f"GET {path} HTTP/1.0\r\nHost: test\r\n\r\n".encode())
    data = rl.read_all(c, timeout)
    c.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body


def free_port(topo):
    s = sbxtest.socket_in(topo.server)
    s.bind(("::1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ServerCase(unittest.TestCase):
    PROGRAM = None

    def setUp(self):
        if not shutil.which(self.PROGRAM):
            self.skipTest(f"{self.PROGRAM} not installed (scripts/lib/packages.d/relay.list)")
        self.topo = sbxtest.Topology()
        self.topo.__enter__()
        self.addCleanup(self.topo.close)
        self.path = self.topo.path("relay.sock")

    def relay(self, args):
        r = rl.Relay(
            ["-s", self.path, "--drain-timeout", "1", *args],
            ns=self.topo.server,
            wait_path=self.path,
        )
        self.addCleanup(r.stop)
        engine = rl.Engine(self.topo, "::", PORT, self.path)
        self.addCleanup(engine.close)
        return r

    def wait_listening(self, proc, port):
        def up():
            if proc.poll() is not None:
                raise AssertionError(f"{self.PROGRAM} exited: {proc.stderr.read()}")
            return f":{port}" in self.topo.ns_sh(self.topo.server, "ss", "-Htln").stdout

        sbxtest.wait_for(up, what=f"{self.PROGRAM} listening on {port}")


class Haproxy(ServerCase):
    PROGRAM = "haproxy"

    def start(self, port):
        conf = self.topo.path("haproxy.cfg")
        with open(conf, "w") as f:
            f.write(
                f"""global
  log stdout format raw local0
defaults
  mode http
  log global
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend web
  bind [::1]:{port} accept-proxy
  log-format "client=%ci:%cp frontend=%fi:%fp %ST"
  http-request return status 200 content-type text/plain lf-string "you are %[src]"
"""
            )
        out = open(self.topo.path("haproxy.out"), "w+")
        p = self.topo.spawn_server(["haproxy", "-db", "-f", conf], stdout=out, text=True)
        self.addCleanup(sbxtest.stop, p)
        self.wait_listening(p, port)
        return out

    def check(self, relay_args, host, client_ip):
        port = free_port(self.topo)
        out = self.start(port)
        self.relay(["-p", str(port), *relay_args])
        status, body = http_get(self.topo, host)
        self.assertIn("200", status)
        self.assertEqual(body.decode(), f"you are {client_ip}")

        def logged():
            out.seek(0)
            return f"client={client_ip}:" in out.read()

        sbxtest.wait_for(logged, what=f"HAProxy logging client={client_ip}")

    def test_v1_ipv6_client(self):
        self.check(["-i"], rl.SERVER_IP6, rl.CLIENT_IP6)

    def test_v2_ipv4_client(self):
        self.check(["--proxy-v2"], rl.SERVER_IP4, rl.CLIENT_IP4)


class Nginx(ServerCase):
    PROGRAM = "nginx"

    def start(self, port):
        d = self.topo.tmp
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(
                f"""daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{}}
http {{
  access_log {d}/nginx-access.log;
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};
  uwsgi_temp_path {d}; scgi_temp_path {d};
  log_format pp '$proxy_protocol_addr:$proxy_protocol_port via $remote_addr';
  server {{
    listen [::1]:{port} proxy_protocol;
    access_log {d}/nginx-access.log pp;
    location / {{ return 200 "proxy_protocol_addr=$proxy_protocol_addr\\n"; }}
  }}
}}
"""
            )
        p = self.topo.spawn_server(["nginx", "-c", conf, "-e", f"{d}/nginx-error.log"], text=True)
        self.addCleanup(sbxtest.stop, p)
        self.wait_listening(p, port)
        return os.path.join(d, "nginx-access.log")

    def check(self, relay_args, host, client_ip):
        port = free_port(self.topo)
        log = self.start(port)
        self.relay(["-p", str(port), *relay_args])
        status, body = http_get(self.topo, host)
        self.assertIn("200", status)
        self.assertEqual(body.decode(), f"proxy_protocol_addr={client_ip}\n")
        sbxtest.wait_for(lambda: f"{client_ip}:" in open(log).read(), what="nginx access log")

    def test_v1_ipv4_client(self):
        self.check(["-i"], rl.SERVER_IP4, rl.CLIENT_IP4)

    def test_v2_ipv6_client(self):
        self.check(["--proxy-v2"], rl.SERVER_IP6, rl.CLIENT_IP6)


class Caddy(ServerCase):
    PROGRAM = "caddy"

    def start(self, listen):
        root = os.path.join(self.topo.tmp, "site")
        os.makedirs(root)
        content = os.urandom(3 << 20)
        with open(os.path.join(root, "blob.bin"), "wb") as f:
            f.write(content)
        env = {
            "HOME": self.topo.tmp,
            "XDG_DATA_HOME": self.topo.tmp,
            "XDG_CONFIG_HOME": self.topo.tmp,
        }
        p = self.topo.spawn_server(
            ["caddy", "file-server", "--root", root, "--listen", listen], env=env, text=True
        )
        self.addCleanup(sbxtest.stop, p)
        return p, hashlib.sha256(content).hexdigest()

    def test_file_over_tcp(self):
        port = free_port(self.topo)
        p, digest = self.start(f"[::1]:{port}")
        self.wait_listening(p, port)
        r = self.relay(["-p", str(port)])
        for _ in range(5):
            status, body = http_get(self.topo, rl.SERVER_IP6, "/blob.bin")
            self.assertIn("200", status)
            self.assertEqual(hashlib.sha256(body).hexdigest(), digest)
        r.wait_stat("closed.completed", 5)

    def test_file_over_unix_target(self):
        sock = self.topo.path("caddy.sock")
        p, digest = self.start(f"unix/{sock}")
        sbxtest.wait_for(lambda: os.path.exists(sock) or p.poll() is not None, what="caddy socket")
        self.relay(["-u", sock])
        status, body = http_get(self.topo, rl.SERVER_IP4, "/blob.bin")
        self.assertIn("200", status)
        self.assertEqual(hashlib.sha256(body).hexdigest(), digest)


if __name__ == "__main__":
    cases = {"Haproxy": Haproxy, "Nginx": Nginx, "Caddy": Caddy}
    chosen = [cases[n] for n in sys.argv[1:]] or list(cases.values())
    sbxtest.run_tap(*chosen, skip_reason=rl.skip_reason())
