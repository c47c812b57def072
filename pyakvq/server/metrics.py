"""Prometheus text exposition (format 0.0.4) of the server's counters and the engine's stats."""

from __future__ import annotations

import math
import threading
from collections import Counter
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    return repr(float(v)) if isinstance(v, float) else str(int(v))


class Metrics:
    """HTTP-level counters (thread-safe): requests by route and status, client disconnects."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._http: Counter[tuple[str, int]] = Counter()
        self.disconnects = 0

    def count(self, route: str, status: int) -> None:
        with self._lock:
            self._http[(route, status)] += 1

    def disconnected(self) -> None:
        with self._lock:
            self.disconnects += 1

    def render(self, stats: dict[str, Any], model_name: str) -> str:
        """The exposition text: the HTTP counters and `stats` (BatchEngine.stats())."""
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP pyakvq_{name} {help_}")
            lines.append(f"# TYPE pyakvq_{name} {kind}")
            for labels, v in samples:
                lines.append(f"pyakvq_{name}{labels} {_num(v)}")

        with self._lock:
            http = sorted(self._http.items())
            disconnects = self.disconnects
        metric(
            "http_requests_total",
            "counter",
            "HTTP requests answered, by route and status code.",
            [(f'{{route="{_label(r)}",status="{s}"}}', n) for (r, s), n in http],
        )
        metric(
            "client_disconnects_total",
            "counter",
            "Requests whose client went away before the end.",
            [("", disconnects)],
        )
        m = f'{{model="{_label(model_name)}"}}'
        g = stats.get
        metric(
            "requests_total", "counter", "Generation requests submitted to the engine.", [(m, g("requests_total", 0))]
        )
        metric("requests_running", "gauge", "Sequences being decoded now.", [(m, g("requests_running", 0))])
        metric("requests_queued", "gauge", "Requests waiting for a free slot.", [(m, g("requests_queued", 0))])
        metric("slots", "gauge", "Sequences the engine decodes together at most.", [(m, g("n_slots", 0))])
        metric("prompt_tokens_total", "counter", "Prompt tokens evaluated.", [(m, g("prompt_tokens_total", 0))])
        metric("generated_tokens_total", "counter", "Tokens generated.", [(m, g("generated_tokens_total", 0))])
        metric("steps_total", "counter", "Batched decoding steps run.", [(m, g("steps_total", 0))])
        metric("kv_bytes", "gauge", "Bytes of KV cache memory held by the engine.", [(m, g("kv_bytes", 0))])
        metric("kv_tokens", "gauge", "Tokens held in the KV caches.", [(m, g("kv_tokens", 0))])
        metric(
            "kv_bytes_per_sequence",
            "gauge",
            "KV cache bytes one sequence of the full context may take (what the memory budget is priced at).",
            [(m, g("kv_bytes_per_sequence", 0))],
        )
        bits = g("kv_bits_per_element")
        metric(
            "kv_bits_per_element",
            "gauge",
            "Mean bits per cached K/V element (NaN while the cache is empty).",
            [(m, float("nan") if bits is None else float(bits))],
        )
        return "\n".join(lines) + "\n"
