"""State is a function of the tokens (issue: same request, same answer).

Every KV mode, on the real SmolLM2 model:
- the logits of a prompt are the same bit for bit whether it is evaluated one token at a time
  (n_batch 1, decoding's path) or in chunks of 7 / 64 / 512, and greedy continuations are identical
  (tolerance: none; the kernels are batch-invariant, engine/kv/kv_cache.h);
- a Model that generated, chatted and evaluated other prompts before answers a request with the
  same tokens as a fresh Model (greedy), and its last-position logits are identical.
"""

import pathlib

import numpy as np
import pytest

import pyakvq

MODES = ["f16", "q8", "q4", "q2", "kivi2", "wht2", "akvq2", "akvq4"]
PROSE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "text" / "prose_en.txt"


@pytest.fixture(scope="module")
def prompt_ids(smollm2_path):
    with pyakvq.Model(smollm2_path, n_ctx=64, n_threads=2) as m:
        text = PROSE.read_text(encoding="utf-8")[:1500]
        return m.tokenize(text)[:300]


@pytest.mark.parametrize("kv", MODES)
def test_batch_split_is_bit_identical(smollm2_path, prompt_ids, kv):
    logits = {}
    tokens = {}
    for nb in (1, 7, 64, 512):
        with pyakvq.Model(smollm2_path, n_ctx=512, n_threads=2, kv=kv, n_batch=nb) as m:
            logits[nb] = m.logits(prompt_ids)
            tokens[nb] = m.generate_ids(prompt_ids, max_tokens=12, temperature=0)
    for nb in (7, 64, 512):
        assert np.array_equal(logits[nb], logits[1]), f"{kv}: n_batch {nb} vs 1, max |diff| " + str(
            float(np.abs(logits[nb] - logits[1]).max())
        )
        assert tokens[nb] == tokens[1]


@pytest.mark.parametrize("kv", MODES)
def test_answer_does_not_depend_on_history(smollm2_path, kv):
    prompt = "Once upon a time " * 60
    with pyakvq.Model(smollm2_path, n_ctx=1024, n_threads=2, kv=kv, n_batch=64) as fresh:
        want = fresh.generate(prompt, max_tokens=24, temperature=0)
        want_logits = fresh.eval(prompt)
    with pyakvq.Model(smollm2_path, n_ctx=1024, n_threads=2, kv=kv, n_batch=64) as m:
        # the repro: the same request twice
        assert m.generate(prompt, max_tokens=24, temperature=0) == want
        assert m.generate(prompt, max_tokens=24, temperature=0) == want
        # arbitrary history: a shared prefix, a longer prompt, a chat, sampling, an eval
        m.generate(prompt[:200], max_tokens=9, temperature=0)
        m.generate(prompt + "and then", max_tokens=5, temperature=0.9, seed=3)
        m.chat("Hello there", max_tokens=6, temperature=0)
        m.eval("A different text entirely.")
        assert m.generate(prompt, max_tokens=24, temperature=0) == want
        assert np.array_equal(m.eval(prompt), want_logits)


def test_follow_up_extends_the_cache_exactly(smollm2_path):
    """A prompt that extends what the cache holds (the next chat turn) reuses the whole cache, and
    the logits equal a fresh evaluation of the full sequence, for a quantized cache too."""
    for kv in ("f16", "akvq2"):
        with pyakvq.Model(smollm2_path, n_ctx=1024, n_threads=2, kv=kv) as m:
            first = m.tokenize("The history of the city begins with a small harbour. " * 12)
            answer = m.generate_ids(first, max_tokens=20, temperature=0)
            follow = first + answer + m.tokenize(" And what came next?", add_special=False)
            got = m.generate_ids(follow, max_tokens=16, temperature=0)
        with pyakvq.Model(smollm2_path, n_ctx=1024, n_threads=2, kv=kv) as fresh:
            assert fresh.generate_ids(follow, max_tokens=16, temperature=0) == got
