"""The registry of converter modules: each module registers the Hugging Face architecture names
(config.json `architectures`) and model types (`model_type`) it converts."""

from __future__ import annotations

from collections.abc import Callable

from .errors import UnknownArchitectureError

_BY_ARCH: dict[str, type] = {}
_BY_MODEL_TYPE: dict[str, type] = {}


def register(architectures: tuple[str, ...], model_types: tuple[str, ...] = ()) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        for a in architectures:
            _BY_ARCH[a] = cls
        for t in model_types:
            _BY_MODEL_TYPE[t] = cls
        return cls

    return deco


def supported() -> list[str]:
    return sorted(_BY_ARCH)


def converter_for(config) -> type:
    """The converter class for a config.json (a checkpoint.Fields); architectures first, then model_type."""
    archs = config.get("architectures") or []
    if isinstance(archs, str):
        archs = [archs]
    for a in archs:
        if a in _BY_ARCH:
            return _BY_ARCH[a]
    mt = config.get("model_type")
    if not archs and isinstance(mt, str) and mt in _BY_MODEL_TYPE:
        return _BY_MODEL_TYPE[mt]
    if archs:
        what = f"architecture '{archs[0]}'" if len(archs) == 1 else f"architectures {archs}"
    elif mt is not None:
        what = f"model_type '{mt}'"
    else:
        raise UnknownArchitectureError(
            f"{config.where}: neither 'architectures' nor 'model_type' is set; cannot tell which model this is"
        )
    raise UnknownArchitectureError(f"{config.where}: unsupported {what} (supported: {', '.join(supported())})")
