"""Writes a random-weight Llama GGUF (text only) of a real model's shape, for speed benchmarks of
pyakvq and llama.cpp on the same file: shapes decide speed, values do not.

    python bench/make_random_model.py OUT.gguf --shape 1.1b|7b|test [--type q4_0] [--seed 0]

Shapes: 1.1b = TinyLlama-1.1B (22 layers, hidden 2048, 32 heads, 4 KV heads, MLP 5632, vocab
32000, context 4096); 7b = Llama-2-7B / the LLaVA-1.5-7B decoder (32 layers, 4096, 32 heads, no
GQA, MLP 11008, vocab 32000, context 4096); test = a tiny file for the test suite.
--type q4_0|q4_1|q8_0|q4_k|q6_k|f16 sets every matrix (token_embd and output too); --type q4_k_m
mixes Q4_K and Q6_K as llama.cpp's Q4_K_M files do (random_gguf.MIXES); norms are f32.
Weights are random with std ~0.02 (bench/random_gguf.py); the vocabulary is SentencePiece-style
with byte tokens so llama.cpp loads the file too. The file is streamed tensor by tensor in chunks:
the writer's peak RSS stays ~0.1 GB (printed at the end with the size and time).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from gguf import GGUFWriter

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from random_gguf import (  # noqa: E402  (the sibling module, found through the path above)
    MIXES,
    WEIGHT_TYPES,
    LlamaShape,
    add_llama_keys,
    add_spm_vocab,
    file_type,
    llama_tensors,
    peak_rss_mb,
    write_streamed,
)

SHAPES: dict[str, LlamaShape] = {
    "1.1b": LlamaShape(n_vocab=32000, n_embd=2048, n_layer=22, n_head=32, n_head_kv=4, n_ff=5632, n_ctx=4096),
    "7b": LlamaShape(n_vocab=32000, n_embd=4096, n_layer=32, n_head=32, n_head_kv=32, n_ff=11008, n_ctx=4096),
    # head_dim 64 like the big shapes; every row a multiple of 256 (one Q4_K super-block)
    "test": LlamaShape(n_vocab=512, n_embd=256, n_layer=2, n_head=4, n_head_kv=2, n_ff=512, n_ctx=2048),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output GGUF path")
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--type", choices=sorted(WEIGHT_TYPES) + sorted(MIXES), default="q4_0",
                    help="type of every matrix, or a mix of types")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true", help="no per-tensor progress on stderr")
    a = ap.parse_args(argv)

    hp = SHAPES[a.shape]
    plan = llama_tensors(hp, a.type)
    w = GGUFWriter(a.out, "llama")
    add_llama_keys(w, hp, f"llama-{a.shape}-shape-random-{a.type}", file_type(a.type))
    add_spm_vocab(w, hp.n_vocab)
    total, sec = write_streamed(w, plan, a.seed, progress_every=0 if a.quiet else 50)
    size = pathlib.Path(a.out).stat().st_size
    print(
        f"wrote {a.out}: shape {a.shape}, {a.type}, {len(plan)} tensors, {total / 1e9:.3f} GB of tensor data, "
        f"file {size / 1e9:.3f} GB in {sec:.1f} s, peak RSS {peak_rss_mb():.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
