"""LLaVA benchmark (issue 8): image encode time (CLIP + projector) and prefill tokens/s of a prompt
with one image, for a fixture checkpoint and for LLaVA-1.5-7B-shaped random weights.

    PYTHONPATH=. AKVQ_EXT_DIR=build/rel python bench/vision.py [--fixture spm_default_pad]
        [--model7b llava7b_random.gguf] [-t 2] [--text-tokens 247] [--repeat 3] [--encode-only] [--json OUT]

--model7b: a file from bench/make_random_llava.py (CLIP-L/14-336 f16 + 7B Q4_0 decoder); skipped
when not given. The prompt is BOS, 10 text tokens, the image marker, then text up to 576 + 247 =
823 rows (llama.cpp's llava-cli measurement: one image + a short question). Times are wall clock;
encode runs --repeat times (best and first reported: the first touches the mapped weights), the 7B
prefill once (fixture: best of --repeat); --encode-only skips the prefills (the 7B one costs
minutes) and encodes the 7B shape --repeat times. The process's CPU seconds of each step are printed too:
on a loaded machine, CPU seconds / threads bounds what the step takes on idle cores. Prints the
load average before and after (2 shared cores).
Peak RSS is the process's (mapped weight pages that were touched count).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def kernel_isa() -> str:
    """The matmul kernel set in use (pyakvq.cpu_info(); AKVQ_ISA=avx2 caps it)."""
    try:
        import pyakvq

        return pyakvq.cpu_info()["isa"]
    except (ImportError, AttributeError, KeyError):
        return os.environ.get("AKVQ_ISA", "best")


def test_image(size=(640, 480), seed=0) -> np.ndarray:
    """A smooth RGB test image [H, W, 3] uint8 (values do not matter for speed)."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    img = np.stack([(x * 255 // w), (y * 255 // h), ((x + y) * 127 // (w + h))], -1).astype(np.int32)
    img = img + rng.integers(-8, 9, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def run_model(
    path, n_threads: int, text_tokens: int, repeat: int, prefill_repeat: int, label: str, act_bits: int = 16
) -> dict:
    import pyakvq
    from pyakvq._ext import _akvq

    t0 = time.perf_counter()
    m = pyakvq.Model(path, n_ctx=4096, n_threads=n_threads, act_bits=act_bits)
    vision = m._vision_model()
    load_s = time.perf_counter() - t0
    info = m.vision_info
    image_id = int(_akvq.image_token_id(m._model, vision))
    pixels = np.stack([_akvq.vision_preprocess(vision, test_image())])
    enc_times, enc_cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        enc = _akvq.encode_images(vision, pixels, n_threads)
        enc_times.append(time.perf_counter() - t)
        enc_cpu.append(time.process_time() - c)
    n_img = int(info["n_tokens_per_image"])
    rng = np.random.default_rng(1)
    lo, hi = 259, m.n_vocab - 1
    body = rng.integers(lo, hi, size=text_tokens - 1).tolist()
    body = [t if t != image_id else lo for t in body]
    ids = [m.info["bos"]] + body[:10] + [image_id] + body[10 : text_tokens - 1]
    inp = _akvq.image_prompt_input(ids, image_id, enc, m.n_ctx)
    n_rows = len(inp)
    s = m._sess()
    pre, pre_cpu = [float("nan")], [float("nan")]
    if prefill_repeat:
        pre, pre_cpu = [], []
    for _ in range(prefill_repeat):
        s.reset()
        t, c = time.perf_counter(), time.process_time()
        s.eval_rows(inp)
        pre.append(time.perf_counter() - t)
        pre_cpu.append(time.process_time() - c)
    m.close()
    best = min(pre)  # nan when the prefill was skipped
    return {
        "model": label,
        "path": str(path),
        "load_s": load_s,
        "image_tokens": n_img,
        "rows": n_rows,
        "encode_s_first": enc_times[0],
        "encode_s_best": min(enc_times),
        "encode_cpu_s": enc_cpu,
        "prefill_s": best,
        "prefill_cpu_s": pre_cpu[pre.index(best)],
        "prefill_tps": n_rows / best,
        "prompt_with_image_s": min(enc_times) + best,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="image encode time and prefill tokens/s with one image")
    ap.add_argument("--fixture", default="spm_default_pad", help="tests/fixtures/llava checkpoint ('' to skip)")
    ap.add_argument("--model7b", default=None, help="GGUF from bench/make_random_llava.py")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--text-tokens", type=int, default=247, help="text rows of the prompt (823 - 576)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--encode-only", action="store_true", help="time the image encode only, no prefill")
    ap.add_argument("--act-bits", type=int, default=16, choices=(8, 16), help="activation precision (Model act_bits)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    rows = []
    load0 = os.getloadavg()
    if a.fixture:
        sys.path.insert(0, str(ROOT / "tests" / "python"))
        import llava_convert as lc

        with tempfile.TemporaryDirectory() as d:
            (p,) = lc.convert_fixture(a.fixture, d, outtype="f32")
            pre_rep = 0 if a.encode_only else a.repeat
            rows.append(run_model(p, a.threads, 15, a.repeat, pre_rep, f"fixture {a.fixture} (f32)", a.act_bits))
    if a.model7b:
        enc_rep, pre_rep = (a.repeat, 0) if a.encode_only else (2, 1)
        rows.append(
            run_model(
                a.model7b,
                a.threads,
                a.text_tokens,
                enc_rep,
                pre_rep,
                f"LLaVA-1.5-7B shape (CLIP f16, Q4_0), act_bits {a.act_bits}",
                a.act_bits,
            )
        )
    load1 = os.getloadavg()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    isa = kernel_isa()
    print(
        f"machine: {cpu_model()}, {a.threads} threads, ISA {isa}, "
        f"load average before {load0[0]:.2f}, after {load1[0]:.2f}"
    )
    print("| model | image tokens | rows | encode (first / best) s | prefill s | prefill tok/s | encode + prefill s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['image_tokens']} | {r['rows']} "
            f"| {r['encode_s_first']:.4g} / {r['encode_s_best']:.4g} "
            f"| {r['prefill_s']:.4g} | {r['prefill_tps']:.1f} | {r['prompt_with_image_s']:.4g} |"
        )
    for r in rows:  # CPU seconds: what the runs cost whatever the contention (/ threads: an idle wall bound)
        pre = "prefill skipped (--encode-only)"
        if r["prefill_cpu_s"] == r["prefill_cpu_s"]:  # not nan
            tps = r["rows"] / (r["prefill_cpu_s"] / a.threads)
            pre = f"prefill CPU s {r['prefill_cpu_s']:.4g} ({tps:.1f} tok/s at {a.threads} fully used threads)"
        enc = ", ".join(f"{x:.4g}" for x in r["encode_cpu_s"])
        bound = min(r["encode_cpu_s"]) / a.threads
        print(f"{r['model']}: encode CPU s {enc} (best / {a.threads} threads: {bound:.3g} s); {pre}")
    print(f"peak RSS of this process: {rss:.0f} MB")
    if a.json:
        out = {"rows": rows, "peak_rss_mb": rss, "load_before": load0, "load_after": load1, "cpu": cpu_model()}
        pathlib.Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
