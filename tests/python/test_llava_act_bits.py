"""The activation precision option on the LLaVA fixtures (tests/fixtures/llava, converted to q8_0 so
that the decoder's matmuls are quantized): logits of prompts with images against transformers.

Measured (2 threads, AVX-512 kernels; the bounds hold with AKVQ_ISA=avx2 too), cosine of the last-position
logits / top-1 equal / greedy tokens equal to transformers' 8:
  act_bits=16: cosine 0.9995-0.9999, top-1 6 of 6 prompts, greedy 8 of 8 on 5 prompts (1 on one);
  act_bits=8:  cosine 0.9989-0.9998, top-1 5 of 6, greedy 8 of 8 on 3 prompts (5, 1, 0 on the others).
(The q8_0 weights alone cost more than the activations: f32 conversions reach cosine >= 0.9999.)
Bounds: the measured minimum with a margin."""

from __future__ import annotations

import llava_convert as lc
import numpy as np
import pytest
from test_helpers import cosine

import pyakvq

pytest.importorskip("gguf")
pytest.importorskip("safetensors")

MIN_COSINE = {16: 0.999, 8: 0.998}


@pytest.fixture(scope="module")
def q8_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("llava_q8")
    return {name: lc.convert_fixture(name, d, outtype="q8_0")[0] for name in lc.CHECKPOINTS}


@pytest.mark.parametrize("name", lc.CHECKPOINTS)
def test_both_precisions_against_transformers(q8_files, name):
    ref, meta = lc.reference(name)
    top1 = {16: 0, 8: 0}
    for bits in (16, 8):
        with pyakvq.Model(q8_files[name], n_ctx=512, n_threads=2, act_bits=bits) as m:
            for p, pm in enumerate(meta["prompts"]):
                images = [str(lc.FIXTURES / "images" / n) for n in pm["images"]]
                got, want = m.eval(pm["text"], images=images), ref[f"p{p}_logits"]
                assert cosine(got, want) >= MIN_COSINE[bits], (bits, p, cosine(got, want))
                top1[bits] += int(np.argmax(got)) == int(np.argmax(want))
    assert top1[16] == len(meta["prompts"]), top1
