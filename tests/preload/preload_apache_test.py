"""Apache httpd (Debian's apache2) under libsocketbox-preload.so, fed by the
real socketbox daemon, with kernel dispatch off and on (the master binds as
root and takes the listener; the www-data workers accept from it)."""
import os
import shutil
import unittest

import preload_common as pc
from preload_common import sbxtest

APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
MODULES = "/usr/lib/apache2/modules"

CONFIG = """
ServerRoot {tmp}
ServerName sbxtest
Listen [{listen}]:80
PidFile {tmp}/apache.pid
DefaultRuntimeDir {tmp}
ErrorLog {tmp}/error.log
LogLevel info
User www-data
Group www-data
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule dir_module {modules}/mod_dir.so
StartServers 2
ServerLimit 2
ThreadsPerChild 4
MaxRequestWorkers 8
LogFormat "%a %A %p %s" sbx
CustomLog {tmp}/access.log sbx
DocumentRoot {tmp}/htdocs
<Directory {tmp}/htdocs>
  Require all granted
</Directory>
"""


class ApacheTest(pc.BothModes, unittest.TestCase):
    def start(self, topo, listen, backend, **env):
        os.chmod(topo.tmp, 0o755)  # the workers run as www-data
        os.makedirs(topo.path("htdocs"))
        with open(topo.path("htdocs/index.html"), "w") as f:
            f.write("hello from apache through socketbox\n")
        conf = topo.path("apache2.conf")
        with open(conf, "w") as f:
            f.write(CONFIG.format(tmp=topo.tmp, listen=listen, modules=MODULES))
        return self.serve(
            topo,
            backend,
            lambda extra: topo.spawn_server(
                [APACHE, "-f", conf, "-DFOREGROUND"], env=pc.preload_env(topo, **env, **extra)
            ),
        )

    def access_log(self, topo):
        with open(topo.path("access.log")) as f:
            return [line.split() for line in f.read().splitlines()]

    def test_wildcard_mode_gives_real_server_addr(self):
        # Listen [::]:80 with the IPv6 wildcard filter: APR then asks
        # getsockname() for %A and gets the real local address.
        with sbxtest.Topology() as topo:
            backend = pc.directory2_path(topo.path("sb2"), 0, 0, 80, x_prefix=True)
            p = self.start(topo, "::", backend, SKBOX_PORT_FILTER_IPV6_WILDCARD="1,1,80")
            status, _, _ = pc.http_get_eventually(topo, pc.PUBLIC6, path="/index.html", proc=p)
            self.assertEqual(status, 200)
            self.assert_steered(1)
            sbxtest.stop(p, timeout=15)
            self.assertEqual(self.access_log(topo)[0], [pc.CLIENT6, pc.PUBLIC6, "80", "200"])

    def test_listen_fe8f_serves_http(self):
        with sbxtest.Topology() as topo:
            backend = pc.directory2_path(topo.path("sb2"), 0, 1, 80)
            p = self.start(topo, pc.FE8F_DIR2, backend, SKBOX_DEBUG=1)
            for _ in range(10):
                status, _, body = pc.http_get_eventually(
                    topo, pc.PUBLIC6, path="/index.html", proc=p
                )
                self.assertEqual(status, 200)
                self.assertEqual(body, "hello from apache through socketbox\n")
            self.assert_steered(10)
            sbxtest.stop(p, timeout=15)
            with open(topo.path("error.log")) as f:
                errors = f.read()
            # Apache set TCP_DEFER_ACCEPT (IPPROTO_TCP 6, option 9) on the
            # replaced listener: the preload answered it (SKBOX_DEBUG line,
            # on stderr or in the error log Apache moved stderr to).
            debug = errors + p.stderr.read().decode(errors="replace")
            self.assertIn("level 6 option 9: kept for accepted sockets", debug)
            # The original made APR's TCP_DEFER_ACCEPT setsockopt fail.
            self.assertNotIn("Failed to enable", errors)
            self.assertNotIn("(95)", errors)  # EOPNOTSUPP from any socket call
            lines = self.access_log(topo)
            self.assertEqual(len(lines), 10)
            # %a is the client's real address; %A is the configured fe8f::
            # address (APR takes it from the listener, as nginx does).
            self.assertEqual(lines[0], [pc.CLIENT6, pc.FE8F_DIR2, "80", "200"])


if __name__ == "__main__":
    sbxtest.run_tap(
        ApacheTest,
        pc.with_kernel_dispatch(ApacheTest),
        skip_reason=pc.skip_reason(APACHE, pc.ENGINE),
    )
