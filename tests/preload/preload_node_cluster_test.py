"""Node.js `cluster` under run-with-socketbox, fed by the real socketbox
daemon, kernel dispatch off and on: a primary forks two workers, each
`http.createServer(...).listen(80, 'fe8f::2:0:1')`.

- The default scheduling policy (round robin: the primary listens, accepts
  and hands each connection to a worker) works both ways: both workers
  answer, with the client's real address and the address it connected to.
- NODE_CLUSTER_SCHED_POLICY=none (the primary binds, the workers listen
  and accept on the fd it sends them) works with kernel dispatch (the fd is
  the engine's TCP listener); without it the workers are handed the Unix
  datagram socket, and they neither listen nor report an error: a
  connection waits in that socket's queue, unanswered."""
import os
import shutil
import subprocess
import threading
import unittest

import preload_common as pc
from preload_common import sbxtest

NODE = shutil.which("node")
WRAPPER = os.path.join(pc.BUILD, "preload", "run-with-socketbox")

CLUSTER = r"""
const cluster = require('cluster');
const http = require('http');
if (cluster.isPrimary) {
  console.log(`primary ${process.pid} policy ${cluster.schedulingPolicy === cluster.SCHED_RR ? 'rr' : 'none'}`);
  for (let i = 0; i < 2; i++) cluster.fork();
  cluster.on('online', (w) => console.log(`online ${w.process.pid}`));
  cluster.on('listening', (w, a) => console.log(`listening ${w.process.pid} ${JSON.stringify(a)}`));
  cluster.on('exit', (w, code) => console.log(`exit ${w.process.pid} ${code}`));
} else {
  const server = http.createServer((req, res) => {
    res.end(`pid=${process.pid} peer=${req.socket.remoteAddress} local=${req.socket.localAddress}\n`);
  });
  server.on('error', (e) => console.log(`error ${process.pid} ${e.code}`));
  server.listen(80, process.argv[2]);
}
"""

LISTENING = '{"addressType":6,"address":"fe8f::2:0:1","port":80}'


class Output:
    """The lines a process writes on stdout, read as they come."""

    def __init__(self, proc):
        self.lines = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.read, args=(proc.stdout,), daemon=True)
        self.thread.start()

    def read(self, stream):
        for line in stream:
            with self.lock:
                self.lines.append(line.decode(errors="replace").rstrip("\n"))

    def starting(self, word):
        with self.lock:
            return [l for l in self.lines if l.startswith(word + " ")]


def datagram_queue(topo, path):
    """Messages queued in the Unix datagram socket bound at `path` (ss)."""
    for line in topo.ns_sh(topo.server, "ss", "-Hxan").stdout.splitlines():
        words = line.split()
        if len(words) >= 5 and words[0] == "u_dgr" and words[4] == path:
            return int(words[2])
    return 0


class NodeClusterTest(pc.BothModes, unittest.TestCase):
    def start_cluster(self, topo, **extra_env):
        script = topo.path("cluster.js")
        with open(script, "w") as f:
            f.write(CLUSTER)
        env = pc.preload_env(topo, **extra_env)
        del env["LD_PRELOAD"]  # run-with-socketbox sets it
        self.backend_path = pc.directory2_path(env["SKBOX_DIRECTORY_ROOT2"], 0, 1, 80)
        p = self.serve(
            topo,
            self.backend_path,
            lambda extra: topo.spawn_server(
                [WRAPPER, NODE, script, pc.FE8F_DIR2], env={**env, **extra}, stdout=subprocess.PIPE
            ),
        )
        out = Output(p)
        sbxtest.wait_for(
            lambda: len(out.starting("online")) == 2 or p.poll() is not None,
            timeout=20,
            what="two workers online",
        )
        self.assertIsNone(p.poll(), "the primary exited")
        return p, out

    def serve_requests(self, topo, p, out, count):
        sbxtest.wait_for(
            lambda: len(out.starting("listening")) == 2, timeout=20, what="both workers listening"
        )
        for line in out.starting("listening"):
            self.assertTrue(line.endswith(LISTENING), line)
        workers = {line.split()[1] for line in out.starting("online")}
        primary = out.starting("primary")[0].split()[1]
        answered = {}
        for _ in range(count):
            status, _, body = pc.http_get_eventually(topo, pc.PUBLIC6, proc=p)
            self.assertEqual(status, 200, body)
            fields = dict(w.split("=", 1) for w in body.split())
            self.assertEqual(fields["peer"], pc.CLIENT6, body)
            self.assertEqual(fields["local"], pc.PUBLIC6, body)
            self.assertIn(fields["pid"], workers, f"not a worker (primary {primary}): {body}")
            answered[fields["pid"]] = answered.get(fields["pid"], 0) + 1
        self.assertEqual(out.starting("error"), [])
        return answered

    def test_round_robin_default(self):
        print(f"# node {pc.program_version([NODE, '--version'])}", flush=True)
        with sbxtest.Topology() as topo:
            p, out = self.start_cluster(topo)
            self.assertTrue(out.starting("primary")[0].endswith("policy rr"), out.lines)
            answered = self.serve_requests(topo, p, out, 20)
            # The primary hands connections to the workers in turn.
            self.assertEqual(len(answered), 2, answered)
            self.assert_steered(20)
            print(f"# round robin: 20 answered by the workers {answered}", flush=True)
            sbxtest.stop(p)

    def test_scheduling_policy_none(self):
        with sbxtest.Topology() as topo:
            p, out = self.start_cluster(topo, NODE_CLUSTER_SCHED_POLICY="none")
            self.assertTrue(out.starting("primary")[0].endswith("policy none"), out.lines)
            if self.kernel_dispatch:
                answered = self.serve_requests(topo, p, out, 20)
                self.assert_steered(20)
                print(f"# policy none: 20 answered by the workers {answered}", flush=True)
            else:
                c = sbxtest.connect_from(topo.client, pc.PUBLIC6, 80)
                try:
                    c.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
                    # The daemon handed it over: it waits in the datagram
                    # socket, which no worker reads.
                    sbxtest.wait_for(
                        lambda: datagram_queue(topo, self.backend_path) >= 1,
                        timeout=10,
                        what="the connection queued in the socket",
                    )
                    c.settimeout(2.0)
                    with self.assertRaises(TimeoutError):
                        c.recv(1)
                finally:
                    c.close()
                self.assertEqual(out.starting("listening"), [])
                self.assertEqual(out.starting("error"), [])
                self.assertIsNone(p.poll())
                print(
                    "# policy none without kernel dispatch: 2 workers online, none listening, "
                    "no error; the connection stays queued",
                    flush=True,
                )
            sbxtest.stop(p)


if __name__ == "__main__":
    sbxtest.run_tap(
        NodeClusterTest,
        pc.with_kernel_dispatch(NodeClusterTest),
        skip_reason=pc.skip_reason(pc.ENGINE, NODE or "node"),
    )
