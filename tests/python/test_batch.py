"""Batched decoding (pyakvq.batch, Model.generate_batch): every request gets exactly the tokens a
sequential Model.generate gives it, in every KV mode, on SmolLM2 and on the demo VLM with images;
random call sequences (submit, cancel, consume, from threads and asyncio) keep that property;
logprobs against the model's own logits; the memory budget of the 2-bit cache."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyakvq
from pyakvq.batch import BatchEngine, QueueFull

MODES = ["f16", "q8", "q4", "q2", "kivi2", "wht2", "akvq2", "akvq4"]
PROMPTS = [
    "The capital of France is",
    "1, 2, 3, 4,",
    "Once upon a time, in a small village by the sea, there lived",
    "def fibonacci(n):",
    "The three primary colors are",
]
# small windows so that the quantized stores take part within these short prompts
OPTS = {"akvq2": {"window": 8, "pivots": 2}, "akvq4": {"window": 8, "pivots": 2}, "kivi2": {"window": 8}}
EXAMPLES = ["red_circle.png", "blue_square.png", "green_triangle.png", "purple_circle_wide.png"]


@pytest.mark.parametrize("kv", MODES)
def test_generate_batch_equals_generate_smollm2(smollm2_path, kv):
    m = pyakvq.Model(smollm2_path, n_ctx=256, kv=kv, kv_options=OPTS.get(kv), n_threads=2, n_batch=16)
    want = [m.generate(p, max_tokens=14, temperature=0) for p in PROMPTS]
    got = m.generate_batch(PROMPTS, max_tokens=14, temperature=0, n_parallel=3)  # joins and leaves
    assert got == want


def test_sampled_requests_follow_their_seeds(smollm2_path):
    m = pyakvq.Model(smollm2_path, n_ctx=256, n_threads=2)
    kw = dict(max_tokens=12, temperature=0.9, top_k=0, top_p=1.0)
    want = [m.generate(p, seed=7 + i, **kw) for i, p in enumerate(PROMPTS)]
    with BatchEngine(m, n_parallel=4) as eng:
        streams = [eng.submit(p, seed=7 + i, **kw) for i, p in enumerate(PROMPTS)]
        assert [s.text() for s in streams] == want
        assert [s.seed for s in streams] == [7 + i for i in range(len(PROMPTS))]


@pytest.fixture(scope="module")
def demo():
    return pyakvq.Model(n_ctx=1024, n_threads=2)


@pytest.fixture(scope="module")
def demo_inputs(demo):
    root = pyakvq.demo_model_path().parents[2] / "examples"
    if not (root / EXAMPLES[0]).exists():  # the repository's examples
        import pathlib

        root = pathlib.Path(__file__).resolve().parents[2] / "examples"
    questions = ["What color is the shape?", "What shape is it?", "Where is the shape?", "Describe the image."]
    return [demo._chat_input(q, images=[str(root / f)]) for q in questions for f in EXAMPLES]


@pytest.mark.parametrize("kv", ["f16", "akvq2", "q2"])
def test_demo_vlm_batched_with_images(demo, demo_inputs, kv):
    m = pyakvq.Model(n_ctx=1024, n_threads=2, kv=kv)
    want = [m.generate(p, max_tokens=12, temperature=0) for p in demo_inputs]
    got = m.generate_batch(demo_inputs, max_tokens=12, temperature=0, n_parallel=8)
    assert got == want
    if kv == "f16":  # and the answers are right: the demo model reads the images
        colors = [w for w in want[:4]]
        for c, f in zip(colors, EXAMPLES, strict=True):
            assert f.split("_")[0] in c.lower()


def test_logprobs_are_the_models_log_softmax(smollm2_path):
    m = pyakvq.Model(smollm2_path, n_ctx=256, n_threads=2)
    prompt = "The capital of France is"
    toks = list(m.generate(prompt, max_tokens=3, temperature=0, stream=True, logprobs=5))
    ids = m.tokenize(prompt)
    for t in toks:
        logits = m.eval(ids).astype(np.float64)
        ref = logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
        assert t.logprob == pytest.approx(ref[t.id], abs=1e-4)
        top = np.argsort(-ref, kind="stable")[:5]
        assert [i for i, _ in t.top_logprobs] == list(top)
        assert [lp for _, lp in t.top_logprobs] == pytest.approx(list(ref[top]), abs=1e-4)
        assert t.top_logprobs[0][0] == t.id  # greedy picks the most likely token
        ids.append(t.id)
    none = list(m.generate(prompt, max_tokens=2, temperature=0, stream=True))
    assert all(t.logprob is None and t.top_logprobs is None for t in none)
    with pytest.raises(ValueError, match="logprobs"):
        m.generate(prompt, logprobs=21)


def test_akvq2_fits_three_times_the_sequences_of_f16(smollm2_path):
    m = pyakvq.Model(smollm2_path, n_ctx=4096, n_threads=2)
    f16 = BatchEngine(m, n_parallel=1024, kv="f16", kv_memory=1 << 30)
    a2 = BatchEngine(m, n_parallel=1024, kv="akvq2", kv_memory=1 << 30)
    try:
        assert f16.kv_bytes_per_sequence == 4096 * 30 * 3 * 64 * 2 * 2  # layers, kv heads, head_dim, K+V, bytes
        assert a2.n_slots >= 3 * f16.n_slots
        assert f16.n_slots == (1 << 30) // f16.kv_bytes_per_sequence
    finally:
        f16.close()
        a2.close()
    with pytest.raises(ValueError, match="holds no sequence"):
        BatchEngine(m, kv="f16", kv_memory=1000)


def test_queue_full_and_bad_requests(demo, demo_inputs):
    with BatchEngine(demo, n_parallel=1, max_queue=0) as eng:
        first = eng.submit(demo_inputs[0], max_tokens=200, stop=["never"])  # takes the slot
        with pytest.raises(QueueFull, match="queue is full"):
            eng.submit(demo_inputs[0], max_tokens=4)
        first.cancel()
        with pytest.raises(ValueError, match="max_tokens"):
            eng.submit(demo_inputs[0], max_tokens=-2)
        with pytest.raises(ValueError, match="context"):
            eng.submit([5] * 2000)
    with pytest.raises(RuntimeError, match="closed"):
        eng.submit(demo_inputs[0])


def test_asyncio_streams(demo, demo_inputs):
    want = [demo.generate(p, max_tokens=10, temperature=0) for p in demo_inputs[:6]]

    async def main(eng):
        async def one(p):
            return "".join([t.text async for t in eng.submit(p, max_tokens=10, temperature=0)])

        return await asyncio.gather(*(one(p) for p in demo_inputs[:6]))

    with BatchEngine(demo, n_parallel=4) as eng:
        assert asyncio.run(asyncio.wait_for(main(eng), 60)) == want


def test_cancelled_asyncio_task_cancels_its_request(smollm2_path):
    """A task cancelled while it awaits a token (a client gone, asyncio.wait_for's timeout) frees
    the slot at once: the next request runs with n_parallel=1 and no queue."""
    count = "1, 2, 3, 4, 5,"  # SmolLM2 counts on greedily for hundreds of tokens

    async def freed(eng):  # the slot is freed at the next step boundary
        for _ in range(500):
            if eng.stats()["requests_running"] == 0:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"the cancelled request still runs: {eng.stats()}")

    async def main(eng):
        async def consume():
            async for _ in eng.submit(count, max_tokens=400, temperature=0):
                pass

        t = asyncio.create_task(consume())
        while eng.stats()["generated_tokens_total"] < 2:
            await asyncio.sleep(0.01)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        # the slot counts as free at once (the next step drops the request before it admits)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(eng.submit(count, max_tokens=400, temperature=0).__anext__(), 1e-4)
        await freed(eng)
        return "".join([tok.text async for tok in eng.submit(count, max_tokens=6, temperature=0)])

    with pyakvq.Model(str(smollm2_path), n_ctx=512, n_threads=2) as m, BatchEngine(m, n_parallel=1, max_queue=0) as eng:
        got = asyncio.run(asyncio.wait_for(main(eng), 60))
        assert got == m.generate(count, max_tokens=6, temperature=0)
        assert eng.stats()["requests_running"] == 0


_REF: dict[tuple, tuple[str, str]] = {}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["submit", "cancel", "read"]),
            st.integers(0, 15),
            st.integers(0, 6),
        ),
        min_size=1,
        max_size=14,
    ),
    n_parallel=st.integers(1, 4),
)
def test_random_call_sequences_keep_every_answer(demo, demo_inputs, ops, n_parallel):
    """Random interleavings of submit / cancel / partial reads: every request that runs to its
    end has the sequential answer; cancelled ones stop; the engine ends idle."""

    def ref(i, n):
        key = (i, n)
        if key not in _REF:
            toks = list(demo.generate(demo_inputs[i], max_tokens=n, temperature=0, stream=True))
            _REF[key] = ("".join(t.text for t in toks), toks[-1].finish_reason if toks else "length")
        return _REF[key]

    with BatchEngine(demo, n_parallel=n_parallel, max_queue=64) as eng:
        live = []  # (stream, input index, max_tokens, text so far)
        cancelled = []
        for op, i, n in ops:
            if op == "submit":
                live.append([eng.submit(demo_inputs[i], max_tokens=n + 1, temperature=0), i, n + 1, ""])
            elif op == "cancel" and live:
                s = live.pop(i % len(live))[0]
                s.cancel()
                cancelled.append(s)
            elif op == "read" and live:
                rec = live[i % len(live)]
                for _ in range(n):
                    tok = next(rec[0], None)
                    if tok is None:
                        break
                    rec[3] += tok.text
        for s, i, n, text in live:
            text += "".join(t.text for t in s)
            assert (text, s.finish_reason) == ref(i, n)
        for s in cancelled:
            assert list(s) == []  # nothing more after the cancel
        st_ = eng.stats()
    assert st_["requests_running"] == 0 and st_["requests_queued"] == 0


def test_an_engine_nobody_holds_stops_its_worker(demo, demo_inputs):
    import gc

    eng = BatchEngine(demo, n_parallel=2)
    worker = eng._thread
    s = eng.submit(demo_inputs[0], max_tokens=4, temperature=0)
    assert s.text() == demo.generate(demo_inputs[0], max_tokens=4, temperature=0)
    del eng, s
    gc.collect()
    worker.join(timeout=10)
    assert not worker.is_alive()


def test_a_stream_nobody_holds_is_cancelled(smollm2_path):
    """A stream dropped mid-generation (its owner went away without cancel()) gives its slot back
    at once, and an engine dropped with a stream running stops. Both ran to the end: the worker
    held every stream, so neither could be collected (the next request waited 14-19 s for the one
    slot)."""
    import gc

    count = "1, 2, 3, 4, 5,"  # SmolLM2 counts on greedily for hundreds of tokens
    with pyakvq.Model(str(smollm2_path), n_ctx=2048, n_threads=2) as m:
        with BatchEngine(m, n_parallel=1, max_queue=1) as eng:
            s = eng.submit(count, max_tokens=1500, temperature=0)
            next(s)
            del s
            gc.collect()
            got = eng.submit(count, max_tokens=6, temperature=0).text()  # the one slot, free again
            assert got == m.generate(count, max_tokens=6, temperature=0)
            assert eng.stats()["generated_tokens_total"] < 200, eng.stats()
        eng = BatchEngine(m, n_parallel=1)
        worker = eng._thread
        s = eng.submit(count, max_tokens=1500, temperature=0)
        next(s)
        del eng, s
        gc.collect()
        worker.join(timeout=30)
        assert not worker.is_alive()
