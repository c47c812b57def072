"""The `pyakvq` command line (python -m pyakvq ...).

python -m pyakvq perplexity -m MODEL -f FILE [-c N] [--kv MODE] [--kv-opt K=V ...] [-t N] [-b N]
                            [--reference f16] [--chunks N] [--json OUT]
python -m pyakvq profile -m MODEL [--mmproj F] --image IMG ... -p PROMPT [-p PROMPT ...]
                         [--skip-first 5] [--factor 2] [--top-k 10] [--write-tsa OUT.gguf] [--json [OUT]]

The flags are akvq-cli's (and llama.cpp's): -m/--model, -f/--file, -c/--ctx-size, -t/--threads,
-b/--batch-size, --kv, repeatable --kv-opt; MODEL and FILE may also be given as positionals, and the
older spellings --ctx, --batch are kept as aliases.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

from . import __version__
from ._validate import MAX_BATCH, MAX_CTX, MAX_THREADS
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


def _profile(a: argparse.Namespace) -> int:
    from .model import Model
    from .saliency import format_profile, profile_saliency, write_tsa_layers

    m = Model(a.model, n_ctx=a.ctx, n_threads=a.threads, mmproj=a.mmproj)
    try:
        if a.image:
            marker = m.image_marker
            samples = []
            for p in a.prompt:
                n_mark = p.count(marker)
                if n_mark == 0:  # a question: the images first, as one raw prompt
                    text = "".join(f"{marker}\n" for _ in a.image) + p
                    samples.append((text, list(a.image)))
                elif n_mark == len(a.image):
                    samples.append((p, list(a.image)))
                else:
                    raise ValueError(f"prompt has {n_mark} image markers but {len(a.image)} images were given")
        else:
            samples = [(p, None) for p in a.prompt]
        r = profile_saliency(m, samples, skip_first=a.skip_first, top_k=a.top_k, factor=a.factor)
    finally:
        m.close()
    if a.write_tsa:
        if not r["tsa_layers"]:
            print("pyakvq: no layer meets the TSA rule; writing an empty akvq.tsa_layers", file=sys.stderr)
        write_tsa_layers(a.model, a.write_tsa, r["tsa_layers"])
        r["written"] = str(a.write_tsa)
    if a.json == "-":
        print(json.dumps(r, indent=2))
    else:
        print(format_profile(r))
        if a.write_tsa:
            print(f"wrote {a.write_tsa} with akvq.tsa_layers = {r['tsa_layers']}")
        if a.json:
            pathlib.Path(a.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0


def _int_in(lo: int, hi: int | None, special: str = ""):
    """An argparse type: an int in [lo, hi] (the limits of the Python API), else a parse error."""

    def conv(v: str) -> int:
        try:
            x = int(v, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {v!r}") from None
        if x < lo or (hi is not None and x > hi):
            rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"{v} is out of range {rng}{special}")
        return x

    return conv


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pyakvq", description="pyakvq command line tools")
    ap.add_argument("--version", action="version", version=f"pyakvq {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "perplexity",
        help="perplexity of a model over a text file (llama.cpp's protocol)",
        description="Perplexity over FILE with non-overlapping chunks of -c tokens, scoring the "
        "second half of each chunk (llama.cpp's protocol), with KV cache mode --kv.",
    )
    p.add_argument("model_pos", nargs="?", metavar="MODEL", help="GGUF model file (or -m)")
    p.add_argument("file_pos", nargs="?", metavar="FILE", help="UTF-8 text file (or -f)")
    p.add_argument("-m", "--model", help="GGUF model file")
    p.add_argument("-f", "--file", help="UTF-8 text file")
    p.add_argument(
        "-c",
        "--ctx-size",
        "--ctx",
        dest="ctx",
        type=_int_in(1, MAX_CTX),
        default=1024,
        metavar="N",
        help=f"chunk size n_ctx (even, 16..{MAX_CTX}; default 1024)",
    )
    p.add_argument("--kv", default="f16", help="KV cache mode (f16 q8 q4 q2 kivi2 wht2 akvq2 akvq4)")
    p.add_argument(
        "--kv-opt", action="append", metavar="KEY=VALUE", help="KV cache option (repeatable), e.g. --kv-opt bits=2"
    )
    p.add_argument("--reference", default=None, help="also report KL and top-1 vs this mode (e.g. f16)")
    p.add_argument(
        "-t",
        "--threads",
        type=_int_in(1, MAX_THREADS),
        default=None,
        metavar="N",
        help=f"threads, 1..{MAX_THREADS} (default: cores available)",
    )
    p.add_argument("--chunks", type=_int_in(1, None), default=None, help="evaluate at most this many chunks")
    p.add_argument(
        "-b",
        "--batch-size",
        "--batch",
        dest="batch",
        type=_int_in(1, MAX_BATCH),
        default=256,
        metavar="N",
        help=f"tokens per forward pass, 1..{MAX_BATCH} (default 256); speed only: the figures are the same for any "
        "batch size",
    )
    p.add_argument("--json", default=None, metavar="OUT", help="also write the result as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-chunk progress on stderr")
    p.set_defaults(func=_perplexity, parser=p)

    p = sub.add_parser(
        "profile",
        help="saliency profile: attention received by text vs vision tokens per layer, TSA layers",
        description="Measures per layer the mean attention that text and vision tokens receive from the "
        "text after the last image (receivers from --skip-first on), the top receivers (pivot candidates), "
        "and suggests TSA layers (text gets >= --factor times the attention per token of vision).",
    )
    p.add_argument("-m", "--model", required=True, help="GGUF model file")
    p.add_argument("--mmproj", default=None, help="llama.cpp's mmproj GGUF (two-file layout)")
    p.add_argument("--image", action="append", default=[], metavar="IMG", help="image file (repeatable)")
    p.add_argument(
        "-p",
        "--prompt",
        action="append",
        required=True,
        help="prompt (repeatable: one sample each); without image markers the images come first",
    )
    p.add_argument("-c", "--ctx-size", dest="ctx", type=_int_in(1, MAX_CTX), default=4096, metavar="N")
    p.add_argument("-t", "--threads", type=_int_in(1, MAX_THREADS), default=None, metavar="N")
    p.add_argument("--skip-first", type=_int_in(0, None), default=5, metavar="N", help="receivers skipped (default 5)")
    p.add_argument("--top-k", type=_int_in(1, None), default=10, metavar="N", help="top receivers per layer")
    p.add_argument("--factor", type=float, default=2.0, help="TSA rule factor (default 2)")
    p.add_argument("--write-tsa", default=None, metavar="OUT", help="copy MODEL to OUT with akvq.tsa_layers set")
    p.add_argument(
        "--json", nargs="?", const="-", default=None, metavar="OUT", help="JSON to stdout (no OUT) or to OUT"
    )
    p.set_defaults(func=_profile, parser=p)
    return ap


def _resolve_files(a: argparse.Namespace) -> None:
    """MODEL and FILE from -m/-f or the positionals (not both, and both needed)."""
    p = a.parser
    if a.model is not None and a.file is None and a.file_pos is None and a.model_pos is not None:
        a.file_pos, a.model_pos = a.model_pos, None  # -m MODEL FILE: the one positional is FILE
    if a.model_pos is not None and a.model is not None:
        p.error("give the model once: as MODEL or as -m/--model")
    if a.file_pos is not None and a.file is not None:
        p.error("give the text file once: as FILE or as -f/--file")
    a.model = a.model if a.model is not None else a.model_pos
    a.file = a.file if a.file is not None else a.file_pos
    missing = [n for n, v in (("MODEL (-m)", a.model), ("FILE (-f)", a.file)) if v is None]
    if missing:
        p.error(f"the following arguments are required: {', '.join(missing)}")


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if a.command == "perplexity":
        _resolve_files(a)
    try:
        return a.func(a)
    except (ValueError, TypeError, OSError) as e:
        print(f"pyakvq: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
