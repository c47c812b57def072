"""Decode throughput of the batched engine by batch size, without HTTP or Python streams.

    python bench/batch_decode.py --model M.gguf [--batches 1,2,4,8,16] [--act-bits 16] [--kv f16]
        [--threads 2] [--seconds 4] [--reps 2]

B requests ("Once upon a time", sampled at temperature 0.8, one seed each, no end before 400
tokens unless the model ends them) run through `_akvq.BatchGenerator.step()` directly: generated
tokens per second over --seconds of steps after 3 warm-up steps, best of --reps interleaved rounds,
and the ratio to B = the first batch size.
"""

from __future__ import annotations

import argparse
import sys
import time

import pyakvq
from pyakvq import _akvq


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--batches", default="1,2,4,8,16")
    ap.add_argument("--act-bits", type=int, default=16, choices=(8, 16))
    ap.add_argument("--kv", default="f16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args(argv)
    batches = [int(b) for b in a.batches.split(",") if b]
    m = pyakvq.Model(a.model, n_ctx=1024, n_threads=a.threads, act_bits=a.act_bits)
    ids = m.tokenize("Once upon a time")
    best: dict[int, float] = {}
    for _ in range(a.reps):
        for b in batches:
            g = _akvq.BatchGenerator(m._model, n_parallel=b, n_ctx=1024, n_threads=a.threads, kv=a.kv)
            for i in range(b):
                g.submit(ids, max_tokens=400, temperature=0.8, seed=i)
            for _ in range(3):
                g.step()
            n0 = g.stats["generated_tokens_total"]
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < a.seconds and not g.idle:
                g.step()
            rate = (g.stats["generated_tokens_total"] - n0) / (time.perf_counter() - t0)
            best[b] = max(best.get(b, 0.0), rate)
    print(f"{a.model}, act_bits {a.act_bits}, kv {a.kv}, {a.threads} threads")
    for b in batches:
        print(f"batch {b:4d}: {best[b]:8.1f} tok/s  {best[b] / best[batches[0]]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
