"""Output types: which GGML type each tensor is stored as, and the encoding (with gguf.quants).

--outtype   weight matrices   token embd / output        norms, biases   vision embeddings
f32         F32               F32                        F32             F32
f16         F16               F16                        F32             F16
bf16        BF16              BF16                       F32             F16
q8_0        Q8_0              Q8_0                       F32             F16
q4_0        Q4_0              Q4_0 / Q8_0 (output, and   F32             F16
                              the embedding when tied)
A quantized type needs rows (the innermost dimension) that are a multiple of its 32-value block;
other matrices fall back to F16 (as llama.cpp's converter does).
"""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType
from gguf import quants as gq

Q = GGMLQuantizationType

OUTTYPES = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0}
FILE_TYPES = {
    "f32": LlamaFileType.ALL_F32,
    "f16": LlamaFileType.MOSTLY_F16,
    "bf16": LlamaFileType.MOSTLY_BF16,
    "q8_0": LlamaFileType.MOSTLY_Q8_0,
    "q4_0": LlamaFileType.MOSTLY_Q4_0,
}
QUANTIZED = (Q.Q8_0, Q.Q4_0)


def tensor_type(kind: str, outtype: str, shape: tuple[int, ...], tied_output: bool = False) -> Q:
    """The stored type of a tensor of table kind `kind` (names.py) and numpy shape `shape`."""
    if kind == "n" or len(shape) < 2:
        return Q.F32
    if kind == "emb":
        return Q.F32 if outtype == "f32" else Q.F16
    t = OUTTYPES[outtype]
    if t == Q.Q4_0 and (kind == "out" or (kind == "tok" and tied_output)):
        t = Q.Q8_0
    if t in QUANTIZED and shape[-1] % GGML_QUANT_SIZES[t][0] != 0:
        t = Q.F16
    return t


def nbytes(shape: tuple[int, ...], qtype: Q) -> int:
    block, size = GGML_QUANT_SIZES[qtype]
    n = int(np.prod(shape, dtype=np.int64))
    return n // block * size


def encode(arr: np.ndarray, qtype: Q) -> np.ndarray:
    """float32 values -> the bytes of type qtype (as a numpy array to write with tofile/tobytes)."""
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if qtype == Q.F32:
        return arr
    if qtype == Q.F16:
        return arr.astype(np.float16)
    return gq.quantize(arr, qtype)
