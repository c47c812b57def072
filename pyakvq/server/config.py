"""The server's settings (limits, access) and byte-size parsing for the command line."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: seconds that generations still running when the server begins to stop get to end by themselves
#: before they are ended with a 503 (cli.uvicorn_options gives uvicorn 2 s more, so that every
#: answer is sent before it cancels what remains)
STOP_GRACE_S = 3.0

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str) -> int:
    """A byte count: "1048576", "512K", "512M", "2G", "1.5G", "1T" (binary units: K = 1024;
    "KB", "KiB", "MB", "MiB", ... mean the same). ValueError for anything else or a count < 1."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text)
    if not m:
        raise ValueError(f"expected a byte count like 1073741824, 512M or 2G, got {text!r}")
    value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if value < 1:
        raise ValueError(f"expected a positive byte count, got {text!r}")
    return int(value)


@dataclass
class ServerConfig:
    """What the HTTP layer enforces. model_name: the id clients name in "model" and /v1/models
    lists. api_key: None: no key; else every route but /health needs `Authorization: Bearer KEY`.
    Limits: request body bytes (data URLs included), pixels per image (checked from the header,
    before decoding), images per request, prompt tokens (None: the context size). Images: data
    URLs always; local paths / file:// URLs only with allow_local_images; http(s) URLs only with
    allow_remote_images (fetched with remote_timeout seconds, at most max_body_bytes). request_timeout:
    seconds a request's head may take from its first bytes, and its body from its first read
    (slower: the connection is closed, after a 408 for the body, so that a client trickling bytes
    cannot hold a connection for ever; `pyakvq serve` passes it to uvicorn_options too; a streaming
    client that reads nothing for as long is dropped and its sequences cancelled). max_queue: the
    engine's max_queue (None: the engine's own `max_queue` attribute, as BatchEngine has): a request
    asking for more choices (n) than the engine's slots plus max_queue can ever hold is refused with
    400, and one arriving while the running, queued and in-preparation requests fill them gets 503
    before its images or prompt are prepared."""

    model_name: str = "pyakvq"
    api_key: str | None = None
    max_body_bytes: int = 32 << 20
    max_image_pixels: int = 4096 * 4096
    max_images: int = 8
    max_prompt_tokens: int | None = None
    allow_local_images: bool = False
    allow_remote_images: bool = False
    remote_timeout: float = 10.0
    request_timeout: float = 60.0
    max_queue: int | None = None
