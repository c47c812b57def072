"""akvq-convert HF_DIR -o OUT.gguf [--outtype f32|f16|bf16|q8_0|q4_0] [--tsa-layers L] [--mmproj-out F]

Converts a Hugging Face checkpoint directory into a GGUF file (also: python -m pyakvq.convert).
Exit status: 0 done, 2 bad input or arguments (one line on stderr), 1 anything else.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .._files import exit_on_sigterm
from ..cli_parser import OneLineParser
from . import OUTTYPES, ConvertError, convert


def parse_layers(text: str) -> list[int]:
    try:
        layers = [int(x) for x in text.replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer indices, got {text!r}") from None
    if not layers:
        raise argparse.ArgumentTypeError("give at least one layer index")
    return layers


def build_parser(prog: str = "akvq-convert") -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog,
        one_line_errors=True,
        description="Convert a Hugging Face checkpoint (LLaVA, Llama) into a GGUF file for pyakvq and llama.cpp.",
    )
    p.add_argument(
        "model_dir", metavar="HF_DIR", help="Hugging Face model directory (config.json, safetensors, tokenizer)"
    )
    p.add_argument("-o", "--outfile", required=True, metavar="OUT.gguf", help="output GGUF file")
    p.add_argument(
        "--outtype",
        default="f16",
        choices=OUTTYPES,
        help="type of the weight matrices (default f16; norms and biases stay f32)",
    )
    p.add_argument(
        "--tsa-layers",
        type=parse_layers,
        metavar="L",
        help="comma-separated decoder layers written as akvq.tsa_layers, e.g. 0,1,5",
    )
    p.add_argument(
        "--mmproj-out",
        metavar="F",
        help="write llama.cpp's two-file layout: OUT holds the text model, F the vision tower and "
        "projector (arch clip)",
    )
    p.add_argument("--name", help="general.name (default: the directory name)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None, prog: str = "akvq-convert") -> int:
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"{prog}: %(levelname)s: %(message)s")
    exit_on_sigterm()  # SIGTERM: the temporary files are removed as on Ctrl-C
    try:
        paths = convert(
            args.model_dir,
            args.outfile,
            outtype=args.outtype,
            tsa_layers=args.tsa_layers,
            mmproj_out=args.mmproj_out,
            name=args.name,
            progress=not args.quiet and sys.stderr.isatty(),
        )
    except ConvertError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:
        if e.code == 143:
            print(f"{prog}: terminated", file=sys.stderr)
        raise
    if not args.quiet:
        for p in paths:
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
