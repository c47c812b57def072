"""Quality of each KV cache mode: perplexity (llama.cpp's protocol), KL divergence and top-1
agreement of the next-token distributions against the f16 cache, effective bits per element.

    python bench/kv_quality.py --model M.gguf [--text FILE] [--ctx 1024,4096]
        [--kv f16,q8,q4,q2,kivi2,wht2,akvq2,akvq4] [--variant "akvq2:clip=0.6,window=64" ...]
        [--threads 2] [--chunks N] [--n-batch 256] [--json OUT]

All configurations of one n_ctx run in lock-step over the same chunks, so the f16 logits are
computed once and shared. A mode the engine does not support (yet) is reported and skipped.
--variant MODE:k=v,k=v adds a configuration with kv options (list values with '+': tsa_layers=0+1).
Prints a markdown table per n_ctx: mode, options, ppl, delta vs f16, KL, top-1, bits/element.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
try:
    import pyakvq
except ImportError:  # run from a checkout: the package next to bench/
    sys.path.insert(0, str(ROOT))
    import pyakvq
from pyakvq.__main__ import parse_kv_value  # noqa: E402
from pyakvq.perplexity import perplexity_many  # noqa: E402

ALL_MODES = "f16,q8,q4,q2,kivi2,wht2,akvq2,akvq4"


def parse_variant(s: str) -> tuple[str, dict[str, Any]]:
    """'akvq2:clip=0.6,window=64,tsa_layers=0+1' -> ('akvq2', {'clip': 0.6, 'window': 64, 'tsa_layers': [0, 1]})."""
    mode, _, rest = s.partition(":")
    opts: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        k, sep, v = item.partition("=")
        if not sep:
            raise ValueError(f"--variant {s!r}: expected key=value, got {item!r}")
        opts[k.strip()] = parse_kv_value(v.replace("+", ","))
    return mode.strip(), opts


def supported(model: str, kv: str, opts: dict[str, Any]) -> str | None:
    """None when Model(kv, kv_options) can be built, else the error message."""
    try:
        kw = {"kv_options": opts} if opts else {}
        with pyakvq.Model(model, n_ctx=64, n_threads=1, kv=kv, **kw):
            return None
    except (ValueError, TypeError, RuntimeError, NotImplementedError) as e:
        return str(e)


def fmt_opts(opts: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in opts.items()) or "-"


def table(rows: list[dict[str, Any]], f16_ppl: float | None) -> str:
    out = ["| mode | options | ppl | Δ vs f16 | KL | top-1 | bits/element |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['kv']} | {fmt_opts(r['kv_options'])} (unsupported: {r['error']}) | n/a | | | | |")
            continue
        d = f"{(r['ppl'] / f16_ppl - 1) * 100:+.2f}%" if f16_ppl else ""
        kl = f"{r['kl']:.4f}" if "kl" in r else ""
        t1 = f"{r['top1']:.3f}" if "top1" in r else ""
        bits = f"{r['bits_per_element']:.2f}" if r.get("bits_per_element") is not None else ""
        out.append(f"| {r['kv']} | {fmt_opts(r['kv_options'])} | {r['ppl']:.3f} | {d} | {kl} | {t1} | {bits} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", default=str(ROOT / "tests" / "fixtures" / "text" / "prose_en.txt"))
    ap.add_argument("--ctx", default="1024,4096", help="comma list of n_ctx")
    ap.add_argument("--kv", default=ALL_MODES, help="comma list of modes")
    ap.add_argument("--variant", action="append", default=[], metavar="MODE:k=v,...")
    ap.add_argument("--kv-opt", action="extend", nargs="+", default=[], metavar="MODE:k=v,...", dest="variant")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunks", type=int, default=None, help="at most this many chunks per n_ctx")
    ap.add_argument(
        "--n-batch",
        type=int,
        default=256,
        help="tokens per forward pass (default 256); speed only: every scored token reads all older tokens "
        "from the cache as stored, as in decoding, for any batch size",
    )
    ap.add_argument("--json", help="also write the results to this file")
    a = ap.parse_args(argv)

    text = pathlib.Path(a.text).read_text(encoding="utf-8")
    configs = [(m.strip(), {}) for m in a.kv.split(",") if m.strip()]
    configs += [parse_variant(v) for v in a.variant]
    if not any(kv == "f16" and not o for kv, o in configs):
        configs.insert(0, ("f16", {}))
    runnable, skipped = [], []
    for kv, opts in configs:
        err = supported(a.model, kv, opts)
        if err is None:
            runnable.append((kv, opts))
        else:
            skipped.append({"kv": kv, "kv_options": opts, "error": err})
            print(f"skip {kv} {fmt_opts(opts)}: {err}", file=sys.stderr)

    results: dict[str, list[dict[str, Any]]] = {}
    for n_ctx in (int(x) for x in a.ctx.split(",")):
        t0 = time.perf_counter()

        def progress(ci, n, ppl, n_ctx=n_ctx):
            cols = " ".join(f"{kv}={p:.3f}" for (kv, _), p in zip(runnable, ppl, strict=True))
            print(f"[n_ctx {n_ctx}] chunk {ci + 1}/{n}: {cols}", file=sys.stderr, flush=True)

        rows = perplexity_many(
            a.model,
            text,
            runnable,
            n_ctx=n_ctx,
            reference="f16",
            n_threads=a.threads,
            n_batch=a.n_batch,
            max_chunks=a.chunks,
            progress=progress,
        )
        for r in rows:
            r.pop("kv_stats", None)
        f16 = next(r["ppl"] for r in rows if r["kv"] == "f16" and not r["kv_options"])
        rows += skipped
        results[str(n_ctx)] = rows
        r0 = rows[0]
        print(
            f"\n### n_ctx {n_ctx}: {r0['n_chunks']} chunks, {r0['n_tokens']} scored tokens, "
            f"{pathlib.Path(a.text).name}, n_batch {a.n_batch}, {time.perf_counter() - t0:.0f} s\n"
        )
        print(table(rows, f16))
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
