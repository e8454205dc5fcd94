"""nginx under libsocketbox-preload.so, fed by the real socketbox daemon,
with kernel dispatch off and on (the master takes the listener at bind; its
workers, and those a reload starts, accept from it)."""
import os
import shutil
import signal
import unittest

import preload_common as pc
from preload_common import sbxtest

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

CONFIG = """
master_process on;
worker_processes 2;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen {listen};
    location / {{
      default_type text/plain;
      return 200 "nginx remote=$remote_addr server=$server_addr port=$server_port\\n";
    }}
  }}
}}
"""


class NginxTest(pc.BothModes, unittest.TestCase):
    def run_nginx(self, topo, listen, backend, **env):
        conf = topo.path("nginx.conf")
        with open(conf, "w") as f:
            f.write(CONFIG.format(tmp=topo.tmp, listen=listen))
        return self.serve(
            topo,
            backend,
            lambda extra: topo.spawn_server(
                [NGINX, "-c", conf], env=pc.preload_env(topo, **env, **extra)
            ),
        )

    def test_listen_fe8f_serves_http_with_real_remote_addr(self):
        with sbxtest.Topology() as topo:
            backend = pc.directory2_path(topo.path("sb2"), 0, 1, 80)
            p = self.run_nginx(topo, f"[{pc.FE8F_DIR2}]:80", backend)
            for _ in range(20):
                status, _, body = pc.http_get_eventually(topo, pc.PUBLIC6, proc=p)
                self.assertEqual(status, 200)
                self.assertIn(f"remote={pc.CLIENT6} ", body)
            # With a specific listen address nginx reports it as $server_addr
            # without asking the kernel (documented limitation).
            self.assertIn(f"server={pc.FE8F_DIR2} ", body)
            self.assert_steered(20)
            self.assertEqual(sbxtest.stop(p, timeout=10), 0)

    def test_record_file_form_survives_reload(self):
        # The original's record files: fe8f::0:1 is record 1 of skbox_dir_00000.
        with sbxtest.Topology() as topo:
            root = topo.path("records")
            os.makedirs(root)
            record = topo.path("nginx_@SB_.sock").encode().ljust(128, b"\0")
            with open(os.path.join(root, "skbox_dir_00000"), "wb") as f:
                f.write(b"\0" * 128 + record)
            backend = topo.path("nginx00080.sock")
            p = self.run_nginx(topo, "[fe8f::0:1]:80", backend, SKBOX_DIRECTORY_ROOT=root)
            status, _, body = pc.http_get_eventually(topo, pc.PUBLIC6, proc=p)
            self.assertEqual(status, 200)
            self.assertIn("server=fe8f::1 ", body)
            inode = os.stat(backend).st_ino
            # SIGHUP: nginx re-reads its configuration, keeps the listener it
            # has for the same address and starts new workers with it.
            p.send_signal(signal.SIGHUP)
            sbxtest.wait_for(
                lambda: "reconfiguring" in open(topo.path("error.log")).read(), what="nginx reload"
            )
            for _ in range(10):
                status, _, body = pc.http_get_eventually(topo, pc.PUBLIC6, proc=p)
                self.assertEqual(status, 200)
                self.assertIn(f"remote={pc.CLIENT6} ", body)
            self.assertEqual(os.stat(backend).st_ino, inode)
            self.assert_steered(11)
            self.assertEqual(sbxtest.stop(p, timeout=10), 0)

    def test_wildcard_mode_gives_real_server_addr(self):
        # listen [::]:80 with the IPv6 wildcard filter: nginx then asks
        # getsockname() on each connection and gets the real local address.
        with sbxtest.Topology() as topo:
            backend = pc.directory2_path(topo.path("sb2"), 0, 0, 80, x_prefix=True)
            p = self.run_nginx(topo, "[::]:80", backend, SKBOX_PORT_FILTER_IPV6_WILDCARD="1,1,80")
            status, _, body = pc.http_get_eventually(topo, pc.PUBLIC6, proc=p)
            self.assertEqual(status, 200)
            self.assertIn(f"remote={pc.CLIENT6} ", body)
            self.assertIn(f"server={pc.PUBLIC6} ", body)
            self.assertIn("port=80", body)
            self.assert_steered(1)
            self.assertEqual(sbxtest.stop(p, timeout=10), 0)


if __name__ == "__main__":
    sbxtest.run_tap(
        NginxTest, pc.with_kernel_dispatch(NginxTest), skip_reason=pc.skip_reason(NGINX, pc.ENGINE)
    )
