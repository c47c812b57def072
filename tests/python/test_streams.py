"""No call hangs, no exit aborts: a live stream never blocks later calls on its Model (the later
call ends it, and resuming it raises a clear error), kv_stats() takes the Model's lock, and the
interpreter exits cleanly while daemon threads are inside engine calls. Every call here is
bounded in time, so a regression fails instead of hanging the suite."""

import os
import subprocess
import sys
import tempfile
import textwrap
import threading

import pytest
from test_helpers import bounded

import pyakvq

# Subprocesses run outside the repository, so `import pyakvq` finds the installed package (or the
# one on PYTHONPATH in a development setup), never the source tree's uncompiled copy via the cwd.
_NEUTRAL_CWD = tempfile.gettempdir()
# ... with a relative PYTHONPATH / AKVQ_EXT_DIR (a development setup run from the repository) made absolute.
_ENV = dict(os.environ)
if _ENV.get("PYTHONPATH"):
    _ENV["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in _ENV["PYTHONPATH"].split(os.pathsep) if p)
if _ENV.get("AKVQ_EXT_DIR"):
    _ENV["AKVQ_EXT_DIR"] = os.path.abspath(_ENV["AKVQ_EXT_DIR"])

TIMEOUT = 60  # seconds; a call that takes longer is taken as hung
PROMPT = "Once upon a time"
ENDED = "ended by a later call"


@pytest.fixture(scope="module")
def ref(smollm2_path):
    """Greedy outputs of a fresh model."""
    with pyakvq.Model(smollm2_path, n_ctx=256, n_threads=1) as m:
        return {
            "story": m.generate(PROMPT, max_tokens=12, temperature=0),
            "story_ids": m.generate_ids(PROMPT, max_tokens=12, temperature=0),
            "hi": m.generate("Hi", max_tokens=6, temperature=0),
            "sky": m.generate("The sky is", max_tokens=12, temperature=0),
        }


@pytest.fixture()
def model(smollm2_path):
    with pyakvq.Model(smollm2_path, n_ctx=256, n_threads=1) as m:
        yield m


def test_later_call_ends_a_paused_stream_same_thread(model, ref):
    it = model.generate(PROMPT, max_tokens=12, temperature=0, stream=True)
    first = bounded(next, it)
    assert first.id == ref["story_ids"][0]
    assert bounded(model.generate, "Hi", max_tokens=6, temperature=0) == ref["hi"]
    with pytest.raises(RuntimeError, match=ENDED):
        bounded(next, it)
    with pytest.raises(RuntimeError, match=ENDED):  # every resume says so
        bounded(next, it)
    # The Model is fine afterwards, and the result does not depend on the abandoned stream.
    assert bounded(model.generate, PROMPT, max_tokens=12, temperature=0) == ref["story"]


@pytest.mark.parametrize("call", ["eval", "logits", "chat", "stream"])
def test_every_cache_call_ends_the_stream(model, call):
    it = model.generate(PROMPT, max_tokens=12, temperature=0, stream=True)
    bounded(next, it)
    if call == "eval":
        bounded(model.eval, "Hi")
    elif call == "logits":
        bounded(model.logits, model.tokenize("Hi"))
    elif call == "chat":
        bounded(model.chat, "Hi", max_tokens=2, temperature=0)
    else:
        bounded(next, model.generate("Hi", max_tokens=2, temperature=0, stream=True))
    with pytest.raises(RuntimeError, match=ENDED):
        bounded(next, it)


def test_calls_that_do_not_touch_the_cache_keep_the_stream(model, ref):
    it = model.generate(PROMPT, max_tokens=12, temperature=0, stream=True)
    toks = [bounded(next, it)]
    assert bounded(model.tokenize, "Hello") and bounded(model.detokenize, [1, 2, 3]) is not None
    assert bounded(model.kv_stats)["n_tokens"] > 0
    assert model.render_chat("Hi") and model.info["n_ctx"] == 256
    toks += bounded(list, it)
    assert [t.id for t in toks] == ref["story_ids"]
    assert "".join(t.text for t in toks) == ref["story"]


def test_a_stream_that_has_not_started_is_not_ended(model, ref):
    it = model.generate("The sky is", max_tokens=12, temperature=0, stream=True)
    assert bounded(model.generate, "Hi", max_tokens=6, temperature=0) == ref["hi"]
    assert "".join(t.text for t in bounded(list, it)) == ref["sky"]  # it starts at its first next()


def test_two_streams_read_alternately(model, ref):
    a = model.generate(PROMPT, max_tokens=12, temperature=0, stream=True)
    b = model.generate("The sky is", max_tokens=12, temperature=0, stream=True)
    bounded(next, a)
    first_b = bounded(next, b)  # b takes over; a is ended
    with pytest.raises(RuntimeError, match=ENDED):
        bounded(next, a)
    rest = bounded(list, b)
    assert first_b.text + "".join(t.text for t in rest) == ref["sky"]
    assert b.finish_reason == "length"


def test_abandoned_streams_block_nothing(model, ref):
    for _ in range(3):
        it = model.generate(PROMPT, max_tokens=12, temperature=0, stream=True)
        bounded(next, it)
        del it
    it = model.generate(PROMPT, max_tokens=12, temperature=0, stream=True)
    bounded(next, it)
    it.close()
    assert list(it) == []
    assert bounded(model.generate, PROMPT, max_tokens=12, temperature=0) == ref["story"]


def test_close_and_with_exit_end_a_live_stream(smollm2_path):
    m = pyakvq.Model(smollm2_path, n_ctx=64, n_threads=1)
    it = m.generate(PROMPT, max_tokens=8, temperature=0, stream=True)
    bounded(next, it)
    bounded(m.close)
    assert it._gen is None  # the stream no longer keeps the closed Model's KV cache alive
    with pytest.raises(RuntimeError, match="closed"):
        bounded(next, it)
    bounded(m.close)  # twice is fine

    def leave_with():
        with pyakvq.Model(smollm2_path, n_ctx=64, n_threads=1) as m2:
            s = m2.generate(PROMPT, max_tokens=8, temperature=0, stream=True)
            next(s)
        return s

    s = bounded(leave_with)
    with pytest.raises(RuntimeError, match="closed"):
        bounded(next, s)
    # A stream created but never started on a Model that is then closed.
    m3 = pyakvq.Model(smollm2_path, n_ctx=64, n_threads=1)
    s3 = m3.generate(PROMPT, max_tokens=8, temperature=0, stream=True)
    m3.close()
    with pytest.raises(RuntimeError, match="closed"):
        bounded(next, s3)


def test_stream_paused_in_one_thread_does_not_block_another(model, ref):
    it = model.generate(PROMPT, max_tokens=12, temperature=0, stream=True)
    bounded(next, it)  # started (in a helper thread), now paused
    out = bounded(model.generate, "The sky is", max_tokens=12, temperature=0)  # another thread
    assert out == ref["sky"]
    with pytest.raises(RuntimeError, match=ENDED):
        bounded(next, it)


def test_concurrent_generations_are_serialised(model, ref):
    results, errors = [], []

    def work(prompt, key):
        try:
            results.append((key, model.generate(prompt, max_tokens=12, temperature=0)))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=work, args=p, daemon=True) for p in [(PROMPT, "story"), ("The sky is", "sky")] * 2]
    for t in ts:
        t.start()
    for t in ts:
        t.join(TIMEOUT)
        assert not t.is_alive(), "a generation hung"
    assert not errors
    assert sorted(results) == sorted((k, ref[k]) for k in ["story", "sky"] * 2)


def test_kv_stats_takes_the_model_lock(model):
    model.eval("Hello there")
    with model._lock:  # as held by a call in progress in another thread
        t = threading.Thread(target=model.kv_stats, daemon=True)
        t.start()
        t.join(0.5)
        assert t.is_alive(), "kv_stats() read the session without taking the Model's lock"
    t.join(TIMEOUT)
    assert not t.is_alive()


# ---- interpreter exit while daemon threads are inside engine calls ----

EXIT_SCRIPT = """
import threading, time
import pyakvq
m = pyakvq.Model({path!r}, n_ctx=512, n_threads=1)
ids = m.tokenize("word " * 300)
inside = threading.Event()

def stream():
    try:
        list(m.generate("Once upon a time", max_tokens=64, temperature=0, stream=True))
    except RuntimeError:  # ended by another thread's call: streams on one Model take turns
        pass

def work():
    while True:
        inside.set()
        {call}

for _ in range({n_threads}):
    threading.Thread(target=work, daemon=True).start()
inside.wait()
time.sleep({delay})
"""

CALLS = {
    "generate": 'm.generate("Once upon a time", max_tokens=64, temperature=0)',
    "stream": "stream()",
    "tokenize": 'm.tokenize("hello world " * 4000)',
    "logits": "m.logits(ids)",
    "eval": "m.eval(ids)",
    "kv_stats": "m.kv_stats()",
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("n_threads", [1, 3])
def test_exit_with_daemon_threads_inside_engine_calls(smollm2_path, call, n_threads):
    """Exiting used to abort ('terminate called without an active exception', exit 134) or to
    print nanobind leak warnings."""
    delay = 0.05 if n_threads == 1 else 0.3
    code = EXIT_SCRIPT.format(path=str(smollm2_path), call=CALLS[call], n_threads=n_threads, delay=delay)
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=_NEUTRAL_CWD,
        env=_ENV,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr == ""


def test_exit_with_a_paused_stream_and_an_idle_daemon_thread(smollm2_path):
    code = f"""
import threading, time
import pyakvq
m = pyakvq.Model({str(smollm2_path)!r}, n_ctx=128, n_threads=1)
it = m.generate("Once upon a time", max_tokens=64, temperature=0, stream=True)
next(it)

def idle():
    m2 = pyakvq.Model({str(smollm2_path)!r}, n_ctx=64, n_threads=1)  # held by a thread at exit
    time.sleep(3600)

threading.Thread(target=idle, daemon=True).start()
time.sleep(0.5)
"""
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=_NEUTRAL_CWD, env=_ENV
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr[-2000:]


def test_exit_without_threads_keeps_leak_checks(smollm2_path):
    """The exit hook turns nanobind's leak report off only when threads outlive the interpreter:
    a plain script still gets it (here nothing leaks, so nothing is printed either)."""
    code = f"""
import pyakvq
from pyakvq._ext import _akvq
m = pyakvq.Model({str(smollm2_path)!r}, n_ctx=64, n_threads=1)
m.generate("Hi", max_tokens=2, temperature=0)
assert not _akvq._shutting_down()
"""
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=_NEUTRAL_CWD, env=_ENV
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr[-2000:]
