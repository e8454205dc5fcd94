"""Node.js under libsocketbox-preload.so, fed by the real socketbox daemon:
http.createServer().listen(80, 'fe8f::...').

Two runtimes: the machine's installed Node.js (20, libuv bundled) and
Debian 12's Node.js 18 (nodejs + libnode108, libuv from Debian's libuv1).
Where Debian's 18 is not the installed node, its packages are fetched with
`apt-get download` into the build directory and run from there, with an
overlay in a private mount namespace supplying the JavaScript modules it
loads from /usr/share/nodejs. Each with kernel dispatch off and on."""
import glob
import os
import re
import shutil
import subprocess
import unittest

import preload_common as pc
from preload_common import sbxtest

SERVER_JS = r"""
const http = require('http');
const server = http.createServer((req, res) => {
  res.end(`node=${process.version} uv=${process.versions.uv} peer=${req.socket.remoteAddress}\n`);
});
server.listen(80, process.argv[2], () => {
  console.log('address ' + JSON.stringify(server.address()));
});
"""

DEBIAN_NODE_PACKAGES = [
    "nodejs",
    "libnode108",
    "node-acorn",
    "node-cjs-module-lexer",
    "node-undici",
]


def installed_node():
    path = shutil.which("node")
    if not path:
        return None, None
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.strip()
    return path, version


def debian_node18():
    """(argv prefix, env, version) for Debian's Node.js 18, or a skip reason."""
    path, version = installed_node()
    if version and version.startswith("v18."):
        return [path], {}, version, None
    root = os.path.join(pc.BUILD, "preload-node18")
    node = os.path.join(root, "usr", "bin", "node")
    if not os.path.exists(node):
        madison = subprocess.run(
            ["apt-cache", "madison", "nodejs"], capture_output=True, text=True
        ).stdout
        versions = re.findall(r"\|\s*(18\.[^\s|]+)\s*\|", madison)
        if not versions:
            return None, None, None, "Debian's nodejs 18 is not in the package lists"
        debs = os.path.join(root + ".debs")
        os.makedirs(debs, exist_ok=True)
        wanted = [f"nodejs={versions[0]}", f"libnode108={versions[0]}"] + DEBIAN_NODE_PACKAGES[2:]
        got = subprocess.run(
            ["apt-get", "download", "-q"] + wanted, cwd=debs, capture_output=True, text=True
        )
        if got.returncode != 0:
            return None, None, None, f"cannot fetch Debian's nodejs 18: {got.stderr.strip()[-200:]}"
        for deb in glob.glob(os.path.join(debs, "*.deb")):
            subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    share = os.path.join(root, "usr", "share")
    argv = [
        "unshare",
        "-m",
        "sh",
        "-c",
        f'mount -t overlay overlay -o lowerdir={share}:/usr/share /usr/share && exec "$@"',
        "sh",
        node,
    ]
    env = {"LD_LIBRARY_PATH": os.path.join(root, "usr", "lib", "x86_64-linux-gnu")}
    version = subprocess.run(
        argv + ["--version"], env={**os.environ, **env}, capture_output=True, text=True
    ).stdout.strip()
    if not version.startswith("v18."):
        return None, None, None, f"Debian's node 18 does not run here ({version!r})"
    return argv, env, version, None


class NodeTest(pc.BothModes, unittest.TestCase):
    def serve_node(self, argv, extra_env, expect_version):
        with sbxtest.Topology() as topo:
            script = topo.path("server.js")
            with open(script, "w") as f:
                f.write(SERVER_JS)
            env = pc.preload_env(topo, **extra_env)
            backend = pc.directory2_path(env["SKBOX_DIRECTORY_ROOT2"], 0, 1, 80)
            p = self.serve(
                topo,
                backend,
                lambda extra: topo.spawn_server(
                    argv + [script, pc.FE8F_DIR2], env={**env, **extra}, stdout=subprocess.PIPE
                ),
            )
            for _ in range(10):
                status, _, body = pc.http_get_eventually(topo, pc.PUBLIC6, proc=p)
                self.assertEqual(status, 200)
                self.assertIn(f"node={expect_version} ", body)
                self.assertIn(f"peer={pc.CLIENT6}", body)
            self.assert_steered(10)
            sbxtest.stop(p)
            out = p.stdout.read().decode()
            # server.address() is the address the program listened on.
            self.assertIn('address {"address":"fe8f::2:0:1","family":"IPv6","port":80}', out)
            print(f"# {body.strip()}", flush=True)

    def test_installed_node(self):
        path, version = installed_node()
        if not path:
            self.skipTest("no node installed")
        self.serve_node([path], {}, version)

    def test_debian_node18(self):
        argv, env, version, reason = debian_node18()
        if reason:
            self.skipTest(reason)
        self.serve_node(argv, env, version)


if __name__ == "__main__":
    sbxtest.run_tap(
        NodeTest, pc.with_kernel_dispatch(NodeTest), skip_reason=pc.skip_reason(pc.ENGINE)
    )
