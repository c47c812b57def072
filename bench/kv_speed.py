"""Prefill and decode speed at a given context depth for each KV cache mode.

    python bench/kv_speed.py --model M.gguf --depth 4096 --gen 32 --kv f16,akvq2 --threads 2 --json OUT

Prefill: tokens/s of evaluating `depth` tokens of text (tests/fixtures/text/prose_en.txt, repeated
when shorter) from an empty cache. Decode: tokens/s of `gen` greedy single-token steps right after
that (argmax of the logits; end-of-generation tokens are ignored so every run does the same work).
With one depth the JSON is {mode: {"prefill_tps", "decode_tps"}}; with a comma list of depths
(--depth 1024,4096,8192) it is {depth: {mode: {...}}}. --reps N keeps the median of N runs;
--kv-opt k=v applies kv options to every mode but f16; --variant MODE:k=v,k=v (repeatable, as in
kv_quality.py) adds a mode with its own options (--kv f16,akvq2 --variant akvq2:lut=0 compares akvq2
with and without its table scores in one run).

--rounds N (for noisy machines): every mode's model is loaded and prefilled once, then N rounds
of `gen` decode steps alternate between the modes (the order reversed every other round), each
round from the same depth (the cache truncated back to it). Decode t/s is then the median of the
rounds, and "decode vs f16" the median of the per-round ratios, so a slow minute of the host
weighs on both modes alike.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
try:
    import pyakvq
except ImportError:  # run from a checkout: the package next to bench/
    sys.path.insert(0, str(ROOT))
    import pyakvq
from pyakvq.__main__ import parse_kv_opts  # noqa: E402
from pyakvq.perplexity import _kv_stats  # noqa: E402

from kv_quality import parse_variant  # noqa: E402 (bench/ is the script's directory)


def text_ids(m: pyakvq.Model, n: int, path: pathlib.Path) -> list[int]:
    ids = m.tokenize(path.read_text(encoding="utf-8"), add_special=True)
    body = m.tokenize(path.read_text(encoding="utf-8"), add_special=False)
    while len(ids) < n:
        ids = ids + body
    return ids[:n]


def run_once(m: pyakvq.Model, ids: list[int], gen: int) -> tuple[float, float]:
    s = m._sess()
    s.reset()
    t0 = time.perf_counter()
    logits = s.eval(ids)
    t1 = time.perf_counter()
    for _ in range(gen):
        logits = s.eval([int(np.argmax(logits))])
    t2 = time.perf_counter()
    return len(ids) / (t1 - t0), gen / (t2 - t1)


def open_warm(model: str, depth: int, gen: int, kv: str, opts: dict, threads: int, text: pathlib.Path):
    """The model for one mode or --variant label (n_ctx depth + gen) with its weights paged in, and the
    prompt ids."""
    kv, own = parse_variant(kv)
    opts = {**opts, **own}
    kw: dict[str, Any] = {"kv_options": opts} if opts and kv != "f16" else {}
    m = pyakvq.Model(model, n_ctx=depth + gen, n_threads=threads, kv=kv, **kw)
    ids = text_ids(m, depth, text)
    s = m._sess()
    s.reset()
    s.eval(ids[:32])  # warm up: page in the weights
    return m, ids


def add_bits(m: pyakvq.Model, r: dict) -> None:
    stats = _kv_stats(m)
    if stats is not None and stats.get("bits_per_element") is not None:
        r["bits_per_element"] = stats["bits_per_element"]


def bench(model: str, depth: int, gen: int, kv: str, opts: dict, threads: int, reps: int, text: pathlib.Path):
    m, ids = open_warm(model, depth, gen, kv, opts, threads, text)
    with m:
        runs = [run_once(m, ids, gen) for _ in range(reps)]
        r = {
            "prefill_tps": statistics.median(p for p, _ in runs),
            "decode_tps": statistics.median(d for _, d in runs),
        }
        add_bits(m, r)
    return r


def bench_rounds(model: str, depth: int, gen: int, modes: list[str], opts: dict, threads: int, rounds: int,
                 text: pathlib.Path) -> dict[str, dict]:
    models, first, res = {}, {}, {}
    try:
        for kv in modes:
            m, ids = open_warm(model, depth, gen, kv, opts, threads, text)
            models[kv] = m
            s = m._sess()
            s.reset()
            t0 = time.perf_counter()
            first[kv] = int(np.argmax(s.eval(ids)))
            res[kv] = {"prefill_tps": depth / (time.perf_counter() - t0), "rounds": []}
            add_bits(m, res[kv])
        for r in range(rounds):
            for kv in modes if r % 2 == 0 else modes[::-1]:
                s = models[kv]._sess()
                s.truncate(depth)
                tok = first[kv]
                t0 = time.perf_counter()
                for _ in range(gen):
                    tok = int(np.argmax(s.eval([tok])))
                res[kv]["rounds"].append(gen / (time.perf_counter() - t0))
    finally:
        for m in models.values():
            m.close()
    base = res[modes[0]]["rounds"]
    for kv in modes:
        rr = res[kv]["rounds"]
        res[kv]["decode_tps"] = statistics.median(rr)
        res[kv]["decode_ratio"] = statistics.median(x / b for x, b in zip(rr, base))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--depth", default="4096", help="context depth, or a comma list (1024,4096,8192)")
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--kv", default="f16,akvq2", help="comma list of modes")
    ap.add_argument("--variant", action="append", default=[], metavar="MODE:k=v,...",
                    help="one more configuration, a mode with its own kv options (as in kv_quality.py)")
    ap.add_argument("--kv-opt", action="extend", nargs="+", default=[], metavar="K=V")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=0, help="interleaved decode rounds (see the module doc)")
    ap.add_argument("--text", default=str(ROOT / "tests" / "fixtures" / "text" / "prose_en.txt"))
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args(argv)

    depths = [int(x) for x in a.depth.split(",") if x.strip()]
    modes = [x.strip() for x in a.kv.split(",") if x.strip()] + a.variant
    opts = parse_kv_opts(a.kv_opt)
    if a.gen < 1 or a.reps < 1 or a.rounds < 0 or any(d < 1 for d in depths):
        ap.error("--depth, --gen and --reps must be >= 1, --rounds >= 0")
    if a.rounds and modes[0] != "f16":
        ap.error("--rounds compares with the first mode of --kv: make it f16")

    res: dict[int, dict[str, dict]] = {}
    for d in depths:
        if a.rounds:
            res[d] = bench_rounds(a.model, d, a.gen, modes, opts, a.threads, a.rounds, pathlib.Path(a.text))
            for kv, r in res[d].items():
                rounds = " ".join(f"{x:.1f}" for x in r["rounds"])
                print(f"depth {d} {kv}: prefill {r['prefill_tps']:.1f} t/s, decode rounds {rounds} t/s",
                      file=sys.stderr, flush=True)
            continue
        res[d] = {}
        for kv in modes:
            try:
                r = bench(a.model, d, a.gen, kv, opts, a.threads, a.reps, pathlib.Path(a.text))
            except (ValueError, TypeError) as e:  # a mode (or option) this build does not support
                print(f"depth {d} {kv}: skipped: {e}", file=sys.stderr, flush=True)
                res[d][kv] = {"error": str(e)}
                continue
            res[d][kv] = r
            print(
                f"depth {d} {kv}: prefill {r['prefill_tps']:.1f} t/s, decode {r['decode_tps']:.1f} t/s",
                file=sys.stderr,
                flush=True,
            )

    how = f"{a.rounds} interleaved rounds" if a.rounds else f"reps {a.reps}"
    print(f"threads {a.threads}, gen {a.gen}, {how}{', kv options ' + str(opts) if opts else ''}")
    print("| depth | mode | prefill t/s | decode t/s | decode vs f16 | bits/element |")
    print("|---|---|---|---|---|---|")
    for d, per in res.items():
        f16 = per.get("f16", {}).get("decode_tps")
        for kv, r in per.items():
            if "error" in r:
                print(f"| {d} | {kv} | unsupported | | | |")
                continue
            ratio = r["decode_ratio"] if "decode_ratio" in r else (r["decode_tps"] / f16 if f16 else None)
            rel = f"{ratio:.2f}×" if ratio is not None else ""
            bits = f"{r['bits_per_element']:.2f}" if "bits_per_element" in r else ""
            print(f"| {d} | {kv} | {r['prefill_tps']:.1f} | {r['decode_tps']:.1f} | {rel} | {bits} |")
    if a.json:
        out: Any = res[depths[0]] if len(depths) == 1 else {str(d): v for d, v in res.items()}
        pathlib.Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
