"""Writes a LLaVA-1.5-7B-shaped GGUF with random weights (one file, the converter's layout) for
bench/vision.py: shapes decide speed, values do not.

    python bench/make_random_llava.py OUT.gguf [--seed 0]

Vision: CLIP ViT-L/14-336 (24 blocks, hidden 1024, 16 heads, MLP 4096, quick_gelu, feature layer
-2, strategy default) + projector 1024 -> 4096 -> 4096 (GELU), f16 matrices and f32 vectors as in
llama.cpp's usual mmproj files. Decoder: Llama-2-7B shape (32 layers, hidden 4096, 32 heads,
MLP 11008, vocab 32000 SentencePiece with an `<image>` token at id 31999), every matrix Q4_0
(random nibbles, fp16 scales drawn around 0.004 so that weights have std ~0.02), norms f32.

The file is streamed with gguf.GGUFWriter (header, then each tensor's bytes in chunks, see
bench/random_gguf.py): about 4.4 GB on disk, peak RSS of the writer ~0.1 GB (printed at the end).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from gguf import GGUFWriter

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from random_gguf import (  # noqa: E402  (the sibling module, found through the path above)
    LlamaShape,
    TensorSpec,
    add_llama_keys,
    add_spm_vocab,
    llama_tensors,
    peak_rss_mb,
    write_streamed,
)

N_VOCAB, N_EMBD, N_LAYER, N_HEAD, N_FF, N_CTX = 32000, 4096, 32, 32, 11008, 4096
V_EMBD, V_LAYER, V_HEAD, V_FF, IMAGE, PATCH = 1024, 24, 16, 4096, 336, 14
IMAGE_TOKEN = N_VOCAB - 1
DECODER = LlamaShape(N_VOCAB, N_EMBD, N_LAYER, N_HEAD, N_HEAD, N_FF, N_CTX)


def tensor_plan() -> list[TensorSpec]:
    """The decoder's tensors (Q4_0 matrices, f32 norms), then the vision tower's and projector's
    (f16 matrices, f32 vectors; kind "norm" for LayerNorm weights)."""
    t = llama_tensors(DECODER, "q4_0")
    n_pos = (IMAGE // PATCH) ** 2 + 1
    t += [
        TensorSpec("v.class_embd", (V_EMBD,), "f32"),
        TensorSpec("v.patch_embd.weight", (V_EMBD, 3, PATCH, PATCH), "f16"),
        TensorSpec("v.position_embd.weight", (n_pos, V_EMBD), "f16"),
        TensorSpec("v.pre_ln.weight", (V_EMBD,), "norm"),
        TensorSpec("v.pre_ln.bias", (V_EMBD,), "f32"),
    ]
    for i in range(V_LAYER):
        b = f"v.blk.{i}."
        t += [TensorSpec(b + n, (V_EMBD,), "norm") for n in ("ln1.weight", "ln2.weight")]
        t += [TensorSpec(b + n, (V_EMBD,), "f32") for n in ("ln1.bias", "ln2.bias")]
        for n in ("attn_q", "attn_k", "attn_v", "attn_out"):
            t += [TensorSpec(b + n + ".weight", (V_EMBD, V_EMBD), "f16"), TensorSpec(b + n + ".bias", (V_EMBD,), "f32")]
        t += [
            TensorSpec(b + "ffn_up.weight", (V_FF, V_EMBD), "f16"),
            TensorSpec(b + "ffn_up.bias", (V_FF,), "f32"),
            TensorSpec(b + "ffn_down.weight", (V_EMBD, V_FF), "f16"),
            TensorSpec(b + "ffn_down.bias", (V_EMBD,), "f32"),
        ]
    t += [
        TensorSpec("mm.0.weight", (N_EMBD, V_EMBD), "f16"),
        TensorSpec("mm.0.bias", (N_EMBD,), "f32"),
        TensorSpec("mm.2.weight", (N_EMBD, N_EMBD), "f16"),
        TensorSpec("mm.2.bias", (N_EMBD,), "f32"),
    ]
    return t


def add_keys(w: GGUFWriter) -> None:
    add_llama_keys(w, DECODER, "llava-1.5-7b-shape-random", 2)  # file type 2: mostly Q4_0
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_llava_projector", True)
    w.add_string("clip.projector_type", "mlp")
    w.add_uint32("clip.vision.projection_dim", N_EMBD)
    w.add_bool("clip.use_gelu", False)
    w.add_uint32("clip.vision.image_size", IMAGE)
    w.add_uint32("clip.vision.patch_size", PATCH)
    w.add_uint32("clip.vision.embedding_length", V_EMBD)
    w.add_uint32("clip.vision.feed_forward_length", V_FF)
    w.add_uint32("clip.vision.block_count", V_LAYER)
    w.add_uint32("clip.vision.attention.head_count", V_HEAD)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    w.add_array("clip.vision.feature_layer", [V_LAYER - 1])  # hidden_states[-2]
    w.add_string("akvq.vision.hidden_act", "quick_gelu")
    w.add_array("clip.vision.image_mean", [0.48145466, 0.4578275, 0.40821073])
    w.add_array("clip.vision.image_std", [0.26862954, 0.26130258, 0.27577711])
    w.add_uint32("akvq.vision.resize_shortest_edge", IMAGE)
    w.add_string("akvq.vision.resample", "bicubic")
    w.add_float32("akvq.vision.rescale_factor", 1.0 / 255.0)
    w.add_string("akvq.vision.pad_mode", "pad")
    w.add_array("akvq.vision.pad_color", [122, 116, 104])
    w.add_string("akvq.vision.select_strategy", "default")
    w.add_string("akvq.vision.projector_hidden_act", "gelu")
    w.add_uint32("akvq.vision.image_token_id", IMAGE_TOKEN)
    w.add_string("akvq.vision.image_token", "<image>")
    # SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, made-up pieces, <image> last
    add_spm_vocab(w, N_VOCAB, last_user_token="<image>")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    plan = tensor_plan()
    w = GGUFWriter(a.out, "llama")
    add_keys(w)
    total, sec = write_streamed(w, plan, a.seed)
    print(
        f"wrote {a.out}: {len(plan)} tensors, {total / 1e9:.2f} GB of data in {sec:.0f} s, "
        f"peak RSS {peak_rss_mb():.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
