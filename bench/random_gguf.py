"""Shared pieces of the random-weight GGUF writers (bench/make_random_model.py,
bench/make_random_llava.py): valid random tensor payloads of each weight type, the Llama
hyperparameter keys, a SentencePiece-style vocabulary that llama.cpp accepts, and a streamed
writer that produces one tensor at a time in row chunks (memory stays bounded by a chunk, ~16 MB,
whatever the model size).

Weight values are random but sane: every type is drawn so that the dequantized weights have a
standard deviation of about 0.02 (fp16 scales finite and positive), norms are ~1.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, TokenType

WEIGHT_STD = 0.02  # target standard deviation of the dequantized weights
CHUNK_BYTES = 16 << 20  # bytes generated per write


def _f16_bytes(x: np.ndarray) -> np.ndarray:
    """float array [..., k] -> its fp16 bytes [..., 2k] (uint8)."""
    return x.astype(np.float16).view(np.uint8)


def _q4_0(rng: np.random.Generator, nb: int) -> np.ndarray:
    """nb Q4_0 blocks (fp16 d, 16 bytes of nibbles): q uniform in 0..15 (std 4.6), x = (q - 8) d."""
    out = rng.integers(0, 256, size=(nb, 18), dtype=np.uint8)
    d = WEIGHT_STD / 4.6 * (0.5 + rng.random((nb, 1), dtype=np.float32))
    out[:, 0:2] = _f16_bytes(d)
    return out


def _q4_1(rng: np.random.Generator, nb: int) -> np.ndarray:
    """nb Q4_1 blocks (fp16 d, fp16 m, 16 bytes): x = q d + m with m ~ -7.5 d (centred)."""
    out = rng.integers(0, 256, size=(nb, 20), dtype=np.uint8)
    d = WEIGHT_STD / 4.6 * (0.5 + rng.random((nb, 1), dtype=np.float32))
    out[:, 0:2] = _f16_bytes(d)
    out[:, 2:4] = _f16_bytes(-7.5 * d)
    return out


def _q8_0(rng: np.random.Generator, nb: int) -> np.ndarray:
    """nb Q8_0 blocks (fp16 d, 32 int8): q uniform in -128..127 (std 74), x = q d."""
    out = rng.integers(0, 256, size=(nb, 34), dtype=np.uint8)
    d = WEIGHT_STD / 74.0 * (0.5 + rng.random((nb, 1), dtype=np.float32))
    out[:, 0:2] = _f16_bytes(d)
    return out


def _q4_k(rng: np.random.Generator, nb: int) -> np.ndarray:
    """nb Q4_K super-blocks of 256 values (144 bytes: fp16 d, fp16 dmin, 12 bytes of 6-bit scales
    and mins for 8 sub-blocks of 32, 128 bytes of nibbles): x = d sc q - dmin m, with sc and m in
    32..63 and dmin = 7.5 d so that each sub-block is roughly centred."""
    out = rng.integers(0, 256, size=(nb, 144), dtype=np.uint8)
    d = WEIGHT_STD / (4.6 * 48.0) * (0.5 + rng.random((nb, 1), dtype=np.float32))
    out[:, 0:2] = _f16_bytes(d)
    out[:, 2:4] = _f16_bytes(7.5 * d)
    sc = rng.integers(32, 64, size=(nb, 8), dtype=np.uint8)
    mn = rng.integers(32, 64, size=(nb, 8), dtype=np.uint8)
    s = np.zeros((nb, 12), dtype=np.uint8)
    # sub-blocks 0..3: low 6 bits of bytes 0..3 (scale) and 4..7 (min); sub-blocks 4..7: low and
    # high nibbles of bytes 8..11, their top 2 bits in the top bits of bytes 0..3 and 4..7.
    s[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    s[:, 4:8] = mn[:, 0:4] | ((mn[:, 4:8] >> 4) << 6)
    s[:, 8:12] = (sc[:, 4:8] & 0x0F) | ((mn[:, 4:8] & 0x0F) << 4)
    out[:, 4:16] = s
    return out


def _q6_k(rng: np.random.Generator, nb: int) -> np.ndarray:
    """nb Q6_K super-blocks of 256 values (210 bytes: 128 bytes of low nibbles ql, 64 bytes of
    high 2-bit pairs qh, 16 int8 scales, fp16 d): x = d sc (q - 32), with |sc| in 32..63 and a
    random sign, q uniform in 0..63 (q - 32 has a standard deviation of ~18.5)."""
    out = rng.integers(0, 256, size=(nb, 210), dtype=np.uint8)
    d = WEIGHT_STD / (18.5 * 48.0) * (0.5 + rng.random((nb, 1), dtype=np.float32))
    sc = rng.integers(32, 64, size=(nb, 16)) * rng.choice(np.array([-1, 1]), size=(nb, 16))
    out[:, 192:208] = sc.astype(np.int8).view(np.uint8)
    out[:, 208:210] = _f16_bytes(d)
    return out


@dataclass(frozen=True)
class WeightType:
    """A matrix type: ggml type, values and bytes per block, and a random block generator."""

    ggml: GGMLQuantizationType
    block: int
    block_bytes: int
    blocks: Callable[[np.random.Generator, int], np.ndarray] | None  # None: a float type
    file_type: int  # llama.cpp's general.file_type for a file made of this type


WEIGHT_TYPES: dict[str, WeightType] = {
    "q4_0": WeightType(GGMLQuantizationType.Q4_0, 32, 18, _q4_0, 2),
    "q4_1": WeightType(GGMLQuantizationType.Q4_1, 32, 20, _q4_1, 3),
    "q8_0": WeightType(GGMLQuantizationType.Q8_0, 32, 34, _q8_0, 7),
    "q4_k": WeightType(GGMLQuantizationType.Q4_K, 256, 144, _q4_k, 14),
    "q6_k": WeightType(GGMLQuantizationType.Q6_K, 256, 210, _q6_k, 18),
    "f16": WeightType(GGMLQuantizationType.F16, 1, 2, None, 1),
}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor: name, numpy shape (ggml dims reversed: [rows, cols] for a matrix) and kind:
    a WEIGHT_TYPES key for matrices, "norm" (f32 around 1) or "f32" (f32 around 0)."""

    name: str
    shape: tuple[int, ...]
    kind: str


def tensor_nbytes(spec: TensorSpec) -> int:
    """Bytes of the tensor's data in the file. Raises ValueError for a row that is not a whole
    number of blocks or an unknown kind."""
    n = int(np.prod(spec.shape))
    if spec.kind in ("norm", "f32"):
        return 4 * n
    wt = WEIGHT_TYPES.get(spec.kind)
    if wt is None:
        raise ValueError(f"tensor {spec.name!r}: unknown kind {spec.kind!r}")
    if spec.shape[-1] % wt.block:
        raise ValueError(f"tensor {spec.name!r}: row of {spec.shape[-1]} is not a multiple of {wt.block}")
    return n // wt.block * wt.block_bytes


class _StreamedTensor:
    """Stands in for a numpy array in GGUFWriter.write_tensor_data (which only uses .nbytes and
    .tofile): writes the tensor's random data chunk by chunk."""

    def __init__(self, spec: TensorSpec, rng: np.random.Generator):
        self.spec, self.rng, self.nbytes = spec, rng, tensor_nbytes(spec)

    def chunks(self) -> Iterator[np.ndarray]:
        spec, rng = self.spec, self.rng
        rows = int(np.prod(spec.shape[:-1])) if len(spec.shape) > 1 else 1
        cols = spec.shape[-1]
        row_bytes = self.nbytes // rows
        step = max(1, CHUNK_BYTES // row_bytes)
        for r0 in range(0, rows, step):
            n = min(step, rows - r0)
            if spec.kind == "norm":
                yield (1.0 + 0.05 * rng.standard_normal((n, cols), dtype=np.float32)).astype(np.float32)
            elif spec.kind == "f32":
                yield WEIGHT_STD * rng.standard_normal((n, cols), dtype=np.float32)
            elif spec.kind == "f16":
                yield (WEIGHT_STD * rng.standard_normal((n, cols), dtype=np.float32)).astype(np.float16)
            else:
                wt = WEIGHT_TYPES[spec.kind]
                assert wt.blocks is not None
                yield wt.blocks(rng, n * cols // wt.block)

    def tofile(self, f) -> None:
        written = 0
        for c in self.chunks():
            c.tofile(f)
            written += c.nbytes
        assert written == self.nbytes, (self.spec.name, written, self.nbytes)


def add_tensor_info(w: GGUFWriter, spec: TensorSpec) -> None:
    """Declares one tensor of `spec` in the writer's header."""
    nbytes = tensor_nbytes(spec)
    if spec.kind in ("norm", "f32"):
        w.add_tensor_info(spec.name, spec.shape, np.dtype(np.float32), nbytes)
    elif spec.kind == "f16":
        w.add_tensor_info(spec.name, spec.shape, np.dtype(np.float16), nbytes)
    else:
        wt = WEIGHT_TYPES[spec.kind]
        byte_shape = (*spec.shape[:-1], spec.shape[-1] // wt.block * wt.block_bytes)
        w.add_tensor_info(spec.name, byte_shape, np.dtype(np.uint8), nbytes, wt.ggml)


@dataclass(frozen=True)
class LlamaShape:
    """Decoder hyperparameters (ggml names): vocabulary, width, depth, heads, MLP, context."""

    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx: int
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5


# Files of several matrix types, as llama.cpp's quantizer writes them: name -> (the type of most
# matrices, the type of the "more bits" ones, general.file_type). Q4_K_M (llama.cpp's file type
# 15): output.weight and, in the layers more_bits() picks, attn_v and ffn_down get Q6_K.
MIXES: dict[str, tuple[str, str, int]] = {"q4_k_m": ("q4_k", "q6_k", 15)}


def more_bits(i: int, n: int) -> bool:
    """llama.cpp's choice of the layers whose attn_v / ffn_down get more bits in the _M mixes:
    the first and last eighth, and every third layer in between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def file_type(kind: str) -> int:
    """general.file_type of a file made of `kind` (a WEIGHT_TYPES key or a MIXES key)."""
    return MIXES[kind][2] if kind in MIXES else WEIGHT_TYPES[kind].file_type


def llama_tensors(hp: LlamaShape, kind: str, tied: bool = False) -> list[TensorSpec]:
    """The text decoder's tensors in llama.cpp order, norms f32. kind: a WEIGHT_TYPES key (every
    matrix of that type, token_embd and output included) or a MIXES key (its two types, placed as
    llama.cpp places them). tied: no output.weight (the output reuses token_embd)."""
    head_dim = hp.n_embd // hp.n_head
    kv = hp.n_head_kv * head_dim
    base, more = (MIXES[kind][0], MIXES[kind][1]) if kind in MIXES else (kind, kind)
    t = [TensorSpec("token_embd.weight", (hp.n_vocab, hp.n_embd), base)]
    for i in range(hp.n_layer):
        b = f"blk.{i}."
        mb = more if more_bits(i, hp.n_layer) else base
        t += [
            TensorSpec(b + "attn_norm.weight", (hp.n_embd,), "norm"),
            TensorSpec(b + "attn_q.weight", (hp.n_embd, hp.n_embd), base),
            TensorSpec(b + "attn_k.weight", (kv, hp.n_embd), base),
            TensorSpec(b + "attn_v.weight", (kv, hp.n_embd), mb),
            TensorSpec(b + "attn_output.weight", (hp.n_embd, hp.n_embd), base),
            TensorSpec(b + "ffn_norm.weight", (hp.n_embd,), "norm"),
            TensorSpec(b + "ffn_gate.weight", (hp.n_ff, hp.n_embd), base),
            TensorSpec(b + "ffn_up.weight", (hp.n_ff, hp.n_embd), base),
            TensorSpec(b + "ffn_down.weight", (hp.n_embd, hp.n_ff), mb),
        ]
    t.append(TensorSpec("output_norm.weight", (hp.n_embd,), "norm"))
    if not tied:
        t.append(TensorSpec("output.weight", (hp.n_vocab, hp.n_embd), more))
    return t


def add_llama_keys(w: GGUFWriter, hp: LlamaShape, name: str, file_type: int) -> None:
    """general.* and llama.* hyperparameter keys (the writer's arch must be "llama")."""
    w.add_name(name)
    w.add_file_type(file_type)
    w.add_context_length(hp.n_ctx)
    w.add_embedding_length(hp.n_embd)
    w.add_block_count(hp.n_layer)
    w.add_feed_forward_length(hp.n_ff)
    w.add_rope_dimension_count(hp.n_embd // hp.n_head)
    w.add_rope_freq_base(hp.rope_theta)
    w.add_head_count(hp.n_head)
    w.add_head_count_kv(hp.n_head_kv)
    w.add_layer_norm_rms_eps(hp.rms_eps)
    w.add_vocab_size(hp.n_vocab)


def add_spm_vocab(w: GGUFWriter, n_vocab: int, last_user_token: str | None = None) -> None:
    """A SentencePiece ("llama") vocabulary of n_vocab pieces that llama.cpp and pyakvq accept:
    <unk> <s> </s> (ids 0, 1, 2), the 256 byte tokens <0x00>..<0xFF>, then made-up word pieces
    with decreasing scores; last_user_token (e.g. "<image>") takes the last id as a user-defined
    token. Raises ValueError if n_vocab is too small to hold the fixed pieces."""
    fixed = 3 + 256 + (1 if last_user_token else 0)
    if n_vocab <= fixed:
        raise ValueError(f"n_vocab {n_vocab} must exceed {fixed} (control + byte tokens)")
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
    n_words = n_vocab - fixed
    toks += [f"\u2581w{i}" for i in range(n_words)]
    types += [TokenType.NORMAL] * n_words
    if last_user_token:
        toks.append(last_user_token)
        types.append(TokenType.USER_DEFINED)
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([-float(i) for i in range(n_vocab)])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_streamed(w: GGUFWriter, plan: list[TensorSpec], seed: int, progress_every: int = 50) -> tuple[int, float]:
    """Declares `plan`, writes header, keys (added to `w` beforehand) and every tensor's random
    data chunk by chunk, and closes the file. Returns (bytes of tensor data, seconds)."""
    t0 = time.time()
    rng = np.random.default_rng(seed)
    for spec in plan:
        add_tensor_info(w, spec)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    total = 0
    for k, spec in enumerate(plan):
        data = _StreamedTensor(spec, rng)
        w.write_tensor_data(data)  # type: ignore[arg-type]  # duck-typed: nbytes + tofile
        total += data.nbytes
        if progress_every and k % progress_every == 0:
            print(f"[{k + 1}/{len(plan)}] {spec.name} {total / 1e9:.2f} GB", file=sys.stderr, flush=True)
    w.close()
    return total, time.time() - t0
