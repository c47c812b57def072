"""Images of chat requests: OpenAI image_url parts -> decoded RGB arrays, within the server's limits.

Data URLs (base64) are always accepted; local paths and file:// URLs only when the server allows
them; http(s) URLs only when it allows remote images. The pixel count is read from the image's
header and checked before anything is decoded (a small file can declare a huge image: a
decompression bomb)."""

from __future__ import annotations

import base64
import binascii
import io
import os
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..image import to_rgb_array
from .config import ServerConfig
from .errors import APIError, bad_request

#: a request's cancellation check: raises when its client has gone away
Check = Callable[[], None] | None
_PIECE = 1 << 16  # bytes per read of a file or a remote transfer


def _data_url(url: str, where: str) -> bytes:
    head, sep, data = url.partition(",")
    if not sep or not head.lower().endswith(";base64"):
        raise bad_request(f"{where}: only base64 data URLs are supported ('data:image/png;base64,...')", "messages")
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{where}: the data URL is not valid base64", "messages") from None
    if not raw:
        raise bad_request(f"{where}: the data URL holds no data", "messages")
    return raw


def _read_limited(f: Any, limit: int, where: str, deadline: float | None = None, check: Check = None) -> bytes:
    """At most `limit` bytes of f (413 beyond), read a piece at a time so that `check` (the
    request's cancellation) and the deadline (time.monotonic(), a remote fetch's whole time) are
    seen while a slow peer trickles bytes."""
    chunks, n = [], 0
    read = getattr(f, "read1", f.read)  # what has arrived, not a full buffer's worth
    while True:
        if check is not None:
            check()
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("the transfer took too long")
        c = read(min(_PIECE, limit + 1 - n))
        if not c:
            return b"".join(chunks)
        chunks.append(c)
        n += len(c)
        if n > limit:
            raise APIError(413, f"{where}: the image is larger than the limit of {limit} bytes", param="messages")


def _local(path: str, cfg: ServerConfig, where: str, check: Check) -> bytes:
    if not cfg.allow_local_images:
        raise bad_request(
            f"{where}: local image paths are not allowed by this server (start it with --allow-local-images); "
            "send the image as a data URL",
            "messages",
        )
    if not os.path.isfile(path):
        raise bad_request(f"{where}: no such image file", "messages")
    try:
        with open(path, "rb") as f:
            return _read_limited(f, cfg.max_body_bytes, where, check=check)
    except OSError as e:
        raise bad_request(f"{where}: cannot read the image file ({e.strerror or e})", "messages") from None


def _remote(url: str, cfg: ServerConfig, where: str, check: Check) -> bytes:
    if not cfg.allow_remote_images:
        raise bad_request(
            f"{where}: remote image URLs are not fetched by this server (start it with --allow-remote-images); "
            "send the image as a data URL",
            "messages",
        )
    deadline = time.monotonic() + cfg.remote_timeout  # for the whole fetch, not each read
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "pyakvq-server"})
        with urllib.request.urlopen(req, timeout=cfg.remote_timeout) as r:  # noqa: S310 - http(s) only
            return _read_limited(r, cfg.max_body_bytes, where, deadline, check)
    except APIError:
        raise
    except TimeoutError:
        raise bad_request(f"{where}: the image did not arrive within {cfg.remote_timeout:g} s", "messages") from None
    except (OSError, ValueError) as e:
        raise bad_request(f"{where}: cannot fetch the image ({e})", "messages") from None


def fetch(url: Any, cfg: ServerConfig, where: str, check: Check = None) -> bytes:
    """The encoded bytes an image_url names. check: called between pieces of a file or a remote
    transfer (it raises to stop the fetch: the client went away)."""
    if not isinstance(url, str) or not url:
        raise bad_request(f"{where}: image_url.url must be a non-empty string", "messages")
    if url.startswith("data:"):
        return _data_url(url, where)
    scheme = urllib.parse.urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in ("http", "https"):
        return _remote(url, cfg, where, check)
    if scheme == "file":
        return _local(urllib.parse.unquote(urllib.parse.urlsplit(url).path), cfg, where, check)
    if scheme:
        raise bad_request(f"{where}: unsupported image URL scheme {scheme!r} (use a data URL)", "messages")
    return _local(url, cfg, where, check)


# The formats a request's image may have (Pillow's names): OpenAI's image inputs (PNG, JPEG, WebP,
# GIF) and BMP. Pillow alone reads many more (EPS through Ghostscript, TIFF, ICO, ...), which a
# server should not run on what clients send.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")


def decode(data: bytes, cfg: ServerConfig, where: str) -> np.ndarray:
    """Encoded image bytes (one of FORMATS) -> uint8 RGB [H, W, 3], refusing more than
    cfg.max_image_pixels before decoding."""
    from PIL import Image  # noqa: PLC0415

    try:
        with warnings.catch_warnings():
            # the pixel limit below is this server's; Pillow's own warning threshold is not
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
            w, h = im.size
            if w * h > cfg.max_image_pixels:
                raise bad_request(
                    f"{where}: the image is {w}x{h} = {w * h} pixels, more than this server's limit of "
                    f"{cfg.max_image_pixels} pixels",
                    "messages",
                    "image_too_large",
                )
            im.load()
    except APIError:
        raise
    except Image.DecompressionBombError:  # past twice Pillow's limit: refused by the header
        raise bad_request(
            f"{where}: the image has more pixels than this server's limit of {cfg.max_image_pixels} pixels",
            "messages",
            "image_too_large",
        ) from None
    except Image.UnidentifiedImageError:
        raise bad_request(
            f"{where}: not an image this server can read (PNG, JPEG, WebP, GIF or BMP)", "messages"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise bad_request(f"{where}: corrupt or truncated image ({e})", "messages") from None
    try:
        return to_rgb_array(im)
    except (TypeError, ValueError, OSError) as e:
        raise bad_request(f"{where}: {e}", "messages") from None
