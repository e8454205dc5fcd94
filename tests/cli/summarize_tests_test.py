"""scripts/lib/summarize_tests.py on made-up meson logs: the counts, and the
failed cases named with their last diagnostic line (what a CI log's tail
shows of a failure)."""
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import sbxtest  # noqa: E402

SCRIPT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "lib", "summarize_tests.py"
)

TAP_FAILED = """1..3
ok 1 - KernelDispatchTest.test_one
not ok 2 - KernelDispatchTest.test_two
# Traceback (most recent call last):
#   File "x.py", line 5, in test_two
#     self.assertEqual(ks["reclaimed"], 5)
# AssertionError: 4 != 5 : engine log:
# the engine's last line
# failure: AssertionError: 4 != 5 : engine log:
# version 1.2 (printed by the next case)
ok 3 - KernelDispatchTest.test_three
"""

GTEST_FAILED = """[ RUN      ] RingTest.Submits
x.cc:10: Failure
[  FAILED  ] RingTest.Submits (3 ms)
[  FAILED  ] Sizes/FdTest.Passes/2, where GetParam() = 64 (1 ms)
[==========] 2 tests ran.
[  FAILED  ] RingTest.Submits
[  FAILED  ] Sizes/FdTest.Passes/2, where GetParam() = 64
"""


class SummarizeTest(unittest.TestCase):
    def summarize(self, entries):
        d = tempfile.mkdtemp(prefix="sbx-summary-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", d]))
        os.mkdir(os.path.join(d, "meson-logs"))
        with open(os.path.join(d, "meson-logs", "testlog.json"), "w") as f:
            for e in entries:
                f.write(json.dumps(e) + "\n")
        failed = os.path.join(d, "failed.txt")
        out = subprocess.run(
            [sys.executable, SCRIPT, "--failed", failed, d],
            capture_output=True,
            text=True,
            check=True,
        )
        with open(failed) as f:
            return out.stdout.split(), f.read().replace(d, "DIR").splitlines()

    def test_a_failed_tap_case_is_named_with_its_assertion(self):
        counts, failed = self.summarize(
            [{"name": "s:engine / kd", "result": "ERROR", "stdout": TAP_FAILED}]
        )
        self.assertEqual(counts, ["0", "1", "0"])
        self.assertEqual(
            failed,
            [
                "DIR: s:engine / kd (ERROR, 1 failed)",
                "  KernelDispatchTest.test_two: AssertionError: 4 != 5 : engine log:",
            ],
        )

    def test_a_failed_googletest_case_is_named_once_per_report_line(self):
        _, failed = self.summarize(
            [{"name": "s:unit / ring", "result": "FAIL", "stdout": GTEST_FAILED}]
        )
        self.assertEqual(failed[1:], ["  RingTest.Submits", "  Sizes/FdTest.Passes/2"])

    def test_many_failures_and_long_lines_are_bounded(self):
        out = "".join(f"not ok {i} - Case.test_{i}\n# failure: {'x' * 1000}\n" for i in range(1, 9))
        _, failed = self.summarize([{"name": "t", "result": "ERROR", "stdout": out}])
        self.assertEqual(len(failed), 1 + 5 + 1)
        self.assertEqual(failed[-1], "  ... and 3 more")
        self.assertTrue(all(len(l) <= 300 for l in failed))
        self.assertTrue(failed[1].endswith("..."))

    def test_passing_tests_name_nothing(self):
        counts, failed = self.summarize(
            [
                {"name": "a", "result": "OK", "stdout": "ok 1 - A.test\n"},
                {"name": "b", "result": "SKIP", "stdout": "1..0 # SKIP no root\n"},
            ]
        )
        self.assertEqual((counts, failed), (["1", "0", "1"], []))

    def test_sbxtest_tap_names_failed_subtests_and_fixtures_and_keeps_to_its_plan(self):
        # tests/lib/sbxtest.py's TAP: one line per test method whatever its
        # subtests or its class's set-up did, and each failure's exception
        # quoted in the summary.
        script = os.path.join(tempfile.mkdtemp(prefix="sbx-tap-"), "t.py")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", os.path.dirname(script)]))
        with open(script, "w") as f:
            f.write(TAP_SCRIPT.replace("LIB", os.path.dirname(sbxtest.__file__)))
        run = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=60)
        self.assertEqual(run.returncode, 1, run.stderr)
        results = [l for l in run.stdout.splitlines() if re.match(r"(not )?ok \d+", l)]
        self.assertEqual(
            results,
            [
                "ok 1 - T.test_a_passes",
                "not ok 2 - T.test_b_subtest_fails",
                "ok 3 - T.test_c_subtest_skips",
                "ok 4 - T.test_d_skips # SKIP no root",
                "not ok 5 - T.test_e_fails_with_a_log",
                "ok 6 - NotInstalled.test_one # SKIP sshd is not installed",
                "ok 7 - NotInstalled.test_two # SKIP sshd is not installed",
                "not ok 8 - Broken.test_it",
            ],
        )
        self.assertTrue(run.stdout.startswith("1..8\n"))
        _, failed = self.summarize([{"name": "t", "result": "ERROR", "stdout": run.stdout}])
        self.assertEqual(
            failed[1:],
            [
                "  T.test_b_subtest_fails: AssertionError: 1 == 1 (i=1)",
                "  T.test_e_fails_with_a_log: AssertionError: 4 != 5 : log:",
                "  Broken.test_it: RuntimeError: no package (setUpClass (__main__.Broken))",
            ],
        )


TAP_SCRIPT = """import sys, unittest
sys.path.insert(0, "LIB")
import sbxtest
class T(unittest.TestCase):
    def test_a_passes(self):
        pass
    def test_b_subtest_fails(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertNotEqual(i, 1)
    def test_c_subtest_skips(self):
        with self.subTest(k=1):
            self.skipTest("lacks x")
    def test_d_skips(self):
        self.skipTest("no root")
    def test_e_fails_with_a_log(self):
        self.assertEqual(4, 5, "log:\\nfirst\\nlast")
class NotInstalled(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        raise unittest.SkipTest("sshd is not installed")
    def test_one(self):
        pass
    def test_two(self):
        pass
class Broken(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        raise RuntimeError("no package")
    def test_it(self):
        pass
sbxtest.run_tap(T, NotInstalled, Broken)
"""


if __name__ == "__main__":
    sbxtest.run_tap(SummarizeTest)
