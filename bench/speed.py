"""Prompt and generation speed of a GGUF model, like llama-bench's pp/tg tests.

    python bench/speed.py --model M.gguf [--prompt 512] [--gen 128] [--threads 2] [--reps 3]
        [--bandwidth-mib 1024]

Prompt: evaluate `--prompt` tokens from an empty cache. Generation: `--gen` greedy single-token
steps after a short prompt (end-of-generation tokens are ignored so every run does the same work).
Prints tokens/s (median of --reps runs), the process's peak RSS, and the memory side: the machine's
read bandwidth (a STREAM-like probe with the same thread count over --bandwidth-mib MiB; 0 skips
it) and the GB/s of weights each workload moves — tg: the bytes of every weight a decode step
reads (all decoder tensors except the token_embd row gather; a tied output counted once) times
tokens/s; pp: those bytes once per prompt evaluation (a lower bound: weights are read at least
once per batch) — with the fraction of the probe's bandwidth.

The probe runs right before and right after each generation run, and each run's weight GB/s is set
against the mean of its two readings ("paired"): on a shared VM the bandwidth a probe reads can
change by half from one minute to the next (bench/RESULTS.md: 30-34 or 56-59 GB/s on one Zen 4
VM), and a probe taken at another moment than the decode gives a fraction that says more about
the minute than about the decode. The "of probe" column uses the median of all the readings; a
line gives the median paired fraction, each run's, and the range of the readings.
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
from gguf import GGUFReader

import pyakvq
from pyakvq import _akvq

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


def decode_weight_bytes(path: str) -> int:
    """Bytes of the weights one decode step reads from the GGUF at `path`: every decoder tensor
    (blk.*, output_norm, output) but token_embd, a row gather — unless output.weight is absent
    (tied), then token_embd is the output matrix and counts once. Vision tensors are not counted."""
    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(path).tensors}
    n = sum(b for name, b in tensors.items() if name.startswith(("blk.", "output")))
    if "output.weight" not in tensors:
        n += tensors.get("token_embd.weight", 0)
    return n


def memory_rows(weight_bytes: int, bw_gbs: float | None, pp: float, n_prompt: int, tg: float) -> dict[str, float]:
    """GB/s of weights moved per workload (tg: per step x tokens/s; pp: once per prompt of n_prompt
    tokens at pp tokens/s) and, when the probe ran (bw_gbs > 0), their fraction of it."""
    out = {"tg_weight_gbs": weight_bytes * tg / 1e9, "pp_weight_gbs": weight_bytes * pp / n_prompt / 1e9}
    if bw_gbs:
        out["tg_bandwidth_fraction"] = out["tg_weight_gbs"] / bw_gbs
        out["pp_bandwidth_fraction"] = out["pp_weight_gbs"] / bw_gbs
    return out


def paired_fractions(weight_bytes: int, tg_runs: list[float], probes: list[tuple[float, float]]) -> list[float]:
    """Per generation run i: its weight GB/s (weight_bytes x tg_runs[i] tokens/s) over the mean of
    the probe readings (GB/s) taken right before and right after it, probes[i]."""
    if len(tg_runs) != len(probes):
        raise ValueError(f"{len(tg_runs)} generation runs but {len(probes)} probe pairs")
    return [weight_bytes * tg / 1e9 / ((b + a) / 2) for tg, (b, a) in zip(tg_runs, probes, strict=True)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--kv", default="f16")
    ap.add_argument("--act-bits", type=int, default=16, choices=(8, 16), help="activation precision (Model act_bits)")
    ap.add_argument("--bandwidth-mib", type=int, default=1024, help="read-bandwidth probe size; 0: no probe")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args(argv)
    if a.bandwidth_mib < 0:
        ap.error("--bandwidth-mib must be >= 0")
    if a.prompt < 1 or a.gen < 1:
        ap.error("--prompt and --gen must be >= 1 (both tests always run)")
    weight_bytes = decode_weight_bytes(a.model)

    with pyakvq.Model(
        a.model, n_ctx=max(a.prompt, a.gen + 16) + 16, n_threads=a.threads, kv=a.kv, act_bits=a.act_bits
    ) as m:
        ids = prompt_ids(m, a.prompt)
        bench_prompt(m, ids[:32])  # warm up (page in the weights)
        pp = statistics.median(bench_prompt(m, ids) for _ in range(a.reps))
        bench_gen(m, 4)  # the decode path's buffers, before the peak RSS is read
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the probe's buffer

        def probe() -> float:
            return _akvq.read_bandwidth_gbs(a.threads, mib=a.bandwidth_mib, reps=3)

        tg_runs, probes = [], []  # probes: (before, after) per run, with the probe on
        for _ in range(a.reps):
            before = probe() if a.bandwidth_mib else None
            tg_runs.append(bench_gen(m, a.gen))
            if a.bandwidth_mib:
                probes.append((before, probe()))
        tg = statistics.median(tg_runs)
        info = m.info
    paired = paired_fractions(weight_bytes, tg_runs, probes) if probes else None
    readings = [x for pair in probes for x in pair]
    bw = statistics.median(readings) if readings else None
    print(
        f"model: {info['name']} ({info['file_type']}, {info['n_params'] / 1e6:.0f}M params), "
        f"threads {a.threads}, kv {a.kv}, act_bits {a.act_bits}, kernels {pyakvq.cpu_info()['isa']}"
    )
    print(f"| test | tokens/s |\n|---|---|\n| pp{a.prompt} | {pp:.1f} |\n| tg{a.gen} | {tg:.1f} |")
    print(f"peak RSS: {rss_mb:.0f} MB")
    mem = memory_rows(weight_bytes, bw, pp, a.prompt, tg)
    probe = "not measured"
    if bw:
        probe = f"{bw:.1f} GB/s, median of {len(readings)} ({a.threads} threads, {a.bandwidth_mib} MiB)"
    print(f"weights read per decode step: {weight_bytes / 1e9:.3f} GB; read bandwidth probe: {probe}")
    print("| test | weights GB/s | of probe |\n|---|---|---|")
    for test, key in ((f"pp{a.prompt}", "pp"), (f"tg{a.gen}", "tg")):
        frac = mem.get(f"{key}_bandwidth_fraction")
        print(f"| {test} | {mem[key + '_weight_gbs']:.2f} | {'' if frac is None else f'{100 * frac:.0f}%'} |")
    if paired:
        runs = ", ".join(f"{100 * f:.0f}%" for f in paired)
        span = f"{min(readings):.1f}-{max(readings):.1f} GB/s"
        print(
            f"tg{a.gen} against the probe right before and after each run: median "
            f"{100 * statistics.median(paired):.0f}% (runs {runs}; readings {span})"
        )
    if a.json:
        res = {"prompt_tps": pp, "gen_tps": tg, "gen_runs_tps": tg_runs, "peak_rss_mb": rss_mb}
        res |= {"read_bandwidth_gbs": bw, "weight_bytes_per_step": weight_bytes, **mem}
        if paired:
            res |= {"tg_paired_probes_gbs": probes, "tg_paired_fractions": paired}
            res |= {"tg_paired_fraction_median": statistics.median(paired)}
        pathlib.Path(a.json).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
