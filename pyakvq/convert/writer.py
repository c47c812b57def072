"""Streaming GGUF output: metadata and tensor infos are written with gguf.GGUFWriter, then each tensor's
data is produced, encoded and appended in row chunks, so that memory stays bounded by one chunk (or one
tensor, for the few that must be transformed whole) however large the checkpoint is. Each file is written
under a temporary name of its own and appears under its final name only once every output is complete."""

from __future__ import annotations

import math
import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGUFValueType, GGUFWriter

from . import quantize
from .errors import ConvertError

CHUNK_ELEMENTS = 1 << 22  # float32 values converted at a time (16 MiB)


@dataclass
class TensorPlan:
    name: str  # GGUF name
    shape: tuple[int, ...]  # numpy order (outermost first): GGUF dims are this reversed
    qtype: quantize.Q
    # read(rows) -> float32 array of `shape` (rows=None) or rows [r0, r1) of its first axis
    read: Callable[[tuple[int, int] | None], np.ndarray]
    chunkable: bool = True  # read() accepts row ranges
    source: str = ""  # for messages: the checkpoint tensor(s) it comes from

    @property
    def nbytes(self) -> int:
        return quantize.nbytes(self.shape, self.qtype)


@dataclass
class KV:
    key: str
    value: Any
    vtype: GGUFValueType
    sub_type: GGUFValueType | None = None


@dataclass
class GGUFFile:
    path: pathlib.Path
    arch: str
    kv: list[KV] = field(default_factory=list)
    tensors: list[TensorPlan] = field(default_factory=list)

    # typed setters (GGUF value types as llama.cpp writes them)
    def u32(self, key: str, v: int) -> None:
        self.kv.append(KV(key, int(v), GGUFValueType.UINT32))

    def i32(self, key: str, v: int) -> None:
        self.kv.append(KV(key, int(v), GGUFValueType.INT32))

    def f32(self, key: str, v: float) -> None:
        self.kv.append(KV(key, float(v), GGUFValueType.FLOAT32))

    def bool(self, key: str, v: bool) -> None:
        self.kv.append(KV(key, bool(v), GGUFValueType.BOOL))

    def str(self, key: str, v: str) -> None:
        self.kv.append(KV(key, str(v), GGUFValueType.STRING))

    def arr(self, key: str, values: list, sub: GGUFValueType) -> None:
        if not values:
            raise ValueError(f"{key}: GGUF arrays written by the gguf package cannot be empty")
        py = {GGUFValueType.INT32: int, GGUFValueType.FLOAT32: float, GGUFValueType.STRING: str}[sub]
        self.kv.append(KV(key, [py(x) for x in values], GGUFValueType.ARRAY, sub))

    def add(self, plan: TensorPlan) -> None:
        self.tensors.append(plan)

    def keys(self) -> dict[str, Any]:
        return {kv.key: kv.value for kv in self.kv}


def _chunks(plan: TensorPlan):
    """Yields the encoded data of a tensor, in row chunks when it is chunkable."""
    shape = plan.shape
    row = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    n_rows = shape[0] if shape else 1
    step = max(1, CHUNK_ELEMENTS // max(row, 1))
    if not plan.chunkable or n_rows <= step:
        arr = plan.read(None)
        yield _check(plan, arr, tuple(shape))
        return
    for r0 in range(0, n_rows, step):
        r1 = min(n_rows, r0 + step)
        arr = plan.read((r0, r1))
        yield _check(plan, arr, (r1 - r0, *shape[1:]))


def _check(plan: TensorPlan, arr: np.ndarray, want: tuple[int, ...]) -> np.ndarray:
    if tuple(arr.shape) != want:
        raise AssertionError(f"{plan.name}: produced shape {arr.shape}, planned {want}")
    if arr.dtype.kind == "f" and arr.size:  # max and min: two passes, no copy; a NaN propagates
        hi, lo = float(arr.max()), float(arr.min())
        if not (math.isfinite(hi) and math.isfinite(lo)):  # a corrupt checkpoint: the model would answer NaN
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            raise ConvertError(
                f"tensor {plan.name!r}: {bad} of its values (in this chunk of {arr.size}) are NaN or infinite in the "
                "checkpoint"
            )
        if plan.qtype == quantize.Q.F16 and max(hi, -lo) > 65504.0:
            raise ConvertError(
                f"tensor {plan.name!r}: values up to {max(hi, -lo):g} do not fit float16 (at most 65504): "
                "convert with --outtype bf16 or f32"
            )
    return quantize.encode(arr, plan.qtype)


def write_file(out: GGUFFile, tmp: pathlib.Path, progress: bool = False) -> None:
    """Writes `out` into `tmp` (from pyakvq._files.temporary_path); the caller moves it to out.path once every
    output of the conversion is complete. On failure `tmp` is removed."""
    from tqdm import tqdm

    final = pathlib.Path(out.path)
    w = GGUFWriter(str(tmp), out.arch)
    try:
        for kv in out.kv:
            if kv.vtype == GGUFValueType.ARRAY:  # element type from the (python) values: int -> INT32,
                w.add_array(kv.key, kv.value)  # float -> FLOAT32, str -> STRING (gguf >= 0.10)
            else:
                w.add_key_value(kv.key, kv.value, kv.vtype)
        for t in out.tensors:
            block, _ = GGML_QUANT_SIZES[t.qtype]
            if t.shape and t.shape[-1] % block != 0:
                raise AssertionError(f"{t.name}: row length {t.shape[-1]} is not a multiple of {block}")
            w.add_tensor_info(t.name, t.shape, np.dtype(np.float32), t.nbytes, raw_dtype=t.qtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        align = w.data_alignment
        w.close()
        total = sum(t.nbytes for t in out.tensors)
        with (
            open(tmp, "ab") as f,
            tqdm(total=total, unit="B", unit_scale=True, desc=final.name, disable=not progress, leave=False) as bar,
        ):
            f.write(b"\0" * (-f.tell() % align))
            for t in out.tensors:
                start = f.tell()
                for data in _chunks(t):
                    f.write(memoryview(np.ascontiguousarray(data)).cast("B"))
                    bar.update(data.nbytes)
                written = f.tell() - start
                if written != t.nbytes:
                    raise AssertionError(f"{t.name}: wrote {written} bytes, planned {t.nbytes}")
                f.write(b"\0" * (-written % align))
    except BaseException:
        w.close()
        tmp.unlink(missing_ok=True)
        raise
