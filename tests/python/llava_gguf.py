"""Writes GGUF files of the tiny LLaVA fixture (tests/fixtures/clip_tiny/weights.npz) for the vision
tests, in the layouts the engine reads: one file (text + vision + projector, arch `llama`), llama.cpp's
two files (text GGUF + mmproj GGUF, arch `clip`), and the legacy mmproj quirks of published files
(unused last block not stored, fc1/fc2 stored as ffn_down/ffn_up, no post_ln). Weight types
f32 / f16 / q8_0 (matmul weights; norms and biases stay f32). Uses only numpy and `gguf`.
"""

from __future__ import annotations

import json
import pathlib

import gguf
import numpy as np

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
WEIGHTS = FIXTURES / "clip_tiny" / "weights.npz"
REFERENCE = FIXTURES / "clip_tiny" / "reference.npz"
TOKENIZER = FIXTURES / "tokenizer" / "spm_bpe.gguf"

V = "vision_tower.vision_model."
T = "language_model.model."


def load_weights() -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(WEIGHTS) as z:
        cfg = json.loads(str(z["config"]))
        return cfg, {k: z[k] for k in z.files if k != "config"}


_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    """Tensors of a .safetensors file (F32, F16; BF16 widened to float32)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        a = np.frombuffer(raw[8 + n + b : 8 + n + e], dtype=_ST_DTYPES[t["dtype"]]).reshape(t["shape"])
        if t["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        out[name] = a
    return out


def load_hf_dir(d: str | pathlib.Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(config, state dict) of a Hugging Face LLaVA directory (one or many safetensors files), in the
    schema of load_weights(); the text vocabulary is a placeholder (see _tokenizer)."""
    d = pathlib.Path(d)
    c = json.loads((d / "config.json").read_text())
    v, t = c["vision_config"], c["text_config"]
    sd = {}
    for f in sorted(d.glob("*.safetensors")):
        sd.update(_read_safetensors(f))
    for name in list(sd):  # the saved layout: vision_tower[.vision_model].*, language_model.model.*
        if name.startswith("vision_tower.") and not name.startswith(V):
            sd[V + name[len("vision_tower.") :]] = sd.pop(name)
    if "language_model.lm_head.weight" not in sd and "lm_head.weight" in sd:
        sd["language_model.lm_head.weight"] = sd.pop("lm_head.weight")
    rope = t.get("rope_parameters") or {"rope_theta": t.get("rope_theta", 10000.0)}
    cfg = {
        "image_size": v["image_size"],
        "patch_size": v["patch_size"],
        "vision_hidden": v["hidden_size"],
        "vision_ff": v["intermediate_size"],
        "vision_layers": v["num_hidden_layers"],
        "vision_heads": v["num_attention_heads"],
        "vision_eps": v.get("layer_norm_eps", 1e-5),
        "vision_act": v.get("hidden_act", "quick_gelu"),
        "text_hidden": t["hidden_size"],
        "text_ff": t["intermediate_size"],
        "text_layers": t["num_hidden_layers"],
        "text_heads": t["num_attention_heads"],
        "text_kv_heads": t.get("num_key_value_heads", t["num_attention_heads"]),
        "rms_eps": t["rms_norm_eps"],
        "rope_theta": float(rope["rope_theta"]),
        "n_vocab": t["vocab_size"],
        "image_token_id": c["image_token_index"],
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "feature_layer": c.get("vision_feature_layer", -2),
        "strategy": c.get("vision_feature_select_strategy", "default"),
        "placeholder_vocab": True,
    }
    return cfg, sd


def _matmul_tensor(w: gguf.GGUFWriter, name: str, arr: np.ndarray, wtype: str) -> None:
    a = arr.astype(np.float32)
    if wtype == "q8_0" and a.shape[-1] % 32 == 0:
        q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    elif wtype in ("f16", "q8_0"):
        w.add_tensor(name, a.astype(np.float16))
    else:
        w.add_tensor(name, a)


def _f32(w: gguf.GGUFWriter, name: str, arr: np.ndarray) -> None:
    w.add_tensor(name, arr.astype(np.float32))


def _permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's row order for Q/K of arch `llama` (RoPE on adjacent pairs)."""
    out, inp = w.shape
    return w.reshape(n_head, 2, out // n_head // 2, inp).swapaxes(1, 2).reshape(out, inp)


def _placeholder_tokenizer(w: gguf.GGUFWriter, n_vocab: int) -> None:
    """A SentencePiece-style vocabulary of n_vocab made-up pieces (tests feed token ids directly)."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    tokens += [f"\u2581w{i}" for i in range(len(tokens), n_vocab)]
    types += [1] * (n_vocab - len(types))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens[:n_vocab])
    w.add_token_scores([-float(i) for i in range(n_vocab)])
    w.add_token_types(types[:n_vocab])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)


def _tokenizer(w: gguf.GGUFWriter, n_vocab: int) -> None:
    r = gguf.GGUFReader(TOKENIZER)
    f = {k: v.contents() for k, v in r.fields.items() if k.startswith("tokenizer.")}
    tokens, scores, types = (
        list(f["tokenizer.ggml.tokens"]),
        list(f["tokenizer.ggml.scores"]),
        list(f["tokenizer.ggml.token_type"]),
    )
    while len(tokens) < n_vocab:  # "<image>" as an added (user-defined) token
        tokens.append("<image>")
        scores.append(0.0)
        types.append(4)
    w.add_tokenizer_model(f["tokenizer.ggml.model"])
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(f["tokenizer.ggml.bos_token_id"])
    w.add_eos_token_id(f["tokenizer.ggml.eos_token_id"])
    w.add_unk_token_id(f["tokenizer.ggml.unknown_token_id"])
    w.add_add_bos_token(f["tokenizer.ggml.add_bos_token"])
    w.add_add_space_prefix(f["tokenizer.ggml.add_space_prefix"])


def _text(w: gguf.GGUFWriter, cfg: dict, sd: dict, wtype: str) -> None:
    w.add_context_length(512)
    w.add_embedding_length(cfg["text_hidden"])
    w.add_block_count(cfg["text_layers"])
    w.add_feed_forward_length(cfg["text_ff"])
    w.add_head_count(cfg["text_heads"])
    w.add_head_count_kv(cfg["text_kv_heads"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_eps"])
    if cfg.get("placeholder_vocab"):
        _placeholder_tokenizer(w, cfg["n_vocab"])
    else:
        _tokenizer(w, cfg["n_vocab"])
    _matmul_tensor(w, "token_embd.weight", sd[T + "embed_tokens.weight"], wtype)
    _f32(w, "output_norm.weight", sd[T + "norm.weight"])
    if "language_model.lm_head.weight" in sd:  # else tied to the embedding
        _matmul_tensor(w, "output.weight", sd["language_model.lm_head.weight"], wtype)
    for il in range(cfg["text_layers"]):
        p, b = f"{T}layers.{il}.", f"blk.{il}."
        _f32(w, b + "attn_norm.weight", sd[p + "input_layernorm.weight"])
        q = _permute_qk(sd[p + "self_attn.q_proj.weight"].astype(np.float32), cfg["text_heads"])
        k = _permute_qk(sd[p + "self_attn.k_proj.weight"].astype(np.float32), cfg["text_kv_heads"])
        _matmul_tensor(w, b + "attn_q.weight", q, wtype)
        _matmul_tensor(w, b + "attn_k.weight", k, wtype)
        _matmul_tensor(w, b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"], wtype)
        _matmul_tensor(w, b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"], wtype)
        _f32(w, b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        _matmul_tensor(w, b + "ffn_gate.weight", sd[p + "mlp.gate_proj.weight"], wtype)
        _matmul_tensor(w, b + "ffn_up.weight", sd[p + "mlp.up_proj.weight"], wtype)
        _matmul_tensor(w, b + "ffn_down.weight", sd[p + "mlp.down_proj.weight"], wtype)


def _vision(
    w: gguf.GGUFWriter,
    cfg: dict,
    sd: dict,
    wtype: str,
    legacy: bool,
    keys: dict,
) -> None:
    n_layer = cfg["vision_layers"] - (1 if legacy else 0)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_llava_projector", True)
    w.add_string("clip.projector_type", "mlp")
    w.add_uint32("clip.vision.image_size", cfg["image_size"])
    w.add_uint32("clip.vision.patch_size", cfg["patch_size"])
    w.add_uint32("clip.vision.embedding_length", cfg["vision_hidden"])
    w.add_uint32("clip.vision.feed_forward_length", cfg["vision_ff"])
    w.add_uint32("clip.vision.projection_dim", cfg["text_hidden"])
    w.add_uint32("clip.vision.block_count", n_layer)
    w.add_uint32("clip.vision.attention.head_count", cfg["vision_heads"])
    w.add_float32("clip.vision.attention.layer_norm_epsilon", cfg["vision_eps"])
    w.add_array("clip.vision.image_mean", cfg["image_mean"])
    w.add_array("clip.vision.image_std", cfg["image_std"])
    w.add_bool("clip.use_gelu", bool(keys.pop("use_gelu", cfg.get("vision_act") == "gelu")))
    for key, value in keys.items():
        if value is None:
            continue
        if isinstance(value, str):
            w.add_string(key, value)
        elif isinstance(value, list):
            w.add_array(key, value)
        else:
            w.add_int32(key, int(value))
    e = V + "embeddings."
    # conv weight [hidden, 3, P, P]: f16 (or f32); never q8_0 here, as llama.cpp's files
    patch = sd[e + "patch_embedding.weight"]
    w.add_tensor("v.patch_embd.weight", patch.astype(np.float32 if wtype == "f32" else np.float16))
    _f32(w, "v.class_embd", sd[e + "class_embedding"])
    pos = sd[e + "position_embedding.weight"]
    w.add_tensor("v.position_embd.weight", pos.astype(np.float32 if wtype == "f32" else np.float16))
    _f32(w, "v.pre_ln.weight", sd[V + "pre_layrnorm.weight"])
    _f32(w, "v.pre_ln.bias", sd[V + "pre_layrnorm.bias"])
    fc1, fc2 = ("ffn_down", "ffn_up") if legacy else ("ffn_up", "ffn_down")
    for il in range(n_layer):
        p, b = f"{V}encoder.layers.{il}.", f"v.blk.{il}."
        _f32(w, b + "ln1.weight", sd[p + "layer_norm1.weight"])
        _f32(w, b + "ln1.bias", sd[p + "layer_norm1.bias"])
        for hf, gg in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v"), ("out_proj", "attn_out")):
            _matmul_tensor(w, b + gg + ".weight", sd[p + f"self_attn.{hf}.weight"], wtype)
            _f32(w, b + gg + ".bias", sd[p + f"self_attn.{hf}.bias"])
        _f32(w, b + "ln2.weight", sd[p + "layer_norm2.weight"])
        _f32(w, b + "ln2.bias", sd[p + "layer_norm2.bias"])
        _matmul_tensor(w, b + fc1 + ".weight", sd[p + "mlp.fc1.weight"], wtype)
        _f32(w, b + fc1 + ".bias", sd[p + "mlp.fc1.bias"])
        _matmul_tensor(w, b + fc2 + ".weight", sd[p + "mlp.fc2.weight"], wtype)
        _f32(w, b + fc2 + ".bias", sd[p + "mlp.fc2.bias"])
    if not legacy:
        _f32(w, "v.post_ln.weight", sd[V + "post_layernorm.weight"])
        _f32(w, "v.post_ln.bias", sd[V + "post_layernorm.bias"])
    m = "multi_modal_projector."
    _matmul_tensor(w, "mm.0.weight", sd[m + "linear_1.weight"], wtype)
    _f32(w, "mm.0.bias", sd[m + "linear_1.bias"])
    _matmul_tensor(w, "mm.2.weight", sd[m + "linear_2.weight"], wtype)
    _f32(w, "mm.2.bias", sd[m + "linear_2.bias"])


def write(
    path: str | pathlib.Path,
    layout: str = "one",
    wtype: str = "f32",
    legacy: bool = False,
    feature_layer: int | None = None,
    strategy: str | None = None,
    image_token: bool = True,
    extra_keys: dict | None = None,
    projector_out: int | None = None,
    source: tuple[dict, dict] | None = None,
    projector_in_tiles: int = 1,
) -> pathlib.Path:
    """layout: "one" (text + vision, arch llama) | "text" (text only) | "mmproj" (arch clip).
    feature_layer / strategy: our `akvq.vision.*` keys (None: not written). extra_keys: more
    vision keys (e.g. {"use_gelu": True} or llama.cpp's "clip.vision.feature_layer": [2]).
    projector_out: cut the projector's output width (a mismatching mmproj). source: (config, state
    dict) from load_hf_dir (default: the clip_tiny fixture). projector_in_tiles: repeat mm.0's input
    columns (scaled), for files with several feature layers."""
    cfg, sd = source if source is not None else load_weights()
    if projector_in_tiles > 1:  # a projector taking several feature layers side by side
        sd = dict(sd)
        w1 = sd["multi_modal_projector.linear_1.weight"].astype(np.float32)
        sd["multi_modal_projector.linear_1.weight"] = np.tile(w1, (1, projector_in_tiles)) / projector_in_tiles
    if projector_out is not None:
        sd = dict(sd)
        sd["multi_modal_projector.linear_2.weight"] = sd["multi_modal_projector.linear_2.weight"][:projector_out]
        sd["multi_modal_projector.linear_2.bias"] = sd["multi_modal_projector.linear_2.bias"][:projector_out]
    path = pathlib.Path(path)
    w = gguf.GGUFWriter(str(path), "clip" if layout == "mmproj" else "llama")
    w.add_name("llava-tiny-random")
    if layout in ("one", "text"):
        _text(w, cfg, sd, wtype)
    if layout in ("one", "mmproj"):
        keys = {
            "akvq.vision.feature_layer": feature_layer,
            "akvq.vision.select_strategy": strategy,
            "akvq.vision.image_token_id": cfg["image_token_id"] if image_token else None,
            "akvq.vision.pad_mode": "pad",
        }
        keys.update(extra_keys or {})
        _vision(w, cfg, sd, wtype, legacy, keys)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
