"""pyakvq's OpenAI-compatible HTTP server (`pyakvq serve`; needs the `server` extra:
pip install 'pyakvq[server]').

`create_app(model, engine, ServerConfig(...))` builds the ASGI app over a pyakvq.batch.BatchEngine;
`pyakvq.server.cli` is the command line. Importing this package does not import FastAPI."""

from __future__ import annotations

from typing import Any

from .config import ServerConfig, parse_bytes


def create_app(model: Any, engine: Any, config: ServerConfig | None = None) -> Any:
    """The FastAPI app serving `model` through `engine` (see pyakvq.server.app)."""
    from .app import create_app as _create  # noqa: PLC0415

    return _create(model, engine, config)


__all__ = ["ServerConfig", "create_app", "parse_bytes"]
