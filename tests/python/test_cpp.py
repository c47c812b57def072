"""Runs the C++ unit tests (gtest, built with ASan + UBSan) as part of the pytest run."""

import os
import subprocess


def test_cpp_unit_tests(cpp_build):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    r = subprocess.run([str(cpp_build / "akvq_tests"), "--gtest_brief=1"], capture_output=True, text=True, env=env)
    out = r.stdout[-20000:] + r.stderr[-20000:]
    assert r.returncode == 0, out
    assert "runtime error" not in r.stderr, out  # UBSan findings
    assert "PASSED" in r.stdout, out
