"""Stateful property test of the Model API (hypothesis): random sequences of generate, stream
start / next / abandon, chat, eval, logits, tokenize, kv_stats, close and reopen on one or two
Models (f16 and akvq2 caches), each call made from a new thread, some calls made concurrently
from several threads. Properties:

- every call returns within a time bound (nothing hangs, whatever streams are left open);
- every greedy result equals what a fresh Model gives for the same request (history- and
  call-order-independent), and logits match a fresh Model's;
- a stream yields the fresh Model's tokens until a later call that uses the KV cache (generate,
  chat, eval, logits, close, another stream's start) ends it; resumed after that it raises
  RuntimeError; calls that do not use the cache (tokenize, kv_stats) leave it running;
- a closed Model refuses every call with RuntimeError.
"""

import os
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule
from test_helpers import bounded

import pyakvq

N_CTX = 512
TIMEOUT = 60  # seconds for one call (a few tokens on one thread take well under a second)
PROMPTS = ["Once upon a time", "The sky is", "Hi", "Once upon a time " * 30]  # the last: beyond the akvq2 window
KVS = ["f16", "akvq2"]
MESSAGES = ["What is 2+2?", "Name a colour."]
STOPS = [None, " ", "e"]
ENDED = "ended by a later call"


class Oracle:
    """What a fresh Model answers (one new Model per distinct request, memoised)."""

    def __init__(self, path):
        self.path = path
        self.memo = {}

    def _fresh(self, kv, key, fn):
        if (kv, key) not in self.memo:
            with pyakvq.Model(self.path, n_ctx=N_CTX, n_threads=1, kv=kv) as m:
                self.memo[(kv, key)] = fn(m)
        return self.memo[(kv, key)]

    def generate(self, kv, prompt, max_tokens, stop):
        def run(m):
            s = m.generate(prompt, max_tokens=max_tokens, temperature=0, stop=stop, stream=True)
            return [(t.id, t.text, t.finish_reason) for t in s], s.finish_reason

        return self._fresh(kv, ("generate", prompt, max_tokens, stop), run)

    def chat(self, kv, message, max_tokens):
        return self._fresh(
            kv, ("chat", message, max_tokens), lambda m: m.chat(message, max_tokens=max_tokens, temperature=0)
        )

    def eval(self, kv, prompt):
        return self._fresh(kv, ("eval", prompt), lambda m: m.eval(prompt))

    def logits(self, kv, prompt):
        return self._fresh(kv, ("logits", prompt), lambda m: m.logits(m.tokenize(prompt)))

    def tokenize(self, prompt):
        return self._fresh("f16", ("tokenize", prompt), lambda m: m.tokenize(prompt))


class Slot:
    """A Model under test and what the test knows about it."""

    def __init__(self, path, kv):
        self.kv = kv
        self.model = bounded(pyakvq.Model, path, n_ctx=N_CTX, n_threads=1, kv=kv)
        self.epoch = 0  # calls that took over the KV cache so far
        self.closed = False
        self._lock = threading.Lock()

    def bump(self) -> int:
        with self._lock:
            self.epoch += 1
            return self.epoch


class Stream:
    def __init__(self, slot, stream, expected):
        self.slot = slot
        self.stream = stream
        self.tokens, self.finish = expected
        self.pos = 0
        self.epoch = None  # the slot's epoch after this stream's first next()
        self.ended = False  # a later call ended it
        self.finished = False


class ModelMachine(RuleBasedStateMachine):
    path = None
    oracle = None

    def __init__(self):
        super().__init__()
        self.slots: list[Slot] = []
        self.streams: list[Stream] = []

    @initialize(kvs=st.lists(st.sampled_from(KVS), min_size=1, max_size=2))
    def open_models(self, kvs):
        self.slots = [Slot(self.path, kv) for kv in kvs]

    def teardown(self):
        for s in self.slots:
            s.model.close()

    # ---- helpers ----
    def _slot(self, i) -> Slot:
        return self.slots[i % len(self.slots)]

    def _expect_closed(self, fn, *args, **kw):
        with pytest.raises(RuntimeError, match="closed"):
            bounded(fn, *args, **kw)

    def _check_generate(self, slot, prompt, max_tokens, stop):
        toks, finish = self.oracle.generate(slot.kv, prompt, max_tokens, stop)
        out = bounded(slot.model.generate, prompt, max_tokens=max_tokens, temperature=0, stop=stop)
        slot.bump()
        assert out == "".join(t[1] for t in toks)
        assert slot.model.last_finish_reason == finish

    def _check_logits(self, slot, prompt):
        got = bounded(slot.model.logits, slot.model.tokenize(prompt))
        slot.bump()
        ref = self.oracle.logits(slot.kv, prompt)
        assert got.shape == ref.shape
        np.testing.assert_array_equal(got.argmax(axis=-1), ref.argmax(axis=-1))
        np.testing.assert_allclose(got, ref, atol=1e-3, rtol=0)

    def _check_kv_stats(self, slot):
        stats = bounded(slot.model.kv_stats)
        assert stats["mode"] == slot.kv
        for layer in stats["layers"]:
            assert sum(c["tokens"] for c in layer["classes"]) == stats["n_tokens"]

    # ---- rules ----
    @rule(
        i=st.integers(0, 1),
        prompt=st.sampled_from(PROMPTS),
        max_tokens=st.sampled_from([1, 3, 6]),
        stop=st.sampled_from(STOPS),
    )
    def generate(self, i, prompt, max_tokens, stop):
        slot = self._slot(i)
        if slot.closed:
            return self._expect_closed(slot.model.generate, prompt, max_tokens=max_tokens, temperature=0)
        self._check_generate(slot, prompt, max_tokens, stop)

    @rule(i=st.integers(0, 1), message=st.sampled_from(MESSAGES))
    def chat(self, i, message):
        slot = self._slot(i)
        if slot.closed:
            return self._expect_closed(slot.model.chat, message, max_tokens=4, temperature=0)
        out = bounded(slot.model.chat, message, max_tokens=4, temperature=0)
        slot.bump()
        assert out == self.oracle.chat(slot.kv, message, 4)

    @rule(
        i=st.integers(0, 1),
        prompt=st.sampled_from(PROMPTS),
        max_tokens=st.sampled_from([1, 3, 6]),
        stop=st.sampled_from(STOPS),
    )
    def start_stream(self, i, prompt, max_tokens, stop):
        slot = self._slot(i)
        if slot.closed:
            return self._expect_closed(slot.model.generate, prompt, max_tokens=max_tokens, stream=True)
        s = slot.model.generate(prompt, max_tokens=max_tokens, temperature=0, stop=stop, stream=True)
        self.streams.append(Stream(slot, s, self.oracle.generate(slot.kv, prompt, max_tokens, stop)))

    @precondition(lambda self: self.streams)
    @rule(j=st.integers(0, 7), steps=st.integers(1, 3))
    def stream_next(self, j, steps):
        s = self.streams[j % len(self.streams)]
        for _ in range(steps):
            slot = s.slot
            if s.ended:
                with pytest.raises(RuntimeError, match=ENDED):
                    bounded(next, s.stream)
            elif s.finished:
                with pytest.raises(StopIteration):
                    bounded(next, s.stream)
            elif slot.closed:
                self._expect_closed(next, s.stream)
            elif s.epoch is not None and s.epoch != slot.epoch:
                with pytest.raises(RuntimeError, match=ENDED):
                    bounded(next, s.stream)
                s.ended = True
            else:
                if s.epoch is None:  # the first next() takes over the cache
                    s.epoch = slot.bump()
                if s.pos == len(s.tokens):
                    with pytest.raises(StopIteration):
                        bounded(next, s.stream)
                    s.finished = True
                    assert s.stream.finish_reason == s.finish
                else:
                    tok = bounded(next, s.stream)
                    assert (tok.id, tok.text, tok.finish_reason) == s.tokens[s.pos]
                    s.pos += 1
                    if tok.finish_reason is not None:
                        s.finished = True

    @precondition(lambda self: self.streams)
    @rule(j=st.integers(0, 7))
    def abandon_stream(self, j):
        del self.streams[j % len(self.streams)]

    @rule(i=st.integers(0, 1), prompt=st.sampled_from(PROMPTS), all_positions=st.booleans())
    def evaluate(self, i, prompt, all_positions):
        slot = self._slot(i)
        if slot.closed:
            return self._expect_closed(slot.model.eval, prompt)
        if all_positions:
            return self._check_logits(slot, prompt)
        got = bounded(slot.model.eval, prompt)
        slot.bump()
        ref = self.oracle.eval(slot.kv, prompt)
        assert got.argmax() == ref.argmax()
        np.testing.assert_allclose(got, ref, atol=1e-3, rtol=0)

    @rule(i=st.integers(0, 1), prompt=st.sampled_from(PROMPTS))
    def tokenize(self, i, prompt):
        slot = self._slot(i)
        if slot.closed:
            return self._expect_closed(slot.model.tokenize, prompt)
        assert bounded(slot.model.tokenize, prompt) == self.oracle.tokenize(prompt)

    @rule(i=st.integers(0, 1))
    def kv_stats(self, i):
        slot = self._slot(i)
        if slot.closed:
            return self._expect_closed(slot.model.kv_stats)
        self._check_kv_stats(slot)

    @rule(i=st.integers(0, 1))
    def close(self, i):
        slot = self._slot(i)
        bounded(slot.model.close)
        slot.closed = True

    @precondition(lambda self: any(s.closed for s in self.slots))
    @rule(i=st.integers(0, 1))
    def reopen(self, i):
        closed = [k for k, s in enumerate(self.slots) if s.closed]
        k = closed[i % len(closed)]
        self.slots[k] = Slot(self.path, self.slots[k].kv)

    @precondition(lambda self: any(not s.closed for s in self.slots))
    @rule(
        calls=st.lists(
            st.tuples(
                st.integers(0, 1),
                st.sampled_from(["generate", "logits", "tokenize", "kv_stats"]),
                st.sampled_from(PROMPTS),
            ),
            min_size=2,
            max_size=3,
        )
    )
    def concurrently(self, calls):
        """Several calls at once from several threads (on the same or different Models): each one
        returns in time with a fresh Model's answer (a Model serialises them)."""
        open_slots = [s for s in self.slots if not s.closed]
        jobs = []
        for i, op, prompt in calls:
            slot = open_slots[i % len(open_slots)]
            if op == "generate":
                jobs.append(lambda slot=slot, p=prompt: self._check_generate(slot, p, 3, None))
            elif op == "logits":
                jobs.append(lambda slot=slot, p=prompt: self._check_logits(slot, p))
            elif op == "tokenize":
                jobs.append(lambda slot=slot, p=prompt: bounded(slot.model.tokenize, p) == self.oracle.tokenize(p))
            else:
                jobs.append(lambda slot=slot: self._check_kv_stats(slot))
        # Oracle answers first (fresh Models), so that the threads only run the calls under test.
        for i, op, prompt in calls:
            slot = open_slots[i % len(open_slots)]
            if op == "generate":
                self.oracle.generate(slot.kv, prompt, 3, None)
            elif op == "logits":
                self.oracle.logits(slot.kv, prompt)
            elif op == "tokenize":
                self.oracle.tokenize(prompt)
        results = [None] * len(jobs)
        errors = []
        lock = threading.Lock()  # the test's own bookkeeping (epochs) is shared by the threads

        def run(k):
            try:
                results[k] = jobs[k]()
            except BaseException as e:  # noqa: BLE001
                with lock:
                    errors.append(e)

        threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(len(jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT * 2)
            assert not t.is_alive(), "a concurrent call hung"
        if errors:
            raise errors[0]
        for k, (_, op, _) in enumerate(calls):
            if op == "tokenize":
                assert results[k] is True


@pytest.fixture(scope="module")
def oracle(smollm2_path):
    return Oracle(smollm2_path)


def test_model_api_state_machine(smollm2_path, oracle):
    ModelMachine.path = smollm2_path
    ModelMachine.oracle = oracle
    ModelMachine.TestCase.settings = settings(
        max_examples=30,
        stateful_step_count=15,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        # Shrinking a failure can take many minutes with real model calls; a failing sequence has
        # at most 15 steps and is printed as is. AKVQ_HYPOTHESIS_SHRINK=1 shrinks it (debugging).
        phases=list(Phase) if os.environ.get("AKVQ_HYPOTHESIS_SHRINK") else [Phase.generate],
    )
    ModelMachine.TestCase().runTest()
