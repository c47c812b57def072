"""Prompt and generation speed of a GGUF model, like llama-bench's pp/tg tests.

    python bench/speed.py --model M.gguf [--prompt 512] [--gen 128] [--threads 2] [--reps 3]

Prompt: evaluate `--prompt` tokens from an empty cache. Generation: `--gen` greedy single-token
steps after a short prompt (end-of-generation tokens are ignored so every run does the same work).
Prints tokens/s (median of --reps runs) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import statistics
import sys
import time

import numpy as np

import pyakvq

ROOT = pathlib.Path(__file__).resolve().parents[1]


def prompt_ids(m: pyakvq.Model, n: int) -> list[int]:
    text = (ROOT / "tests" / "fixtures" / "text" / "prose_en.txt").read_text(encoding="utf-8")
    ids = m.tokenize(text)
    while len(ids) < n:
        ids = ids + ids
    return ids[:n]


def bench_prompt(m: pyakvq.Model, ids: list[int]) -> float:
    s = m._sess()
    s.reset()
    t0 = time.perf_counter()
    s.eval(ids)
    return len(ids) / (time.perf_counter() - t0)


def bench_gen(m: pyakvq.Model, n_gen: int) -> float:
    s = m._sess()
    s.reset()
    logits = s.eval(m.tokenize("Once upon a time"))
    t0 = time.perf_counter()
    for _ in range(n_gen):
        logits = s.eval([int(np.argmax(logits))])
    return n_gen / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--kv", default="f16")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args(argv)

    with pyakvq.Model(a.model, n_ctx=max(a.prompt, a.gen + 16) + 16, n_threads=a.threads, kv=a.kv) as m:
        ids = prompt_ids(m, a.prompt)
        bench_prompt(m, ids[:32])  # warm up (page in the weights)
        pp = statistics.median(bench_prompt(m, ids) for _ in range(a.reps))
        tg = statistics.median(bench_gen(m, a.gen) for _ in range(a.reps))
        info = m.info
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"model: {info['name']} ({info['file_type']}, {info['n_params'] / 1e6:.0f}M params), "
        f"threads {a.threads}, kv {a.kv}"
    )
    print(f"| test | tokens/s |\n|---|---|\n| pp{a.prompt} | {pp:.1f} |\n| tg{a.gen} | {tg:.1f} |")
    print(f"peak RSS: {rss_mb:.0f} MB")
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps({"prompt_tps": pp, "gen_tps": tg, "peak_rss_mb": rss_mb}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
