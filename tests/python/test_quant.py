"""Our block codecs and quantized matmul against the gguf package's numpy reference codecs
(gguf.quants, which match ggml's C reference)."""

import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT
from gguf import quants

from pyakvq._ext import _akvq

# type -> (values per block, bytes per block)
BLOCKS = {
    QT.F32: (1, 4),
    QT.F16: (1, 2),
    QT.BF16: (1, 2),
    QT.Q4_0: (32, 18),
    QT.Q4_1: (32, 20),
    QT.Q8_0: (32, 34),
    QT.Q4_K: (256, 144),
    QT.Q6_K: (256, 210),
}
ALL_TYPES = list(BLOCKS)
# Read only to be requantized to Q8_0 at load (the fallbacks of llama.cpp's Q4_K_M / Q4_K_S files):
# dequantized, never multiplied.
LOAD_ONLY = {QT.Q5_0: (32, 22), QT.Q5_1: (32, 24), QT.Q5_K: (256, 176), QT.IQ4_NL: (32, 18)}
BLOCKS.update(LOAD_ONLY)
# gguf.quants has no quantizer for the K-quants and IQ4_NL: those get random (valid) blocks instead.
NO_QUANTIZER = {QT.Q4_K, QT.Q6_K, QT.Q5_K, QT.IQ4_NL}


def _random_fp16(rng, shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float16).view(np.uint8).reshape(shape + (2,))


def random_raw(qtype, n_rows, n_per_row, rng):
    """Raw bytes [n_rows, row_bytes] of type qtype holding n_per_row values per row."""
    bs, nbytes = BLOCKS[qtype]
    nb = n_per_row // bs
    if qtype not in NO_QUANTIZER:
        # heavy-tailed data so blocks have different scales
        data = (rng.standard_normal((n_rows, n_per_row)) * rng.uniform(0.1, 3.0, (n_rows, 1))).astype(np.float32)
        raw = quants.quantize(data, qtype)
        return np.ascontiguousarray(raw.view(np.uint8).reshape(n_rows, -1))
    blocks = rng.integers(0, 256, size=(n_rows, nb, nbytes), dtype=np.uint8)
    if qtype in (QT.Q4_K, QT.Q5_K):  # d, dmin at bytes 0..3
        blocks[..., 0:2] = _random_fp16(rng, (n_rows, nb), 0.0, 0.05)
        blocks[..., 2:4] = _random_fp16(rng, (n_rows, nb), 0.0, 0.05)
    elif qtype == QT.IQ4_NL:  # d at bytes 0..1
        blocks[..., 0:2] = _random_fp16(rng, (n_rows, nb), -0.05, 0.05)
    else:  # Q6_K: d at bytes 208..209
        blocks[..., 208:210] = _random_fp16(rng, (n_rows, nb), -0.02, 0.02)
    return blocks.reshape(n_rows, -1)


def reference_dequant(raw, qtype, n_rows):
    return quants.dequantize(raw.reshape(n_rows, -1), qtype).reshape(n_rows, -1).astype(np.float32)


@pytest.mark.parametrize("qtype", list(BLOCKS), ids=lambda t: t.name)
def test_dequantize_matches_gguf_exactly(qtype):
    rng = np.random.default_rng(int(qtype))
    n_rows, n_per_row = 7, 512
    raw = random_raw(qtype, n_rows, n_per_row, rng)
    ref = reference_dequant(raw, qtype, n_rows).reshape(-1)
    ours = _akvq.dequantize(np.ascontiguousarray(raw.reshape(-1)), int(qtype), n_rows * n_per_row)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    # bit-exact: same products and sums in f32, no fused multiply-add
    np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32))


def test_dequantize_rejects_bad_sizes():
    raw = np.zeros(18 * 2, np.uint8)
    with pytest.raises(ValueError):
        _akvq.dequantize(raw, int(QT.Q4_0), 63)  # not a whole block
    with pytest.raises(ValueError):
        _akvq.dequantize(raw, int(QT.Q4_0), 96)  # more values than bytes
    with pytest.raises(ValueError):
        _akvq.dequantize(raw, 10, 32)  # unsupported type (Q2_K)


def act_quant_bound(W, x, block):
    """Worst-case error from rounding each activation block to int16 with scale d = amax/32767:
    |x_i - q_i d| <= d * (1/2 + 0.004) (x * fl(1/d) is within 2 ulp of x / d), so
    |err(y[t, r])| <= sum_b (sum_{i in b} |W[r, i]|) * amax_b(x[t]) / 65534 * 1.01."""
    n_tok, n_in = x.shape
    absw = np.abs(W).reshape(W.shape[0], n_in // block, block).sum(-1)  # [n_out, nb]
    amax = np.abs(x).reshape(n_tok, n_in // block, block).max(-1)  # [n_tok, nb]
    return (amax / 65534.0 * 1.01) @ absw.T


@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("n_tok", [1, 3, 9])
@pytest.mark.parametrize("simd", [True, False])
def test_matmul_matches_numpy(qtype, n_tok, simd):
    rng = np.random.default_rng(100 + int(qtype) + n_tok)
    n_in = 512 if qtype in NO_QUANTIZER else 96 * (1 + (int(qtype) % 3))
    n_out = 37
    raw = random_raw(qtype, n_out, n_in, rng)
    W = reference_dequant(raw, qtype, n_out)
    x = rng.standard_normal((n_tok, n_in)).astype(np.float32)
    y = _akvq.matmul_test(np.ascontiguousarray(raw.reshape(-1)), int(qtype), n_in, n_out, x, 2, simd)
    ref = x.astype(np.float64) @ W.astype(np.float64).T
    absdot = np.abs(x) @ np.abs(W).T  # sum_i |w_i x_i|, the scale of the rounding errors
    err = np.abs(y - ref)
    bs = BLOCKS[qtype][0]
    if bs == 1:  # f32 activations: f32 accumulation only
        tol = 1e-5 * absdot + 1e-6
    else:
        # quantized weights multiply a 16-bit copy of x (blocks of 32, or 256 for the K-quants):
        # within 1e-4 of sum |w x| (measured <= 1.2e-5) and within the worst case of that rounding
        tol = 1e-4 * absdot + 1e-6
        bound = 1e-5 * absdot + 1e-6 + act_quant_bound(W, x, 32 if bs == 32 else 256)
        assert (err <= bound).all(), f"max err {err.max()} (bound at argmax {bound.flat[err.argmax()]})"
        # the typical error is far below the bound: ~2^-16 of the block amax, averaged
        assert np.linalg.norm(y - ref) <= 1e-4 * np.linalg.norm(ref)
    assert (err <= tol).all(), f"max err {err.max()} (tol at argmax {tol.flat[err.argmax()]})"


def test_matmul_rejects_bad_input():
    raw = np.zeros(20 * 4, np.uint8)
    with pytest.raises(ValueError):
        _akvq.matmul_test(raw, int(QT.Q4_1), 64, 2, np.zeros((1, 60), np.float32))
    with pytest.raises(ValueError):
        _akvq.matmul_test(raw, int(QT.Q4_1), 64, 3, np.zeros((1, 64), np.float32))
    x = np.zeros((1, 64), np.float32)
    for bad in (0, 1 << 30):  # not a billion threads started until the system refuses them
        with pytest.raises(ValueError, match=rf"\[ops\] matmul_test n_threads = {bad} is out of range \[1, 512\]"):
            _akvq.matmul_test(raw, int(QT.Q4_1), 64, 2, x, bad)
