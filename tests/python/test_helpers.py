"""Helpers shared by the Python tests (not a test module: pytest collects no tests here)."""

import os
import pathlib
import shutil
import subprocess
import threading

import pytest

__test__ = False


def cli() -> str:
    """The akvq-cli binary: $AKVQ_CLI, else the one on PATH, else the one in $AKVQ_EXT_DIR."""
    exe = os.environ.get("AKVQ_CLI") or shutil.which("akvq-cli")
    if exe is None:
        ext = os.environ.get("AKVQ_EXT_DIR")
        if ext and (pathlib.Path(ext) / "akvq-cli").exists():
            exe = str(pathlib.Path(ext) / "akvq-cli")
    if exe is None:
        pytest.fail("akvq-cli is not on PATH (pip install . puts it there)")
    return exe


def bounded(fn, *args, timeout: float = 60, **kw):
    """Runs fn(*args, **kw) in a daemon thread and returns its result (or raises its error);
    fails the test if it does not return within `timeout` seconds (the thread is left behind)."""
    box = {}

    def work():
        try:
            box["value"] = fn(*args, **kw)
        except BaseException as e:  # noqa: BLE001
            box["error"] = e

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not return within {timeout} s (hung)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def cosine(a, b) -> float:
    """Cosine similarity of two arrays of any shape (flattened, in float64)."""
    import numpy as np

    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def interrupt_after(cmd, ready, timeout=120, env=None, cwd=None):
    """Runs the command cmd (a list), sends it SIGINT once ready(stdout bytes so far) holds (or after
    30 s), and returns (status, stdout, stderr, seconds from the signal to the exit)."""
    import select
    import signal
    import time

    # SIGINT as a terminal's foreground job has it: a run started in the background (nohup ... &)
    # passes SIGINT ignored to its children, which then keep it ignored
    p = subprocess.Popen(
        list(map(str, cmd)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    out = b""
    t0 = time.monotonic()
    try:
        while not ready(out) and time.monotonic() - t0 < 30 and p.poll() is None:
            if select.select([p.stdout], [], [], 0.1)[0]:
                out += os.read(p.stdout.fileno(), 4096)
        assert p.poll() is None, f"{cmd[0]} ended before the signal: {p.returncode}, {p.stderr.read().decode()}"
        p.send_signal(signal.SIGINT)
        t_sig = time.monotonic()
        rest, err = p.communicate(timeout=timeout)
        return p.returncode, out + rest, err.decode(), time.monotonic() - t_sig
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


def elapsed(seconds):
    """A ready() for interrupt_after: true once `seconds` have passed since this call."""
    import time

    t0 = time.monotonic()
    return lambda _out: time.monotonic() - t0 >= seconds
