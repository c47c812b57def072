"""The sampler through the extension: validation errors, greedy, seeded draws against a numpy
reference of the truncated distribution, repetition penalty; and top_k=1 == greedy on the real model.
(The C++ tests in tests/cpp/test_sampler.cpp cover the cut points and the distribution in detail.)"""

from __future__ import annotations

import numpy as np
import pytest

_ext = pytest.importorskip("pyakvq._ext")
Sampler = _ext._akvq.Sampler


def reference(logits, temperature, top_k, top_p, min_p, history=(), repeat_penalty=1.0, repeat_last_n=64):
    """llama.cpp's order: penalty -> top-k -> softmax(l) -> top-p -> min-p -> softmax(l / T) over
    the kept ids; returns {id: p}."""
    x = np.asarray(logits, dtype=np.float64).copy()
    window = list(history)[-repeat_last_n:] if repeat_last_n > 0 else []
    for t in set(window):
        x[t] = x[t] / repeat_penalty if x[t] > 0 else x[t] * repeat_penalty
    order = np.lexsort((np.arange(len(x)), -x))  # descending logit, ties -> lower id
    if 0 < top_k < len(x):
        order = order[:top_k]
    p = np.exp(x[order] - x[order[0]])
    p /= p.sum()
    keep = len(order)
    if top_p < 1:
        keep = int(np.searchsorted(np.cumsum(p), top_p) + 1)
    keep = min(keep, int((p >= min_p * p[0]).sum()))
    q = np.exp((x[order[:keep]] - x[order[0]]) / temperature)
    q /= q.sum()
    return dict(zip(order[:keep].tolist(), q.tolist(), strict=True))


@pytest.mark.parametrize(
    "field,value",
    [
        ("temperature", -0.5),
        ("temperature", float("nan")),
        ("top_k", -3),
        ("top_p", -0.1),
        ("top_p", 1.5),
        ("min_p", -0.1),
        ("min_p", 2.0),
        ("repeat_penalty", 0.0),
        ("repeat_penalty", -1.0),
    ],
)
def test_invalid_parameters_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        Sampler(**{field: value})


def test_greedy_is_argmax_with_lowest_id_on_ties():
    rng = np.random.default_rng(0)
    s = Sampler(temperature=0.0)
    for _ in range(10):
        x = rng.normal(0, 3, 49152).astype(np.float32)
        assert s.sample(x, []) == int(x.argmax())
    x = np.zeros(100, np.float32)
    x[[17, 42, 80]] = 5.0
    assert s.sample(x, []) == 17
    assert Sampler(temperature=1.3, top_k=1, seed=9).sample(x, []) == 17


def test_llama_cpp_readings_of_top_p_0_and_top_k_minus_1():
    """top_p 0 keeps only the most likely token at any temperature; top_k -1 disables top-k as 0
    does (llama.cpp's readings, the same in every pyakvq API)."""
    rng = np.random.default_rng(2)
    for seed in range(20):
        x = rng.normal(0, 1, 5000).astype(np.float32)
        assert Sampler(temperature=2.0, top_k=0, top_p=0.0, seed=seed).sample(x, []) == int(x.argmax())
    x = rng.normal(0, 1, 300).astype(np.float32)
    a, b = Sampler(temperature=1.2, top_k=-1, seed=7), Sampler(temperature=1.2, top_k=0, seed=7)
    assert [a.sample(x, []) for _ in range(200)] == [b.sample(x, []) for _ in range(200)]


def test_bad_logits_raise():
    s = Sampler(temperature=1.0)
    with pytest.raises(ValueError):
        s.sample(np.full(8, np.nan, np.float32), [])
    with pytest.raises(ValueError):
        s.sample(np.zeros(0, np.float32), [])


@pytest.mark.parametrize(
    "temperature,top_k,top_p,min_p",
    [(0.7, 10, 0.95, 0.0), (1.0, 0, 0.8, 0.05), (1.4, 15, 1.0, 0.0), (1.0, 0, 1.0, 0.1),
     (2.0, 0, 1.0, 0.1), (0.5, 0, 0.9, 0.0)],  # the last two: the cuts at temperature 1, as llama.cpp
)
def test_seeded_draws_follow_the_truncated_distribution(temperature, top_k, top_p, min_p):
    # 30000 draws; Pearson chi-square under its 1e-6 upper quantile (Wilson-Hilferty); the draws
    # are deterministic for the seed, so the test is not flaky.
    x = np.random.default_rng(3).normal(0, 1.5, 300).astype(np.float32)
    want = reference(x, temperature, top_k, top_p, min_p)
    s = Sampler(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, seed=5)
    n = 30000
    counts = np.bincount([s.sample(x, []) for _ in range(n)], minlength=len(x))
    outside = sorted(set(np.nonzero(counts)[0].tolist()) - set(want))
    assert not outside, f"drew ids outside the support: {outside}"
    ids = np.array(list(want))
    e = np.array([want[i] for i in ids]) * n
    chi2 = float((((counts[ids] - e) ** 2) / e).sum())
    df = len(ids) - 1
    a = 2 / (9 * df)
    bound = df * (1 - a + 4.753 * np.sqrt(a)) ** 3
    assert chi2 < bound, f"chi2 {chi2:.1f} >= {bound:.1f} (df {df})"


def test_same_cuts_as_llama_cpp():
    """With llama-cpp-python at hand: its sampler chain (penalties, top-k, top-p, min-p,
    temperature, as its Llama builds it) keeps the same tokens with the same probabilities for the
    same option values, at temperatures other than 1 too (where transformers' order differs)."""
    import ctypes

    lc = pytest.importorskip("llama_cpp")
    x = np.random.default_rng(0).normal(0, 2.0, 500).astype(np.float32)
    for t, k, p, m in [(0.8, 40, 0.95, 0.05), (0.2, 40, 0.95, 0.05), (2.0, 0, 1.0, 0.1), (2.0, 0, 0.9, 0.0),
                       (0.5, 0, 1.0, 0.1), (1.5, 40, 0.95, 0.05)]:
        ch = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        for smp in (lc.llama_sampler_init_top_k(k), lc.llama_sampler_init_top_p(p, 1),
                    lc.llama_sampler_init_min_p(m, 1), lc.llama_sampler_init_temp(t)):
            lc.llama_sampler_chain_add(ch, smp)
        arr = (lc.llama_token_data * len(x))(*[lc.llama_token_data(i, float(v), 0.0) for i, v in enumerate(x)])
        cur = lc.llama_token_data_array(arr, len(x), -1, False)
        lc.llama_sampler_apply(ch, ctypes.byref(cur))
        ids = np.array([cur.data[i].id for i in range(cur.size)])
        lg = np.array([cur.data[i].logit for i in range(cur.size)], np.float64)
        lc.llama_sampler_free(ch)
        want = dict(zip(ids.tolist(), (np.exp(lg - lg.max()) / np.exp(lg - lg.max()).sum()).tolist(), strict=True))
        got = dict(Sampler(temperature=t, top_k=k, top_p=p, min_p=m, seed=1).distribution(x, []))
        assert set(got) == set(want), (t, k, p, m)
        for i, q in want.items():
            assert got[i] == pytest.approx(q, abs=1e-5), (t, k, p, m, i)


def test_same_seed_same_draws():
    x = np.random.default_rng(1).normal(0, 1, 2000).astype(np.float32)

    def draws(s):
        h = []
        for _ in range(100):
            h.append(s.sample(x, h))
        return h

    kw = dict(temperature=1.0, top_k=0, top_p=0.9, repeat_penalty=1.1)
    a = draws(Sampler(seed=11, **kw))
    assert a == draws(Sampler(seed=11, **kw))
    assert a != draws(Sampler(seed=12, **kw))
    s = Sampler(seed=12, **kw)
    s.reseed(11)
    assert a == draws(s)


def test_repetition_penalty_uses_recent_history():
    x = np.array([2.0, -1.0, 1.5, 0.5], np.float32)
    s = Sampler(temperature=0.0, repeat_penalty=2.0, repeat_last_n=2)
    assert s.sample(x, []) == 0
    assert s.sample(x, [0]) == 2  # 2 -> 1 < 1.5
    assert s.sample(x, [0, 3, 3]) == 0  # id 0 is outside the last 2 tokens
    # sampled: matches the penalised reference distribution
    y = np.random.default_rng(2).normal(0, 1, 50).astype(np.float32)
    hist = list(range(0, 50, 3))
    want = reference(y, 1.0, 5, 1.0, 0.0, history=hist, repeat_penalty=1.5, repeat_last_n=64)
    s = Sampler(temperature=1.0, top_k=5, top_p=1.0, repeat_penalty=1.5, repeat_last_n=64, seed=3)
    got = {s.sample(y, hist) for _ in range(500)}
    assert got == set(want)


def test_top_k_1_is_greedy_on_the_real_model(smollm2_path):
    pyakvq = pytest.importorskip("pyakvq")
    with pyakvq.Model(smollm2_path, n_ctx=512, n_threads=2) as m:
        prompt = "The three primary colours are"
        greedy = m.generate_ids(prompt, max_tokens=16, temperature=0.0)
        assert m.generate_ids(prompt, max_tokens=16, temperature=1.5, top_k=1, seed=7) == greedy
        a = m.generate_ids(prompt, max_tokens=16, temperature=0.9, seed=7)
        assert a == m.generate_ids(prompt, max_tokens=16, temperature=0.9, seed=7)
