"""Saliency end to end (issue 8, point 7) on the tiny random LLaVA fixtures converted (f32):
the engine's attention probabilities (rows sum to 1, causal, equal to a numpy recomputation from the
Hugging Face checkpoint and transformers' reference image features), profile_saliency's shares,
kv_stats() token counts by kind (text / vision / generated, per layer and per precision class),
akvq.tsa_layers written into a copy of the GGUF and read back, and `python -m pyakvq profile`."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import llava_convert as lc
import numpy as np
import pytest

import pyakvq
from pyakvq.saliency import attention_probabilities, profile_saliency, write_tsa_layers

gguf = pytest.importorskip("gguf")
pytest.importorskip("safetensors")

NAME = "spm_default_pad"
IMAGES = lc.FIXTURES / "images"


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    (p,) = lc.convert_fixture(NAME, tmp_path_factory.mktemp("saliency"), outtype="f32")
    return p


@pytest.fixture(scope="module")
def model(path):
    m = pyakvq.Model(path, n_ctx=512, n_threads=2)
    yield m
    m.close()


def case(p: int):
    ref, meta = lc.reference(NAME)
    pm = meta["prompts"][p]
    return pm["text"], [str(IMAGES / n) for n in pm["images"]]


def samples():
    return [case(0), case(1)]


def test_probabilities_rows_sum_to_one_and_causal(model):
    text, images = case(1)
    probs, kinds, q0 = attention_probabilities(model, text, images, q_begin=0)
    n = len(kinds)
    assert probs.shape == (model.info["n_layer"], n, n)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert np.all(probs >= 0)
    assert np.all(np.triu(probs, k=1) == 0)  # no query sees a later position
    assert kinds.count("vision") == 3 * 16
    # the default q_begin: the text after the last image
    probs2, _, q1 = attention_probabilities(model, text, images)
    assert q1 == max(i for i, k in enumerate(kinds) if k == "vision") + 1
    np.testing.assert_allclose(probs2, probs[:, q1:, :], atol=1e-6)  # one pass per call, same rows


def _hf_attention(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Head-averaged attention [n_layer, n, n] of the Hugging Face decoder in float64 numpy (half-split
    RoPE, weights as stored in the checkpoint), fed transformers' own image features (the fixture's
    projector outputs) at the image positions of transformers' prompt ids."""
    from safetensors.numpy import load_file

    d = lc.FIXTURES / NAME
    cfg = json.loads((d / "config.json").read_text())
    tc = cfg["text_config"]
    W: dict[str, np.ndarray] = {}
    for f in sorted(d.glob("*.safetensors")):
        W.update({k: v.astype(np.float64) for k, v in load_file(f).items()})
    pre = "language_model.model."
    ref, meta = lc.reference(NAME)
    ids = ref[f"p{p}_prompt_ids"].astype(np.int64)
    feats = ref["projector_outputs"][ref[f"p{p}_image_idx"]].reshape(-1, tc["hidden_size"]).astype(np.float64)
    x = W[pre + "embed_tokens.weight"][ids]
    img = ids == meta["image_token_id"]
    x[img] = feats
    n, H, Hk, hd = len(ids), tc["num_attention_heads"], tc["num_key_value_heads"], tc["head_dim"]
    theta = (tc.get("rope_parameters") or {}).get("rope_theta", tc.get("rope_theta", 10000.0))
    eps = tc["rms_norm_eps"]
    inv = theta ** (-np.arange(0, hd, 2) / hd)
    ang = np.arange(n)[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def rope(t):  # [n, heads, hd], halves rotated
        rot = np.concatenate([-t[..., hd // 2 :], t[..., : hd // 2]], -1)
        return t * cos[:, None, :] + rot * sin[:, None, :]

    def rms(t, w):
        return t / np.sqrt((t * t).mean(-1, keepdims=True) + eps) * w

    out = []
    mask = np.triu(np.full((n, n), -np.inf), k=1)
    for layer in range(tc["num_hidden_layers"]):
        P = f"{pre}layers.{layer}."
        h = rms(x, W[P + "input_layernorm.weight"])
        q = rope((h @ W[P + "self_attn.q_proj.weight"].T).reshape(n, H, hd))
        k = rope((h @ W[P + "self_attn.k_proj.weight"].T).reshape(n, Hk, hd))
        v = (h @ W[P + "self_attn.v_proj.weight"].T).reshape(n, Hk, hd)
        k, v = np.repeat(k, H // Hk, axis=1), np.repeat(v, H // Hk, axis=1)
        s = np.einsum("ihd,jhd->hij", q, k) / np.sqrt(hd) + mask
        pr = np.exp(s - s.max(-1, keepdims=True))
        pr /= pr.sum(-1, keepdims=True)
        out.append(pr.mean(0))
        o = np.einsum("hij,jhd->ihd", pr, v).reshape(n, H * hd)
        x = x + o @ W[P + "self_attn.o_proj.weight"].T
        h = rms(x, W[P + "post_attention_layernorm.weight"])
        g = h @ W[P + "mlp.gate_proj.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ W[P + "mlp.up_proj.weight"].T)) @ W[P + "mlp.down_proj.weight"].T
    return np.stack(out), img


@pytest.mark.parametrize("p", [0, 1])
def test_probabilities_match_numpy_reference(model, p):
    ref_probs, img = _hf_attention(p)
    text, images = case(p)
    probs, kinds, q0 = attention_probabilities(model, text, images, q_begin=0)
    assert probs.shape == ref_probs.shape
    assert [k == "vision" for k in kinds] == img.tolist()  # the same positions hold the images
    # engine image features differ from transformers' by cos >= 0.9999 (f32 conversion)
    np.testing.assert_allclose(probs, ref_probs, atol=2e-3)
    assert np.abs(probs - ref_probs).mean() < 2e-4


def test_profile_shares_add_up(model):
    r = profile_saliency(model, samples(), skip_first=5, top_k=4)
    assert r["n_layer"] == model.info["n_layer"] == len(r["layers"])
    assert r["max_row_error"] < 1e-5
    assert [s["n_vision"] for s in r["samples"]] == [16, 48]
    for s in r["samples"]:
        assert s["q_begin"] + s["n_queries"] == s["n_tokens"]
    for L in r["layers"]:
        assert L["text_mass"] + L["vision_mass"] + L["skipped_mass"] == pytest.approx(1.0, abs=1e-5)
        assert L["text_share"] + L["vision_share"] == pytest.approx(1.0, abs=1e-12)
        assert L["ratio"] == pytest.approx(L["text_per_token"] / L["vision_per_token"])
        assert L["tsa"] == (L["ratio"] >= r["factor"])
        masses = [t["mass"] for t in L["top"]]
        assert len(masses) == 4 and masses == sorted(masses, reverse=True)
        assert {t["kind"] for t in L["top"]} <= {"text", "vision"}
    assert r["tsa_layers"] == [L["layer"] for L in r["layers"] if L["tsa"]]
    # the rule follows the factor: 0 takes every layer, a huge factor none
    assert profile_saliency(model, samples()[:1], factor=1e-9)["tsa_layers"] == list(range(r["n_layer"]))
    assert profile_saliency(model, samples()[:1], factor=1e9)["tsa_layers"] == []


def test_profile_matches_probabilities(model):
    text, images = case(0)
    r = profile_saliency(model, [(text, images)], skip_first=5)
    probs, kinds, q0 = attention_probabilities(model, text, images)
    recv = probs.astype(np.float64).mean(1)
    vis = np.array([k == "vision" for k in kinds])
    pos = np.arange(len(kinds))
    for li, L in enumerate(r["layers"]):
        assert L["vision_mass"] == pytest.approx(recv[li, vis & (pos >= 5)].sum(), abs=1e-6)
        assert L["skipped_mass"] == pytest.approx(recv[li, :5].sum(), abs=1e-6)
        # top receivers from position skip_first on, as the masses
        assert L["top"][0]["position"] == 5 + int(np.argmax(recv[li, 5:]))
        assert min(t["position"] for t in L["top"]) >= 5


def test_profile_errors(model):
    text, images = case(0)
    with pytest.raises(ValueError, match="no samples"):
        profile_saliency(model, [])
    with pytest.raises(ValueError, match="query"):
        profile_saliency(model, [("USER: <image>", images)])
    with pytest.raises(ValueError, match="skip_first"):
        profile_saliency(model, [(text, images)], skip_first=-1)
    with pytest.raises(ValueError, match=r"sample 0: skip_first = 100000 skips every one of its \d+ positions"):
        profile_saliency(model, [(text, images)], skip_first=100000)


def test_kv_stats_kinds(path):
    text, images = case(1)
    with pyakvq.Model(path, n_ctx=512, n_threads=2, kv="akvq2", kv_options={"window": 8, "tsa_layers": [0]}) as m:
        m.eval(text, images=images)
        st = m.kv_stats()
        n = st["n_tokens"]
        for L in st["layers"]:
            assert L["kinds"] == {"text": n - 48, "vision": 48, "generated": 0}
            for c in L["classes"]:
                assert sum(c["kinds"].values()) == c["tokens"], c
            total = {k: sum(c["kinds"][k] for c in L["classes"]) for k in ("text", "vision", "generated")}
            assert total == L["kinds"]
        # TSA layer 0: the 4-bit class holds text only, the 2-bit class the vision tokens that left the window
        by_name = {c["name"]: c for c in st["layers"][0]["classes"]}
        q4 = [c for name, c in by_name.items() if "4" in name and not name.startswith("fp16")]
        q2 = [c for name, c in by_name.items() if "2" in name and not name.startswith("fp16")]
        assert q4 and q2
        assert all(c["kinds"]["vision"] == 0 for c in q4)
        assert all(c["kinds"]["text"] == 0 for c in q2) and sum(c["kinds"]["vision"] for c in q2) > 0
        # generated tokens are counted as such
        m.generate(text, images=images, max_tokens=3, temperature=0.0)
        assert m.kv_stats()["layers"][1]["kinds"]["generated"] >= 1
    with pyakvq.Model(path, n_ctx=512, n_threads=2) as m:  # f16: one class, every token
        m.eval(text, images=images)
        L = m.kv_stats()["layers"][0]
        assert L["kinds"]["vision"] == 48 and L["classes"][0]["kinds"] == L["kinds"]


def test_write_tsa_round_trip(path, tmp_path):
    out = tmp_path / "tsa.gguf"
    write_tsa_layers(path, out, [1, 2])
    with pyakvq.Model(out, n_ctx=256, n_threads=2, kv="akvq2") as m:
        assert m.kv_stats()["tsa_layers"] == [1, 2]
    out2 = tmp_path / "tsa2.gguf"
    write_tsa_layers(out, out2, [0])  # replaces the key
    with pyakvq.Model(out2, n_ctx=256, n_threads=2, kv="akvq2") as m:
        assert m.kv_stats()["tsa_layers"] == [0]
    a, b = gguf.GGUFReader(path), gguf.GGUFReader(out2)
    fa = {k for k in a.fields if not k.startswith("GGUF.")}
    fb = {k for k in b.fields if not k.startswith("GGUF.")}
    assert fb - fa == {"akvq.tsa_layers"} or fb == fa | {"akvq.tsa_layers"}
    for k in fa - {"akvq.tsa_layers"}:
        assert a.fields[k].types == b.fields[k].types
        assert all(np.array_equal(x, y) for x, y in zip(a.fields[k].parts, b.fields[k].parts, strict=True)), k
    assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
    for ta, tb in zip(a.tensors, b.tensors, strict=True):
        assert ta.tensor_type == tb.tensor_type and np.array_equal(ta.data, tb.data), ta.name
    with pytest.raises(ValueError, match="out of range"):
        write_tsa_layers(path, tmp_path / "bad.gguf", [99])
    link = tmp_path / "link.gguf"
    link.symlink_to(out)
    size = out.stat().st_size
    with pytest.raises(ValueError, match="dst must differ from src"):  # a link to the source
        write_tsa_layers(out, link, [0])
    link2 = tmp_path / "link2.gguf"
    link2.symlink_to(tmp_path / "through.gguf")
    write_tsa_layers(out, link2, [0])  # through a link: the file it names, the link stays
    assert link2.is_symlink() and out.stat().st_size == size
    with pyakvq.Model(tmp_path / "through.gguf", n_ctx=256, n_threads=2, kv="akvq2") as m:
        assert m.kv_stats()["tsa_layers"] == [0]
    assert not list(tmp_path.glob(".*.part")) and not list(tmp_path.glob("*.tmp"))


def test_cli_profile(path, tmp_path):
    text, images = case(0)
    out = tmp_path / "cli_tsa.gguf"
    cwd = pathlib.Path(pyakvq.__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "pyakvq", "profile", "-m", str(path), "--image", images[0]]
    cmd += ["-p", "What shape is in the picture?", "--write-tsa", str(out), "--factor", "1e-9", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)
    assert r.returncode == 0, r.stderr
    js = json.loads(r.stdout)
    assert js["tsa_layers"] == list(range(js["n_layer"])) and js["samples"][0]["n_vision"] == 16
    with pyakvq.Model(out, n_ctx=256, n_threads=2, kv="akvq2") as m:
        assert m.kv_stats()["tsa_layers"] == js["tsa_layers"]
    r = subprocess.run(cmd[:-5], capture_output=True, text=True, timeout=300, cwd=cwd)  # table
    assert r.returncode == 0, r.stderr
    assert "suggested TSA layers" in r.stdout and "layer" in r.stdout
    bad = cmd[:6] + ["--image", str(tmp_path / "missing.png"), "-p", "x"]
    r = subprocess.run(bad, capture_output=True, text=True, timeout=300, cwd=cwd)
    assert r.returncode == 2 and "pyakvq profile: error" in r.stderr
