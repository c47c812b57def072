"""Read access to a Hugging Face model directory: JSON files and safetensors weights, one tensor (or a
range of rows) at a time, so that converting a checkpoint never holds more than one tensor in memory.

Weights are read with the `safetensors` package; BF16 tensors (which numpy cannot represent) are read
from the file's own header offsets and widened to float32 bit-exactly.
"""

from __future__ import annotations

import json
import pathlib
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import CheckpointError, MissingFieldError, MissingFileError

# safetensors dtype name -> numpy dtype (BF16 is handled separately)
_NP_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")


def read_json(path: pathlib.Path, required: bool = True) -> dict | None:
    """The parsed JSON object in `path`; None when absent and not required."""
    if not path.is_file():
        if required:
            raise MissingFileError(f"{path}: file not found")
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot be read as JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


_REQUIRED = object()


class Fields:
    """A JSON object with a name for error messages: `f.int("hidden_size")` raises MissingFieldError
    naming `config.json: text_config.hidden_size` when absent; with a default it takes the default.
    Values of the wrong type or out of range raise CheckpointError naming the field."""

    def __init__(self, data: dict, where: str, prefix: str = ""):
        self.data = data
        self.where = where
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        v = self.data.get(key)
        return default if v is None else v

    def _value(self, key: str, default: Any) -> Any:
        v = self.data.get(key)
        if v is None:
            if default is _REQUIRED:
                raise MissingFieldError(f"{self.where}: required field '{self.name(key)}' is missing")
            return default
        return v

    def bad(self, key: str, what: str) -> CheckpointError:
        return CheckpointError(f"{self.where}: field '{self.name(key)}' = {self.data.get(key)!r}: {what}")

    def int(self, key: str, default: Any = _REQUIRED, lo: int | None = None, hi: int | None = None) -> Any:
        v = self._value(key, default)
        if v is default and default is not _REQUIRED:
            return v
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.bad(key, "expected an integer")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.bad(key, f"out of range [{lo}, {hi}]")
        return v

    def float(self, key: str, default: Any = _REQUIRED) -> Any:
        v = self._value(key, default)
        if v is default and default is not _REQUIRED:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.bad(key, "expected a number")
        return float(v)

    def str(self, key: str, default: Any = _REQUIRED, choices: tuple[str, ...] | None = None) -> Any:
        v = self._value(key, default)
        if v is default and default is not _REQUIRED:
            return v
        if not isinstance(v, str):
            raise self.bad(key, "expected a string")
        if choices is not None and v not in choices:
            raise self.bad(key, f"unsupported value (supported: {', '.join(choices)})")
        return v

    def bool(self, key: str, default: Any = _REQUIRED) -> Any:
        v = self._value(key, default)
        if v is default and default is not _REQUIRED:
            return v
        if not isinstance(v, bool):
            raise self.bad(key, "expected true or false")
        return v

    def sub(self, key: str, required: bool = True) -> Fields | None:
        v = self.data.get(key)
        if v is None:
            if required:
                raise MissingFieldError(f"{self.where}: required section '{self.name(key)}' is missing")
            return None
        if not isinstance(v, dict):
            raise self.bad(key, "expected an object")
        return Fields(v, self.where, f"{self.prefix}{key}.")


@dataclass(frozen=True)
class TensorMeta:
    name: str
    dtype: str  # safetensors dtype name: F32, F16, BF16, ...
    shape: tuple[int, ...]
    file: pathlib.Path


class Checkpoint:
    """A Hugging Face directory: config.json and its safetensors weights (one file, or shards listed by
    model.safetensors.index.json). Tensor headers are read up front; data on request."""

    def __init__(self, directory: str | pathlib.Path):
        self.dir = pathlib.Path(directory)
        if not self.dir.exists():
            raise MissingFileError(f"{self.dir}: directory not found")
        if not self.dir.is_dir():
            raise CheckpointError(f"{self.dir}: not a directory (expected a Hugging Face model directory)")
        self.config = Fields(read_json(self.dir / "config.json"), "config.json")
        self.tensors: dict[str, TensorMeta] = {}
        self._headers: dict[pathlib.Path, tuple[int, dict]] = {}
        self._index_files()

    # ---- weights

    def _weight_files(self) -> list[pathlib.Path]:
        index = self.dir / "model.safetensors.index.json"
        if index.is_file():
            data = read_json(index)
            wm = data.get("weight_map")
            if not isinstance(wm, dict) or not wm:
                raise CheckpointError(f"{index}: 'weight_map' is missing or empty")
            files = []
            for fname in dict.fromkeys(wm.values()):
                p = self.dir / str(fname)
                if not p.is_file():
                    raise MissingFileError(f"{p}: safetensors shard listed in {index.name} not found")
                files.append(p)
            return files
        single = self.dir / "model.safetensors"
        if single.is_file():
            return [single]
        found = sorted(self.dir.glob("*.safetensors"))
        if found:
            return found
        others = [p.name for p in self.dir.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        hint = f" (found {', '.join(sorted(others))}: only safetensors weights are supported)" if others else ""
        raise MissingFileError(f"{self.dir}: no model.safetensors or model.safetensors.index.json{hint}")

    def _header(self, path: pathlib.Path) -> tuple[int, dict]:
        """(data offset, header dict) of a safetensors file, parsed from its first bytes."""
        if path not in self._headers:
            try:
                with open(path, "rb") as f:
                    raw = f.read(8)
                    if len(raw) != 8:
                        raise CheckpointError(f"{path}: truncated safetensors file")
                    (n,) = struct.unpack("<Q", raw)
                    size = path.stat().st_size
                    if n > size - 8 or n > 100 << 20:
                        raise CheckpointError(f"{path}: invalid safetensors header length {n}")
                    header = json.loads(f.read(n))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise CheckpointError(f"{path}: not a safetensors file ({e})") from None
            if not isinstance(header, dict):
                raise CheckpointError(f"{path}: not a safetensors file (header is not an object)")
            self._headers[path] = (8 + n, header)
        return self._headers[path]

    def _index_files(self) -> None:
        for path in self._weight_files():
            data_start, header = self._header(path)
            size = path.stat().st_size
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                try:
                    dtype, shape, (b, e) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
                except (KeyError, TypeError, ValueError):
                    raise CheckpointError(f"{path}: tensor '{name}' has a malformed header entry") from None
                n_el = int(np.prod(shape, dtype=np.int64)) if shape else 1
                width = 2 if dtype == "BF16" else np.dtype(_NP_DTYPES[dtype]).itemsize if dtype in _NP_DTYPES else 0
                if not isinstance(b, int) or not isinstance(e, int) or b < 0 or e < b or data_start + e > size:
                    raise CheckpointError(f"{path}: tensor '{name}': data_offsets {[b, e]} are outside the data")
                if width and e - b != n_el * width:
                    raise CheckpointError(f"{path}: tensor '{name}': data range does not match its shape {shape}")
                if name in self.tensors:
                    raise CheckpointError(f"{path}: tensor '{name}' also appears in {self.tensors[name].file.name}")
                self.tensors[name] = TensorMeta(name, dtype, shape, path)

    def meta(self, name: str) -> TensorMeta:
        try:
            return self.tensors[name]
        except KeyError:
            raise CheckpointError(f"{self.dir}: tensor '{name}' is missing from the safetensors files") from None

    def reader(self, name: str):
        """read(name, rows) as a function of rows alone (a tensor plan's data source)."""

        def read(rows: tuple[int, int] | None = None) -> np.ndarray:
            return self.read(name, rows)

        return read

    def read(self, name: str, rows: tuple[int, int] | None = None) -> np.ndarray:
        """The tensor (or rows [r0, r1) of its first axis) as float32 (floats) or its own dtype."""
        m = self.meta(name)
        if m.dtype not in FLOAT_DTYPES:
            raise CheckpointError(f"{m.file.name}: tensor '{name}' has dtype {m.dtype}; expected a float type")
        if m.dtype == "BF16":
            return self._read_bf16(m, rows)
        from safetensors import safe_open

        with safe_open(str(m.file), framework="np") as f:
            if rows is None:
                arr = f.get_tensor(name)
            else:
                arr = f.get_slice(name)[rows[0] : rows[1]]
        return np.ascontiguousarray(arr, dtype=np.float32)

    def _read_bf16(self, m: TensorMeta, rows: tuple[int, int] | None) -> np.ndarray:
        data_start, header = self._header(m.file)
        b, _ = header[m.name]["data_offsets"]
        shape = list(m.shape)
        row_elems = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        r0, r1 = rows if rows is not None else (0, shape[0] if shape else 1)
        count = (r1 - r0) * row_elems if shape else 1
        with open(m.file, "rb") as f:
            f.seek(data_start + b + 2 * r0 * row_elems)
            raw = np.fromfile(f, dtype="<u2", count=count)
        if raw.size != count:
            raise CheckpointError(f"{m.file}: tensor '{m.name}': data is truncated")
        out = (raw.astype(np.uint32) << 16).view(np.float32)
        if shape:
            shape[0] = r1 - r0
        return out.reshape(shape)
