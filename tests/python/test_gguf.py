"""GGUF reader through the binding, against the reference `gguf` package (writer, reader, codecs).

Files are written with gguf.GGUFWriter (every metadata type, nested arrays, 2-D tensors of every
supported type, quantized with gguf.quants.quantize); metadata must read back exactly, tensor bytes
must be identical, and tensor_f32 must equal gguf.quants.dequantize exactly (both are deterministic
codecs computing the same float32 expressions; tolerance 0). The real SmolLM2 file is compared with
gguf.GGUFReader the same way."""

import struct

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize, quantize

from pyakvq._ext import _akvq

T = gguf.GGMLQuantizationType
V = gguf.GGUFValueType

# key -> (writer method or value type, value); the expected Python value is `value` (f32 rounded).
METADATA = {
    "t.u8": ("add_uint8", 255),
    "t.i8": ("add_int8", -128),
    "t.u16": ("add_uint16", 65535),
    "t.i16": ("add_int16", -32768),
    "t.u32": ("add_uint32", 4294967295),
    "t.i32": ("add_int32", -2147483648),
    "t.f32": ("add_float32", 0.1),
    "t.u64": ("add_uint64", 18446744073709551615),
    "t.i64": ("add_int64", -9223372036854775808),
    "t.f64": ("add_float64", -1.0000000000000002),
    "t.bool_true": ("add_bool", True),
    "t.bool_false": ("add_bool", False),
    "t.str": ("add_string", "héllo wörld ✓\n\t"),
    "t.arr_str": ("add_array", ["a", "", "ccc", "✓"]),
    "t.arr_i32": ("add_array", [1, -2, 3]),
    "t.arr_f32": ("add_array", [0.5, -1.25, 0.1]),
    "t.arr_bool": ("add_array", [True, False, True]),
    "t.nested": ("add_array", [[1, 2], [3], [4, 5, 6]]),
    "t.nested_str": ("add_array", [["x", "y"], ["z"]]),
    "t.nested3": ("add_array", [[[1.5], [2.5, 3.5]]]),
}
TYPED_ARRAYS = {  # arrays with an explicit element type
    "t.arr_u8": (V.UINT8, [0, 255, 7]),
    "t.arr_i16": (V.INT16, [-32768, 32767]),
    "t.arr_u64": (V.UINT64, [0, 18446744073709551615]),
    "t.arr_i64": (V.INT64, [-9223372036854775808, 5]),
    "t.arr_f64": (V.FLOAT64, [1e300, -2.5]),
}

# name -> (type, numpy shape outermost first)
TENSORS = {
    "w.f32": (T.F32, (3, 64)),
    "w.f16": (T.F16, (4, 32)),
    "w.bf16": (T.BF16, (2, 3, 16)),
    "w.q4_0": (T.Q4_0, (5, 64)),
    "w.q4_1": (T.Q4_1, (5, 96)),
    "w.q8_0": (T.Q8_0, (7, 32)),
    "w.q4_k": (T.Q4_K, (3, 512)),
    "w.q6_k": (T.Q6_K, (3, 256)),
    "w.vec": (T.F32, (10,)),
    "w.4d": (T.Q8_0, (2, 1, 3, 32)),
}


def f32(x):
    """The value a float32 field holds, as a Python float."""
    if isinstance(x, list):
        return [f32(v) for v in x]
    return float(np.float32(x))


def flatten(x):
    return [w for v in x for w in flatten(v)] if isinstance(x, list) else [x]


def expected_value(key):
    kind, v = METADATA[key]
    if kind == "add_float32" or key in ("t.arr_f32", "t.nested3"):
        return f32(v)
    return v


# Where the fp16 super-block scales sit in K-quant blocks (byte offsets within a block).
K_SCALE_OFFSETS = {T.Q4_K: (144, [0, 2]), T.Q6_K: (210, [208])}


def random_k_blocks(rng, qtype, shape):
    """K-quant rows made of random blocks with finite random fp16 scales: every bit pattern of the
    other fields is a valid block. (gguf 0.19's numpy codec has no K-quant quantizer.)"""
    block_bytes, scale_offsets = K_SCALE_OFFSETS[qtype]
    n_blocks = int(np.prod(shape)) // 256
    b = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for off in scale_offsets:
        scales = rng.uniform(-0.05, 0.05, size=n_blocks).astype(np.float16)
        b[:, off : off + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return b.reshape(shape[:-1] + (shape[-1] // 256 * block_bytes,))


def make_quantized(rng, qtype, shape):
    x = (rng.standard_normal(shape) * rng.uniform(0.01, 3.0, size=shape[:-1] + (1,))).astype(np.float32)
    x[..., :3] = [0.0, -0.0, 1e-9]  # zeros and tiny values in every row
    try:
        return quantize(x, qtype)
    except NotImplementedError:
        return random_k_blocks(rng, qtype, shape)


def write_file(path, alignment=None, version=None, seed=0):
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, (method, v) in METADATA.items():
        getattr(w, method)(key, v)
    for key, (et, v) in TYPED_ARRAYS.items():
        w.add_key_value(key, v, V.ARRAY, sub_type=et)
    data = {}
    for name, (qtype, shape) in TENSORS.items():
        q = make_quantized(rng, qtype, shape)
        data[name] = q
        w.add_tensor(name, q, raw_dtype=qtype if q.dtype == np.uint8 else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if version is not None:
        with open(path, "r+b") as fp:
            fp.seek(4)
            fp.write(struct.pack("<I", version))
    return data


@pytest.fixture(scope="module", params=[(None, 3), (64, 3), (None, 2), (256, 2)], ids=lambda p: f"align{p[0]}-v{p[1]}")
def written(request, tmp_path_factory):
    alignment, version = request.param
    path = tmp_path_factory.mktemp("gguf") / "all.gguf"
    data = write_file(path, alignment=alignment, version=version)
    return path, alignment or 32, version, data


def test_header(written):
    path, alignment, version, _ = written
    f = _akvq.GGUFFile(str(path))
    assert f.version == version
    assert f.alignment == alignment
    assert f.data_offset % alignment == 0
    assert f.file_size == path.stat().st_size


def test_metadata_exact(written):
    path, alignment, _, _ = written
    f = _akvq.GGUFFile(path)  # os.PathLike works too
    expected_keys = ["general.architecture"] + (["general.alignment"] if alignment != 32 else [])
    expected_keys += list(METADATA) + list(TYPED_ARRAYS)
    assert f.keys() == expected_keys
    assert f.get("general.architecture") == "llama"
    for key in METADATA:
        got = f.get(key)
        assert got == expected_value(key), key
        assert type(got) is type(expected_value(key)), key  # bool stays bool, int stays int
    for key, (_, v) in TYPED_ARRAYS.items():
        assert f.get(key) == v, key
    assert f.get("absent") is None
    assert f.get("absent", 5) == 5
    assert "t.u8" in f and "absent" not in f


def test_metadata_matches_reference_reader(written):
    path, *_ = written
    f = _akvq.GGUFFile(str(path))
    ref = gguf.GGUFReader(str(path))
    assert f.keys() == [k for k in ref.fields if not k.startswith("GGUF.")]
    for key in f.keys():
        field = ref.fields[key]
        want = field.contents()
        if field.types[-1] == V.FLOAT32:
            want = f32(want)
        got = f.get(key)
        if field.types[:2] == [V.ARRAY, V.ARRAY]:
            got = flatten(got)  # the reference reader flattens nested arrays
        assert got == want, key


def test_tensor_table(written):
    path, *_ = written
    f = _akvq.GGUFFile(str(path))
    ref = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    table = f.tensors()
    assert [t[0] for t in table] == list(TENSORS)
    for name, type_name, shape, offset in table:
        qtype, np_shape = TENSORS[name]
        assert type_name == qtype.name
        assert shape == tuple(reversed(np_shape))  # innermost first
        assert f.data_offset + offset == ref[name].data_offset
        assert offset % f.alignment == 0


def test_tensor_bytes_identical(written):
    path, _, _, data = written
    f = _akvq.GGUFFile(str(path))
    for name, q in data.items():
        b = f.tensor_bytes(name)
        assert b.dtype == np.uint8 and b.ndim == 1
        assert b.tobytes() == q.tobytes(), name


@pytest.mark.parametrize("name", list(TENSORS))
def test_tensor_f32_matches_reference_dequantize(written, name):
    path, _, _, data = written
    f = _akvq.GGUFFile(str(path))
    qtype, shape = TENSORS[name]
    want = dequantize(data[name], qtype).reshape(shape)
    got = f.tensor_f32(name)
    assert got.dtype == np.float32
    assert got.shape == shape
    # exact: same codec expressions in float32 (tolerance 0; bitwise, NaN never occurs here)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=name)


def test_arrays_are_independent_copies(written):
    path, _, _, data = written
    f = _akvq.GGUFFile(str(path))
    a = f.tensor_f32("w.f32")
    b = f.tensor_bytes("w.f32")
    del f  # arrays own their memory; the mapping may go away
    a[:] = 0
    b[:] = 0
    np.testing.assert_array_equal(_akvq.GGUFFile(str(path)).tensor_f32("w.f32"), data["w.f32"])


def test_unknown_tensor(written):
    f = _akvq.GGUFFile(str(written[0]))
    with pytest.raises(ValueError, match="tensor 'nope' is missing"):
        f.tensor_f32("nope")


# ---- the real model file ----


@pytest.fixture(scope="module")
def smol(smollm2_path):
    return _akvq.GGUFFile(str(smollm2_path)), gguf.GGUFReader(str(smollm2_path))


def test_smollm2_metadata(smol):
    f, ref = smol
    assert f.version == 3
    assert f.get("general.architecture") == "llama"
    assert f.get("llama.block_count") == 30
    assert f.get("llama.embedding_length") == 576
    assert f.get("tokenizer.ggml.pre") == "smollm"
    assert f.keys() == [k for k in ref.fields if not k.startswith("GGUF.")]
    for key in f.keys():
        field = ref.fields[key]
        want = field.contents()
        if field.types[-1] == V.FLOAT32:
            want = f32(want)
        assert f.get(key) == want, key
    assert len(f.get("tokenizer.ggml.tokens")) == 49152


def test_smollm2_tensors(smol):
    f, ref = smol
    rt = {t.name: t for t in ref.tensors}
    table = f.tensors()
    assert len(table) == len(rt) == 272
    for name, type_name, shape, offset in table:
        r = rt[name]
        assert type_name == r.tensor_type.name, name
        assert shape == tuple(int(d) for d in r.shape), name
        assert f.data_offset + offset == r.data_offset, name
    for name in [
        "token_embd.weight",
        "blk.0.attn_q.weight",
        "blk.29.ffn_down.weight",
        "output_norm.weight",
        "blk.7.attn_norm.weight",
    ]:
        r = rt[name]
        want = dequantize(np.asarray(r.data), r.tensor_type).reshape(tuple(int(d) for d in reversed(r.shape)))
        got = f.tensor_f32(name)
        assert got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert f.tensor_bytes(name).tobytes() == np.asarray(r.data).tobytes(), name
