"""Image input: any supported image -> uint8 RGB array -> the normalized pixels a CLIP vision tower
consumes, computed by the engine (engine/image/) exactly as Hugging Face's PIL-based
CLIPImageProcessor does (mode "crop"), or with LLaVA-1.5's pad-to-square first (mode "pad").

Accepted images: a path (str or os.PathLike), encoded bytes (PNG, JPEG or anything else pillow
reads), a PIL image, or a numpy uint8 array [H, W, 3] (RGB), [H, W] (gray) or [H, W, 4] (RGBA).
Pillow decodes paths and bytes. Transparency (an alpha band or a transparency key) is composited
onto white as transformers' convert_to_rgb does (alpha="white"; like it, an RGB image's
transparency key is ignored), or ignored as PIL's convert("RGB") does (alpha="drop"). 16-bit
gray images keep their high byte (v >> 8), as the engine's own PNG decoder does (PIL's
convert("RGB"), used by transformers, clips them to white). EXIF orientation is not applied
(transformers does not apply it either).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np

from . import _validate as _v
from ._ext import _akvq

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_ALPHA = ("white", "drop")


def _pil():
    try:
        from PIL import Image  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - pillow is a dependency
        raise ImportError("decoding images needs pillow: pip install pillow") from e
    return Image


def _open(data, what: str):
    Image = _pil()
    try:
        im = Image.open(data)
        im.load()
    except Image.UnidentifiedImageError:
        raise ValueError(f"{what}: not an image pillow can read (unsupported format or corrupt data)") from None
    except Image.DecompressionBombError as e:
        raise ValueError(f"{what}: image too large ({e})") from None
    except (OSError, SyntaxError) as e:
        if isinstance(e, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise ValueError(f"{what}: corrupt or truncated image ({e})") from None
    return im


def _from_pil(im, alpha: str) -> np.ndarray:
    if im.width == 0 or im.height == 0:
        raise ValueError(f"zero-size image ({im.width}x{im.height})")
    mode = im.mode
    if mode.startswith("I;16"):
        # 16-bit gray (PNG): the high byte, as the engine's PNG decoder (libpng's strip_16) reads it
        # (PIL's convert, and with it transformers, clips them: almost all white); a transparency
        # key becomes an alpha band, as libpng's tRNS_to_alpha makes it
        v = np.asarray(im)
        gray = (v.astype(np.uint32) >> 8).astype(np.uint8)
        key = im.info.get("transparency")
        if alpha == "white" and isinstance(key, int):
            return _from_array(np.stack([gray, np.where(v == key, 0, 255).astype(np.uint8)], axis=-1), alpha)
        return _from_array(gray, alpha)
    if alpha == "white" and ("A" in im.getbands() or (im.info.get("transparency") is not None and mode != "RGB")):
        # transformers' convert_to_rgb: RGBA, then over white (done by the engine, PIL's rounding);
        # an image in mode "RGB" it returns as it is, a transparency key ignored
        arr = np.asarray(im if mode in ("RGBA", "LA") else im.convert("RGBA"))
    elif mode in ("RGB", "L", "RGBA", "LA"):
        arr = np.asarray(im)  # alpha (if any) dropped by the engine, as convert("RGB") does
    else:
        arr = np.asarray(im.convert("RGB"))  # palette, CMYK, YCbCr, 1-bit, 16-bit, ...
    return _from_array(arr, alpha)


def _from_array(arr: np.ndarray, alpha: str) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise TypeError(
            f"image arrays must be uint8 ([H, W, 3] RGB, [H, W] gray or [H, W, 4] RGBA), got dtype {arr.dtype}"
        )
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(
            f"image arrays must be [H, W, 3] (RGB), [H, W] (gray) or [H, W, 4] (RGBA), got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"zero-size image (shape {arr.shape})")
    arr = np.ascontiguousarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return arr
    return _akvq.image_to_rgb(arr, alpha)


def to_rgb_array(x, *, alpha: str = "white") -> np.ndarray:
    """Any accepted image (see the module docstring) -> uint8 RGB array [H, W, 3], C-contiguous.

    Raises TypeError for an unsupported input type or dtype, ValueError for a bad shape, a
    zero-size image, and data that is corrupt, truncated or not an image pillow reads;
    FileNotFoundError (an OSError) for a missing file."""
    if alpha not in _ALPHA:
        raise ValueError(f"alpha must be 'white' or 'drop', got {alpha!r}")
    if isinstance(x, np.ndarray):
        return _from_array(x, alpha)
    if isinstance(x, (str, os.PathLike)):
        path = os.fspath(x)
        if os.path.isdir(path):
            raise IsADirectoryError(f"{path!r} is a directory, not an image file")
        # pillow reads from the file what the format needs (the header first), not the whole file
        # up front: what is not an image (even an endless device such as /dev/zero) is refused
        # after its first bytes
        with open(path, "rb") as f:
            if not f.peek(1):
                raise ValueError(f"{path!r}: empty file (0 bytes)")
            return _from_pil(_open(f, repr(path)), alpha)
    if isinstance(x, (bytes, bytearray, memoryview)):
        if len(x) == 0:
            raise ValueError("empty image data (0 bytes)")
        return _from_pil(_open(io.BytesIO(bytes(x)), "image bytes"), alpha)
    try:
        Image = _pil()
    except ImportError:
        Image = None
    if Image is not None and isinstance(x, Image.Image):
        try:
            x.load()  # a lazily opened image reads its file here: corrupt data is a ValueError as for a path
        except (OSError, SyntaxError) as e:
            raise ValueError(f"corrupt or truncated image ({e})") from None
        return _from_pil(x, alpha)
    raise TypeError(
        "an image must be a path (str or os.PathLike), bytes, a PIL image or a uint8 numpy array [H, W, 3]; "
        f"got {type(x).__name__}"
    )


def preprocess(
    x,
    *,
    image_size: int = 336,
    crop_size: int | Sequence[int] | None = None,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
    resample: int = 3,
    mode: str = "crop",
    alpha: str = "white",
    rescale_factor: float = 1 / 255,
) -> np.ndarray:
    """Any accepted image -> float32 pixels [3, crop_h, crop_w] (channel-major R, G, B planes),
    the input of the CLIP vision tower.

    mode "crop": resize the shortest side to image_size (PIL filter code `resample`: 0 nearest,
    1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming), center crop crop_size (int or
    (height, width); default image_size), then x * rescale_factor and (x - mean) / std: Hugging
    Face's CLIPImageProcessor (PIL-based) bit for bit. mode "pad": pad to a square with the colour
    int(255 * mean) first (LLaVA-1.5)."""
    side = 1 << 16  # beyond the engine's image limit (65535 per side): its own message names the limit
    image_size = _v.check_int("image_size", image_size, 1, side)
    if crop_size is None:
        crop = image_size
    elif isinstance(crop_size, (int, np.integer)):
        crop = _v.check_int("crop_size", int(crop_size), 1, side)
    else:
        crop = tuple(int(v) for v in crop_size)
        if len(crop) != 2:
            raise ValueError(f"crop_size must be an int or (height, width), got {crop_size!r}")
        crop = tuple(_v.check_int(n, v, 1, side) for n, v in zip(("crop_height", "crop_width"), crop, strict=True))
    if len(mean) != 3 or len(std) != 3:
        raise ValueError("mean and std need 3 values (R, G, B)")
    rgb = to_rgb_array(x, alpha=alpha)
    return _akvq.preprocess_image(
        rgb,
        int(image_size),
        crop,
        [float(v) for v in mean],
        [float(v) for v in std],
        int(resample),
        mode,
        float(rescale_factor),
    )


def load_image(path: str | os.PathLike, *, alpha: str = "white") -> np.ndarray:
    """Decodes a PNG or JPEG file with the engine's own decoders (libpng / libjpeg, what akvq-cli
    uses) -> uint8 [H, W, 3]. Raises OSError (unreadable), ValueError (corrupt, truncated,
    unsupported format) or RuntimeError (this build lacks the codec)."""
    return _akvq.load_image(os.fspath(path), alpha)


def codecs() -> dict:
    """Which formats the engine's own decoders read in this build: {'png': bool, 'jpeg': bool}."""
    return dict(_akvq.image_codecs())
