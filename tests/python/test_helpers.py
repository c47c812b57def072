"""Helpers shared by the Python tests (not a test module: pytest collects no tests here)."""

import os
import pathlib
import shutil
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
