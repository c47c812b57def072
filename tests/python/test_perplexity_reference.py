"""pyakvq.perplexity with the f16 cache against llama.cpp's protocol as computed by transformers
(fixture from tests/fixtures/make_smollm2_ppl_reference.py): same tokens, same chunks, same
scored positions, and a perplexity within a stated tolerance."""

import pathlib

import numpy as np
import pytest

import pyakvq

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROSE = ROOT / "tests" / "fixtures" / "text" / "prose_en.txt"
REF = ROOT / "tests" / "fixtures" / "smollm2" / "ppl_reference.npz"
# The golden logits test bounds |Δlogit| by 0.05 against transformers (measured 0.014); that moves
# a chunk's mean NLL by well under 0.005 nats, i.e. perplexity by < 0.5%.
PPL_RTOL = 0.005


@pytest.fixture(scope="module")
def ref():
    return np.load(REF)


def test_tokens_match_reference(smollm2_path, ref):
    with pyakvq.Model(smollm2_path, n_ctx=64, n_threads=2) as m:
        assert not m.info["add_bos"]  # the protocol then uses the chunks as they are
        ids = m.tokenize(PROSE.read_text(encoding="utf-8"), add_special=False)
    assert len(ids) == int(ref["n_ids"])
    head = ref["ids_head"]
    assert ids[: len(head)] == head.tolist()


def test_f16_perplexity_matches_transformers(smollm2_path, ref):
    n_ctx = int(ref["n_ctx"])
    n_chunks = len(ref["ids_head"]) // n_ctx
    n_scored = int(ref["n_scored"])
    r = pyakvq.perplexity(
        smollm2_path, PROSE.read_text(encoding="utf-8"), n_ctx=n_ctx, kv="f16", max_chunks=n_chunks, n_threads=2
    )
    want = float(np.exp(ref["chunk_nll"][:n_chunks].sum() / (n_chunks * n_scored)))
    assert r["n_tokens"] == n_chunks * n_scored
    assert r["ppl"] == pytest.approx(want, rel=PPL_RTOL)
