#!/usr/bin/env python3
"""The harness's own logic, without a network: the capacity search, the
CPU cap's cgroup (real, when this machine lets root make one), the run
comparison (its noise verdicts and Google Benchmark's compare.py on real
microbenchmark output) and the generated docs section. TAP output; run by
meson (suite 'bench')."""
import copy
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench", "harness"))
import bench  # noqa: E402
import capacity  # noqa: E402
import compare  # noqa: E402
import cpucap  # noqa: E402
import docs_writer  # noqa: E402
import figures  # noqa: E402
import interference  # noqa: E402
import records  # noqa: E402
import sbxtest  # noqa: E402

BUILD = os.environ.get("SBX_BUILD", os.path.join(sbxtest.ROOT, "build"))


class SearchTest(unittest.TestCase):
    def run_search(self, true_capacity, saturation, refine):
        tried = []

        def holds(rate):
            tried.append(rate)
            return rate <= true_capacity

        got, bracket = capacity.search(holds, saturation, refine)
        return got, bracket, tried

    def test_bisects_up_from_three_quarters(self):
        got, bracket, tried = self.run_search(9000, 10000, 6)
        self.assertEqual(tried[0], 7500)
        self.assertLessEqual(got, 9000)
        self.assertGreater(got, 8900)
        self.assertEqual(bracket[0], got)
        self.assertGreater(bracket[1], 9000)

    def test_halves_down_when_three_quarters_fails(self):
        got, bracket, tried = self.run_search(2000, 10000, 3)
        self.assertEqual(tried[:3], [7500, 3750, 1875])
        self.assertTrue(1875 <= got <= 2000, got)
        self.assertTrue(bracket[1] > 2000)

    def test_nothing_holds(self):
        got, bracket, tried = self.run_search(0, 10000, 3)
        self.assertEqual(got, 0)
        self.assertEqual(bracket[0], 0)
        self.assertTrue(all(r >= 10000 // 16 for r in tried), tried)

    def test_every_rate_holds_stops_below_the_ceiling(self):
        got, bracket, _ = self.run_search(10**9, 10000, 8)
        self.assertLess(got, 11000)
        self.assertEqual(bracket[1], 11000)


class CpuCapTest(unittest.TestCase):
    def test_budget_out_of_range(self):
        with self.assertRaises(ValueError):
            cpucap.CpuCap(0)

    def test_caps_a_real_process(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to make a cgroup")
        cap = cpucap.CpuCap(0.2)
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            cap.add(burner.pid)
            if cap.method == "affinity":
                self.assertEqual(os.sched_getaffinity(burner.pid), {cap.cpu})
                return
            with open(os.path.join(cap.path, "cgroup.procs")) as f:
                self.assertIn(str(burner.pid), f.read().split())
            with open(f"/proc/{burner.pid}/stat") as f:
                t0 = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13])
            import time

            time.sleep(1.0)
            with open(f"/proc/{burner.pid}/stat") as f:
                t1 = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13])
            used = (t1 - t0) / os.sysconf("SC_CLK_TCK")
            # A busy loop under a 0.2 CPU quota: about 0.2 s per second.
            self.assertLess(used, 0.45, f"{used} CPU-s in 1 s under {cap.describe()}")
            self.assertGreater(cap.throttled()[0], 0)
        finally:
            burner.kill()
            burner.wait()
            path = cap.path
            cap.remove()
            self.assertFalse(path and os.path.exists(path), "cgroup left behind")


class CpuCapBudgetTest(unittest.TestCase):
    def test_small_budget_gets_a_longer_period(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to make a cgroup")
        cap = cpucap.CpuCap(0.3)
        try:
            if cap.method == "affinity":
                self.skipTest(f"no cgroup cpu controller: {cap.fallback_reason}")
            cap.set_budget(0.05)
            if cap.method == "cgroup-v2":
                with open(os.path.join(cap.path, "cpu.max")) as f:
                    quota, period = f.read().split()
            else:
                with open(os.path.join(cap.path, "cpu.cfs_quota_us")) as f:
                    quota = f.read().strip()
                with open(os.path.join(cap.path, "cpu.cfs_period_us")) as f:
                    period = f.read().strip()
            # 5% of a 10 ms period would be under the kernel's 1 ms minimum quota.
            self.assertEqual((int(quota), int(period)), (1000, 20000))
            self.assertIn("1000/20000 us = 0.05 CPU", cap.describe())
        finally:
            cap.remove()


def fake_results(rates, cpu, p99, git="a"):
    samples = []
    for r, c in zip(rates, cpu):
        samples.append(
            {
                "scenario": "engine",
                "kind": "throughput",
                "gen": {"conn_per_s": r},
                "server_cpu_us_per_conn": c,
                "sink_cpu_us_per_conn": None,
            }
        )
    for p in p99:
        samples.append(
            {"scenario": "engine", "kind": "latency50", "gen": {"latency_us": {"p99": p}}}
        )
    return records.from_json(
        records.Results,
        {"scenarios": ["engine"], "samples": samples, "environment": {"versions": {"git": git}}},
    )


class RoundOrderTest(unittest.TestCase):
    def test_mirrored_rounds_give_every_scenario_the_same_mean_slot(self):
        names = ["direct", "engine", "engine-sync", "engine-kernel"]
        slots = {n: 0 for n in names}
        for r in range(4):
            order = bench.round_order(names, r)
            self.assertEqual(sorted(order), sorted(names))
            for i, n in enumerate(order):
                slots[n] += i
        self.assertEqual(set(slots.values()), {6})
        self.assertEqual(bench.round_order(names, 1)[0], "engine-kernel")

    def test_lat_rounds_overrides_the_profile_within_bounds(self):
        self.assertEqual(bench.parse_args(["--lat-rounds", "12"]).lat_rounds, 12)
        self.assertIsNone(bench.parse_args([]).lat_rounds)
        for bad in ("0", "101", "x"):
            with self.assertRaises(SystemExit), open(os.devnull, "w") as null:
                saved, sys.stderr = sys.stderr, null
                try:
                    bench.parse_args(["--lat-rounds", bad])
                finally:
                    sys.stderr = saved


class PooledTailTest(unittest.TestCase):
    def test_pooled_quantile_adds_the_histograms(self):
        # 98 fast connections in one round, 2 slow in another: the pooled
        # p99 (rank 99 of 100, counted from 0) and p98 are the slow bucket,
        # the p97 the fast one, as the generator's own rule has it.
        rounds = [[[100, 98]], [[5000, 2]]]
        self.assertEqual(figures.pooled_quantile(rounds, 0.99), 5000)
        self.assertEqual(figures.pooled_quantile(rounds, 0.98), 5000)
        self.assertEqual(figures.pooled_quantile(rounds, 0.97), 100)
        self.assertIsNone(figures.pooled_quantile([[], None], 0.99))
        # One round pooled is that round's own quantile, by the same rule.
        one = [[100, 990], [5000, 10]]
        for q in (0.5, 0.98, 0.99, 0.999):
            self.assertEqual(
                figures.pooled_quantile([one], q), figures.histogram_quantile(one, 1000, 5000, q), q
            )

    def test_pooled_ratio_and_its_interval(self):
        # A twice B in every round: the ratio is 2 whichever rounds are drawn.
        pairs = [([[10, 98], [200, 2]], [[10, 98], [100, 2]]) for _ in range(8)]
        self.assertEqual(figures.pooled_ratio(pairs, 0.99), (2.0, 2.0, 2.0))
        # One round of eight with A's stall: the point says 2, the interval
        # reaches down to 1, where the draws leave that round out.
        pairs = [([[10, 98], [100, 2]], [[10, 98], [100, 2]]) for _ in range(7)]
        pairs.append(([[10, 90], [200, 10]], [[10, 98], [100, 2]]))
        ratio, low, high = figures.pooled_ratio(pairs, 0.99)
        self.assertEqual((ratio, low, high), (2.0, 1.0, 2.0))
        self.assertEqual(figures.pooled_ratio(pairs, 0.99), (ratio, low, high))  # seeded
        self.assertIsNone(figures.pooled_ratio(pairs[:1], 0.99))

    def test_rank_correlation(self):
        self.assertAlmostEqual(figures.rank_correlation([1, 2, 3, 4], [10, 20, 30, 1000]), 1.0)
        self.assertAlmostEqual(figures.rank_correlation([1, 2, 3], [3, 2, 1]), -1.0)
        # Ties share their mean rank: x ranks 0, 1.5, 1.5, 3 against y's 0-3.
        self.assertAlmostEqual(figures.rank_correlation([1, 5, 5, 9], [1, 2, 3, 4]), 0.9486833)
        self.assertIsNone(figures.rank_correlation([1, 1, 1], [1, 2, 3]))
        self.assertIsNone(figures.rank_correlation([1, 2], [1, 2]))

    def test_tail_shape(self):
        backends = ["a", "b", "a", "b"]  # target index -> backend
        # A stall: all ten started within 9 ms, seven of them to backend a.
        stall = [[1000 + i * 1000, 300, 900 + i, i % 2 * 2] for i in range(7)]
        stall += [[8000 + i * 500, 0, 700, 1] for i in range(3)]  # handshake not known
        # Spread: one start every 100 ms, so a 50 ms window holds one of ten.
        spread = [[i * 100_000, 100, 400, i % 4] for i in range(10)]
        t = figures.tail_shape([(stall, backends), (spread, backends), ([], backends)])
        self.assertEqual(t.kept, 20)
        self.assertAlmostEqual(t.densest_share, (1.0 + 0.1) / 2)
        self.assertEqual(t.handshake_us, 100)  # 7 of 300 and 10 of 100: median 100
        self.assertEqual(t.after_us, 300)  # 600-606 and 300 each
        self.assertEqual((t.top_backend, t.top_backend_share), ("a", 12 / 20))
        self.assertIsNone(figures.tail_shape([([], backends)]))

    def test_interference_snapshot_reads_this_machine(self):
        if not os.path.exists("/proc/net/softnet_stat"):
            self.skipTest("no /proc/net/softnet_stat here")
        before = interference.snapshot()
        self.assertNotIn(None, before[:2])
        steal_ms, squeezed, run_ms, wait_ms = interference.delta(before, interference.snapshot())
        self.assertGreaterEqual(steal_ms, 0)
        self.assertGreaterEqual(squeezed, 0)
        # ksoftirqd is not in /proc inside a PID namespace: then both are None.
        self.assertEqual(run_ms is None, wait_ms is None)
        if run_ms is not None:
            self.assertGreaterEqual(run_ms, 0)
            self.assertGreaterEqual(wait_ms, 0)
        self.assertEqual(
            interference.delta((None, 5, 1_000_000, None), (7, 9, 3_500_000, 4)),
            (None, 4, 2.5, None),
        )


class CompareTest(unittest.TestCase):
    def verdicts(self, old, new):
        return {(n, label): v for n, label, _a, _b, _c, v in compare.scenario_rows(old, new)}

    def test_overlapping_ranges_are_noise(self):
        v = self.verdicts(
            fake_results([100, 110, 120], [10, 11, 12], [500, 600]),
            fake_results([105, 115, 125], [10.5, 11, 11.5], [550, 650]),
        )
        self.assertEqual(v[("engine", "conn/s (closed loop)")], "within noise")
        self.assertEqual(v[("engine", "server CPU µs/conn")], "within noise")

    def test_disjoint_ranges_say_which_way(self):
        v = self.verdicts(
            fake_results([100, 110, 120], [10, 11, 12], [500, 600]),
            fake_results([150, 160, 170], [14, 15, 16], [100, 200]),
        )
        self.assertEqual(v[("engine", "conn/s (closed loop)")], "beyond noise: better")
        self.assertEqual(v[("engine", "server CPU µs/conn")], "beyond noise: WORSE")
        self.assertEqual(v[("engine", "p99 µs at 50% load")], "beyond noise: better")

    def test_single_values_have_no_spread(self):
        change, verdict = compare.judge([100], [200], +1)
        self.assertEqual(verdict, "no spread")
        self.assertAlmostEqual(change, 1.0)

    def test_load_rejects_what_is_not_a_results_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "results.json")
            with open(path, "w") as f:
                f.write('{"hello": 1}')
            _, err = compare.load(tmp)
            self.assertIn("not a results.json", err)
            _, err = compare.load(os.path.join(tmp, "missing.json"))
            self.assertIn("cannot read", err)

    def test_load_names_where_a_record_has_the_wrong_shape(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "results.json")
            with open(path, "w") as f:
                json.dump(
                    {"scenarios": ["engine"], "samples": [{"scenario": "engine", "gen": 5}]}, f
                )
            results, err = compare.load(path)
            self.assertIsNone(results)
            self.assertIn("samples[0]", err)  # the kind is missing
            with open(path, "w") as f:
                json.dump(
                    {"scenarios": ["e"], "samples": [{"scenario": "e", "kind": "t", "gen": 5}]}, f
                )
            _, err = compare.load(path)
            self.assertIn("samples[0].gen: expected an object for GenSummary, got int", err)

    def test_committed_results_read_back_to_the_same_json(self):
        path = os.path.join(sbxtest.ROOT, "bench", "results", "latest", "results.json")
        with open(path) as f:
            raw = json.load(f)
        results, err = compare.load(path)
        self.assertIsNone(err)
        self.assertIsInstance(results.samples[0], records.Sample)
        again = records.to_json(results)
        # Every key the file has comes back with its value (the records add
        # the fields an older file lacks, as None or empty).
        for old, new in zip(raw["samples"], again["samples"]):
            self.assertEqual(
                {k: new[k] for k in old if k != "gen"}, {k: old[k] for k in old if k != "gen"}
            )
            self.assertEqual({k: new["gen"][k] for k in old["gen"]}, old["gen"])
        self.assertEqual(again["capacity"], raw["capacity"])

    def test_microbenchmarks_through_gbench_compare(self):
        binary = os.path.join(BUILD, "bench", "hop_benchmark")
        if not os.path.exists(binary):
            self.skipTest("hop_benchmark not built (libbenchmark-dev missing)")
        if not os.path.exists(compare.GBENCH_COMPARE):
            self.skipTest("libbenchmark-tools not installed")
        r = subprocess.run(
            [
                binary,
                "--benchmark_format=json",
                "--benchmark_min_time=0.01",
                "--benchmark_repetitions=2",
                "--benchmark_filter=FdsPerMessage/16",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        raw = json.loads(r.stdout)
        old = fake_results([1, 2], [1, 2], [1, 2])
        new = copy.deepcopy(old)
        old.micro_raw = {"hop_benchmark": raw}
        new.micro_raw = {"hop_benchmark": raw}
        text = compare.report(old, new, "old")
        self.assertIn("BM_HopFdsPerMessage/16", text)
        self.assertIn("U Test", text)
        self.assertNotIn("compare.py failed", text)


class DocsWriterTest(unittest.TestCase):
    def test_replaces_only_the_marked_section(self):
        results = os.path.join(sbxtest.ROOT, "bench", "results", "latest")
        with tempfile.TemporaryDirectory() as tmp:
            os.makedirs(os.path.join(tmp, "docs"))
            doc = os.path.join(tmp, "docs", "benchmarks.md")
            with open(doc, "w") as f:
                f.write(
                    "# Title\nbefore\n<!-- BEGIN scripts/bench --write-docs: old -->\nstale figures\n"
                    "<!-- END scripts/bench --write-docs -->\nafter\n"
                )
            self.assertEqual(docs_writer.main(results, doc), 0)
            with open(doc) as f:
                text = f.read()
            self.assertTrue(text.startswith("# Title\nbefore\n<!-- BEGIN"))
            self.assertTrue(text.endswith("<!-- END scripts/bench --write-docs -->\nafter\n"))
            self.assertNotIn("stale figures", text)
            self.assertIn("| engine |", text)

    def test_no_markers_is_an_error(self):
        with tempfile.TemporaryDirectory() as tmp:
            doc = os.path.join(tmp, "benchmarks.md")
            with open(doc, "w") as f:
                f.write("# nothing to replace\n")
            results = os.path.join(sbxtest.ROOT, "bench", "results", "latest")
            self.assertEqual(docs_writer.main(results, doc), 1)


if __name__ == "__main__":
    sbxtest.run_tap(
        SearchTest,
        CpuCapTest,
        CpuCapBudgetTest,
        RoundOrderTest,
        PooledTailTest,
        CompareTest,
        DocsWriterTest,
    )
