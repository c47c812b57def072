"""Writes a LLaVA-1.5-7B-shaped GGUF with random weights (one file, the converter's layout) for
bench/vision.py: shapes decide speed, values do not.

    python bench/make_random_llava.py OUT.gguf [--seed 0]

Vision: CLIP ViT-L/14-336 (24 blocks, hidden 1024, 16 heads, MLP 4096, quick_gelu, feature layer
-2, strategy default) + projector 1024 -> 4096 -> 4096 (GELU), f16 matrices and f32 vectors as in
llama.cpp's usual mmproj files. Decoder: Llama-2-7B shape (32 layers, hidden 4096, 32 heads,
MLP 11008, vocab 32000 SentencePiece with an `<image>` token at id 31999), every matrix Q4_0
(random nibbles, fp16 scales drawn around 0.004 so that weights have std ~0.02), norms f32.

The file is streamed tensor by tensor with gguf.GGUFWriter (header, then one tensor's bytes at a
time): about 4.4 GB on disk, peak RSS of the writer ~0.2 GB (printed at the end).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, TokenType

N_VOCAB, N_EMBD, N_LAYER, N_HEAD, N_FF, N_CTX = 32000, 4096, 32, 32, 11008, 4096
V_EMBD, V_LAYER, V_HEAD, V_FF, IMAGE, PATCH = 1024, 24, 16, 4096, 336, 14
IMAGE_TOKEN = N_VOCAB - 1
QK = 32  # values per Q4_0 block; 18 bytes each (fp16 scale + 16 bytes of nibbles)


def tensor_plan() -> list[tuple[str, tuple[int, ...], str]]:
    """(name, numpy shape [rows, cols] (ggml dims reversed), kind) where kind is q4_0 / f16 / f32 / norm."""
    t: list[tuple[str, tuple[int, ...], str]] = [("token_embd.weight", (N_VOCAB, N_EMBD), "q4_0")]
    for i in range(N_LAYER):
        b = f"blk.{i}."
        t += [
            (b + "attn_norm.weight", (N_EMBD,), "norm"),
            (b + "attn_q.weight", (N_EMBD, N_EMBD), "q4_0"),
            (b + "attn_k.weight", (N_EMBD, N_EMBD), "q4_0"),
            (b + "attn_v.weight", (N_EMBD, N_EMBD), "q4_0"),
            (b + "attn_output.weight", (N_EMBD, N_EMBD), "q4_0"),
            (b + "ffn_norm.weight", (N_EMBD,), "norm"),
            (b + "ffn_gate.weight", (N_FF, N_EMBD), "q4_0"),
            (b + "ffn_up.weight", (N_FF, N_EMBD), "q4_0"),
            (b + "ffn_down.weight", (N_EMBD, N_FF), "q4_0"),
        ]
    t += [("output_norm.weight", (N_EMBD,), "norm"), ("output.weight", (N_VOCAB, N_EMBD), "q4_0")]
    n_pos = (IMAGE // PATCH) ** 2 + 1
    t += [
        ("v.class_embd", (V_EMBD,), "f32"),
        ("v.patch_embd.weight", (V_EMBD, 3, PATCH, PATCH), "f16"),
        ("v.position_embd.weight", (n_pos, V_EMBD), "f16"),
        ("v.pre_ln.weight", (V_EMBD,), "norm"),
        ("v.pre_ln.bias", (V_EMBD,), "f32"),
    ]
    for i in range(V_LAYER):
        b = f"v.blk.{i}."
        t += [(b + n, (V_EMBD,), "norm") for n in ("ln1.weight", "ln2.weight")]
        t += [(b + n, (V_EMBD,), "f32") for n in ("ln1.bias", "ln2.bias")]
        for n in ("attn_q", "attn_k", "attn_v", "attn_out"):
            t += [(b + n + ".weight", (V_EMBD, V_EMBD), "f16"), (b + n + ".bias", (V_EMBD,), "f32")]
        t += [
            (b + "ffn_up.weight", (V_FF, V_EMBD), "f16"),
            (b + "ffn_up.bias", (V_FF,), "f32"),
            (b + "ffn_down.weight", (V_EMBD, V_FF), "f16"),
            (b + "ffn_down.bias", (V_EMBD,), "f32"),
        ]
    t += [
        ("mm.0.weight", (N_EMBD, V_EMBD), "f16"),
        ("mm.0.bias", (N_EMBD,), "f32"),
        ("mm.2.weight", (N_EMBD, N_EMBD), "f16"),
        ("mm.2.bias", (N_EMBD,), "f32"),
    ]
    return t


def q4_0_bytes(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Random valid Q4_0 rows [rows, cols / 32 * 18] (uint8): random nibbles, fp16 scales 0.002..0.006."""
    nb = cols // QK
    out = rng.integers(0, 256, size=(rows, nb, 18), dtype=np.uint8)
    d = (0.002 + 0.004 * rng.random((rows, nb), dtype=np.float32)).astype(np.float16)
    out[:, :, 0:2] = d.view(np.uint8).reshape(rows, nb, 2)
    return out.reshape(rows, nb * 18)


def tensor_data(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    if kind == "q4_0":
        return q4_0_bytes(rng, shape[0], shape[1])
    if kind == "norm":
        return (1.0 + 0.05 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    x = 0.02 * rng.standard_normal(shape, dtype=np.float32)
    return x.astype(np.float16) if kind == "f16" else x


def add_keys(w: GGUFWriter) -> None:
    w.add_name("llava-1.5-7b-shape-random")
    w.add_uint32("general.file_type", 2)  # mostly Q4_0
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_rope_freq_base(10000.0)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(N_VOCAB)
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
    # SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, then made-up pieces, <image> last
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    toks += [f"\u2581w{i}" for i in range(N_VOCAB - len(toks) - 1)] + ["<image>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
    types += [TokenType.NORMAL] * (N_VOCAB - len(types) - 1) + [TokenType.USER_DEFINED]
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([-float(i) for i in range(N_VOCAB)])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t0 = time.time()
    rng = np.random.default_rng(a.seed)
    plan = tensor_plan()
    w = GGUFWriter(a.out, "llama")
    add_keys(w)
    for name, shape, kind in plan:
        if kind == "q4_0":
            nbytes = shape[0] * shape[1] // QK * 18
            w.add_tensor_info(
                name, (shape[0], shape[1] // QK * 18), np.dtype(np.uint8), nbytes, GGMLQuantizationType.Q4_0
            )
        else:
            dt = np.dtype(np.float16 if kind == "f16" else np.float32)
            w.add_tensor_info(name, shape, dt, int(np.prod(shape)) * dt.itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    total = 0
    for k, (name, shape, kind) in enumerate(plan):
        data = tensor_data(rng, shape, kind)
        total += data.nbytes
        w.write_tensor_data(data)
        if k % 50 == 0:
            print(f"[{k + 1}/{len(plan)}] {name} {total / 1e9:.2f} GB", file=sys.stderr, flush=True)
    w.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"wrote {a.out}: {len(plan)} tensors, {total / 1e9:.2f} GB of data in {time.time() - t0:.0f} s, "
        f"peak RSS {rss:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
