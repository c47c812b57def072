"""The converter (pyakvq.convert, akvq-convert) on the LLaVA fixture checkpoints of tests/fixtures/llava
(see make_llava_fixtures.py): names, shapes, types and values of every tensor against the safetensors
files (read here independently of the converter), the GGUF keys, the tokenizer as our engine reads it
against transformers' token ids, llama.cpp's two-file layout, the legacy-quirk pair, and one clear
error for each kind of bad input. Needs gguf and safetensors, not torch.

Value tolerances (dequantized with gguf.quants.dequantize; Q/K rows un-permuted first):
  f32   exact                       f16   exact against numpy's float16 rounding of the weights
  bf16  |err| <= 2^-8 |w| (exact for the bf16 checkpoint)
  q8_0  |err| <= max|w| / 127 over each 32-value block (one quantization step)
  q4_0  |err| <= max|w| / 8 over each block (one step: a block's values span -8..7 steps)
  norms and biases are f32 and exact in every output type.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import threading

import llava_convert as lc
import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
pytest.importorskip("safetensors")

from pyakvq.convert import (  # noqa: E402
    CheckpointError,
    ConvertError,
    MissingFieldError,
    MissingFileError,
    UnknownArchitectureError,
    convert,
)

ROOT = lc.ROOT
OUTTYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")
Q = gguf.GGMLQuantizationType


# ---------------------------------------------------------------- independent readers


def read_safetensors(d: pathlib.Path) -> dict[str, tuple[str, np.ndarray]]:
    """name -> (safetensors dtype, float32 values) of every tensor of a checkpoint directory."""
    out = {}
    for f in sorted(d.glob("*.safetensors")):
        raw = f.read_bytes()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + n])
        for name, t in header.items():
            if name == "__metadata__":
                continue
            b, e = t["data_offsets"]
            buf = raw[8 + n + b : 8 + n + e]
            if t["dtype"] == "BF16":
                a = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                a = np.frombuffer(buf, {"F32": "<f4", "F16": "<f2"}[t["dtype"]]).astype(np.float32)
            out[name] = (t["dtype"], a.reshape(t["shape"]))
    return out


def config(name: str) -> dict:
    return json.loads((lc.FIXTURES / name / "config.json").read_text())


def hf_source(gname: str) -> str:
    """The checkpoint tensor a GGUF tensor comes from (transformers 5's saved LLaVA layout)."""
    text = {
        "token_embd.weight": "language_model.model.embed_tokens.weight",
        "output_norm.weight": "language_model.model.norm.weight",
        "output.weight": "language_model.lm_head.weight",
    }
    if gname in text:
        return text[gname]
    if gname.startswith("blk."):
        _, i, rest = gname.split(".", 2)
        sub = {
            "attn_norm.weight": "input_layernorm.weight",
            "attn_q.weight": "self_attn.q_proj.weight",
            "attn_k.weight": "self_attn.k_proj.weight",
            "attn_v.weight": "self_attn.v_proj.weight",
            "attn_output.weight": "self_attn.o_proj.weight",
            "ffn_norm.weight": "post_attention_layernorm.weight",
            "ffn_gate.weight": "mlp.gate_proj.weight",
            "ffn_up.weight": "mlp.up_proj.weight",
            "ffn_down.weight": "mlp.down_proj.weight",
        }[rest]
        return f"language_model.model.layers.{i}.{sub}"
    if gname.startswith("mm."):
        return gname.replace("mm.0.", "multi_modal_projector.linear_1.").replace(
            "mm.2.", "multi_modal_projector.linear_2."
        )
    vis = {
        "v.class_embd": "embeddings.class_embedding",
        "v.patch_embd.weight": "embeddings.patch_embedding.weight",
        "v.position_embd.weight": "embeddings.position_embedding.weight",
        "v.pre_ln.weight": "pre_layrnorm.weight",
        "v.pre_ln.bias": "pre_layrnorm.bias",
    }
    if gname in vis:
        return "vision_tower." + vis[gname]
    _, _, i, part, wb = gname.split(".")
    sub = {
        "ln1": "layer_norm1",
        "ln2": "layer_norm2",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_out": "self_attn.out_proj",
        "ffn_up": "mlp.fc1",
        "ffn_down": "mlp.fc2",
    }[part]
    return f"vision_tower.encoder.layers.{i}.{sub}.{wb}"


def expected_names(name: str) -> set[str]:
    c = config(name)
    t, v = c["text_config"], c["vision_config"]
    out = {"token_embd.weight", "output_norm.weight"}
    if not t["tie_word_embeddings"]:
        out.add("output.weight")
    for i in range(t["num_hidden_layers"]):
        out |= {
            f"blk.{i}.{n}.weight"
            for n in (
                "attn_norm",
                "attn_q",
                "attn_k",
                "attn_v",
                "attn_output",
                "ffn_norm",
                "ffn_gate",
                "ffn_up",
                "ffn_down",
            )
        }
    out |= {"v.class_embd", "v.patch_embd.weight", "v.position_embd.weight", "v.pre_ln.weight", "v.pre_ln.bias"}
    for i in range(v["num_hidden_layers"]):
        out |= {
            f"v.blk.{i}.{n}.{wb}"
            for n in ("ln1", "ln2", "attn_q", "attn_k", "attn_v", "attn_out", "ffn_up", "ffn_down")
            for wb in ("weight", "bias")
        }
    out |= {"mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias"}
    return out


def expected_type(gname: str, shape: tuple[int, ...], outtype: str, tied: bool):
    """The README's type table, restated."""
    if len(shape) == 1 or gname.endswith(".bias"):
        return Q.F32
    if gname in ("v.patch_embd.weight", "v.position_embd.weight"):
        return Q.F32 if outtype == "f32" else Q.F16
    t = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0}[outtype]
    if outtype == "q4_0" and (gname == "output.weight" or (gname == "token_embd.weight" and tied)):
        t = Q.Q8_0
    if t in (Q.Q8_0, Q.Q4_0) and shape[-1] % 32:
        t = Q.F16
    return t


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's Q/K row order (per head: rows reshaped (2, d/2) -> (d/2, 2))."""
    r = w.shape[0]
    return w.reshape(n_head, r // n_head // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)


def fields(path) -> dict:
    r = gguf.GGUFReader(path)
    return {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("convert")


@pytest.fixture(scope="module")
def converted(out_dir):
    """(checkpoint, outtype) -> one-file GGUF path, converted once per module."""
    cache: dict[tuple[str, str], pathlib.Path] = {}

    def get(name: str, outtype: str = "f32") -> pathlib.Path:
        if (name, outtype) not in cache:
            (p,) = lc.convert_fixture(name, out_dir, outtype=outtype)
            cache[(name, outtype)] = p
        return cache[(name, outtype)]

    return get


# ---------------------------------------------------------------- tensors


@pytest.mark.parametrize("outtype", OUTTYPES)
@pytest.mark.parametrize("name", lc.CHECKPOINTS)
def test_tensors_names_shapes_types_values(converted, name, outtype):
    c = config(name)
    t = c["text_config"]
    tied = t["tie_word_embeddings"]
    src = read_safetensors(lc.FIXTURES / name)
    r = gguf.GGUFReader(converted(name, outtype))
    got = {x.name: x for x in r.tensors}
    assert set(got) == expected_names(name)
    for gname, x in got.items():
        dtype, w = src[hf_source(gname)]
        shape = tuple(int(d) for d in reversed(x.shape.tolist()))  # GGUF dims are innermost first
        assert shape == w.shape, gname
        assert x.tensor_type == expected_type(gname, shape, outtype, tied), gname
        deq = gguf.quants.dequantize(np.asarray(x.data), x.tensor_type).reshape(shape)
        if gname.endswith(("attn_q.weight", "attn_k.weight")) and not gname.startswith("v."):
            heads = t["num_attention_heads"] if "attn_q" in gname else t["num_key_value_heads"]
            deq = unpermute(deq, heads)
        qt = x.tensor_type
        if qt == Q.F32 or (qt == Q.BF16 and dtype == "BF16"):
            np.testing.assert_array_equal(deq, w, err_msg=gname)
        elif qt == Q.F16:
            np.testing.assert_array_equal(deq, w.astype(np.float16).astype(np.float32), err_msg=gname)
        elif qt == Q.BF16:
            assert np.all(np.abs(deq - w) <= np.abs(w) * 2.0**-8), gname
        else:
            blocks = w.reshape(-1, 32)
            amax = np.abs(blocks).max(axis=1, keepdims=True)
            step = amax / (127.0 if qt == Q.Q8_0 else 8.0)
            err = np.abs(deq.reshape(-1, 32) - blocks)
            assert np.all(err <= step * 1.002 + 1e-12), (gname, float((err - step).max()))


def test_qk_permutation_is_llama_cpps():
    """Rows of one head (d = 4) go from halves (x0, x1 | x2, x3) to adjacent pairs (x0, x2, x1, x3)."""
    from pyakvq.convert.llama_text import permute_qk, unpermute_qk

    w = np.arange(8, dtype=np.float32).reshape(8, 1)  # 2 heads of 4 rows
    p = permute_qk(w, 2)
    assert p[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    np.testing.assert_array_equal(unpermute_qk(p, 2), w)
    np.testing.assert_array_equal(unpermute(p, 2), w)


# ---------------------------------------------------------------- keys


@pytest.mark.parametrize("name", lc.CHECKPOINTS)
def test_keys(converted, name):
    c = config(name)
    t, v = c["text_config"], c["vision_config"]
    ref, meta = lc.reference(name)
    f = fields(converted(name, "q8_0"))
    head_dim = t["hidden_size"] // t["num_attention_heads"]
    assert f["general.architecture"] == "llama"
    assert f["general.file_type"] == int(gguf.LlamaFileType.MOSTLY_Q8_0)
    assert f["general.quantization_version"] == 2
    expect = {
        "llama.context_length": t["max_position_embeddings"],
        "llama.embedding_length": t["hidden_size"],
        "llama.block_count": t["num_hidden_layers"],
        "llama.feed_forward_length": t["intermediate_size"],
        "llama.rope.dimension_count": head_dim,
        "llama.attention.head_count": t["num_attention_heads"],
        "llama.attention.head_count_kv": t["num_key_value_heads"],
        "llama.vocab_size": t["vocab_size"],
        "clip.has_vision_encoder": True,
        "clip.has_llava_projector": True,
        "clip.projector_type": "mlp",
        "clip.use_gelu": False,
        "clip.vision.image_size": v["image_size"],
        "clip.vision.patch_size": v["patch_size"],
        "clip.vision.embedding_length": v["hidden_size"],
        "clip.vision.feed_forward_length": v["intermediate_size"],
        "clip.vision.block_count": v["num_hidden_layers"],
        "clip.vision.attention.head_count": v["num_attention_heads"],
        "clip.vision.projection_dim": t["hidden_size"],
        "clip.vision.feature_layer": [meta["feature_layer_hidden_state_index"]],
        "akvq.vision.hidden_act": "quick_gelu",
        "akvq.vision.projector_hidden_act": "gelu",
        "akvq.vision.select_strategy": c["vision_feature_select_strategy"],
        "akvq.vision.image_token_id": c["image_token_index"],
        "akvq.vision.image_token": "<image>",
        "akvq.vision.resize_shortest_edge": v["image_size"],
        "akvq.vision.resample": "bicubic",
        "akvq.vision.pad_mode": "pad" if meta["variant"]["pad"] else "crop",
    }
    for k, want in expect.items():
        assert f[k] == want, k
    assert f["llama.rope.freq_base"] == pytest.approx(t["rope_parameters"]["rope_theta"])
    assert f["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(t["rms_norm_eps"])
    assert f["clip.vision.attention.layer_norm_epsilon"] == pytest.approx(v["layer_norm_eps"])
    assert f["akvq.vision.rescale_factor"] == pytest.approx(1 / 255)
    assert f["clip.vision.image_mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert f["clip.vision.image_std"] == pytest.approx([0.26862954, 0.26130258, 0.27577711])
    assert ("akvq.vision.pad_color" in f) == meta["variant"]["pad"]
    if meta["variant"]["pad"]:
        assert f["akvq.vision.pad_color"] == [122, 116, 104]
    # the feature layer index selects the reference's features among the hidden states
    idx = f["clip.vision.feature_layer"][0]
    hs = ref["hidden_states"][:, idx]
    feats = hs[:, 1:] if c["vision_feature_select_strategy"] == "default" else hs
    np.testing.assert_array_equal(feats, ref["image_features"])
    assert "akvq.tsa_layers" not in f
    tpl = (lc.FIXTURES / name / "chat_template.jinja").read_text()
    assert f["tokenizer.chat_template"] == tpl


@pytest.mark.parametrize("name", lc.CHECKPOINTS)
def test_tokenizer_fields(converted, name):
    c = config(name)
    t = c["text_config"]
    f = fields(converted(name))
    tj = json.loads((lc.FIXTURES / name / "tokenizer.json").read_text())
    tokens, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == t["vocab_size"]
    img = c["image_token_index"]
    assert tokens[img] == "<image>" and types[img] == 3  # special added token: control
    unk = f.get("tokenizer.ggml.unknown_token_id")
    for a in tj["added_tokens"]:  # special added tokens are control tokens (the unknown token stays unknown)
        assert tokens[a["id"]] == a["content"] and types[a["id"]] == (2 if a["id"] == unk else 3)
    n_tok = len(tj["model"]["vocab"]) + sum(1 for a in tj["added_tokens"] if a["id"] >= len(tj["model"]["vocab"]))
    for i in range(n_tok, len(tokens)):  # embedding rows past the tokenizer: llama.cpp's filler
        assert tokens[i] == f"[PAD{i}]" and types[i] == 5
    if name.startswith("spm"):
        assert f["tokenizer.ggml.model"] == "llama"
        assert len(f["tokenizer.ggml.scores"]) == len(tokens)
        assert f["tokenizer.ggml.bos_token_id"] == 1 and f["tokenizer.ggml.eos_token_id"] == 2
        assert f["tokenizer.ggml.unknown_token_id"] == 0
        assert f["tokenizer.ggml.add_bos_token"] is True
        assert f["tokenizer.ggml.add_space_prefix"] is True
        legacy = json.loads((lc.FIXTURES / f"{name}.json").read_text())["variant"]["legacy"]
        assert f["akvq.tokenizer.prepend_scheme"] == ("always" if legacy else "first")
        assert all(types[3 + b] == 6 and tokens[3 + b] == f"<0x{b:02X}>" for b in range(256))
        assert "tokenizer.ggml.merges" not in f
    else:
        assert f["tokenizer.ggml.model"] == "gpt2"
        assert f["tokenizer.ggml.pre"] == "gpt-2"
        merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
        assert f["tokenizer.ggml.merges"] == merges
        assert "tokenizer.ggml.scores" not in f and "tokenizer.ggml.bos_token_id" not in f
        assert f["tokenizer.ggml.eos_token_id"] == tokens.index("<|im_end|>")
        assert f["tokenizer.ggml.add_bos_token"] is False


# ---------------------------------------------------------------- our engine reads the text part


@pytest.fixture(scope="module")
def akvq():
    return pytest.importorskip("pyakvq")


@pytest.mark.parametrize("name", lc.CHECKPOINTS)
def test_engine_tokenizes_like_transformers(akvq, converted, name):
    ref, meta = lc.reference(name)
    img = meta["image_token_id"]
    with akvq.Model(str(converted(name)), n_ctx=256) as m:
        assert m.n_vocab == config(name)["text_config"]["vocab_size"]
        for k, p in enumerate(meta["prompts"]):
            want = lc.collapse_image_tokens(ref[f"p{k}_prompt_ids"], img)
            got = m.tokenize(p["text"])
            assert got == want, (k, p["text"])
            assert got.count(img) == len(p["images"])
        for case in meta["tokenizer_cases"]:
            assert m.tokenize(case["text"]) == case["ids"], case["text"]


@pytest.mark.parametrize("outtype", OUTTYPES)
def test_engine_loads_every_outtype(akvq, converted, outtype):
    for name in lc.CHECKPOINTS:
        with akvq.Model(str(converted(name, outtype)), n_ctx=64) as m:
            lg = np.asarray(m.logits([1, 5, 9, 42]))
            assert lg.shape[-1] == m.n_vocab and np.all(np.isfinite(lg)), name


def test_tokenizer_json_only_gives_the_same_tokens(akvq, tmp_path):
    """Without tokenizer.model the SentencePiece vocabulary comes from tokenizer.json (scores from the
    merge ranks); the engine still tokenizes as transformers does."""
    d = tmp_path / "ckpt"
    shutil.copytree(lc.FIXTURES / "spm_default_pad", d)
    (d / "tokenizer.model").unlink()
    out = tmp_path / "tj.gguf"
    convert(d, out, outtype="f16")
    ref, meta = lc.reference("spm_default_pad")
    with akvq.Model(str(out), n_ctx=256) as m:
        for k, p in enumerate(meta["prompts"]):
            assert m.tokenize(p["text"]) == lc.collapse_image_tokens(ref[f"p{k}_prompt_ids"], meta["image_token_id"])
        for case in meta["tokenizer_cases"]:
            assert m.tokenize(case["text"]) == case["ids"], case["text"]


# ---------------------------------------------------------------- llama.cpp's two files, legacy quirks


@pytest.mark.parametrize("name", lc.CHECKPOINTS)
def test_mmproj_pair(converted, out_dir, name):
    (out_dir / "pair").mkdir(exist_ok=True)
    text, mm = lc.convert_fixture(name, out_dir / "pair", outtype="q8_0", mmproj=True)
    one = gguf.GGUFReader(converted(name, "q8_0"))
    rt, rm = gguf.GGUFReader(text), gguf.GGUFReader(mm)
    ft, fm = fields(text), fields(mm)
    assert ft["general.architecture"] == "llama" and fm["general.architecture"] == "clip"
    assert not any(k.startswith(("clip.", "akvq.vision.")) for k in ft)
    assert not any(k.startswith(("llama.", "tokenizer.")) for k in fm)
    assert fm["clip.has_text_encoder"] is False and fm["clip.has_vision_encoder"] is True
    f1 = fields(converted(name, "q8_0"))
    for k, val in fm.items():  # the mmproj's clip.* / akvq.vision.* keys are the one-file's
        if k.startswith(("clip.vision", "akvq.vision", "clip.projector_type", "clip.use_gelu")):
            assert f1[k] == val, k
    for k, val in ft.items():
        if k != "general.name":
            assert f1[k] == val, k
    names_t = {x.name for x in rt.tensors}
    names_m = {x.name for x in rm.tensors}
    assert all(n.startswith(("v.", "mm.")) for n in names_m)
    assert not any(n.startswith(("v.", "mm.")) for n in names_t)
    by_name = {x.name: x for x in one.tensors}
    assert names_t | names_m == set(by_name)
    for x in list(rt.tensors) + list(rm.tensors):
        y = by_name[x.name]
        assert x.tensor_type == y.tensor_type and np.array_equal(np.asarray(x.data), np.asarray(y.data)), x.name


def test_legacy_pair(tmp_path):
    text, mm = lc.write_legacy_pair("spm_default_pad", tmp_path)
    c = config("spm_default_pad")
    n = c["vision_config"]["num_hidden_layers"]
    fm, ft = fields(mm), fields(text)
    assert fm["clip.vision.block_count"] == n - 1
    assert "clip.vision.feature_layer" not in fm
    assert not any(k.startswith("akvq.") for k in list(fm) + list(ft))
    r = gguf.GGUFReader(mm)
    names = {x.name: x for x in r.tensors}
    assert not any(k.startswith(f"v.blk.{n - 1}.") or k.startswith("v.post_ln") for k in names)
    src = read_safetensors(lc.FIXTURES / "spm_default_pad")
    down = names["v.blk.0.ffn_down.weight"]  # holds fc1: [ff, hidden]
    fc1 = src["vision_tower.encoder.layers.0.mlp.fc1.weight"][1]
    assert tuple(reversed(down.shape.tolist())) == fc1.shape
    np.testing.assert_array_equal(
        gguf.quants.dequantize(np.asarray(down.data), down.tensor_type).reshape(fc1.shape),
        fc1.astype(np.float16).astype(np.float32),
    )
    assert names["v.patch_embd.weight"].tensor_type == Q.F16
    assert {x.name for x in gguf.GGUFReader(text).tensors} == {
        k for k in expected_names("spm_default_pad") if not k.startswith(("v.", "mm."))
    }


def test_legacy_pair_features_match_the_one_file(akvq, converted, tmp_path):
    """The encoder, when present, reads the legacy quirks into the same features."""
    ext = pytest.importorskip("pyakvq._ext")._akvq
    if not hasattr(ext, "VisionModel"):
        pytest.skip("this build has no vision encoder")
    _, mm = lc.write_legacy_pair("spm_default_pad", tmp_path, outtype="f32")
    ref, _ = lc.reference("spm_default_pad")
    legacy = ext.VisionModel.load(str(mm)).encode(ref["pixel_values"])
    one = ext.VisionModel.load(str(converted("spm_default_pad", "f32"))).encode(ref["pixel_values"])
    np.testing.assert_allclose(legacy, one, rtol=0, atol=1e-2 * np.abs(one).max())


# ---------------------------------------------------------------- options, CLI


def test_tsa_layers(tmp_path):
    out = tmp_path / "tsa.gguf"
    convert(lc.FIXTURES / "bpe_full_crop", out, outtype="f16", tsa_layers=[1, 0])
    assert fields(out)["akvq.tsa_layers"] == [0, 1]
    with pytest.raises(ConvertError, match=r"--tsa-layers: layer 2 is out of range \[0, 2\)"):
        convert(lc.FIXTURES / "bpe_full_crop", tmp_path / "bad.gguf", tsa_layers=[2])
    assert not (tmp_path / "bad.gguf").exists()


def run_cli(*args, exe=None) -> subprocess.CompletedProcess:
    """`python -m pyakvq.convert` of the pyakvq this test imported (the command runs in the directory
    above that package, with the inherited environment), or the console script `exe`."""
    import pyakvq.convert

    cmd = [exe] if exe else [sys.executable, "-m", "pyakvq.convert"]
    cwd = pathlib.Path(pyakvq.convert.__file__).resolve().parents[2]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_cli_matches_the_api(converted, tmp_path):
    api = converted("spm_default_pad", "q4_0")
    out = tmp_path / "cli.gguf"
    r = run_cli(lc.FIXTURES / "spm_default_pad", "-o", out, "--outtype", "q4_0", "--name", "spm_default_pad")
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stdout
    assert out.read_bytes() == api.read_bytes()
    r = run_cli(
        lc.FIXTURES / "bpe_full_crop",
        "-o",
        tmp_path / "t.gguf",
        "--mmproj-out",
        tmp_path / "m.gguf",
        "--tsa-layers",
        "0,1",
        "-q",
    )
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert fields(tmp_path / "t.gguf")["akvq.tsa_layers"] == [0, 1]
    assert fields(tmp_path / "m.gguf")["general.architecture"] == "clip"
    assert run_cli("--help").returncode == 0


def test_installed_akvq_convert(tmp_path):
    """The console script of an installed wheel, when there is one on PATH."""
    exe = shutil.which("akvq-convert")
    if exe is None:
        pytest.skip("akvq-convert is not installed (pip install .)")
    out = tmp_path / "x.gguf"
    r = run_cli(lc.FIXTURES / "spm_pos_crop", "-o", out, "--outtype", "f16", exe=exe)
    assert r.returncode == 0, r.stderr
    assert fields(out)["general.architecture"] == "llama"


# ---------------------------------------------------------------- errors


def edited_copy(tmp_path, edit=None, name="spm_default_pad") -> pathlib.Path:
    d = tmp_path / "ckpt"
    shutil.copytree(lc.FIXTURES / name, d)
    if edit is not None:
        cfg = json.loads((d / "config.json").read_text())
        edit(cfg)
        (d / "config.json").write_text(json.dumps(cfg))
    return d


def _arch(c):
    c["architectures"] = ["FooForCausalLM"]


def _text_type(c):
    c["text_config"]["model_type"] = "mistral"


def _no_layers(c):
    del c["text_config"]["num_hidden_layers"]


def _no_vision(c):
    del c["vision_config"]


def _no_arch(c):
    del c["architectures"]
    del c["model_type"]


def _bad_feature_layer(c):
    c["vision_feature_layer"] = -7


def _bad_eps(c):
    c["text_config"]["rms_norm_eps"] = -1


def _bad_theta(c):
    c["text_config"]["rope_parameters"]["rope_theta"] = 0


def _rope_scaling_beside_parameters(c):
    """transformers 5 saves a default rope_parameters; a legacy rope_scaling added beside it wins
    there, so a type the engine cannot run must be refused, not converted as plain RoPE (linear
    and llama3 are converted: test_rope_scaling.py)."""
    assert c["text_config"]["rope_parameters"].get("rope_type", "default") == "default"
    c["text_config"]["rope_scaling"] = {"type": "dynamic", "factor": 4.0}


def _attention_bias(c):
    c["text_config"]["attention_bias"] = True


def _k_bias_tensor(d: pathlib.Path):
    """A k_proj bias in its own shard, listed in the index, as transformers saves attention_bias."""
    from safetensors.numpy import save_file

    name = "language_model.model.layers.0.self_attn.k_proj.bias"
    save_file({name: np.zeros(16, np.float32)}, str(d / "bias.safetensors"))
    idx = json.loads((d / "model.safetensors.index.json").read_text())
    idx["weight_map"][name] = "bias.safetensors"
    (d / "model.safetensors.index.json").write_text(json.dumps(idx))


def _eos_not_in_vocab(d: pathlib.Path):
    tc = json.loads((d / "tokenizer_config.json").read_text())
    tc["eos_token"] = "<nope>"
    (d / "tokenizer_config.json").write_text(json.dumps(tc))


def _no_image_token(d: pathlib.Path):
    # tokenizer.model alone (this fixture keeps its added tokens only in tokenizer.json)
    (d / "tokenizer.json").unlink()


def _bad_template(d: pathlib.Path):
    (d / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }")


def _negative_offset(d: pathlib.Path):
    """The first tensor of a shard starts 16 bytes before the data (its length unchanged)."""
    f = d / "model-00001-of-00012.safetensors"
    raw = f.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__")
    b, e = header[name]["data_offsets"]
    header[name]["data_offsets"] = [b - 16, e - 16]
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= n
    f.write_bytes(raw[:8] + text.ljust(n) + raw[8 + n :])


def _nan_weight(d: pathlib.Path):
    """The first value of the first tensor of a shard is a NaN (a corrupt checkpoint)."""
    f = d / "model-00001-of-00012.safetensors"
    raw = bytearray(f.read_bytes())
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__")
    nan = {"F32": b"\x00\x00\xc0\x7f", "F16": b"\x00\x7e", "BF16": b"\xc0\x7f"}[header[name]["dtype"]]
    at = 8 + n + header[name]["data_offsets"][0]
    raw[at : at + len(nan)] = nan
    f.write_bytes(bytes(raw))


def _rm(*files):
    def f(d: pathlib.Path):
        for x in files:
            (d / x).unlink()

    return f


ERRORS = [
    # (id, config edit, file edit, exception type, text the message must contain)
    ("unknown-arch", _arch, None, UnknownArchitectureError, "unsupported architecture 'FooForCausalLM'"),
    ("no-arch", _no_arch, None, UnknownArchitectureError, "neither 'architectures' nor 'model_type'"),
    ("text-model-type", _text_type, None, UnknownArchitectureError, "text_config.model_type 'mistral'"),
    (
        "missing-field",
        _no_layers,
        None,
        MissingFieldError,
        "field 'text_config.num_hidden_layers' is missing and transformers' default (32)",
    ),
    ("missing-section", _no_vision, None, MissingFieldError, "required section 'vision_config' is missing"),
    ("bad-feature-layer", _bad_feature_layer, None, CheckpointError, "vision_feature_layer -7 is out of range"),
    ("missing-config", None, _rm("config.json"), MissingFileError, "config.json: file not found"),
    (
        "missing-shard",
        None,
        _rm("model-00003-of-00012.safetensors"),
        MissingFileError,
        "model-00003-of-00012.safetensors: safetensors shard listed in model.safetensors.index.json not found",
    ),
    (
        "missing-tokenizer",
        None,
        _rm("tokenizer.json", "tokenizer.model"),
        MissingFileError,
        "no tokenizer (expected tokenizer.model or tokenizer.json)",
    ),
    ("missing-processor", None, _rm("processor_config.json"), MissingFileError, "no image processor settings"),
    # values the engine would refuse at load: refused here, naming the field
    ("rms-eps", _bad_eps, None, CheckpointError, "field 'text_config.rms_norm_eps' = -1: out of range (0 < eps < 1)"),
    ("rope-theta", _bad_theta, None, CheckpointError, "rope_theta = 0.0: out of range"),
    (
        "rope-scaling-beside-parameters",
        _rope_scaling_beside_parameters,
        None,
        ConvertError,
        "'text_config.rope_scaling' = {'type': 'dynamic', 'factor': 4.0} is not supported (rope type 'dynamic'; "
        "supported: default, linear, llama3)",
    ),
    # biases and their config flags disagree (transformers makes the biases from the flags alone)
    (
        "bias-without-flag",
        None,
        _k_bias_tensor,
        CheckpointError,
        "tensor 'language_model.model.layers.0.self_attn.k_proj.bias' is in the checkpoint but "
        "'text_config.attention_bias' is not true",
    ),
    ("flag-without-bias", _attention_bias, None, CheckpointError, "has no tensor for 'blk.0.attn_q.bias'"),
    ("eos-not-in-vocab", None, _eos_not_in_vocab, CheckpointError, "eos_token '<nope>' of tokenizer_config.json"),
    ("no-image-token", None, _no_image_token, CheckpointError, "image token id 1000 (image_token_index) has no token"),
    ("template-syntax", None, _bad_template, CheckpointError, "chat template: chat template syntax error"),
    ("negative-offset", None, _negative_offset, CheckpointError, "data_offsets [-16,"),
    ("nan-weight", None, _nan_weight, ConvertError, "1 of its values (in this chunk of"),
]


@pytest.mark.parametrize("case", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(tmp_path, case):
    _, cfg_edit, file_edit, exc, text = case
    d = edited_copy(tmp_path, cfg_edit)
    if file_edit is not None:
        file_edit(d)
    out = tmp_path / "out.gguf"
    with pytest.raises(exc) as ei:
        convert(d, out)
    msg = str(ei.value)
    assert text in msg and "\n" not in msg
    r = run_cli(d, "-o", out)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"akvq-convert: error: {msg}"
    assert not out.exists() and not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*.part"))


def test_swish_is_silu(tmp_path, converted):
    """hidden_act "swish" is SiLU in transformers (ACT2FN): the same file as "silu"."""
    d = edited_copy(tmp_path, lambda c: c["text_config"].__setitem__("hidden_act", "swish"))
    out = tmp_path / "swish.gguf"
    convert(d, out, outtype="f16", name="spm_default_pad")
    want = converted("spm_default_pad", "f16")
    got = {x.name: x for x in gguf.GGUFReader(out).tensors}
    for x in gguf.GGUFReader(want).tensors:
        assert np.array_equal(np.asarray(got[x.name].data), np.asarray(x.data)), x.name
    assert fields(out) == fields(want)


def test_output_paths(tmp_path):
    src = lc.FIXTURES / "bpe_full_crop"
    (tmp_path / "dir.gguf").mkdir()
    cases = [
        (tmp_path / "dir.gguf", None, "is a directory"),
        ("", None, "the output path is empty"),
        (tmp_path / "t.gguf", tmp_path / "dir.gguf", "is a directory"),  # before the text file is written
        ("/proc/x.gguf", None, "cannot write there"),
    ]
    for out, mm, text in cases:
        with pytest.raises(ConvertError, match=text):
            convert(src, out, mmproj_out=mm)
        assert not (tmp_path / "t.gguf").exists()
    r = run_cli(src, "-o", tmp_path / "dir.gguf")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "is a directory" in r.stderr
    # the checkpoint's own files are not overwritten
    d = edited_copy(tmp_path)
    for name in ("model-00001-of-00012.safetensors", "config.json"):
        before = (d / name).read_bytes()
        with pytest.raises(ConvertError, match=f"{name}: is a file of the checkpoint"):
            convert(d, d / name)
        assert (d / name).read_bytes() == before
    assert convert(d, d / "model.gguf") == [d / "model.gguf"]  # a new GGUF file beside them is fine


def test_output_through_links_and_never_over_special_files(tmp_path):
    """-o names a FIFO (as a device such as /dev/null): refused with one line, the FIFO left as it
    was (the rename would have swapped the node for a regular file). -o names a symbolic link: the
    file it names gets the GGUF, the link stays a link."""
    import stat

    src = lc.FIXTURES / "bpe_full_crop"
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    for out, mm in ((fifo, None), (tmp_path / "t.gguf", fifo)):
        with pytest.raises(ConvertError, match="is not a regular file"):
            convert(src, out, mmproj_out=mm)
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and not (tmp_path / "t.gguf").exists()
    r = run_cli(src, "-o", fifo)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "is not a regular file" in r.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    target = tmp_path / "target.gguf"
    target.write_bytes(b"old")
    link = tmp_path / "link.gguf"
    link.symlink_to(target)
    assert convert(src, link) == [link]
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert gguf.GGUFReader(str(target)).tensors
    with pytest.raises(ConvertError, match="must differ from the text output"):  # a link to the other output
        convert(src, target, mmproj_out=link)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.gguf", "pipe.gguf", "target.gguf"]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_killed_conversion_leaves_nothing(tmp_path, sig):
    """SIGTERM (as Ctrl-C) while the GGUF is being written: the temporary file is removed, the
    command says so in one line and ends with 143 (130); the old output stays as it was."""
    import signal
    import time

    import pyakvq.convert

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "x.gguf").write_bytes(b"old")
    slow = (  # the converter with each tensor's write slowed down, so that the signal lands inside it
        "import sys, time\n"
        "import pyakvq.convert.writer as w\n"
        "orig = w._chunks\n"
        "def slow(t):\n"
        "    time.sleep(0.05)\n"
        "    yield from orig(t)\n"
        "w._chunks = slow\n"
        "from pyakvq.convert.__main__ import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    cwd = pathlib.Path(pyakvq.convert.__file__).resolve().parents[2]
    p = subprocess.Popen(
        [sys.executable, "-c", slow, "-q", str(lc.FIXTURES / "spm_default_pad"), "-o", str(out_dir / "x.gguf")],
        cwd=cwd,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # not ignored as in a background job
    )
    t0 = time.monotonic()
    while not list(out_dir.glob(".*.part")) and time.monotonic() - t0 < 60 and p.poll() is None:
        time.sleep(0.01)
    time.sleep(0.2)  # inside the tensor data
    p.send_signal(getattr(signal, sig))
    _, err = p.communicate(timeout=60)
    assert p.returncode == (143 if sig == "SIGTERM" else 130), err
    want = "akvq-convert: terminated" if sig == "SIGTERM" else "akvq-convert: interrupted"
    assert err.strip().splitlines()[-1] == want
    assert sorted(q.name for q in out_dir.iterdir()) == ["x.gguf"] and (out_dir / "x.gguf").read_bytes() == b"old"


def test_concurrent_conversions_to_one_output(tmp_path):
    # each run writes its own temporary file: the output is one complete conversion, never a mix,
    # and a user's file named like the old temporary is left alone
    out = tmp_path / "x.gguf"
    (tmp_path / "x.gguf.part").write_text("mine")
    errors = []

    def run(outtype):
        try:
            convert(lc.FIXTURES / "spm_default_pad", out, outtype=outtype)
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in ("f32", "q4_0", "f16")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    r = gguf.GGUFReader(str(out))
    assert {str(t.tensor_type.name) for t in r.tensors if t.name == "blk.0.attn_q.weight"} <= {"F32", "Q4_0", "F16"}
    assert (tmp_path / "x.gguf.part").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.gguf", "x.gguf.part"]


def test_error_missing_directory_and_bad_arguments(tmp_path):
    with pytest.raises(MissingFileError, match="directory not found"):
        convert(tmp_path / "nope", tmp_path / "x.gguf")
    with pytest.raises(MissingFileError, match="the output directory"):
        convert(lc.FIXTURES / "bpe_full_crop", tmp_path / "no" / "x.gguf")
    with pytest.raises(ConvertError, match="unknown outtype 'q5_k'"):
        convert(lc.FIXTURES / "bpe_full_crop", tmp_path / "x.gguf", outtype="q5_k")
    r = run_cli(tmp_path / "nope", "-o", tmp_path / "x.gguf")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "directory not found" in r.stderr
    r = run_cli(lc.FIXTURES / "bpe_full_crop", "-o", tmp_path / "x.gguf", "--outtype", "q5_k")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = run_cli(lc.FIXTURES / "bpe_full_crop", "-o", tmp_path / "x.gguf", "--tsa-layers", "a,b")
    assert r.returncode == 2 and "comma-separated layer indices" in r.stderr
    assert not (tmp_path / "x.gguf").exists()


def test_other_checkpoint_layouts(converted, tmp_path):
    """llava-hf's layout of transformers 4 (vision_tower.vision_model.*, rope_theta at the top of
    text_config, fields at their defaults omitted, preprocessor_config.json) and the in-memory names of
    transformers >= 4.52 (model.language_model.*, top-level lm_head, model.vision_tower.*) convert to the
    same tensors and keys."""
    from safetensors.numpy import save_file

    src = lc.FIXTURES / "spm_default_pad"
    tensors = {}
    for f in sorted(src.glob("*.safetensors")):
        raw = f.read_bytes()
        n = int.from_bytes(raw[:8], "little")
        for name, t in json.loads(raw[8 : 8 + n]).items():
            if name != "__metadata__":
                b, e = t["data_offsets"]
                tensors[name] = np.frombuffer(raw[8 + n + b : 8 + n + e], "<f2").reshape(t["shape"])
    layouts = {
        "v4": lambda k: k.replace("vision_tower.", "vision_tower.vision_model."),
        "memory": lambda k: (
            k.replace("language_model.model.", "model.language_model.")
            .replace("language_model.lm_head.", "lm_head.")
            .replace("vision_tower.", "model.vision_tower.")
            .replace("multi_modal_projector.", "model.multi_modal_projector.")
        ),
    }
    want = gguf.GGUFReader(converted("spm_default_pad", "f16"))
    want_fields = fields(converted("spm_default_pad", "f16"))
    for layout, rename in layouts.items():
        d = tmp_path / layout
        d.mkdir()
        for f in src.iterdir():
            if f.suffix != ".safetensors" and f.name != "model.safetensors.index.json":
                shutil.copy(f, d / f.name)
        save_file({rename(k): v for k, v in tensors.items()}, str(d / "model.safetensors"))
        if layout == "v4":
            cfg = json.loads((d / "config.json").read_text())
            t = cfg["text_config"]
            t["rope_theta"] = t.pop("rope_parameters")["rope_theta"]
            for k in ("hidden_act", "attention_bias", "mlp_bias", "head_dim"):
                del t[k]
            del cfg["vision_config"]["hidden_act"]
            (d / "config.json").write_text(json.dumps(cfg))
            pc = json.loads((d / "processor_config.json").read_text())
            ip = pc["image_processor"] | {
                "image_processor_type": "LlavaImageProcessor",
                "processor_class": "LlavaProcessor",
            }
            (d / "preprocessor_config.json").write_text(json.dumps(ip))
            (d / "processor_config.json").unlink()
        out = tmp_path / f"{layout}.gguf"
        convert(d, out, outtype="f16", name="spm_default_pad")
        got = {x.name: x for x in gguf.GGUFReader(out).tensors}
        assert set(got) == {x.name for x in want.tensors}, layout
        for x in want.tensors:
            assert np.array_equal(np.asarray(got[x.name].data), np.asarray(x.data)), (layout, x.name)
        assert fields(out) == want_fields, layout


def test_values_beyond_float16_are_refused_for_f16(tmp_path):
    """A finite F32 weight of 1e5 would be stored as inf with --outtype f16: refused naming the
    tensor; bf16 and f32 hold it."""
    d = edited_copy(tmp_path, name="bpe_full_crop")
    f = d / "model.safetensors"
    raw = bytearray(f.read_bytes())
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    name = next(k for k, t in header.items() if k != "__metadata__" and len(t["shape"]) == 2 and t["dtype"] == "F32")
    at = 8 + n + header[name]["data_offsets"][0]
    raw[at : at + 4] = struct.pack("<f", 1e5)
    f.write_bytes(bytes(raw))
    with pytest.raises(ConvertError, match=r"values up to 100000 do not fit float16 \(at most 65504\)"):
        convert(d, tmp_path / "f16.gguf", outtype="f16")
    assert not (tmp_path / "f16.gguf").exists()
    convert(d, tmp_path / "bf16.gguf", outtype="bf16")


def test_image_turn_for_akvq_cli():
    """akvq.chat.image_turn: the template's one-turn image chat in akvq-cli's {images}/{prompt}
    format, kept only when expanding it reproduces the template's own render for 1-3 images."""
    from pyakvq.chat import render
    from pyakvq.convert.chat_turn import image_turn

    llava_hf = (
        "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
        "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image>\\n' }}{% endif %}{% endfor %}"
        "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] + ' ' }}{% endif %}{% endfor %}"
        "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
    )
    fmt = image_turn(llava_hf, "<image>", "<s>", "</s>")
    assert fmt == "USER: {images}{prompt} ASSISTANT:"
    for n in (1, 4):
        msgs = [{"role": "user", "content": [{"type": "image"}] * n + [{"type": "text", "text": "Why so?"}]}]
        assert render(llava_hf, msgs) == fmt.replace("{images}", "<image>\n" * n).replace("{prompt}", "Why so?")
    numbered = llava_hf.replace("{{ '<image>\\n' }}", "{{ '<image>\\nImage ' ~ loop.index ~ '.\\n' }}")
    after = (
        "{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
        "{% endfor %}{% for c in m['content'] %}{% if c['type'] == 'image' %}{{ '<image>\\n' }}{% endif %}{% endfor %}"
        "{% endfor %}"
    )
    no_newline = llava_hf.replace("{{ '<image>\\n' }}", "{{ '<image>' }}")
    for t in (numbered, after, no_newline, "{{ raise_exception('no') }}", "{{ messages[0]['content'] }}"):
        assert image_turn(t, "<image>", "<s>", "</s>") is None, t
