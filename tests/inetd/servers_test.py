"""Real servers from Debian's packages behind socketbox-inetd (and HAProxy
behind socketbox-bind-exec), with connections from the client namespace
through the engine.  Usage: servers_test.py CLASS (one meson test each).

Each server runs as our own instance with our own configuration in a
temporary directory; the packages' system services are never used.
"""
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inetd_lib as il  # noqa: E402
from inetd_lib import sbxtest  # noqa: E402


def version_line(argv, pattern):
    r = subprocess.run(argv, capture_output=True, text=True)
    m = re.search(pattern, r.stdout + r.stderr)
    return m.group(0) if m else "unknown version"


class ServerCase(unittest.TestCase):
    needs = ()  # executables the case needs

    @classmethod
    def setUpClass(cls):
        missing = [n for n in cls.needs if not shutil.which(n) and not os.access(n, os.X_OK)]
        if missing:
            raise unittest.SkipTest(
                f"not installed: {' '.join(missing)} " "(scripts/lib/packages.d/inetd.list)"
            )

    def setUp(self):
        self.topo = sbxtest.Topology().__enter__()
        self.addCleanup(self.topo.close)
        self.path = self.topo.path("backend.sock")

    def serve_inetd(self, program, port):
        p = il.start_inetd(self.topo, self.path, program)
        a = il.acceptor(self.topo, il.SERVER_IP6, port, self.path)
        self.addCleanup(a.close)
        self.addCleanup(sbxtest.stop, p)
        return p


class Sshd(ServerCase):
    needs = ("/usr/sbin/sshd", "ssh", "ssh-keygen")

    def test_ssh_login_with_key_runs_command(self):
        print("# " + version_line(["ssh", "-V"], r"OpenSSH_\S+"), flush=True)
        d = self.topo.tmp
        for name in ("host", "user"):
            sbxtest.sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/{name}")
        shutil.copy(f"{d}/user.pub", f"{d}/authorized_keys")
        with open(f"{d}/sshd_config", "w") as f:
            f.write(
                f"HostKey {d}/host\nAuthorizedKeysFile {d}/authorized_keys\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                "PidFile none\nLogLevel VERBOSE\n"
            )
        # sshd refuses to start without its privilege separation directory;
        # a container without the ssh service running has none.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.serve_inetd(["/usr/sbin/sshd", "-i", "-e", "-f", f"{d}/sshd_config"], 22)
        r = self.topo.ns_sh(
            self.topo.client,
            "ssh",
            "-i",
            f"{d}/user",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            f"root@{il.SERVER_IP6}",
            "echo logged-in; echo $SSH_CONNECTION",
            check=False,
            timeout=60,
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.split("\n")
        self.assertEqual(lines[0], "logged-in")
        # sshd sees the real addresses on the passed socket.
        client_ip, _cport, server_ip, server_port = lines[1].split()
        self.assertEqual(
            (client_ip, server_ip, server_port), (sbxtest.CLIENT_LINK6, il.SERVER_IP6, "22")
        )


class BusyboxHttpd(ServerCase):
    needs = ("busybox",)

    def test_http_get_returns_file(self):
        print("# " + version_line(["busybox"], r"BusyBox v\S+"), flush=True)
        root = self.topo.path("www")
        os.makedirs(root)
        body = b"served by busybox httpd -i through socketbox-inetd\n"
        with open(f"{root}/hello.txt", "wb") as f:
            f.write(body)
        self.serve_inetd(["busybox", "httpd", "-i", "-h", root], 80)
        c = sbxtest.connect_from(self.topo.client, il.SERVER_IP6, 80)
        c.sendall(b"GET /hello.txt HTTP/1.0\r\nHost: test\r\n\r\n")
        response = il.read_all(c)
        c.close()
        head, _, got = response.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], head)
        self.assertEqual(got, body)
        c = sbxtest.connect_from(self.topo.client, il.SERVER_IP6, 80)
        c.sendall(b"GET /missing HTTP/1.0\r\n\r\n")
        self.assertIn(b" 404 ", il.read_all(c).split(b"\r\n")[0])
        c.close()


class Exim(ServerCase):
    needs = ("/usr/sbin/exim4",)

    def config(self):
        d = self.topo.tmp
        os.chmod(d, 0o711)  # exim works as Debian-exim in its spool
        spool = f"{d}/spool"
        os.makedirs(f"{spool}/log")
        shutil.chown(spool, "Debian-exim", "Debian-exim")
        shutil.chown(f"{spool}/log", "Debian-exim", "Debian-exim")
        with open(f"{d}/exim.conf", "w") as f:
            f.write(
                f"""primary_hostname = mx.test.example
spool_directory = {spool}
log_file_path = {spool}/log/%slog
domainlist local_domains = test.example
acl_smtp_rcpt = check_rcpt
queue_only = true
begin acl
check_rcpt:
  accept domains = +local_domains
  deny message = relay not permitted
"""
            )
        return f"{d}/exim.conf", spool

    def smtp(self, f, line, expect):
        if line is not None:
            f.write(line + b"\r\n")
            f.flush()
        while True:
            reply = f.readline()
            self.assertTrue(reply.startswith(expect), (line, reply))
            if reply[3:4] != b"-":
                return reply

    def test_smtp_session_is_accepted(self):
        print("# " + version_line(["/usr/sbin/exim4", "-bV"], r"Exim version \S+"), flush=True)
        conf, spool = self.config()
        self.serve_inetd(["/usr/sbin/exim4", "-C", conf, "-bs"], 25)
        c = sbxtest.connect_from(self.topo.client, il.SERVER_IP6, 25)
        c.settimeout(20)
        f = c.makefile("rwb")
        self.smtp(f, None, b"220")
        self.smtp(f, b"EHLO client.test.example", b"250")
        self.smtp(f, b"MAIL FROM:<sender@client.test.example>", b"250")
        self.smtp(f, b"RCPT TO:<nobody@elsewhere.example>", b"550")
        self.smtp(f, b"RCPT TO:<postmaster@test.example>", b"250")
        self.smtp(f, b"DATA", b"354")
        reply = self.smtp(f, b"Subject: test\r\n\r\nhello through socketbox-inetd\r\n.", b"250")
        self.smtp(f, b"QUIT", b"221")
        f.close()
        c.close()
        message_id = re.search(rb"id=(\S+)", reply).group(1).decode()
        header = subprocess.run(
            ["find", spool, "-name", f"{message_id}-H"], capture_output=True, text=True
        ).stdout.strip()
        self.assertTrue(header, f"message {message_id} not in the spool")
        with open(header, errors="replace") as h:
            text = h.read()
        # Exim recorded the client's real address from the passed socket.
        self.assertIn(sbxtest.CLIENT_LINK6, text)


class Haproxy(ServerCase):
    needs = ("haproxy",)

    def test_http_request_return_through_launcher(self):
        print("# " + version_line(["haproxy", "-v"], r"HAProxy version \S+"), flush=True)
        conf = self.topo.path("haproxy.cfg")
        with open(conf, "w") as f:
            f.write(
                """global
  log stderr format raw local0
defaults
  mode http
  log global
  timeout client 5s
  timeout connect 5s
  timeout server 5s
frontend fe
  bind sockpair@${SKBOX_HAPROXY_DGRAM_SOCK}
  http-request return status 200 content-type text/plain lf-string "hello from haproxy src=[%[src]]\\n"
"""
            )
        p = self.topo.spawn_server(
            [
                il.binary("socketbox-bind-exec"),
                self.path,
                "SKBOX_HAPROXY_DGRAM_SOCK",
                "haproxy",
                "-f",
                conf,
                "-db",
            ]
        )
        self.addCleanup(sbxtest.stop, p)
        sbxtest.wait_for(
            lambda: il.is_live(self.path) or p.poll() is not None, what="haproxy's socket"
        )
        self.assertIsNone(p.poll(), "haproxy exited")
        a = il.acceptor(self.topo, il.SERVER_IP6, 80, self.path)
        self.addCleanup(a.close)
        for _ in range(3):
            c = sbxtest.connect_from(self.topo.client, il.SERVER_IP6, 80)
            c.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            response = il.read_all(c)
            c.close()
            self.assertTrue(response.startswith(b"HTTP/1.1 200"), response)
            # The documented limitation: HAProxy treats passed sockets as
            # AF_UNIX, so it does not see the client's address.
            self.assertTrue(response.endswith(b"hello from haproxy src=[]\n"), response)


class SocketProxyd(ServerCase):
    """A program written for systemd's socket activation, unchanged:
    systemd-socket-proxyd takes the receiving socket as its LISTEN_FDS
    socket (socketbox-bind-exec -l) under the preload, and proxies each
    passed connection to a real HTTP server (busybox httpd)."""

    needs = ("/lib/systemd/systemd-socket-proxyd", "busybox")

    def test_proxies_20_of_20_connections(self):
        print("# " + version_line(["systemctl", "--version"], r"systemd \d+"), flush=True)
        root = self.topo.path("www")
        os.makedirs(root)
        body = b"served by busybox httpd behind systemd-socket-proxyd\n"
        with open(f"{root}/hello.txt", "wb") as f:
            f.write(body)
        httpd = self.topo.spawn_server(
            ["busybox", "httpd", "-f", "-p", "127.0.0.1:8080", "-h", root]
        )
        self.addCleanup(sbxtest.stop, httpd)
        sbxtest.wait_for(
            lambda: "127.0.0.1:8080"
            in self.topo.ns_sh(self.topo.server, "ss", "-Htln", "sport = :8080").stdout,
            what="busybox httpd",
        )
        preload_dir = os.path.join(il.BUILD, "preload")
        proxyd = self.topo.spawn_server(
            [
                il.binary("socketbox-bind-exec"),
                "-l",
                "-n",
                "http",
                self.path,
                os.path.join(preload_dir, "run-with-socketbox"),
                "/lib/systemd/systemd-socket-proxyd",
                "127.0.0.1:8080",
            ]
        )
        self.addCleanup(sbxtest.stop, proxyd)
        sbxtest.wait_for(
            lambda: il.is_live(self.path) or proxyd.poll() is not None, what="the proxy's socket"
        )
        a = il.acceptor(self.topo, il.SERVER_IP6, 80, self.path)
        self.addCleanup(a.close)
        served = 0
        for _ in range(20):
            c = sbxtest.connect_from(self.topo.client, il.SERVER_IP6, 80)
            c.sendall(b"GET /hello.txt HTTP/1.0\r\nHost: test\r\n\r\n")
            response = il.read_all(c)
            c.close()
            head, _, got = response.partition(b"\r\n\r\n")
            if b" 200 " in head.split(b"\r\n")[0] and got == body:
                served += 1
        self.assertIsNone(
            proxyd.poll(),
            "systemd-socket-proxyd exited: "
            + (proxyd.stderr.read().decode() if proxyd.poll() is not None else ""),
        )
        self.assertEqual(served, 20)


if __name__ == "__main__":
    il.announce()
    sbxtest.run_tap(globals()[sys.argv[1]], skip_reason=il.skip_reason())
