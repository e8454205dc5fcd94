"""Every documented option combination configures (meson setup) and has a
complete build plan (ninja -n); the release build a packager makes
(--buildtype=release -Dtests=disabled -Dbenchmarks=disabled, GCC at -O3)
compiles even with -Dwerror=true. The default build is the one the suites
run in; the Debian package build is tests/package/deb_test.py."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import sbxtest  # noqa: E402

COMBINATIONS = {
    "defaults": [],
    "release": ["--buildtype=release"],
    "tests_disabled": ["-Dtests=disabled"],
    "benchmarks_disabled": ["-Dbenchmarks=disabled"],
    "packager": ["--buildtype=release", "-Dtests=disabled", "-Dbenchmarks=disabled"],
    "no_units": ["-Dsystemdunitdir=no"],
}


class ConfigureTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sbx-configure-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def setup(self, name, options):
        build = os.path.join(self.tmp, name)
        r = subprocess.run(
            ["meson", "setup", build, sbxtest.ROOT] + options, capture_output=True, text=True
        )
        self.assertEqual(
            r.returncode, 0, f"meson setup {' '.join(options)}:\n{r.stdout[-3000:]}{r.stderr}"
        )
        return build

    def test_every_combination_configures_with_a_complete_plan(self):
        for name, options in COMBINATIONS.items():
            with self.subTest(name):
                build = self.setup(name, options)
                r = subprocess.run(["ninja", "-C", build, "-n"], capture_output=True, text=True)
                self.assertEqual(
                    r.returncode, 0, f"{name}: ninja -n:\n{r.stdout[-2000:]}{r.stderr}"
                )
                shutil.rmtree(build)

    def test_tests_disabled_registers_no_tests(self):
        build = self.setup("notests", ["-Dtests=disabled"])
        r = subprocess.run(
            ["meson", "introspect", "--tests", build], capture_output=True, text=True
        )
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "[]"), r.stderr)

    def test_packager_release_build_compiles_with_werror(self):
        build = self.setup("release", COMBINATIONS["packager"] + ["-Dwerror=true"])
        r = subprocess.run(["ninja", "-C", build, "-j2"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout[-4000:])


if __name__ == "__main__":
    sbxtest.run_tap(ConfigureTest)
