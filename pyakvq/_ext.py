"""Loads the native extension. AKVQ_EXT_DIR (a CMake build directory holding _akvq*.so) overrides
the installed module, for development builds."""

import importlib.machinery
import importlib.util
import os
import sys

_HOWTO = (
    "install the package with `pip install .` (then run Python from outside the source tree, or the "
    "source tree's pyakvq/ shadows the installed one), or for a development build configure CMake with "
    "-DAKVQ_BUILD_PYTHON=ON, build the _akvq target and set AKVQ_EXT_DIR to the build directory"
)


def _is_ext(name: str) -> bool:
    return name.startswith("_akvq") and name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def _load_from(ext_dir: str):
    try:
        names = sorted(os.listdir(ext_dir))
    except OSError as e:
        raise ImportError(f"AKVQ_EXT_DIR={ext_dir!r} cannot be read ({e.strerror}); {_HOWTO}") from None
    for name in names:
        if _is_ext(name):
            path = os.path.join(ext_dir, name)
            spec = importlib.util.spec_from_file_location("pyakvq._akvq", path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules["pyakvq._akvq"] = mod
            spec.loader.exec_module(mod)
            return mod
    raise ImportError(f"AKVQ_EXT_DIR={ext_dir!r} holds no _akvq extension (build the _akvq target there); {_HOWTO}")


def _load():
    ext_dir = os.environ.get("AKVQ_EXT_DIR")
    if ext_dir:
        return _load_from(ext_dir)
    if importlib.util.find_spec(__name__.rpartition(".")[0] + "._akvq") is None:
        pkg_dir = os.path.dirname(os.path.abspath(__file__))
        # Without this check Python reports a "partially initialized module ... circular import".
        raise ImportError(
            f"pyakvq's compiled extension (_akvq) is missing from {pkg_dir}: this pyakvq is the source "
            f"tree, not a built package. To use it, {_HOWTO}."
        )
    from . import _akvq  # noqa: PLC0415

    return _akvq


_akvq = _load()
