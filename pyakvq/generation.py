"""Generation helpers: streamed tokens, incremental UTF-8 text, stop strings."""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True)
class Token:
    """One generated token. `text` is the text it completes (may be "" when a multi-byte
    character spans several tokens; the concatenation of all `text` is the full output)."""

    id: int
    text: str


class StopMatcher:
    """Feeds decoded text and tells how much of it is safe to emit given the stop strings:
    text that could still become the start of a stop string is held back."""

    def __init__(self, stop: list[str]):
        self.stop = [s for s in stop if s]
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def feed(self, piece: str) -> tuple[str, bool]:
        """Adds text; returns (text that may be emitted now, stopped)."""
        self.text += piece
        cut = None
        for s in self.stop:
            i = self.text.find(s, max(0, self.emitted - len(s) + 1))
            if i >= 0 and (cut is None or i < cut):
                cut = i
        if cut is not None:
            out = self.text[self.emitted : cut]
            self.emitted = cut
            self.text = self.text[:cut]
            self.stopped = True
            return out, True
        hold = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.text) - self.emitted), 0, -1):
                if self.text.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        end = len(self.text) - hold
        out = self.text[self.emitted : end]
        self.emitted = end
        return out, False

    def flush(self) -> str:
        out = self.text[self.emitted :]
        self.emitted = len(self.text)
        return out


def normalize_stop(stop) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    out = list(stop)
    for s in out:
        if not isinstance(s, str):
            raise TypeError(f"stop strings must be str, got {type(s).__name__}")
    return out


def utf8_decoder():
    return codecs.getincrementaldecoder("utf-8")(errors="replace")
