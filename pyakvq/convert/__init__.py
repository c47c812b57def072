"""Hugging Face checkpoint -> GGUF converter (`akvq-convert`, `python -m pyakvq.convert`).

    from pyakvq.convert import convert
    convert("llava-1.5-7b-hf", "llava.gguf", outtype="q4_0")                 # one file
    convert("llava-1.5-7b-hf", "text.gguf", mmproj_out="mmproj.gguf")        # llama.cpp's two files

A registry of per-architecture modules (llava.py, llama_text.py; registry.py) over one tensor-name
table (names.py). Weights are read tensor by tensor with safetensors and written streaming with the
gguf package, so memory stays bounded by one tensor whatever the checkpoint size. Any problem with the
input raises a ConvertError (subclasses: UnknownArchitectureError, MissingFileError, MissingFieldError,
CheckpointError) with a one-line message naming the file, field or tensor.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import CheckpointError, ConvertError, MissingFieldError, MissingFileError, UnknownArchitectureError

__all__ = [
    "CheckpointError",
    "ConvertError",
    "MissingFieldError",
    "MissingFileError",
    "OUTTYPES",
    "UnknownArchitectureError",
    "convert",
]

OUTTYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")


@dataclass
class Options:
    out: pathlib.Path
    outtype: str = "f16"
    tsa_layers: list[int] | None = None
    mmproj_out: pathlib.Path | None = None
    name: str | None = None


def _deps() -> None:
    missing = []
    for mod in ("gguf", "safetensors", "tqdm"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise ConvertError(f"the converter needs {', '.join(missing)}: pip install 'pyakvq[convert]'")


def convert(
    model_dir: str | pathlib.Path,
    out: str | pathlib.Path,
    *,
    outtype: str = "f16",
    tsa_layers: Iterable[int] | None = None,
    mmproj_out: str | pathlib.Path | None = None,
    name: str | None = None,
    progress: bool = False,
) -> list[pathlib.Path]:
    """Converts the Hugging Face directory `model_dir` into `out` (and `mmproj_out`: then `out` holds the
    text model only, llama.cpp's two-file layout). Returns the paths written.

    outtype: f32 | f16 | bf16 | q8_0 | q4_0 for the weight matrices (norms and biases stay f32).
    tsa_layers: decoder layers written as `akvq.tsa_layers` (text-salient layers of the AKVQ cache).
    name: general.name (default: the directory's name).
    """
    _deps()
    from .._files import output_target, special_file_error, temporary_path
    from . import llama_text, llava  # noqa: F401  (register the converter modules)
    from .checkpoint import Checkpoint
    from .registry import converter_for
    from .writer import write_file

    if outtype not in OUTTYPES:
        raise ConvertError(f"unknown outtype {outtype!r} (supported: {', '.join(OUTTYPES)})")
    if not str(out) or (mmproj_out is not None and not str(mmproj_out)):
        raise ConvertError("the output path is empty")
    out = pathlib.Path(out)
    mm = pathlib.Path(mmproj_out) if mmproj_out is not None else None
    src = pathlib.Path(model_dir)
    for p in (out, mm):
        if p is None:
            continue
        if not p.parent.is_dir():
            raise MissingFileError(f"{p}: the output directory {p.parent} does not exist")
        try:
            _, regular = output_target(p)
        except IsADirectoryError:
            raise ConvertError(f"{p}: is a directory; give the output file's path") from None
        if not regular:
            raise ConvertError(special_file_error(p))
        if p.is_file() and src.is_dir() and p.resolve().parent == src.resolve() and p.suffix.lower() != ".gguf":
            raise ConvertError(f"{p}: is a file of the checkpoint {src}; write the GGUF file elsewhere")
    if mm is not None and output_target(mm)[0] == output_target(out)[0]:
        raise ConvertError(f"{mm}: the mmproj output must differ from the text output")
    tsa = None
    if tsa_layers is not None:
        tsa = [int(x) for x in tsa_layers]
        if not tsa:
            raise ConvertError("tsa_layers: give at least one layer")
    opts = Options(out=out, outtype=outtype, tsa_layers=tsa, mmproj_out=mm, name=name)
    ckpt = Checkpoint(model_dir)
    conv = converter_for(ckpt.config)(ckpt, opts)
    files = conv.outputs()
    tmps: list[pathlib.Path] = []
    finals = [output_target(f.path)[0] for f in files]  # through a symbolic link: the file it names
    try:
        for f, final in zip(files, finals, strict=True):
            try:
                tmps.append(temporary_path(final))
            except OSError as e:
                raise ConvertError(f"{f.path}: cannot write there ({e.strerror or e})") from None
            write_file(f, tmps[-1], progress=progress)
        for final, tmp in zip(finals, tmps, strict=True):  # all outputs complete: then under their names
            os.replace(tmp, final)
    except BaseException:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise
    return [f.path for f in files]
