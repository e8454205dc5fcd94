"""scripts/lib/summarize_tests.py on made-up meson logs: the counts, and the
failed cases named with their last diagnostic line (what a CI log's tail
shows of a failure)."""
import json
import os
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
# AssertionError: 4 != 5
ok 3 - KernelDispatchTest.test_three
"""

GTEST_FAILED = """[ RUN      ] RingTest.Submits
x.cc:10: Failure
[  FAILED  ] RingTest.Submits (3 ms)
[==========] 1 test ran.
[  FAILED  ] RingTest.Submits
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
                "  KernelDispatchTest.test_two: AssertionError: 4 != 5",
            ],
        )

    def test_a_failed_googletest_case_is_named_once_per_report_line(self):
        _, failed = self.summarize(
            [{"name": "s:unit / ring", "result": "FAIL", "stdout": GTEST_FAILED}]
        )
        self.assertEqual(failed[1:], ["  RingTest.Submits"])

    def test_many_failures_and_long_lines_are_bounded(self):
        out = "".join(f"not ok {i} - Case.test_{i}\n# {'x' * 1000}\n" for i in range(1, 9))
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


if __name__ == "__main__":
    sbxtest.run_tap(SummarizeTest)
