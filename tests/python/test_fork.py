"""os.fork() after a Model was made (gunicorn --preload, plain fork workers): the child exits, drops,
closes or uses the Model without hanging or crashing, whatever the parent's threads were doing.
Each case runs in a subprocess of its own (the child is forked there, not from pytest), with a
deadline: before the fix the child hung in the thread pool's destructor (2–3 threads), crashed in
its join (4–8 threads), waited for ever on a lock or an exit hook when another thread was inside
a call, and an inherited BatchEngine never answered."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")

TIMEOUT = 60  # seconds for a whole script (each runs in ~1 s)

PRELUDE = """
import os, sys, threading, time
import pyakvq

def fork_and_wait(child, limit=20.0):
    # runs child() in a forked child (then exits it as a program would: sys.exit, atexit hooks,
    # finalization); returns its exit code, or 'hung'
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            child()
        except BaseException as e:
            print("child error:", type(e).__name__, e, flush=True)
            code = 3
        sys.exit(code)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        r, st = os.waitpid(pid, os.WNOHANG)
        if r:
            return os.waitstatus_to_exitcode(st)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"
"""


def run(body: str, smollm2_path) -> str:
    """Runs PRELUDE + body with M = the model path; returns stdout (asserting exit status 0)."""
    import pyakvq

    env = dict(os.environ, M=str(smollm2_path))
    code = PRELUDE + textwrap.dedent(body)
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(pyakvq.__file__))),
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "leaked" not in r.stderr, r.stderr  # nanobind's report: nothing in the parent
    return r.stdout


@pytest.mark.parametrize("n_threads", [1, 2, 4, 8])
def test_a_child_exits_drops_closes_and_uses_the_model(smollm2_path, n_threads):
    out = run(
        f"""
        m = pyakvq.Model(os.environ["M"], n_ctx=256, n_threads={n_threads})
        P = "The capital of France is"
        ref = m.generate(P, max_tokens=8, temperature=0)
        def use():
            got = m.generate(P, max_tokens=8, temperature=0)
            assert got == ref, (got, ref)  # the child runs the pool's tasks on its one thread
        def drop():
            global m
            del m
        print("exit", fork_and_wait(lambda: None))
        print("use", fork_and_wait(use))
        print("close", fork_and_wait(lambda: m.close()))
        print("drop", fork_and_wait(drop))
        print("parent", m.generate(P, max_tokens=8, temperature=0) == ref)
        """,
        smollm2_path,
    )
    assert out.split() == ["exit", "0", "use", "0", "close", "0", "drop", "0", "parent", "True"], out


def test_a_model_busy_in_another_thread_at_the_fork_is_refused_in_the_child(smollm2_path):
    """The lock that thread held is not the child's problem: a call raises RuntimeError naming
    why, a new Model works, and the child exits (the exit hook does not wait for the thread)."""
    out = run(
        """
        m = pyakvq.Model(os.environ["M"], n_ctx=512)
        stop = False
        inside = threading.Event()
        def busy():
            while not stop:
                inside.set()
                m.generate("Once upon a time " * 20, max_tokens=16, temperature=0)
        t = threading.Thread(target=busy, daemon=True)
        t.start()
        inside.wait()
        time.sleep(0.2)
        def child():
            try:
                m.generate("Hi", max_tokens=2, temperature=0)
                print("child: no error", flush=True)
            except RuntimeError as e:
                print("child:", "forked" in str(e) and "load the model again" in str(e), flush=True)
            m2 = pyakvq.Model(os.environ["M"], n_ctx=64)
            print("child new:", len(m2.generate("Hi", max_tokens=2, temperature=0)) > 0, flush=True)
        codes = [fork_and_wait(child) for _ in range(3)]
        stop = True
        t.join()
        print("codes", codes)
        """,
        smollm2_path,
    )
    # the busy thread may be between two calls at a fork: then the child's call simply works
    lines = out.splitlines()
    assert lines[-1] == "codes [0, 0, 0]", out
    assert all(x in ("child: True", "child: no error", "child new: True") for x in lines[:-1]), out
    assert "child: True" in lines, out


def test_an_inherited_batch_engine_says_so(smollm2_path):
    """A BatchEngine's worker thread is not in the child: submit raises RuntimeError, a stream that
    was running ends with it instead of waiting for ever, and closing or dropping it returns."""
    out = run(
        """
        from pyakvq.batch import BatchEngine
        m = pyakvq.Model(os.environ["M"], n_ctx=512)
        eng = BatchEngine(m, n_parallel=2)
        print("parent", len(eng.submit("Hi", max_tokens=4, temperature=0).text()) > 0)
        running = eng.submit("1, 2, 3,", max_tokens=400, temperature=0)
        next(running)
        def child():
            for what, f in (("submit", lambda: eng.submit("Hi", max_tokens=2)), ("stream", running.text)):
                try:
                    f()
                    print(what, "no error", flush=True)
                except RuntimeError as e:
                    print(what, "forked" in str(e), flush=True)
            eng.close()
        print("code", fork_and_wait(child))
        running.cancel()
        eng.close()
        """,
        smollm2_path,
    )
    assert out.split() == ["parent", "True", "submit", "True", "stream", "True", "code", "0"], out


def test_closing_the_engine_and_the_model_frees_the_weights(smollm2_path):
    """BatchEngine.close() lets go of the engine's hold on the weights: with the Model closed too,
    the file is unmapped at once though the engine object lives on (stats() keeps its figures)."""
    out = run(
        """
        from pyakvq.batch import BatchEngine
        path = os.path.realpath(os.environ["M"])
        def mapped():
            with open("/proc/self/maps") as f:
                return sum(path in line for line in f)
        m = pyakvq.Model(os.environ["M"], n_ctx=256)
        eng = BatchEngine(m, n_parallel=2)
        eng.submit("Hi", max_tokens=3, temperature=0).text()
        before = mapped()
        eng.close()
        m.close()
        print(before > 0, mapped(), eng.stats()["requests_total"])
        """,
        smollm2_path,
    )
    assert out.split() == ["True", "0", "1"], out
