"""The tensor-name table: Hugging Face tensor names -> llama.cpp (GGUF) tensor names, for every part
the converter modules know. One entry per tensor kind; `{bid}` stands for a block index.

Each entry is (hf_name, gguf_name, kind). gguf_name None means "known, deliberately not converted".
kind selects the stored type (see quantize.py):
  "w"    a weight matrix: the output type (f32/f16/bf16/q8_0/q4_0)
  "tok"  the token embedding (a weight matrix; in q4_0 files it stays q8_0 when it is also the output)
  "out"  the output projection (q8_0 in q4_0 files, as llama.cpp keeps the output at higher precision)
  "n"    norm weights and all biases: always f32
  "emb"  vision embeddings (class, position, patch): f32 in f32 files, else f16
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# ---- text decoder (Llama family, arch "llama"), names relative to the text model
LLAMA_TEXT = [
    ("model.embed_tokens.weight", "token_embd.weight", "tok"),
    ("model.norm.weight", "output_norm.weight", "n"),
    ("lm_head.weight", "output.weight", "out"),
    ("model.layers.{bid}.input_layernorm.weight", "blk.{bid}.attn_norm.weight", "n"),
    ("model.layers.{bid}.self_attn.q_proj.weight", "blk.{bid}.attn_q.weight", "w"),
    ("model.layers.{bid}.self_attn.k_proj.weight", "blk.{bid}.attn_k.weight", "w"),
    ("model.layers.{bid}.self_attn.v_proj.weight", "blk.{bid}.attn_v.weight", "w"),
    ("model.layers.{bid}.self_attn.o_proj.weight", "blk.{bid}.attn_output.weight", "w"),
    ("model.layers.{bid}.post_attention_layernorm.weight", "blk.{bid}.ffn_norm.weight", "n"),
    ("model.layers.{bid}.mlp.gate_proj.weight", "blk.{bid}.ffn_gate.weight", "w"),
    ("model.layers.{bid}.mlp.up_proj.weight", "blk.{bid}.ffn_up.weight", "w"),
    ("model.layers.{bid}.mlp.down_proj.weight", "blk.{bid}.ffn_down.weight", "w"),
    # attention_bias / mlp_bias checkpoints (as llama.cpp's converter names them)
    ("model.layers.{bid}.self_attn.q_proj.bias", "blk.{bid}.attn_q.bias", "n"),
    ("model.layers.{bid}.self_attn.k_proj.bias", "blk.{bid}.attn_k.bias", "n"),
    ("model.layers.{bid}.self_attn.v_proj.bias", "blk.{bid}.attn_v.bias", "n"),
    ("model.layers.{bid}.self_attn.o_proj.bias", "blk.{bid}.attn_output.bias", "n"),
    ("model.layers.{bid}.mlp.gate_proj.bias", "blk.{bid}.ffn_gate.bias", "n"),
    ("model.layers.{bid}.mlp.up_proj.bias", "blk.{bid}.ffn_up.bias", "n"),
    ("model.layers.{bid}.mlp.down_proj.bias", "blk.{bid}.ffn_down.bias", "n"),
    ("model.layers.{bid}.self_attn.rotary_emb.inv_freq", None, "n"),  # a buffer in old checkpoints
]

# ---- CLIP vision tower (llama.cpp's mmproj names), names relative to the vision model
CLIP_VISION = [
    ("embeddings.class_embedding", "v.class_embd", "emb"),
    ("embeddings.patch_embedding.weight", "v.patch_embd.weight", "emb"),
    ("embeddings.position_embedding.weight", "v.position_embd.weight", "emb"),
    ("embeddings.position_ids", None, "n"),  # a buffer in old checkpoints
    ("pre_layrnorm.weight", "v.pre_ln.weight", "n"),
    ("pre_layrnorm.bias", "v.pre_ln.bias", "n"),
    # LLaVA takes its features from hidden_states (before post_layernorm): the final norm is unused,
    # and llama.cpp would apply a v.post_ln it finds, so it is not written.
    ("post_layernorm.weight", None, "n"),
    ("post_layernorm.bias", None, "n"),
    ("encoder.layers.{bid}.layer_norm1.weight", "v.blk.{bid}.ln1.weight", "n"),
    ("encoder.layers.{bid}.layer_norm1.bias", "v.blk.{bid}.ln1.bias", "n"),
    ("encoder.layers.{bid}.self_attn.q_proj.weight", "v.blk.{bid}.attn_q.weight", "w"),
    ("encoder.layers.{bid}.self_attn.q_proj.bias", "v.blk.{bid}.attn_q.bias", "n"),
    ("encoder.layers.{bid}.self_attn.k_proj.weight", "v.blk.{bid}.attn_k.weight", "w"),
    ("encoder.layers.{bid}.self_attn.k_proj.bias", "v.blk.{bid}.attn_k.bias", "n"),
    ("encoder.layers.{bid}.self_attn.v_proj.weight", "v.blk.{bid}.attn_v.weight", "w"),
    ("encoder.layers.{bid}.self_attn.v_proj.bias", "v.blk.{bid}.attn_v.bias", "n"),
    ("encoder.layers.{bid}.self_attn.out_proj.weight", "v.blk.{bid}.attn_out.weight", "w"),
    ("encoder.layers.{bid}.self_attn.out_proj.bias", "v.blk.{bid}.attn_out.bias", "n"),
    ("encoder.layers.{bid}.layer_norm2.weight", "v.blk.{bid}.ln2.weight", "n"),
    ("encoder.layers.{bid}.layer_norm2.bias", "v.blk.{bid}.ln2.bias", "n"),
    # fc1 widens (hidden -> intermediate) = ffn_up, fc2 narrows = ffn_down (current llama.cpp naming;
    # the legacy published files have these two swapped)
    ("encoder.layers.{bid}.mlp.fc1.weight", "v.blk.{bid}.ffn_up.weight", "w"),
    ("encoder.layers.{bid}.mlp.fc1.bias", "v.blk.{bid}.ffn_up.bias", "n"),
    ("encoder.layers.{bid}.mlp.fc2.weight", "v.blk.{bid}.ffn_down.weight", "w"),
    ("encoder.layers.{bid}.mlp.fc2.bias", "v.blk.{bid}.ffn_down.bias", "n"),
]

# ---- LLaVA's multi-modal projector (Linear -> act -> Linear = llama.cpp's mm.0 / mm.2)
LLAVA_PROJECTOR = [
    ("linear_1.weight", "mm.0.weight", "w"),
    ("linear_1.bias", "mm.0.bias", "n"),
    ("linear_2.weight", "mm.2.weight", "w"),
    ("linear_2.bias", "mm.2.bias", "n"),
]

# Where the parts of a LLaVA checkpoint live: (prefix of the saved name, part, text put back in front of
# the rest). transformers < 4.52 and >= 5 save `language_model.model.*` / `vision_tower[.vision_model].*`
# / `multi_modal_projector.*`; the in-memory layout of 4.52+ (`model.language_model.*`, top-level
# `lm_head`, `model.vision_tower.*`) is accepted too. The first matching prefix wins.
LLAVA_PARTS = [
    ("model.language_model.", "text", "model."),
    ("language_model.", "text", ""),
    ("lm_head.", "text", "lm_head."),
    ("model.vision_tower.vision_model.", "vision", ""),
    ("model.vision_tower.", "vision", ""),
    ("vision_tower.vision_model.", "vision", ""),
    ("vision_tower.", "vision", ""),
    ("model.multi_modal_projector.", "projector", ""),
    ("multi_modal_projector.", "projector", ""),
]

# A text-only Llama checkpoint: the names are already relative to the text model.
LLAMA_PARTS = [("", "text", "")]

TABLES = {"text": LLAMA_TEXT, "vision": CLIP_VISION, "projector": LLAVA_PROJECTOR}


@dataclass(frozen=True)
class Mapped:
    hf_name: str  # the name in the checkpoint
    part: str  # "text" | "vision" | "projector"
    gguf_name: str | None  # None: known, not converted
    kind: str
    bid: int | None


def _compile(table):
    out = []
    for hf, gg, kind in table:
        pat = re.compile("^" + re.escape(hf).replace(re.escape("{bid}"), r"(\d+)") + "$")
        out.append((pat, gg, kind))
    return out


_COMPILED = {part: _compile(t) for part, t in TABLES.items()}


def split_part(name: str, parts) -> tuple[str, str] | None:
    """(part, name relative to the part) for a checkpoint tensor name, or None if no prefix matches."""
    for prefix, part, head in parts:
        if name.startswith(prefix):
            return part, head + name[len(prefix) :]
    return None


def map_name(name: str, parts) -> Mapped | None:
    """The table entry for a checkpoint tensor name; None if the name is not in the table."""
    sp = split_part(name, parts)
    if sp is None:
        return None
    part, rel = sp
    for pat, gg, kind in _COMPILED[part]:
        m = pat.match(rel)
        if m:
            bid = int(m.group(1)) if m.groups() else None
            gguf_name = gg.replace("{bid}", str(bid)) if gg is not None and bid is not None else gg
            return Mapped(name, part, gguf_name, kind, bid)
    return None
