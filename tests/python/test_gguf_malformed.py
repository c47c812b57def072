"""Malformed GGUF files must be rejected with a clear error, never a crash.

The corpus (gguf_corpus.py) is derived from a small valid file written by the reference `gguf`
package: truncations at every field boundary, bad magic/version, huge counts and lengths, bad type
ids, bad dims, bad offsets, overlapping tensors, bad alignment, duplicate keys/tensors. Each case is
opened (1) through the Python binding, which must raise ValueError whose message matches the case's
regex, and (2) by tools_gguf_check built with AddressSanitizer + UBSan, which must print ERR for
every file with no sanitizer report."""

import os
import pathlib
import re
import subprocess

import pytest
from gguf_corpus import base_file, corpus, write_corpus

from pyakvq._ext import _akvq

CASES = corpus()


def test_base_file_is_valid(tmp_path):
    p = tmp_path / "base.gguf"
    p.write_bytes(base_file())
    f = _akvq.GGUFFile(str(p))
    assert f.alignment == 64
    assert [t[0] for t in f.tensors()] == ["t.a", "t.b", "t.c"]


def test_corpus_covers_every_kind():
    names = {n for n, _, _ in CASES}
    assert sum(n.startswith("trunc_") for n in names) > 80
    for kind in [
        "bad_magic",
        "version_1",
        "n_tensors_2p63",
        "str_len_2p63",
        "arr_count_2p63",
        "value_type_13",
        "tensor_type_11",
        "dim_0",
        "dim_negative",
        "dims_product_overflow",
        "offset_misaligned",
        "offset_out_of_range",
        "overlap",
        "alignment_0",
        "duplicate_key",
        "duplicate_tensor",
    ]:
        assert kind in names


@pytest.mark.parametrize("name,data,regex", CASES, ids=[c[0] for c in CASES])
def test_binding_rejects(tmp_path, name, data, regex):
    p = tmp_path / f"{name}.gguf"
    p.write_bytes(data)
    with pytest.raises(ValueError) as ei:
        _akvq.GGUFFile(str(p))
    msg = str(ei.value)
    assert msg.startswith(f"[gguf] {p}: "), msg
    assert re.search(regex, msg), f"{regex!r} not in {msg!r}"


def test_missing_file_is_oserror(tmp_path):
    p = tmp_path / "nope.gguf"
    with pytest.raises(OSError, match="No such file"):
        _akvq.GGUFFile(str(p))
    with pytest.raises(OSError, match="directory"):
        _akvq.GGUFFile(str(tmp_path))


# ---- the same corpus through the reader built with AddressSanitizer + UBSan ----


@pytest.fixture(scope="session")
def asan_gguf_check(cpp_build) -> pathlib.Path:
    """tools_gguf_check from the ASan/UBSan build of the C++ tests (conftest.cpp_build)."""
    return cpp_build / "tools_gguf_check"


def _run_checker(tool, paths):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    env.pop("LD_PRELOAD", None)  # the ASan runtime must come first
    return subprocess.run([str(tool), *map(str, paths)], capture_output=True, text=True, env=env, timeout=120)


def test_asan_corpus(asan_gguf_check, tmp_path):
    cases = write_corpus(tmp_path)
    r = _run_checker(asan_gguf_check, [p for p, _ in cases])
    report = r.stdout[-20000:] + r.stderr[-20000:]
    assert r.returncode == 0, report
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, report
    lines = r.stdout.splitlines()
    assert len(lines) == len(cases), report
    for line, (path, regex) in zip(lines, cases, strict=True):
        assert line.startswith(f"ERR {path}: [gguf] {path}: "), line
        assert re.search(regex, line), f"{regex!r} not in {line!r}"


def test_asan_valid_files(asan_gguf_check, tmp_path, smollm2_path):
    base = tmp_path / "base.gguf"
    base.write_bytes(base_file())
    r = _run_checker(asan_gguf_check, [base, smollm2_path, tmp_path / "missing.gguf"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    assert r.stdout.splitlines()[:2] == [f"OK {base}", f"OK {smollm2_path}"]
    assert re.match(rf"ERR {re.escape(str(tmp_path))}/missing.gguf: .*No such file", r.stdout.splitlines()[2])


def test_fewer_tokens_than_embedding_rows_is_refused(tmp_path):
    """The demo model with its token list cut to 480 of its 512 embedding rows: refused at load, as
    llama.cpp refuses it ("wrong shape"). It used to load, and sampling a row past the tokens ended a
    generation midway with "token id out of range"."""
    import gguf
    import numpy as np
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    import pyakvq

    r = GGUFReader(str(pyakvq.demo_model_path()))
    dst = tmp_path / "fewer-tokens.gguf"
    w = GGUFWriter(str(dst), "llama")
    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        v = f.contents()
        if key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type"):
            v = v[:480]
        if key == "tokenizer.ggml.merges":  # the merges whose parts and result are left
            keep = set(r.fields["tokenizer.ggml.tokens"].contents()[:480])
            v = [m for m in v if m.replace(" ", "", 1) in keep and all(p in keep for p in m.split(" ", 1))]
        if f.types[0] == GGUFValueType.ARRAY:
            w.add_key_value(key, list(v), GGUFValueType.ARRAY, sub_type=f.types[-1])
        else:
            w.add_key_value(key, v, f.types[0])
    for t in r.tensors:
        data = np.array(t.data)
        if t.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            data = data.reshape([int(x) for x in reversed(t.shape.tolist())])
        w.add_tensor(t.name, data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match="the tokenizer has 480 tokens but token_embd.weight has 512 rows"):
        pyakvq.Model(str(dst))


def test_metadata_strings_that_are_not_utf8(tmp_path):
    """GGUF strings are UTF-8; a file whose strings are not still gets the engine's own answer: a
    model name with U+FFFD for the bad byte, and the engine's message (quoting the bad value) for an
    unsupported pre-tokenizer. Both gave a UnicodeDecodeError naming neither key nor file."""
    import pyakvq

    demo = pyakvq.demo_model_path().read_bytes()
    name = bytearray(demo)
    name[name.find(b"pyakvq demo VLM")] = 0xFF
    (tmp_path / "name.gguf").write_bytes(name)
    with pyakvq.Model(str(tmp_path / "name.gguf")) as m:
        assert m.info["name"] == "\ufffdyakvq demo VLM (shapes)"
    pre = bytearray(demo)
    pre[pre.find(b"gpt-2")] = 0xFF
    (tmp_path / "pre.gguf").write_bytes(pre)
    with pytest.raises(ValueError, match="unsupported tokenizer.ggml.pre '\ufffdpt-2'"):
        pyakvq.Model(str(tmp_path / "pre.gguf"))


def test_an_image_token_id_naming_another_token_is_refused(tmp_path):
    """akvq.vision.image_token_id = 0 ('</s>') in the demo model, whose vocabulary has an '<image>'
    token: refused at load by Python and akvq-cli alike. akvq-cli answered (it finds markers by
    their text) while Model.chat failed ("0 image markers but 1 image")."""
    import struct
    import subprocess

    import pyakvq
    from pyakvq.gguf_keys import copy_with_key

    bad = tmp_path / "image-token-0.gguf"
    copy_with_key(pyakvq.demo_model_path(), bad, "akvq.vision.image_token_id", struct.pack("<Ii", 5, 0))
    want = r"the image token id 0 \('</s>'\) of .* is not the vocabulary's '<image>' token \(id \d+\)"
    with pytest.raises(ValueError, match=want):
        pyakvq.Model(str(bad))
    from test_helpers import cli

    image = pathlib.Path(__file__).resolve().parents[2] / "examples" / "red_circle.png"
    r = subprocess.run(
        [cli(), "-m", str(bad), "--image", str(image), "-p", "What color?", "-n", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and re.search(want, r.stderr), r.stderr
