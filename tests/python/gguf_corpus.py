"""Builds a corpus of malformed GGUF files from a small valid one (written with the reference
`gguf` package), for the malformed-input tests. Each case is (name, bytes, regex) where the regex
must match the reader's error message.

The valid base file is walked by a tiny independent layout parser that records the offset of every
header field, so corruptions patch exactly the intended field."""

from __future__ import annotations

import dataclasses
import os
import struct
import tempfile

import numpy as np

ALIGN = 64  # the base file uses a non-default alignment
SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
BLOCKS = {0: (1, 4), 1: (1, 2), 8: (32, 34)}  # the base file's tensor types: values, bytes per block
TRUNCATED = r"truncated|exceeds file size"


def _write(build) -> bytes:
    import gguf  # noqa: PLC0415  (only the corpus needs the reference writer)

    fd, path = tempfile.mkstemp(suffix=".gguf")
    os.close(fd)
    try:
        w = gguf.GGUFWriter(path, "llama")
        build(w, gguf)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def _base(w, gguf) -> None:
    w.add_custom_alignment(ALIGN)
    w.add_uint8("test.u8", 7)
    w.add_bool("test.bool", True)
    w.add_string("test.str", "hello")
    w.add_float32("test.f32", 0.5)
    w.add_array("test.arr_i32", [1, 2, 3])
    w.add_array("test.arr_str", ["a", "bb"])
    w.add_array("test.nested", [[1, 2], [3]])
    w.add_uint32("test.key_a", 1)
    w.add_uint32("test.key_b", 2)
    rng = np.random.default_rng(0)
    w.add_tensor("t.a", rng.standard_normal((2, 32)).astype(np.float32))
    q = gguf.quants.quantize(rng.standard_normal((2, 64)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("t.b", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("t.c", rng.standard_normal((4, 32)).astype(np.float16))


def _deep(w, gguf) -> None:
    v: list = [1]
    for _ in range(9):  # 10 levels of arrays in total
        v = [v]
    w.add_array("test.deep", v)


def base_file() -> bytes:
    return _write(_base)


@dataclasses.dataclass
class Layout:
    kv: dict  # key -> {"key_len", "type", "value", ["elem_type", "count"]} offsets
    tensors: dict  # name -> {"name_len", "n_dims", "dims": [...], "type", "offset", "offset_value"}
    boundaries: list  # start offset of every field, in order
    data_offset: int
    data_end: int  # end of the last tensor's data


def layout(buf: bytes) -> Layout:
    pos = 0
    bounds: list[int] = []

    def take(fmt: str) -> tuple[int, int]:
        nonlocal pos
        bounds.append(pos)
        (v,) = struct.unpack_from("<" + fmt, buf, pos)
        start = pos
        pos += struct.calcsize(fmt)
        return start, v

    def string() -> tuple[int, str]:
        nonlocal pos
        start, n = take("Q")
        s = buf[pos : pos + n].decode()
        pos += n
        return start, s

    def value(t: int) -> None:
        nonlocal pos
        if t == 8:
            string()
        elif t == 9:
            _, et = take("I")
            _, n = take("Q")
            for _ in range(n):
                value(et)
        else:
            bounds.append(pos)
            pos += SCALAR_SIZES[t]

    take("4s")
    take("I")
    _, n_t = take("Q")
    _, n_kv = take("Q")
    kv = {}
    for _ in range(n_kv):
        klen, key = string()
        to, t = take("I")
        entry = {"key_len": klen, "type": to, "value": pos}
        if t == 9:
            entry["elem_type"] = pos
            entry["count"] = pos + 4
        value(t)
        kv[key] = entry
    tensors = {}
    ends = []
    for _ in range(n_t):
        nlen, name = string()
        no, nd = take("I")
        dims = [take("Q")[0] for _ in range(nd)]
        to, _t = take("I")
        oo, off = take("Q")
        tensors[name] = {"name_len": nlen, "n_dims": no, "dims": dims, "type": to, "offset": oo, "offset_value": off}
        ne = [struct.unpack_from("<Q", buf, d)[0] for d in dims]
        block, block_bytes = BLOCKS[_t]
        ends.append(off + int(np.prod(ne)) // block * block_bytes)
    data_offset = (pos + ALIGN - 1) // ALIGN * ALIGN
    return Layout(kv, tensors, bounds, data_offset, data_offset + max(ends))


def _patch(buf: bytes, off: int, fmt: str, v) -> bytes:
    b = bytearray(buf)
    struct.pack_into("<" + fmt, b, off, v)
    return bytes(b)


def corpus() -> list[tuple[str, bytes, str]]:
    """The malformed cases: (name, file bytes, regex the error message must match)."""
    base = base_file()
    L = layout(base)
    data_end = L.data_end
    cases: list[tuple[str, bytes, str]] = []
    add = cases.append

    # --- truncation: at every field boundary, one byte into each field, and inside the data
    cuts = set(L.boundaries) | {b + 1 for b in L.boundaries}
    cuts |= {L.data_offset - 1, L.data_offset, L.data_offset + 1, data_end - 1, (L.data_offset + data_end) // 2}
    for n in sorted(c for c in cuts if 0 <= c < data_end):
        add((f"trunc_{n:05d}", base[:n], TRUNCATED))

    # --- header
    add(("bad_magic", b"GGUX" + base[4:], r"bad magic"))
    add(("not_gguf_text", b"hello world, this is not a model\n" * 4, r"bad magic"))
    add(("version_1", _patch(base, 4, "I", 1), r"unsupported version 1"))
    add(("version_4", _patch(base, 4, "I", 4), r"unsupported version 4"))
    add(("version_big_endian", _patch(base, 4, "I", 0x03000000), r"unsupported version .*big-endian"))
    add(("n_tensors_2p63", _patch(base, 8, "Q", 1 << 63), r"tensor count 9223372036854775808 is impossible"))
    add(("n_tensors_max", _patch(base, 8, "Q", (1 << 64) - 1), r"tensor count \d+ is impossible"))
    add(("n_kv_2p63", _patch(base, 16, "Q", 1 << 63), r"metadata count 9223372036854775808 is impossible"))
    add(("n_kv_plus_one", _patch(base, 16, "Q", len(L.kv) + 1), r"."))  # tensor infos misread as metadata

    # --- metadata
    kv = L.kv
    add(
        (
            "key_len_2p63",
            _patch(base, kv["general.architecture"]["key_len"], "Q", 1 << 63),
            r"string length 9223372036854775808",
        )
    )
    add(
        (
            "str_len_2p63",
            _patch(base, kv["test.str"]["value"], "Q", 1 << 63),
            r"key 'test.str'.*string length 9223372036854775808",
        )
    )
    add(
        (
            "arr_count_2p63",
            _patch(base, kv["test.arr_i32"]["count"], "Q", 1 << 63),
            r"key 'test.arr_i32'.*array length 9223372036854775808 is impossible",
        )
    )
    add(
        (
            "arr_str_count_2p63",
            _patch(base, kv["test.arr_str"]["count"], "Q", 1 << 63),
            r"array length 9223372036854775808",
        )
    )
    add(("value_type_13", _patch(base, kv["test.u8"]["type"], "I", 13), r"key 'test.u8'.*unknown value type 13"))
    add(("value_type_max", _patch(base, kv["test.u8"]["type"], "I", 0xFFFFFFFF), r"unknown value type 4294967295"))
    add(("elem_type_99", _patch(base, kv["test.arr_i32"]["elem_type"], "I", 99), r"unknown array element type 99"))
    add(("bool_2", _patch(base, kv["test.bool"]["value"], "B", 2), r"key 'test.bool'.*bool value 2"))
    key_b = kv["test.key_b"]["key_len"] + 8
    add(("duplicate_key", base[:key_b] + b"test.key_a" + base[key_b + 10 :], r"duplicate key 'test.key_a'"))
    add(
        (
            "alignment_0",
            _patch(base, kv["general.alignment"]["value"], "I", 0),
            r"general.alignment 0 is not a nonzero power of two",
        )
    )
    add(
        (
            "alignment_48",
            _patch(base, kv["general.alignment"]["value"], "I", 48),
            r"general.alignment 48 is not a nonzero power of two",
        )
    )
    add(
        (
            "alignment_i32",
            _patch(base, kv["general.alignment"]["type"], "I", 5),
            r"general.alignment must be a u32, got i32",
        )
    )
    add(("key_not_utf8", base[: key_b + 5] + b"\xff" + base[key_b + 6 :], r"key is not valid UTF-8"))
    add(("nested_too_deep", _write(_deep), r"key 'test.deep'.*nested deeper than"))

    # --- tensor infos
    ts = L.tensors
    add(
        (
            "tensor_name_len_2p63",
            _patch(base, ts["t.b"]["name_len"], "Q", 1 << 63),
            r"string length 9223372036854775808",
        )
    )
    nb = ts["t.b"]["name_len"] + 8
    add(("duplicate_tensor", base[:nb] + b"t.a" + base[nb + 3 :], r"duplicate tensor 't.a'"))
    add(("tensor_name_not_utf8", base[:nb] + b"t\xc0\xae" + base[nb + 3 :], r"name is not valid UTF-8"))
    add(("tensor_type_11", _patch(base, ts["t.b"]["type"], "I", 11), r"tensor 't.b'.*unsupported tensor type Q3_K"))
    add(
        (
            "tensor_type_9999",
            _patch(base, ts["t.b"]["type"], "I", 9999),
            r"tensor 't.b'.*unsupported tensor type type 9999",
        )
    )
    add(("n_dims_0", _patch(base, ts["t.b"]["n_dims"], "I", 0), r"tensor 't.b'.*n_dims 0 is not in 1..4"))
    add(("n_dims_5", _patch(base, ts["t.b"]["n_dims"], "I", 5), r"tensor 't.b'.*n_dims 5"))
    add(("n_dims_max", _patch(base, ts["t.b"]["n_dims"], "I", 0xFFFFFFFF), r"n_dims 4294967295"))
    add(("dim_0", _patch(base, ts["t.b"]["dims"][1], "Q", 0), r"tensor 't.b'.*dimension 1 is 0"))
    add(
        (
            "dim_negative",
            _patch(base, ts["t.b"]["dims"][1], "Q", (1 << 64) - 1),
            r"tensor 't.b'.*dimension 1 = 18446744073709551615 is too large",
        )
    )
    add(("dim_2p63", _patch(base, ts["t.a"]["dims"][0], "Q", 1 << 63), r"tensor 't.a'.*too large"))
    b = _patch(_patch(base, ts["t.a"]["dims"][0], "Q", 1 << 32), ts["t.a"]["dims"][1], "Q", 1 << 32)
    add(("dims_product_overflow", b, r"tensor 't.a'.*element count overflows"))
    b = _patch(_patch(base, ts["t.a"]["dims"][0], "Q", 1 << 40), ts["t.a"]["dims"][1], "Q", 1 << 22)
    add(("dims_bytes_overflow", b, r"tensor 't.a'.*overflows"))
    add(
        (
            "dim_huge_in_range",
            _patch(base, ts["t.c"]["dims"][1], "Q", 1 << 40),
            r"tensor 't.c'.*data range \[\d+, \d+\) exceeds file size \d+",
        )
    )
    add(
        (
            "ne0_not_block_multiple",
            _patch(base, ts["t.b"]["dims"][0], "Q", 48),
            r"tensor 't.b'.*48 is not a multiple of the Q8_0 block size 32",
        )
    )
    off_b = ts["t.b"]["offset_value"]
    add(
        (
            "offset_misaligned",
            _patch(base, ts["t.b"]["offset"], "Q", off_b + 32),
            rf"tensor 't.b'.*offset {off_b + 32} is not a multiple of the alignment 64",
        )
    )
    add(("offset_out_of_range", _patch(base, ts["t.c"]["offset"], "Q", 1 << 62), r"tensor 't.c'.*exceeds file size"))
    add(("offset_wraps", _patch(base, ts["t.c"]["offset"], "Q", (1 << 64) - 64), r"tensor 't.c'.*overflows"))
    add(
        (
            "overlap",
            _patch(base, ts["t.b"]["offset"], "Q", 0),
            r"tensors '.*' \[\d+, \d+\) and '.*' \[\d+, \d+\) overlap",
        )
    )
    add(("empty_file", b"", r"truncated at offset 0 while reading magic"))
    return cases


def write_corpus(directory: str | os.PathLike) -> list[tuple[str, str]]:
    """Writes every case as <directory>/<name>.gguf; returns [(path, regex)]."""
    out = []
    for name, data, rx in corpus():
        path = os.path.join(os.fspath(directory), name + ".gguf")
        with open(path, "wb") as f:
            f.write(data)
        out.append((path, rx))
    return out
