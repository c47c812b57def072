"""Decode throughput of the batched engine by batch size, without HTTP or Python streams.

    python bench/batch_decode.py --model M.gguf [--batches 1,2,4,8,16] [--act-bits 16] [--kv f16]
        [--threads 2] [--seconds 4] [--reps 2]
    python bench/batch_decode.py --model M.gguf --kv f16,akvq2 --kv-memory 200M --ctx 4096
        --depth 3840 [--act-bits 16] [--threads 2] [--seconds 4] [--reps 2]

By batch size (the first form): B requests ("Once upon a time", sampled at temperature 0.8, one
seed each, up to 400 tokens) run through `_akvq.BatchGenerator.step()` directly; a request that
ends (the model's end of text, or 400 tokens) is replaced by a new one at once, as under a loaded
server, so that every step decodes B sequences (the replacement's 4 prompt tokens join that step).
Generated tokens per second over --seconds of steps after 3 warm-up steps, best of --reps
interleaved rounds, and the ratio to B = the first batch size.

At depth in a memory budget (the second form, with --kv-memory): per KV mode, as many sequences as
--kv-memory holds at --ctx tokens each (the slots `pyakvq serve` would have), each given a prompt of
--depth tokens (a text repeated, rotated per sequence so no two prompts share a prefix) that is
prefilled before timing; then decode throughput as above, the modes measured in turns within each
round, and each mode's ratio to the first. This is the serving question "how much does the 2-bit
cache deliver at long context in the same KV memory", without HTTP or prompt processing in the timing.
--variant MODE:k=v,k=v (repeatable, as in kv_quality.py) adds a mode with its own kv options
(--kv f16,akvq2 --variant akvq2:lut=0).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import pyakvq
from pyakvq import _akvq
from pyakvq.server.config import parse_bytes

from kv_quality import parse_variant  # noqa: E402 (bench/ is the script's directory)
from pyakvq import _validate

TEXT = (
    "The lighthouse keeper climbed the stairs at dusk, counted the steps as always, and wrote the "
    "weather in the log: wind from the west, a long swell, rain before midnight. "
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--batches", default="1,2,4,8,16")
    ap.add_argument("--act-bits", type=int, default=16, choices=(8, 16))
    ap.add_argument("--kv", default="f16")
    ap.add_argument("--variant", action="append", default=[], metavar="MODE:k=v,...",
                    help="at-depth form: one more configuration, a mode with its own kv options")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--kv-memory", default=None, help="KV bytes per mode (suffixes K, M, G): the at-depth form")
    ap.add_argument("--ctx", type=int, default=4096, help="context per sequence of the at-depth form")
    ap.add_argument("--depth", type=int, default=3840, help="prompt tokens per sequence of the at-depth form")
    ap.add_argument("--parallel", type=int, default=64, help="sequences at most of the at-depth form")
    a = ap.parse_args(argv)
    if a.kv_memory is not None:
        return at_depth(a)
    if "," in a.kv:
        raise SystemExit("--kv takes one mode by batch size; a list needs --kv-memory (the at-depth form)")
    batches = [int(b) for b in a.batches.split(",") if b]
    m = pyakvq.Model(a.model, n_ctx=1024, n_threads=a.threads, act_bits=a.act_bits)
    ids = m.tokenize("Once upon a time")
    best: dict[int, float] = {}
    for _ in range(a.reps):
        for b in batches:
            g = _akvq.BatchGenerator(m._model, n_parallel=b, n_ctx=1024, n_threads=a.threads, kv=a.kv)
            seeds = itertools.count()
            for _ in range(b):
                g.submit(ids, max_tokens=400, temperature=0.8, seed=next(seeds))

            def step() -> None:
                for ev in g.step():
                    if ev[4] is not None:
                        raise SystemExit(f"request {ev[0]} failed: {ev[4]}")
                    if ev[2]:  # done: a new request takes its slot
                        g.submit(ids, max_tokens=400, temperature=0.8, seed=next(seeds))

            for _ in range(3):
                step()
            n0 = g.stats["generated_tokens_total"]
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < a.seconds:
                step()
            rate = (g.stats["generated_tokens_total"] - n0) / (time.perf_counter() - t0)
            best[b] = max(best.get(b, 0.0), rate)
    print(f"{a.model}, act_bits {a.act_bits}, kv {a.kv}, {a.threads} threads")
    for b in batches:
        print(f"batch {b:4d}: {best[b]:8.1f} tok/s  {best[b] / best[batches[0]]:.2f}x")
    return 0


def at_depth(a: argparse.Namespace) -> int:
    """The second form: each mode's slots in --kv-memory, decoding at --depth."""
    try:
        budget = parse_bytes(a.kv_memory)
    except ValueError as e:
        raise SystemExit(f"--kv-memory: {e}") from None
    if not 1 <= a.depth < a.ctx - 8:
        raise SystemExit(f"--depth must be in [1, --ctx - 8) so that decoding has room; got {a.depth} with --ctx {a.ctx}")
    kvs = [k for k in a.kv.split(",") if k] + a.variant
    m = pyakvq.Model(a.model, n_ctx=a.ctx, n_threads=a.threads, act_bits=a.act_bits)
    base = m.tokenize(TEXT)
    text = (base * (a.depth // len(base) + 2))[: a.depth + len(base)]
    gens: dict[str, _akvq.BatchGenerator] = {}
    for kv in kvs:
        mode, own = parse_variant(kv)
        opts = _validate.kv_options(own)
        g = _akvq.BatchGenerator(m._model, n_parallel=a.parallel, n_ctx=a.ctx, n_threads=a.threads, kv=mode,
                                 kv_options=opts, kv_memory=budget)
        n = g.n_slots
        if n < 1:
            raise SystemExit(f"--kv-memory {a.kv_memory} holds no {kv} sequence of {a.ctx} tokens")
        t0 = time.perf_counter()
        for i in range(n):
            r = (i * 7) % len(base)
            g.submit(text[r : r + a.depth], max_tokens=a.ctx - a.depth - 1, temperature=0.8, seed=i)
        started: set[int] = set()
        while len(started) < n and not g.idle:
            for ev in g.step():
                if ev[4] is not None:
                    raise SystemExit(f"{kv}: request {ev[0]} failed: {ev[4]}")
                if ev[1] is not None or ev[2]:
                    started.add(ev[0])
        print(f"{kv}: {n} sequences of {a.depth} prompt tokens prefilled in {time.perf_counter() - t0:.1f} s",
              flush=True)
        for _ in range(3):
            g.step()
        gens[kv] = g
    best: dict[str, float] = {}
    for _ in range(a.reps):
        for kv, g in gens.items():
            n0, s0 = g.stats["generated_tokens_total"], g.stats["steps_total"]
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < a.seconds and g.stats["requests_running"] == g.n_slots:
                g.step()
            dt = time.perf_counter() - t0
            if g.stats["steps_total"] == s0:
                if kv in best:  # a sequence ended (sampled end of text) after an earlier repetition was timed
                    continue
                raise SystemExit(f"{kv}: a sequence ended (end of text or --ctx) before the timing; "
                                 "lower --depth, --seconds or --reps")
            best[kv] = max(best.get(kv, 0.0), (g.stats["generated_tokens_total"] - n0) / dt)
    print(f"{a.model}, act_bits {a.act_bits}, {a.threads} threads, --kv-memory {a.kv_memory} ({budget} bytes), "
          f"--ctx {a.ctx}, depth {a.depth}+")
    print("| kv | sequences | bytes per sequence | tok/s | per sequence | vs first |")
    print("|---|---|---|---|---|---|")
    first = best[kvs[0]]
    for kv, g in gens.items():
        n = g.n_slots
        print(f"| {kv} | {n} | {g.kv_bytes_per_sequence / 1e6:.1f} MB | {best[kv]:.1f} | {best[kv] / n:.1f} | "
              f"{best[kv] / first:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
