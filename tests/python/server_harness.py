"""Test helper: runs a pyakvq server (uvicorn) in a background thread on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx


def read_metrics(base: str, headers: dict | None = None, timeout: float = 30.0) -> dict[str, float]:
    """GET /metrics as {sample name with labels: value}, and {bare name: value} for the first sample
    of each labelled metric (one model per server: its gauges)."""
    r = httpx.get(base + "/metrics", headers=headers, timeout=timeout)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    out: dict[str, float] = {}
    for line in r.text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
        out.setdefault(name.split("{")[0], float(value))
    return out


class RunningServer:
    """uvicorn serving `app` (from pyakvq.server.create_app) on 127.0.0.1:<free port> in a daemon
    thread, with the settings of `pyakvq serve` (connection limit, keep-alive); `base_url` is
    http://127.0.0.1:PORT. start() waits (at most `timeout` seconds) until GET /health answers."""

    def __init__(self, app: Any, tell_app: bool = True):
        import uvicorn  # noqa: PLC0415

        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        from pyakvq.server.cli import make_server, uvicorn_options  # noqa: PLC0415 - `pyakvq serve`'s settings

        cfg = app.state.config
        options = uvicorn_options(app.state.engine.n_slots, cfg.max_queue or 0, cfg.request_timeout)
        config = uvicorn.Config(app, log_level="warning", lifespan="off", **options)
        # tell_app False: a plain uvicorn.Server, whose stop does not set app.state.stopping (as
        # another ASGI server's): what runs at the end of the grace period is cancelled
        self.server = make_server(config) if tell_app else uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self, timeout: float = 30.0) -> RunningServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread ended during start-up")
            try:
                r = httpx.get(self.base_url + "/health", timeout=2.0)
                if r.status_code == 200:
                    return self
            except httpx.HTTPError as e:
                last = e
            time.sleep(0.05)  # polling interval while waiting for the port to answer
        self.stop()
        raise TimeoutError(f"the server did not answer /health within {timeout} s ({last})")

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()


def wait_for_port(proc: Any, pattern: str, timeout: float = 60.0) -> tuple[int | None, list[str]]:
    """Reads the stderr lines of a `pyakvq serve` child (started with stderr=PIPE, text=True) until
    one matches `pattern` (a regex whose group 1 is the port) or `timeout` seconds pass; returns the
    port (None when none came) and the lines read. A reader thread keeps draining stderr after."""
    import queue  # noqa: PLC0415
    import re  # noqa: PLC0415

    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        m = re.search(pattern, line.strip())
        if m:
            return int(m.group(1)), seen
    return None, seen
