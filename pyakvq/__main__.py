"""The `pyakvq` command line (python -m pyakvq ...).

python -m pyakvq perplexity MODEL FILE [--ctx N] [--kv MODE] [--kv-opt k=v ...]
                            [--reference f16] [--threads N] [--chunks N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

from .perplexity import perplexity as run_perplexity


def parse_kv_value(v: str) -> Any:
    """'2' -> 2, '0.7' -> 0.7, '0,1' -> [0, 1], 'true'/'false' -> bool, '' -> [], else the string."""
    low = v.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if "," in v or v == "":
        return [parse_kv_value(x) for x in v.split(",") if x.strip()]
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def parse_kv_opts(items: list[str] | None) -> dict[str, Any]:
    """['bits=2', 'clip=0.7', 'tsa_layers=0,1'] -> {'bits': 2, 'clip': 0.7, 'tsa_layers': [0, 1]}.
    Raises ValueError on an item without '=' or with an empty key."""
    out: dict[str, Any] = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not k.strip():
            raise ValueError(f"--kv-opt expects key=value, got {it!r}")
        out[k.strip()] = parse_kv_value(v.strip())
    return out


def _perplexity(a: argparse.Namespace) -> int:
    text = pathlib.Path(a.file).read_text(encoding="utf-8")
    opts = parse_kv_opts(a.kv_opt)

    def progress(ci: int, n: int, ppl: list[float]) -> None:
        print(f"[{ci + 1}/{n}] {ppl[0]:.4f}", file=sys.stderr, flush=True)

    r = run_perplexity(
        a.model,
        text,
        n_ctx=a.ctx,
        kv=a.kv,
        reference=a.reference,
        n_threads=a.threads,
        max_chunks=a.chunks,
        n_batch=a.batch,
        progress=None if a.quiet else progress,
        **opts,
    )
    opt_s = " ".join(f"{k}={v}" for k, v in opts.items())
    print(
        f"kv {r['kv']}{' ' + opt_s if opt_s else ''}, n_ctx {r['n_ctx']}, {r['n_chunks']} chunks, "
        f"{r['n_tokens']} scored tokens, {r['seconds']:.1f} s"
    )
    line = f"PPL = {r['ppl']:.4f}"
    if r.get("bits_per_element") is not None:
        line += f", bits/element = {r['bits_per_element']:.3f}"
    if "kl" in r:
        line += f", KL vs {r['reference']} = {r['kl']:.6f}, top-1 agreement = {r['top1']:.4f}"
    print(line)
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(r, indent=2, default=str) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pyakvq", description="pyakvq command line tools")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "perplexity",
        help="perplexity of a model over a text file (llama.cpp's protocol)",
        description="Perplexity over FILE with non-overlapping chunks of --ctx tokens, scoring the "
        "second half of each chunk (llama.cpp's protocol), with KV cache mode --kv.",
    )
    p.add_argument("model", metavar="MODEL", help="GGUF model file")
    p.add_argument("file", metavar="FILE", help="UTF-8 text file")
    p.add_argument("--ctx", type=int, default=1024, help="chunk size n_ctx (even, >= 16; default 1024)")
    p.add_argument("--kv", default="f16", help="KV cache mode (f16 q8 q4 q2 kivi2 wht2 akvq2 akvq4)")
    p.add_argument("--kv-opt", action="extend", nargs="+", metavar="K=V", help="KV option, e.g. bits=2 clip=0.7")
    p.add_argument("--reference", default=None, help="also report KL and top-1 vs this mode (e.g. f16)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--chunks", type=int, default=None, help="evaluate at most this many chunks")
    p.add_argument(
        "--batch",
        type=int,
        default=256,
        help="tokens per forward pass (default 256); 1 reads every older token from the cache as stored, "
        "as decoding does (the strict figure for quantized caches)",
    )
    p.add_argument("--json", default=None, metavar="OUT", help="also write the result as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-chunk progress on stderr")
    p.set_defaults(func=_perplexity)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        return a.func(a)
    except (ValueError, TypeError, OSError) as e:
        print(f"pyakvq: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
