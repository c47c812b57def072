"""pyakvq.perplexity (llama.cpp's protocol) against an independent numpy computation from
Model.logits, the f16-vs-f16 reference figures, argument errors and the `python -m pyakvq` CLI."""

import importlib
import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import pyakvq
from pyakvq.__main__ import parse_kv_opts

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROSE = ROOT / "tests" / "fixtures" / "text" / "prose_en.txt"
N_CTX = 256
# the module (pyakvq.perplexity is the function once the package exports it)
ppl_mod = importlib.import_module("pyakvq.perplexity")


@pytest.fixture(scope="module")
def prose() -> str:
    return PROSE.read_text(encoding="utf-8")


def numpy_perplexity(model_path, text, n_ctx, n_chunks):
    """The protocol written out independently: tokens without specials; chunk c is tokens
    [c*n_ctx, (c+1)*n_ctx) with its first token replaced by BOS when the model adds one; from an
    empty cache (Model.logits), log p(token[j+1] | ..j) summed for j in [n_ctx/2, n_ctx-2]."""
    with pyakvq.Model(model_path, n_ctx=n_ctx, n_threads=2) as m:
        info = m.info
        ids = m.tokenize(text, add_special=False)
        nll, n = 0.0, 0
        for c in range(n_chunks):
            chunk = ids[c * n_ctx : c * n_ctx + n_ctx]
            if info["add_bos"]:
                chunk = [info["bos"]] + chunk[1:]
            logits = m.logits(chunk).astype(np.float64)  # [n_ctx, n_vocab]
            for j in range(n_ctx // 2, n_ctx - 1):
                row = logits[j]
                lse = np.logaddexp.reduce(row)
                nll += lse - row[chunk[j + 1]]
                n += 1
    return math.exp(nll / n), n


def test_f16_matches_numpy(smollm2_path, prose):
    r = pyakvq_perplexity(smollm2_path, prose, n_ctx=N_CTX, kv="f16", n_threads=2, max_chunks=2)
    want, n = numpy_perplexity(smollm2_path, prose, N_CTX, 2)
    assert r["n_chunks"] == 2
    assert r["n_tokens"] == n == 2 * (N_CTX // 2 - 1)
    assert r["kv"] == "f16"
    assert r["ppl"] == pytest.approx(want, rel=1e-6)
    assert r["nll"] == pytest.approx(math.log(want), rel=1e-6)
    assert 1 < r["ppl"] < 200  # a sane figure for English prose on SmolLM2
    if r["bits_per_element"] is not None:
        assert r["bits_per_element"] == pytest.approx(16.0)


def pyakvq_perplexity(*a, **kw):
    # pyakvq.perplexity is the function once the package exports it; the module's function otherwise
    f = getattr(pyakvq, "perplexity", None)
    if not callable(f):
        f = ppl_mod.perplexity
    return f(*a, **kw)


def test_reference_f16_against_itself(smollm2_path, prose):
    # a separate reference model: two f16 runs of the same chunks must agree exactly
    (r,) = ppl_mod.perplexity_many(
        smollm2_path,
        prose,
        [("f16", {})],
        n_ctx=N_CTX,
        reference="f16",
        n_threads=2,
        max_chunks=1,
        share_reference=False,
    )
    assert r["reference"] == "f16"
    assert abs(r["kl"]) < 1e-9
    assert r["top1"] == 1.0
    # the shared path gives the same perplexity
    r2 = ppl_mod.perplexity(smollm2_path, prose, n_ctx=N_CTX, reference="f16", n_threads=2, max_chunks=1)
    assert r2["kl"] == 0.0 and r2["top1"] == 1.0
    assert r2["ppl"] == pytest.approx(r["ppl"], rel=1e-12)


def test_chunk_tokens():
    ids = list(range(10, 30))
    assert ppl_mod.chunk_tokens(ids, 8, None) == [list(range(10, 18)), list(range(18, 26))]
    assert ppl_mod.chunk_tokens(ids, 8, 1) == [[1, *range(11, 18)], [1, *range(19, 26)]]
    assert ppl_mod.chunk_tokens(ids, 8, None, max_chunks=1) == [list(range(10, 18))]


def test_protocol_tokens_as_llama_perplexity(smollm2_path, tmp_path):
    """The text is tokenized as llama-perplexity's common_tokenize(ctx, text, true): the model's BOS
    first when it adds one (chunk 0 = BOS + the text's first n_ctx - 1 tokens, not BOS in place of
    the first), and special-token text as plain text (it was read as control tokens, which
    scored a text quoting chat markup as another text: 39.3 against llama.cpp's 19.9)."""
    import llava_convert as lc

    text = "<|im_start|>user\nHello there<|im_end|> " * 3
    with pyakvq.Model(smollm2_path, n_ctx=64, n_threads=2) as m:
        ids = ppl_mod.protocol_tokens(m, text)
        assert ids == m.tokenize(text, add_special=False, parse_special=False)  # SmolLM2 adds no BOS
        assert m.info["bos"] not in ids and m.detokenize(ids) == text
    (path,) = lc.convert_fixture("spm_default_pad", tmp_path)  # a Llama tokenizer that adds BOS
    with pyakvq.Model(path, n_ctx=64, n_threads=1) as m:
        assert m.info["add_bos"]
        ids = ppl_mod.protocol_tokens(m, "One two three four five six seven eight nine ten. " * 3)
        plain = m.tokenize("One two three four five six seven eight nine ten. " * 3, add_special=False)
        assert ids == [m.info["bos"], *plain]
        chunks = ppl_mod.chunk_tokens(ids, 8, m.info["bos"])
        assert chunks[0] == [m.info["bos"], *plain[:7]] and chunks[1] == [m.info["bos"], *plain[8:15]]


@pytest.mark.parametrize(
    "kw, exc, needle",
    [
        ({"n_ctx": 255}, ValueError, "n_ctx"),
        ({"n_ctx": 8}, ValueError, "n_ctx"),
        ({"n_ctx": 256.0}, TypeError, "n_ctx"),
        ({"max_chunks": 0}, ValueError, "max_chunks"),
        ({"n_threads": 0}, ValueError, "n_threads"),
        ({"reference": 16}, TypeError, "reference"),
        ({"kv": 2}, TypeError, "kv"),
    ],
)
def test_argument_errors(smollm2_path, prose, kw, exc, needle):
    args = {"n_ctx": N_CTX, **kw}
    with pytest.raises(exc, match=needle):
        ppl_mod.perplexity(smollm2_path, prose, **args)


def test_text_errors(smollm2_path):
    with pytest.raises(ValueError, match="text has .* tokens, fewer than n_ctx=256"):
        ppl_mod.perplexity(smollm2_path, "Too short to fill a chunk.", n_ctx=256)
    with pytest.raises(TypeError, match="text"):
        ppl_mod.perplexity(smollm2_path, b"bytes", n_ctx=256)


def test_bad_kv_mode(smollm2_path, prose):
    with pytest.raises(ValueError, match="bogus"):
        ppl_mod.perplexity(smollm2_path, prose, n_ctx=N_CTX, kv="bogus", max_chunks=1)


def test_parse_kv_opts():
    assert parse_kv_opts(["bits=2", "clip=0.7", "tsa_layers=0,1", "name=x", "tsa_layers2="]) == {
        "bits": 2,
        "clip": 0.7,
        "tsa_layers": [0, 1],
        "name": "x",
        "tsa_layers2": [],
    }
    with pytest.raises(ValueError, match="key=value"):
        parse_kv_opts(["bits"])


def _cli(*args):
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "pyakvq", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=pathlib.Path(pyakvq.__file__).resolve().parents[1],  # where the package under test lives
    )


def test_cli_perplexity(smollm2_path, tmp_path):
    out = tmp_path / "r.json"
    r = _cli(
        "perplexity",
        "-m",
        smollm2_path,
        "-f",
        PROSE,
        "-c",
        64,
        "--chunks",
        2,
        "-t",
        2,
        "--reference",
        "f16",
        "--json",
        out,
    )
    assert r.returncode == 0, r.stderr
    assert "PPL = " in r.stdout and "top-1 agreement = 1.0000" in r.stdout
    d = json.loads(out.read_text())
    assert d["n_chunks"] == 2 and d["n_tokens"] == 2 * 31 and d["kl"] == 0.0


def test_cli_errors(smollm2_path):
    r = _cli("perplexity", "-m", smollm2_path, "-f", PROSE, "--ctx-size", 15)
    assert (
        r.returncode == 2
        and r.stderr.strip() == "pyakvq perplexity: error: -c/--ctx-size must be even and >= 16, got 15"
    )
    r = _cli("perplexity", "-m", smollm2_path, "-f", "no-such-file.txt")  # the flag named, not errno's text
    assert (
        r.returncode == 2 and r.stderr.strip() == "pyakvq perplexity: error: -f/--file 'no-such-file.txt': no such file"
    )
    r = _cli("perplexity", "-m", smollm2_path, "-f", PROSE, "--kv-opt", "bits")
    assert r.returncode == 2 and "key=value" in r.stderr
    r = _cli("perplexity", "-m", smollm2_path, "-f", smollm2_path)  # a binary file: named, exit 2
    assert r.returncode == 2 and f"-f/--file {str(smollm2_path)!r}: not UTF-8 text" in r.stderr, r.stderr
    r = _cli("perplexity")
    assert r.returncode == 2


def test_quantized_modes_vs_f16(smollm2_path, prose):
    """Lock-step run of quantized caches against f16 (skipped while the engine has no such modes):
    a quantized cache costs KL > 0 and fewer than 16 bits; kv options reach the engine."""
    configs = [("q2", {}), ("akvq2", {"window": 32}), ("akvq2", {})]
    try:
        rows = ppl_mod.perplexity_many(
            smollm2_path, prose, configs, n_ctx=N_CTX, reference="f16", n_threads=2, max_chunks=1
        )
    except ValueError as e:
        if "not supported" in str(e) or "kv options" in str(e):
            pytest.skip(f"quantized KV modes not available: {e}")
        raise
    q2, akvq_w32, akvq = rows
    for r in rows:
        assert r["kl"] > 0  # (tiny for akvq2 at n_ctx 256: most keys are still in its fp16 window)
        assert r["bits_per_element"] < 16
        assert r["n_tokens"] == N_CTX // 2 - 1
    # (q2 reads every older token at 2 bits without rotation, itself included: top-1 ~0.29 here)
    assert 0.15 < q2["top1"] < 0.95 and 0.5 < akvq_w32["top1"] < 1
    assert akvq_w32["kv_options"] == {"window": 32}
    # the smaller window leaves more tokens quantized: fewer bits, larger divergence
    assert akvq_w32["bits_per_element"] < akvq["bits_per_element"]
    assert akvq_w32["kl"] > akvq["kl"]
    # the method matters: naive 2-bit is far worse than AKVQ's 2-bit with the same window budget
    assert q2["ppl"] > 1.2 * akvq_w32["ppl"]


def test_batch_size_changes_nothing(smollm2_path, tmp_path):
    """n_batch=1 (decoding's path) and 256 give the same figures bit for bit, for f16 and for a
    quantized cache whose window is smaller than a batch (one semantics, batch-invariant kernels)."""
    text = PROSE.read_text(encoding="utf-8")
    kw = dict(n_ctx=N_CTX, n_threads=2, max_chunks=1, reference="f16")
    f1 = pyakvq.perplexity(smollm2_path, text, kv="f16", n_batch=1, **kw)
    f256 = pyakvq.perplexity(smollm2_path, text, kv="f16", n_batch=256, **kw)
    assert f1["ppl"] == f256["ppl"]
    q1 = pyakvq.perplexity(smollm2_path, text, kv="akvq2", n_batch=1, window=16, **kw)
    q256 = pyakvq.perplexity(smollm2_path, text, kv="akvq2", n_batch=256, window=16, **kw)
    assert q1["ppl"] == q256["ppl"] and q1["kl"] == q256["kl"] > 0
    out = tmp_path / "r.json"
    # positionals and the older long spellings (--ctx, --batch) still work
    args = ["--ctx", N_CTX, "--chunks", 1, "--threads", 2, "--kv", "akvq2", "--kv-opt", "window=16", "--batch", 1]
    r = _cli("perplexity", smollm2_path, PROSE, *args, "--json", out)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["ppl"] == pytest.approx(q1["ppl"], rel=1e-6)
