"""Loads the native extension. AKVQ_EXT_DIR (a CMake build directory holding _akvq*.so) overrides
the installed module, for development builds."""

import importlib.machinery
import importlib.util
import os
import sys


def _load():
    ext_dir = os.environ.get("AKVQ_EXT_DIR")
    if ext_dir:
        for name in sorted(os.listdir(ext_dir)):
            if name.startswith("_akvq") and name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
                path = os.path.join(ext_dir, name)
                spec = importlib.util.spec_from_file_location("pyakvq._akvq", path)
                mod = importlib.util.module_from_spec(spec)
                sys.modules["pyakvq._akvq"] = mod
                spec.loader.exec_module(mod)
                return mod
        raise ImportError(f"AKVQ_EXT_DIR={ext_dir!r} holds no _akvq extension")
    from . import _akvq  # noqa: PLC0415

    return _akvq


_akvq = _load()
