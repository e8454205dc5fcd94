#!/usr/bin/env python3
"""Counts test results of one or more meson build directories (scripts/test
passes build, build-asan, build-fuzz and build-tsan).

Per test case where the runner reports cases (GoogleTest, through meson's
JUnit log), per test otherwise. A test that failed or timed out without a
failed case of its own (a crash, a sanitizer abort) still counts as one
failure. A directory without a test log (its phase never ran) counts as
one failure. Prints "passed failed skipped" as three numbers; with
--failed FILE, writes the name of each failed test there, a line each (the
CI log shows only its tail: scripts/test prints them just before the
summary), each followed by its failed cases, with the exception of each
Python case, which may be all a CI log's tail shows of a rare failure.
"""
import json
import re
import sys
import xml.etree.ElementTree as ET

# At most this many failed cases per test, each line at most this long.
MAX_CASES = 5
MAX_LINE = 300
FAILURE_MARK = "# failure: "


def failed_cases(output):
    """Lines naming each failed case in a test's output: TAP's "not ok N -
    name" with the first "# failure: ..." line after it (tests/lib/sbxtest.py
    ends each failure's traceback with one: the exception's first line), or
    GoogleTest's "[  FAILED  ] Suite.Case" (parameterized ones too), named
    only."""
    cases = []
    current = None
    for line in output.splitlines():
        if re.match(r"(not )?ok \d+", line):
            current = None
            if line.startswith("not ok"):
                current = [line.split(" - ", 1)[-1], ""]
                cases.append(current)
        elif current is not None and line.startswith(FAILURE_MARK) and not current[1]:
            current[1] = line[len(FAILURE_MARK) :].strip()
        else:
            # The line with its time, not the list at the end.
            m = re.match(r"\[  FAILED  \] (\S+\.\S+?)(?:, where .*)? \(\d+ ms\)$", line)
            if m:
                cases.append([m.group(1), ""])
    lines = [f"  {name}: {last}" if last else f"  {name}" for name, last in cases[:MAX_CASES]]
    if len(cases) > MAX_CASES:
        lines.append(f"  ... and {len(cases) - MAX_CASES} more")
    return [l if len(l) <= MAX_LINE else l[: MAX_LINE - 3] + "..." for l in lines]


def count(build_dir, failures):
    passed = failed = skipped = 0
    cases = {}
    try:
        root = ET.parse(f"{build_dir}/meson-logs/testlog.junit.xml").getroot()
    except (OSError, ET.ParseError):
        root = None
    if root is not None:
        for suite in root.iter("testsuite"):
            parts = suite.get("name", "").split(".")
            test = parts[1] if len(parts) > 1 else suite.get("name", "")
            c = cases.setdefault(test, [0, 0, 0])
            for case in suite.iter("testcase"):
                tags = {child.tag for child in case}
                if tags & {"failure", "error"}:
                    c[1] += 1
                elif "skipped" in tags:
                    c[2] += 1
                else:
                    c[0] += 1
    try:
        f = open(f"{build_dir}/meson-logs/testlog.json")
    except OSError as e:
        print(f"summarize_tests: {build_dir}: no test log ({e.strerror})", file=sys.stderr)
        failures.append(f"{build_dir}: no test log")
        return 0, 1, 0
    with f:
        for line in f:
            entry = json.loads(line)
            name, result = entry["name"], entry["result"]
            c = cases.get(name)
            if result == "SKIP":
                skipped += 1
                continue
            if c and sum(c) > 0 and entry.get("protocol", "") != "exitcode":
                passed += c[0]
                lost = c[1] if result in ("OK", "EXPECTEDFAIL") or c[1] else max(c[1], 1)
                failed += lost
                skipped += c[2]
            elif result in ("OK", "EXPECTEDFAIL"):
                passed += 1
                lost = 0
            else:
                failed += 1
                lost = 1
            if lost:
                failures.append(f"{build_dir}: {name} ({result}, {lost} failed)")
                failures += failed_cases(entry.get("stdout") or "")
    return passed, failed, skipped


args = sys.argv[1:]
failed_file = None
if len(args) >= 2 and args[0] == "--failed":
    failed_file, args = args[1], args[2:]
totals = [0, 0, 0]
failures = []
for d in args:
    for i, n in enumerate(count(d, failures)):
        totals[i] += n
if failed_file:
    with open(failed_file, "w") as f:
        f.writelines(line + "\n" for line in failures)
print(*totals)
