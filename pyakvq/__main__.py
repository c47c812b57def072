"""The `pyakvq` command line (the `pyakvq` console script, or python -m pyakvq ...).

pyakvq chat [-m MODEL] [--mmproj F] [--image IMG ...] [-n N] [--temp T] [--seed S] [--kv MODE]
            [--kv-opt K=V ...] [-t N] [-c N] QUESTION
pyakvq convert HF_DIR -o OUT.gguf [...]      (akvq-convert's arguments)
python -m pyakvq perplexity -m MODEL -f FILE [-c N] [--kv MODE] [--kv-opt K=V ...] [-t N] [-b N]
                            [--reference f16] [--chunks N] [--json OUT]
python -m pyakvq profile -m MODEL [--mmproj F] --image IMG ... -p PROMPT [-p PROMPT ...]
                         [--skip-first 5] [--factor 2] [--top-k 10] [--write-tsa OUT.gguf] [--json [OUT]]

The flags are akvq-cli's (and llama.cpp's): -m/--model, -f/--file, -c/--ctx-size, -t/--threads,
-b/--batch-size, --kv, repeatable --kv-opt; MODEL and FILE may also be given as positionals, and the
older spellings --ctx, --batch are kept as aliases. `chat` without -m uses the demo model shipped
with the package (pyakvq.demo_model_path()).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import __version__
from ._files import exit_on_sigterm, output_target, special_file_error, write_text
from ._validate import MAX_BATCH, MAX_CTX, MAX_THREADS
from .cli_parser import OneLineParser
from .perplexity import check_n_ctx
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
    if a.json:
        _check_output_path("--json", a.json, (("-m/--model", a.model), ("-f/--file", a.file)))
    check_n_ctx(a.ctx, "-c/--ctx-size")  # the API's rule, with the flag's name
    try:
        text = pathlib.Path(a.file).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"-f/--file {a.file!r}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except FileNotFoundError:
        raise ValueError(f"-f/--file {a.file!r}: no such file") from None
    except OSError as e:
        raise ValueError(f"-f/--file {a.file!r}: {e.strerror or e}") from None
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
        write_text(a.json, json.dumps(r, indent=2, default=str) + "\n")
    return 0


def _profile(a: argparse.Namespace) -> int:
    from .model import Model
    from .saliency import format_profile, profile_saliency, write_tsa_layers

    inputs = [("-m/--model", a.model), ("--mmproj", a.mmproj), *(("--image", i) for i in a.image or ())]
    if a.json and a.json != "-":
        _check_output_path("--json", a.json, [*inputs, ("--write-tsa", a.write_tsa)])
    if a.write_tsa:
        _check_output_path("--write-tsa", a.write_tsa, inputs, gguf=True)
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
            write_text(a.json, json.dumps(r, indent=2) + "\n")
    return 0


def _exit_status(prog: str, e: BaseException) -> int:
    """The exit status of a command that `e` ended, with its one line on stderr: a closed pipe
    (`| head`) ends quietly with 1; Ctrl-C 130; an output that cannot be written (a full disk) 1;
    bad input (ValueError, TypeError, another OSError) 2; an engine failure (RuntimeError) 1."""
    if isinstance(e, BrokenPipeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        return 1
    if isinstance(e, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    if isinstance(e, OSError) and e.errno in (errno.EPIPE, errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        print(f"{prog}: error: cannot write the output: {e}", file=sys.stderr)
        return 1
    print(f"{prog}: error: {e}", file=sys.stderr)
    return 1 if isinstance(e, RuntimeError) else 2


def _check_output_path(flag: str, path: str, others: Sequence[tuple[str, Any]] = (), gguf: bool = False) -> None:
    """Refuses an output path that cannot be written before the work starts (ValueError naming
    the flag): a directory, a missing or unwritable parent directory, an unwritable file, for a
    GGUF output (gguf) a device, FIFO or socket (pyakvq._files), or the same file as one of
    `others` ((flag, path) of the command's inputs and other outputs, None where not given): the
    JSON report once replaced the model it was computed from."""
    p = pathlib.Path(path)
    parent = p.absolute().parent
    if p.is_dir():
        raise ValueError(f"{flag} {path!r}: is a directory")
    if gguf and p.exists() and not output_target(p)[1]:
        raise ValueError(f"{flag} {special_file_error(path)}")
    if not parent.is_dir():
        raise ValueError(f"{flag} {path!r}: directory {str(parent)!r} not found")
    if not os.access(p if p.exists() else parent, os.W_OK):
        raise ValueError(f"{flag} {path!r}: not writable")
    for other_flag, other in others:
        if other is None:
            continue
        q = pathlib.Path(other)
        same = p.resolve() == q.resolve()
        if not same and p.exists() and q.exists():
            same = os.path.samefile(p, q)
        if same:
            raise ValueError(f"{flag} {path!r} is the same file as {other_flag} {os.fspath(other)!r}")


class _ChatError(Exception):
    """Bad input to `pyakvq chat` found before the model runs (one line, exit status 2)."""


def _float_min(lo: float, hi: float | None = None):
    """An argparse type: a float >= lo (and <= hi), finite as the engine's 32-bit floats."""

    def conv(v: str) -> float:
        try:
            x = float(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {v!r}") from None
        if not x >= lo or x > 3.4028234663852886e38 or (hi is not None and not x <= hi):
            rng = f"in [{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
            raise argparse.ArgumentTypeError(f"{v} is out of range (a finite number {rng})")
        return x

    return conv


def _read_images(paths: list[str]) -> list[Any]:
    """The --image files decoded (as Model.chat decodes paths: pillow, RGB over white), so that a
    missing or unreadable image is reported, by its name, before the model is loaded."""
    from .image import to_rgb_array  # noqa: PLC0415

    out = []
    for path in paths:
        what = f"--image {path!r}"
        if not os.path.exists(path):
            if os.path.lexists(path):  # the name is there: a link to nothing (or a loop of links)
                try:
                    os.stat(path)
                except OSError as e:
                    raise _ChatError(f"{what}: {e.strerror}") from None
            raise _ChatError(f"{what}: no such file")
        if os.path.isdir(path):
            raise _ChatError(f"{what}: is a directory, not an image file")
        try:
            out.append(to_rgb_array(path))
        except (OSError, ValueError, TypeError) as e:
            msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            msg = msg.removeprefix(f"{path!r}: ")
            raise _ChatError(f"{what}: cannot read it ({msg})") from None
    return out


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def _rate(n: int, seconds: float) -> str:
    return f"{n / max(seconds, 1e-9):8.2f} tokens/s"


def _chat(a: argparse.Namespace) -> int:
    from .demo import demo_model_path  # noqa: PLC0415
    from .model import Model  # noqa: PLC0415

    err = sys.stderr
    if a.question is not None and a.prompt is not None:
        a.parser.error("give the question once: as QUESTION or as -p/--prompt")
    question = a.question if a.question is not None else a.prompt
    if question is None:
        a.parser.error("the following arguments are required: QUESTION")
    if not question.strip():
        a.parser.error("the question is empty")
    bad = next((i for i, c in enumerate(question) if "\udc80" <= c <= "\udcff"), None)
    if bad is not None:  # bytes that are not UTF-8 reach Python as lone surrogates (PEP 383)
        a.parser.error(f"the question is not UTF-8 text (byte 0x{ord(question[bad]) - 0xDC00:02X} at character {bad})")
    try:
        opts = parse_kv_opts(a.kv_opt)
        model_path = a.model if a.model is not None else demo_model_path()
        for what, path in (("-m/--model", model_path), ("--mmproj", a.mmproj)):
            if path is not None and os.path.isdir(path):
                raise _ChatError(f"{what} {os.fspath(path)!r}: is a directory, not a GGUF file")
            if path is not None and not os.path.isfile(path):
                raise _ChatError(f"{what} {os.fspath(path)!r}: no such file")
        t_img = time.perf_counter()
        images = _read_images(a.image)
        image_s = time.perf_counter() - t_img

        t_load = time.perf_counter()
        m = Model(
            model_path,
            n_ctx=a.ctx,
            n_threads=a.threads,
            kv=a.kv,
            kv_options=opts,
            mmproj=a.mmproj,
            device=a.device,
        )
        load_s = time.perf_counter() - t_load
        if images and not m.has_vision:
            m.close()
            raise _ChatError(
                f"{os.fspath(model_path)!r} has no vision encoder: it cannot take --image (give --mmproj, the "
                "vision tower of llama.cpp's two-file layout, or a LLaVA model)"
            )
    except (_ChatError, ValueError, TypeError, OSError, RuntimeError) as e:
        print(f"pyakvq chat: error: {e}", file=err)
        return 2

    with m:
        n_max = a.max_tokens if a.max_tokens >= 0 else 2**31 - 1  # -1: the context ends it
        gen = {"max_tokens": n_max, "temperature": a.temp, "seed": a.seed, "stream": True}
        if a.top_k is not None:
            gen["top_k"] = a.top_k
        if a.top_p is not None:
            gen["top_p"] = a.top_p
        interrupted = False
        t_first = None
        try:
            t_chat = time.perf_counter()
            stream = m.chat(question, images=images, **gen) if images else m.chat(question, **gen)
            image_s += time.perf_counter() - t_chat  # rendering, preprocessing and encoding the images
            engine_gen = getattr(stream, "_gen", None)  # the engine's Generator: its timings
            t0 = time.perf_counter()
            try:
                for tok in stream:
                    if t_first is None:
                        t_first = time.perf_counter()
                    sys.stdout.write(tok.text)
                    sys.stdout.flush()
            except KeyboardInterrupt:
                if t_first is None:  # before the first token (the prompt): one line, as below
                    raise
                interrupted = True  # while tokens stream: the answer so far, then the timings (as akvq-cli)
            t_end = time.perf_counter()
            sys.stdout.write("\n")
            sys.stdout.flush()
        except (OSError, ValueError, TypeError, RuntimeError, KeyboardInterrupt) as e:
            if isinstance(e, KeyboardInterrupt):
                print(file=err)  # end the answer's line
            elif not isinstance(e, OSError):  # (stdout itself may be what failed)
                sys.stdout.flush()  # the answer so far before the error line
            return _exit_status("pyakvq chat", e)

        timings = getattr(engine_gen, "timings", None)
        if timings is not None:
            prompt_s, gen_s = timings["prompt_ms"] / 1000, timings["gen_ms"] / 1000
        else:  # measured here: the first token's step evaluates the prompt
            t_first = t_first if t_first is not None else t_end
            prompt_s, gen_s = t_first - t0, t_end - t_first
        n_gen = stream.n_generated
        print(f"\nmodel:      {model_path}", file=err)
        print(f"load:       {_ms(load_s)}", file=err)
        if images:
            print(f"images:     {_ms(image_s)} / {len(images):5d} images (decode, preprocess, encode)", file=err)
        print(
            f"prompt:     {_ms(prompt_s)} / {stream.n_prompt:5d} tokens ({_rate(stream.n_prompt, prompt_s)})", file=err
        )
        print(f"generation: {_ms(gen_s)} / {n_gen:5d} tokens ({_rate(n_gen, gen_s)})", file=err)
        print(f"finish:     {'interrupted' if interrupted else stream.finish_reason}", file=err)
        if not interrupted and stream.finish_reason == "context":
            print(f"pyakvq chat: the context is full (-c {a.ctx} tokens): generation stopped", file=err)
    return 130 if interrupted else 0  # 130: the shell's status for Ctrl-C


def _serve(a: argparse.Namespace) -> int:
    from .server.cli import run  # noqa: PLC0415

    return run(a, parse_kv_opts)


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


def _add_kv_and_threads(p: argparse.ArgumentParser) -> None:
    """--kv, repeatable --kv-opt and -t/--threads: the same flags as akvq-cli's."""
    p.add_argument("--kv", default="f16", help="KV cache mode (f16 q8 q4 q2 kivi2 wht2 akvq2 akvq4; default f16)")
    p.add_argument(
        "--kv-opt", action="append", metavar="KEY=VALUE", help="KV cache option (repeatable), e.g. --kv-opt window=128"
    )
    p.add_argument(
        "-t",
        "--threads",
        type=_int_in(1, MAX_THREADS),
        default=None,
        metavar="N",
        help=f"threads, 1..{MAX_THREADS} (default: cores available)",
    )


def _add_device(p: argparse.ArgumentParser) -> None:
    """--device cpu|cuda|auto, as akvq-cli's."""
    p.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="cpu",
        help="where the decoder runs (default cpu; cuda: GPU 0, an error naming the reason without one; "
        "auto: the GPU when available)",
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="pyakvq",
        description="pyakvq command line tools: chat with a vision-language model (the packaged demo model by "
        "default), convert checkpoints, measure perplexity, profile attention saliency.",
        epilog="`pyakvq COMMAND --help` describes a command.",
    )
    ap.add_argument("--version", action="version", version=f"pyakvq {__version__}")
    sub = ap.add_subparsers(
        dest="command", required=True, metavar="COMMAND", title="commands", parser_class=OneLineParser
    )
    p = sub.add_parser(
        "chat",
        one_line_errors=True,
        help="ask a question about images (default model: the demo VLM shipped with pyakvq)",
        description="Asks QUESTION about the --image files (none: a text-only chat) in one chat turn, "
        "formatted with the model's chat template (images first), and streams the answer to stdout; "
        "timings go to stderr. Without -m the demo model shipped with the package is used "
        "(pyakvq.demo_model_path(); the environment variable AKVQ_DEMO_MODEL overrides it). "
        "Decoding is greedy by default (--temp 0): the same question gives the same answer. "
        "Bad input (a missing or unreadable file, a bad option) exits with status 2 and one line on stderr.",
        epilog='example: pyakvq chat --image examples/red_circle.png "What color is the shape?"',
    )
    p.add_argument("question", nargs="?", metavar="QUESTION", help="the question (or -p)")
    p.add_argument("-p", "--prompt", default=None, help="the question, as akvq-cli takes it")
    p.add_argument("-m", "--model", default=None, help="GGUF model file (default: the packaged demo model)")
    p.add_argument("--mmproj", default=None, help="llama.cpp's mmproj GGUF (two-file layout)")
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="IMG",
        help="image file (repeatable; in order, before the question)",
    )
    p.add_argument(
        "-n",
        "--max-tokens",
        "--n-predict",
        dest="max_tokens",
        type=_int_in(-1, 2**31 - 1),
        default=128,
        metavar="N",
        help="generate at most N tokens (default 128; -1: until the context is full, as akvq-cli)",
    )
    p.add_argument(
        "--temp",
        "--temperature",
        dest="temp",
        type=_float_min(0.0),
        default=0.0,
        metavar="T",
        help="sampling temperature (default 0: greedy decoding, deterministic; > 0 samples, see --seed)",
    )
    p.add_argument(
        "--seed",
        type=_int_in(-1, 2**64 - 1),
        default=None,
        metavar="S",
        help="sampling seed for --temp > 0, in [0, 2^64) (default or -1: a fresh random seed)",
    )
    p.add_argument(
        "--top-k", type=_int_in(-1, 2**31 - 1), default=None, metavar="K", help="top-k, 0 or -1 = off (default 40)"
    )
    p.add_argument(
        "--top-p",
        type=_float_min(0.0, 1.0),
        default=None,
        metavar="P",
        help="top-p in [0, 1]: 1 = off, 0 = the most likely token only (default 0.95)",
    )
    _add_kv_and_threads(p)
    _add_device(p)
    p.add_argument(
        "-c",
        "--ctx-size",
        dest="ctx",
        type=_int_in(1, MAX_CTX),
        default=4096,
        metavar="N",
        help=f"context size in tokens, 1..{MAX_CTX} (default 4096)",
    )
    p.set_defaults(func=_chat, parser=p)

    # Only listed here: main() hands `pyakvq convert ...` to the converter's own parser.
    sub.add_parser(
        "convert",
        add_help=False,
        help="convert a Hugging Face checkpoint into a GGUF file (akvq-convert; pyakvq convert --help)",
    )

    p = sub.add_parser(
        "perplexity",
        one_line_errors=True,
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
    _add_kv_and_threads(p)
    p.add_argument("--reference", default=None, help="also report KL and top-1 vs this mode (e.g. f16)")
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
        one_line_errors=True,
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

    from .server import cli as serve_cli  # noqa: PLC0415 - argparse only, no FastAPI import

    p = sub.add_parser(
        "serve",
        one_line_errors=True,
        help="serve a model over an OpenAI-compatible HTTP API (needs pip install 'pyakvq[server]')",
        description=serve_cli.DESCRIPTION,
        epilog="example: pyakvq serve --kv akvq2 --parallel 8 --kv-memory 512M --port 8000",
    )
    serve_cli.add_arguments(p, _int_in, _add_kv_and_threads, MAX_CTX)
    _add_device(p)
    p.set_defaults(func=_serve, parser=p)
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
    """Runs the command line `argv` (default: sys.argv[1:]); returns the exit status: 0 done, 2 bad
    input or arguments (one line on stderr), 130 interrupted (Ctrl-C), 1 anything else."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "convert":  # the converter's own command line, as akvq-convert
        from .convert.__main__ import main as convert_main  # noqa: PLC0415

        return convert_main(argv[1:], prog="pyakvq convert")
    ap = build_parser()
    a, extra = ap.parse_known_args(argv)
    if extra:
        a.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if a.command == "perplexity":
        _resolve_files(a)
    if a.command in ("perplexity", "profile"):
        exit_on_sigterm()  # their outputs' temporary files are removed on SIGTERM as on Ctrl-C
    try:
        return a.func(a)
    except (OSError, ValueError, TypeError, KeyboardInterrupt) as e:  # e.g. Ctrl-C while a model loads
        return _exit_status(f"pyakvq {a.command}", e)


if __name__ == "__main__":
    sys.exit(main())
