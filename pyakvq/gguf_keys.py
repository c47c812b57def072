"""Copies of a GGUF file with one metadata key set: every other key and every tensor byte for
byte, streamed (the tensor data is never loaded whole). GGUF v3 layout (the `gguf` package's
reader gives the fields' raw extents): header, key-value pairs, tensor infos, padding to the
file's alignment, data."""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Sequence

from gguf import GGUFReader, GGUFValueType

from ._files import output_target, replacing


def _string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def int32_array_value(values: Sequence[int]) -> bytes:
    """The value bytes of an array of int32 (type tag included)."""
    head = struct.pack("<IIQ", GGUFValueType.ARRAY, GGUFValueType.INT32, len(values))
    return head + struct.pack(f"<{len(values)}i", *values)


def string_value(s: str) -> bytes:
    """The value bytes of a string (type tag included)."""
    return struct.pack("<I", GGUFValueType.STRING) + _string(s)


def copy_with_key(src: str | os.PathLike, dst: str | os.PathLike, key: str, value: bytes) -> None:
    """Copies the GGUF file src to dst with `key` set to `value` (int32_array_value(...) or
    string_value(...)); an existing value of the key is replaced. dst is written under a
    temporary name and moved into place at the end (pyakvq._files.replacing: through a symbolic
    link, never over a device). ValueError when dst is src (a link to it too) or a device, FIFO or
    socket."""
    if output_target(src)[0] == output_target(dst)[0]:
        raise ValueError("dst must differ from src")
    r = GGUFReader(src, "r")
    raw = r.data

    def field_bytes(f) -> bytes:
        size = sum(int(p.nbytes) for p in f.parts)
        return bytes(raw[f.offset : f.offset + size])

    kvs = [field_bytes(f) for f in r.fields.values() if not f.name.startswith("GGUF.") and f.name != key]
    kvs.append(_string(key) + value)
    infos = [field_bytes(t.field) for t in r.tensors]
    head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kvs)) + b"".join(kvs) + b"".join(infos)
    align = int(r.alignment)
    head += b"\0" * (-len(head) % align)
    data_offset = int(r.data_offset)
    with replacing(dst) as tmp, open(src, "rb") as fi, open(tmp, "wb") as fo:
        fo.write(head)
        fi.seek(data_offset)
        shutil.copyfileobj(fi, fo, 16 << 20)
