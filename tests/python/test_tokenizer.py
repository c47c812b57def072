"""Tokenizer parity with implementations nobody here wrote.

The reference ids in tests/fixtures/tokenizer/ids.npz come from Hugging Face `tokenizers` (SmolLM2's
byte-level BPE under four pre-tokenizers) and from `sentencepiece` (a small BPE model stored as
tests/fixtures/tokenizer/spm_bpe.gguf); tests/fixtures/make_tokenizer_fixtures.py regenerates
them. Ids must match exactly, and decode(encode(x)) must give x back.
"""

import pathlib

import numpy as np
import pytest

from pyakvq._ext import _akvq

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "tokenizer"
TEXT = ROOT / "tests" / "fixtures" / "text" / "mixed.txt"
CHUNK = 4096


def read_text() -> str:
    with open(TEXT, encoding="utf-8", newline="") as f:
        return f.read()


def lines_of(text: str) -> list[str]:  # same split as the fixture script
    parts = text.split("\n")
    out = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def chunks_of(text: str) -> list[str]:
    return [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]


@pytest.fixture(scope="module")
def ref():
    data = np.load(FIX / "ids.npz")
    import hashlib

    digest = np.frombuffer(hashlib.sha256(TEXT.read_bytes()).digest(), dtype=np.uint8)
    assert np.array_equal(data["text_sha256"], digest), "mixed.txt changed: rerun make_tokenizer_fixtures.py"
    return data


def unpack(ref, key: str) -> list[list[int]]:
    ids, off = ref[f"{key}_ids"], ref[f"{key}_offsets"]
    return [ids[off[i] : off[i + 1]].astype(np.int64).tolist() for i in range(len(off) - 1)]


def compare(tok, texts, expected, add_special=False):
    assert len(texts) == len(expected)
    for i, (t, want) in enumerate(zip(texts, expected, strict=True)):
        got = tok.encode(t, add_special=add_special, parse_special=True)
        if got != want:
            k = next((j for j, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want)))

            def pieces(ids, k=k):
                return [tok.piece(x, True) for x in ids[max(0, k - 3) : k + 4]]

            pytest.fail(
                f"text {i} {t[:80]!r}: first difference at token {k}: ours {pieces(got)} vs reference {pieces(want)}"
            )


# ---- SmolLM2 (gpt2 byte-level BPE) against tokenizers ----


def read_vocab(src: pathlib.Path) -> dict:
    import gguf

    f = gguf.GGUFReader(str(src)).fields
    return {
        "tokens": [str(x) for x in f["tokenizer.ggml.tokens"].contents()],
        "types": [int(x) for x in f["tokenizer.ggml.token_type"].contents()],
        "merges": [str(x) for x in f["tokenizer.ggml.merges"].contents()],
        "bos": int(f["tokenizer.ggml.bos_token_id"].contents()),
        "eos": int(f["tokenizer.ggml.eos_token_id"].contents()),
    }


def write_gguf_with_pre(v: dict, dst: pathlib.Path, pre: str) -> None:
    """The SmolLM2 vocabulary in a tokenizer-only GGUF with another tokenizer.ggml.pre."""
    import gguf

    w = gguf.GGUFWriter(str(dst), arch="llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(v["tokens"])
    w.add_token_types(v["types"])
    w.add_token_merges(v["merges"])
    w.add_bos_token_id(v["bos"])
    w.add_eos_token_id(v["eos"])
    w.add_add_bos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def smollm2_tokenizers(smollm2_path, tmp_path_factory):
    out = {"smollm": _akvq.Tokenizer.from_file(str(smollm2_path)), "_path": str(smollm2_path)}
    d = tmp_path_factory.mktemp("tok")
    out["_dir"] = d
    vocab = read_vocab(pathlib.Path(smollm2_path))
    for pre in ("gpt-2", "default", "llama-bpe", "qwen2"):
        p = d / f"smollm2_{pre}.gguf"
        write_gguf_with_pre(vocab, p, pre)
        out[pre] = _akvq.Tokenizer.from_file(str(p))
    return out


@pytest.mark.parametrize("pre", ["smollm", "gpt-2", "llama-bpe", "qwen2"])
@pytest.mark.parametrize("kind", ["lines", "chunks"])
def test_smollm2_matches_hf_tokenizers(smollm2_tokenizers, ref, pre, kind):
    tok = smollm2_tokenizers[pre]
    text = read_text()
    texts = lines_of(text) if kind == "lines" else chunks_of(text)
    compare(tok, texts, unpack(ref, f"{pre}_{kind}"))


@pytest.mark.parametrize("pre", ["smollm", "gpt-2", "default", "llama-bpe", "qwen2"])
def test_smollm2_round_trip(smollm2_tokenizers, pre):
    tok = smollm2_tokenizers[pre]
    text = read_text()
    assert tok.decode(tok.encode(text, parse_special=False)) == text
    # control tokens vanish from decode unless rendered
    ids = tok.encode(text, parse_special=True)
    assert tok.decode(ids, render_special=True) == text
    assert "<|im_start|>" not in tok.decode(ids)


def test_smollm2_specials(smollm2_tokenizers):
    tok = smollm2_tokenizers["smollm"]
    assert (tok.n_vocab, tok.bos, tok.eos, tok.eot, tok.add_bos) == (49152, 1, 2, 2, False)
    s = "<|im_start|>user\nHi<|im_end|>"
    ids = tok.encode(s)
    assert ids[0] == 1 and ids[-1] == 2
    assert tok.encode(s, add_special=True) == tok.encode(s, add_special=False)  # add_bos_token false
    plain = tok.encode(s, parse_special=False)
    assert 1 not in plain and 2 not in plain and tok.decode(plain) == s
    assert tok.is_eog(2) and tok.is_eog(0)  # <|im_end|>, <|endoftext|>
    assert not tok.is_eog(1)
    assert tok.piece(1) == b"" and tok.piece(1, render_special=True) == b"<|im_start|>"
    assert tok.text(1) == "<|im_start|>" and tok.type(1) == 3
    # the REFERENCE.md example: digits split before the GPT-2 regex
    assert [tok.piece(i) for i in tok.encode("Inc.,\n 51")] == [b"Inc", b".,", b"\n ", b"5", b"1"]


def test_decode_replaces_invalid_utf8(smollm2_tokenizers):
    tok = smollm2_tokenizers["smollm"]
    ids = tok.encode("é😀€")
    assert b"".join(tok.piece(i) for i in ids) == "é😀€".encode()
    assert tok.decode(ids) == "é😀€"
    # the token of the lone byte 0xE2 (first byte of €) decodes to U+FFFD
    e2 = [i for i in range(tok.n_vocab) if tok.piece(i) == b"\xe2"]
    assert len(e2) == 1
    assert tok.decode(e2) == "\ufffd"
    assert tok.decode(e2 + tok.encode("x")) == "\ufffdx"


def test_bytes_without_a_token_are_dropped_as_llama_cpp_does(smollm2_tokenizers):
    """SmolLM2's vocabulary has no token for the bytes 0xF1 and 0xF2 (the lead bytes of
    U+40000..U+BFFFF), nor for some control characters. Plain text never yields a control token
    from them (they once became the unknown token, here <|endoftext|>): the byte is dropped and
    the bytes around it keep their tokens, as llama.cpp tokenizes the same file ("a" + U+50000 +
    "b": a, 3 continuation bytes, b). With llama-cpp-python at hand, random strings of such
    characters give its ids exactly."""
    import random

    tok = smollm2_tokenizers["smollm"]
    missing = [b for b in range(256) if not any(tok.piece(i) == bytes([b]) for i in range(tok.n_vocab))]
    assert {0xF1, 0xF2} <= set(missing) and 4 in missing  # and some control characters
    ids = tok.encode("a\U00050000b", add_special=False, parse_special=False)
    assert [tok.piece(i) for i in ids] == [b"a", b"\x90", b"\x80", b"\x80", b"b"]
    rng = random.Random(0)
    planes = [0x40000, 0x50000, 0x90000, 0xB0000, 0x1F600, 0x4E00, 0x41, 0x0]
    texts = [
        "".join(chr(rng.choice(planes) + rng.randrange(64)) for _ in range(rng.randrange(1, 12))) for _ in range(400)
    ]
    for t in texts:
        ids = tok.encode(t, add_special=False, parse_special=False)
        assert all(tok.type(i) != 3 for i in ids), (t, ids)  # no control token
    try:
        import llama_cpp  # noqa: PLC0415 - optional reference
    except ImportError:
        return
    ref = llama_cpp.Llama(str(tok_path(smollm2_tokenizers)), vocab_only=True, verbose=False)
    for t in texts:
        want = ref.tokenize(t.encode(), add_bos=False, special=False)
        assert tok.encode(t, add_special=False, parse_special=False) == want, t


def test_letters_and_digits_of_unicode_15_1_as_llama_cpp(smollm2_tokenizers):
    """The pre-tokenizer's classes are Unicode 15.1's, as llama.cpp's: CJK Extension H (U+31350)
    is a letter, so "'s" after it is one token (506), as llama.cpp and HF tokenizers give it; with
    Unicode 14.0 it was "other" and took the apostrophe ([23, 99]). Kaktovik numerals (U+1D2C0)
    are digits and Kawi letters (U+11F04) letters. With llama-cpp-python at hand, every code point
    of the ranges Unicode 15.0 and 15.1 added gives its ids in three contexts."""
    tok = smollm2_tokenizers["smollm"]
    assert tok.encode("\U00031350's", add_special=False, parse_special=False)[-1] == 506
    assert tok.piece(tok.encode("a\U0001d2c0", add_special=False, parse_special=False)[0]) == b"a"
    kawi = tok.encode("x\U00011f04's", add_special=False, parse_special=False)
    assert kawi[-1] == 506, kawi
    try:
        import llama_cpp  # noqa: PLC0415 - optional reference
    except ImportError:
        return
    ref = llama_cpp.Llama(str(tok_path(smollm2_tokenizers)), vocab_only=True, verbose=False)
    added = [
        (0x11F00, 0x11F59),
        (0x1D2C0, 0x1D2D3),
        (0x1E030, 0x1E08F),
        (0x1E4D0, 0x1E4F9),
        (0x2EBF0, 0x2EE5D),
        (0x31350, 0x323AF),
        (0x13430, 0x1345F),
        (0x11B00, 0x11B09),
    ]
    for a, b in added:
        for cp in range(a, b + 1):
            c = chr(cp)
            text = "a" + c + "'s 1" + c + "2 " + c + "!"
            assert tok.encode(text, add_special=False, parse_special=False) == ref.tokenize(
                text.encode(), add_bos=False, special=False
            ), hex(cp)


def test_default_pre_tokenizer_is_llama_cpps(smollm2_tokenizers):
    """tokenizer.ggml.pre = "default" (or none: old files) is llama.cpp's default pre-tokenizer, not
    GPT-2's: runs of punctuation and of $+<=>^~| are split off first, then the GPT-2 regex, then
    digit runs, then groups of three ASCII digits. It was GPT-2's ("'s" one piece, " #" one piece).
    The ids below are llama-cpp-python 0.3.36's on this vocabulary; with it installed, the lines of
    the mixed test text are compared too."""
    tok = smollm2_tokenizers["default"]
    cases = {
        "it's 12345 $100+<=>^~| ok": [
            269,
            23,
            99,
            216,
            33,
            34,
            35,
            36,
            37,
            216,
            20,
            33,
            32,
            32,
            27,
            44,
            45,
            46,
            78,
            110,
            108,
            10907,
        ],
        "a\u00a0's 1\u00a02": [81, 15442, 23, 99, 216, 33, 15442, 34],
        "x=1234567; y = 3.14": [104, 45, 33, 34, 35, 36, 37, 38, 39, 43, 329, 216, 45, 216, 35, 30, 33, 36],
    }
    for text, want in cases.items():
        assert tok.encode(text, add_special=False, parse_special=False) == want, text
    gpt2 = smollm2_tokenizers["gpt-2"].encode("it's", add_special=False, parse_special=False)
    assert [smollm2_tokenizers["gpt-2"].piece(i) for i in gpt2] == [b"it", b"'s"]  # gpt-2 keeps its own
    try:
        import llama_cpp  # noqa: PLC0415 - optional reference
    except ImportError:
        return
    ref = llama_cpp.Llama(str(smollm2_tokenizers["_dir"] / "smollm2_default.gguf"), vocab_only=True, verbose=False)
    for line in lines_of(read_text()):
        want = ref.tokenize(line.encode(), add_bos=False, special=False)
        assert tok.encode(line, add_special=False, parse_special=False) == want, line


def tok_path(toks) -> str:
    return toks["_path"]


def test_bad_ids(smollm2_tokenizers):
    tok = smollm2_tokenizers["smollm"]
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([49152])
    with pytest.raises(ValueError, match="out of range"):
        tok.piece(-1)


# ---- SentencePiece (llama) against sentencepiece ----


@pytest.fixture(scope="module")
def spm_tok():
    return _akvq.Tokenizer.from_file(str(FIX / "spm_bpe.gguf"))


@pytest.mark.parametrize("kind", ["lines", "chunks"])
def test_spm_matches_sentencepiece(spm_tok, ref, kind):
    text = read_text()
    texts = lines_of(text) if kind == "lines" else chunks_of(text)
    compare(spm_tok, texts, unpack(ref, f"spm_{kind}"))


def test_spm_unknown_token_text_is_special_as_in_llama_cpp(spm_tok):
    """The text "<unk>" is the unknown token (type 2) when special-token text is parsed, and plain
    text otherwise, as llama.cpp treats unknown tokens like control ones. It was always plain text
    ("<", "un", "k", ">"); llama-cpp-python 0.3.36 gives [261, 0, 269] and [261, 1016, 463, 987,
    1008, 981] on this vocabulary (and, when installed, is asked again)."""
    unk = [i for i in range(spm_tok.n_vocab) if spm_tok.type(i) == 2]
    assert unk == [0]
    special = spm_tok.encode("a<unk>b", add_special=False, parse_special=True)
    plain = spm_tok.encode("a<unk>b", add_special=False, parse_special=False)
    assert special == [261, 0, 269] and plain == [261, 1016, 463, 987, 1008, 981]
    try:
        import llama_cpp  # noqa: PLC0415 - optional reference
    except ImportError:
        return
    ref = llama_cpp.Llama(str(FIX / "spm_bpe.gguf"), vocab_only=True, verbose=False)
    for text in ("a<unk>b", "<unk>", " <unk> <unk>x", "<un<unk>k>"):
        for sp in (True, False):
            want = ref.tokenize(text.encode(), add_bos=False, special=sp)
            assert spm_tok.encode(text, add_special=False, parse_special=sp) == want, (text, sp)


def test_spm_bos_and_round_trip(spm_tok):
    assert (spm_tok.n_vocab, spm_tok.bos, spm_tok.eos, spm_tok.add_bos) == (1500, 1, 2, True)
    text = read_text()
    ids = spm_tok.encode(text)
    assert ids[0] == spm_tok.bos and ids.count(spm_tok.bos) == 1
    assert spm_tok.decode(ids) == text
    for line in lines_of(text)[:200]:
        assert spm_tok.decode(spm_tok.encode(line)) == line
    # byte fallback: CJK is not in this small vocabulary
    cjk = spm_tok.encode("語", add_special=False)
    assert [spm_tok.type(i) for i in cjk[1:]] == [6, 6, 6]
    assert spm_tok.piece(cjk[1]) == "語".encode()[:1]


# ---- malformed vocabularies ----


def write_vocab(path, model="gpt2", pre="default", tokens=None, merges=None):
    import gguf

    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_tokenizer_model(model)
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens or ["a", "b", "ab"])
    if merges is not None:
        w.add_token_merges(merges)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"model": "wordpiece"}, "unsupported tokenizer.ggml.model 'wordpiece'"),
        ({"pre": "falcon", "merges": ["a b"]}, "unsupported tokenizer.ggml.pre 'falcon'"),
        ({}, "missing key tokenizer.ggml.merges"),  # BPE without merges (llama.cpp refuses it too)
        ({"merges": ["a c"]}, "'c' is not a token"),
        ({"merges": ["b a"]}, "the merged 'ba' is not a token"),
        ({"model": "llama"}, "scores is required"),
    ],
)
def test_malformed_vocab(tmp_path, kwargs, needle):
    p = tmp_path / "bad.gguf"
    write_vocab(p, **kwargs)
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        _akvq.Tokenizer.from_file(str(p))


def test_good_tiny_vocab_and_missing_file(tmp_path):
    p = tmp_path / "ok.gguf"
    write_vocab(p, merges=["a b"])
    tok = _akvq.Tokenizer.from_file(str(p))
    assert tok.encode("abba") == [2, 1, 0]
    with pytest.raises(OSError):
        _akvq.Tokenizer.from_file(str(tmp_path / "missing.gguf"))
