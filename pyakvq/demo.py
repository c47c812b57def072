"""The demo model shipped with the package: a tiny LLaVA-architecture VLM (a few MB, GGUF) trained on
the generated scenes of models/demo/shapes.py (one coloured circle, square or triangle on a light
background). It answers "What color is the shape?", "What shape is it?", "Where is the shape?",
"What is in the picture?" and, for several images, "What color is the shape in image 2?".

    pyakvq.Model()                       # loads it (same as Model(pyakvq.demo_model_path()))
    pyakvq chat --image examples/red_circle.png "What is in the picture?"

The file is package data, `pyakvq/data/demo-vlm.gguf`, installed with the package; the environment
variable AKVQ_DEMO_MODEL (a path to any GGUF model) replaces it, e.g. to try another model as the
default of `Model()` and `pyakvq chat`.
"""

from __future__ import annotations

import os
import pathlib

#: The environment variable that replaces the packaged demo model (a path to a GGUF file).
DEMO_MODEL_ENV = "AKVQ_DEMO_MODEL"
#: The demo model's file name inside the package's data directory.
DEMO_MODEL_NAME = "demo-vlm.gguf"


def _package_data_dir() -> pathlib.Path:
    """pyakvq/data of the imported package (installed, or the source tree with PYTHONPATH)."""
    try:
        from importlib.resources import files  # noqa: PLC0415

        d = files(__package__) / "data"
        if isinstance(d, pathlib.Path):  # a package on the file system (not inside a zip)
            return d
    except (ImportError, TypeError):  # pragma: no cover - the fallback below
        pass
    return pathlib.Path(__file__).resolve().parent / "data"


def packaged_demo_model_path() -> pathlib.Path:
    """Where the packaged demo model belongs: `<pyakvq package directory>/data/demo-vlm.gguf`,
    whether or not the file is there and whatever AKVQ_DEMO_MODEL says."""
    return _package_data_dir() / DEMO_MODEL_NAME


def demo_model_path() -> pathlib.Path:
    """The path of the demo model that `pyakvq.Model()` (no path) and `pyakvq chat` (no -m) load.

    What: the tiny LLaVA demo VLM (see pyakvq.demo) as a GGUF file.
    Where: `$AKVQ_DEMO_MODEL` when that environment variable is set and not empty (an override:
      any GGUF model file); otherwise the file installed with the package,
      `<pyakvq package directory>/data/demo-vlm.gguf` (packaged_demo_model_path()).
    Errors: FileNotFoundError naming the path and how to get the file, when it does not exist
      (AKVQ_DEMO_MODEL pointing at a missing file, or a package built without the demo model,
      e.g. a source checkout that lacks pyakvq/data/demo-vlm.gguf)."""
    override = os.environ.get(DEMO_MODEL_ENV, "")
    if override:
        p = pathlib.Path(override).expanduser()
        if not p.is_file():
            raise FileNotFoundError(
                f"the demo model {p} (from the environment variable {DEMO_MODEL_ENV}) does not exist or is not a "
                f"file; point {DEMO_MODEL_ENV} at a GGUF model file, or unset it to use the packaged demo model"
            )
        return p
    p = packaged_demo_model_path()
    if not p.is_file():
        raise FileNotFoundError(
            f"the demo model is missing: {p} does not exist. It ships in the pyakvq package as "
            f"pyakvq/data/{DEMO_MODEL_NAME}: reinstall pyakvq (`pip install .` from a checkout that has "
            f"pyakvq/data/{DEMO_MODEL_NAME}), or set {DEMO_MODEL_ENV} to a GGUF model file, or give a model "
            "path: pyakvq.Model('model.gguf') / pyakvq chat -m model.gguf"
        )
    return p
