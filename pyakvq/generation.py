"""Generation results: streamed tokens and the stream itself.

The generation loop (sampling, end-of-generation, UTF-8 assembly, stop strings, context limit)
runs in the engine (`_akvq.Generator`, engine/include/akvq/generate.h); this module only hands
its steps to Python, one engine step per `next()`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: Why a generation ended: a stop string was generated (it is cut from the text), max_tokens
#: were generated, the model produced an end-of-generation token (not part of the output), or
#: the context (n_ctx) is full.
FINISH_REASONS = ("stop", "length", "eos", "context")


@dataclass(frozen=True)
class Token:
    """One generated token.

    `text` is the text this token releases: whole characters only (a character split over
    several tokens comes with the token that completes it, so `text` may be ""; bytes that are
    not UTF-8, and a character the generation's end cuts, are one U+FFFD each, as Python's
    decode(errors="replace") and transformers' decode give them), never a stop string or what
    follows it, and text that could start a stop string comes with a later token.
    The concatenation of all `text` is the full output. `finish_reason` is None except on the
    last token of a generation: "stop", "length", "eos" or "context" (see FINISH_REASONS).

    With `logprobs=K` asked: `logprob` is log p(id) (natural log) under the model's distribution
    (log-softmax of the raw logits, before penalties, temperature and truncation: what the OpenAI
    API reports) and `top_logprobs` the K most likely tokens as (id, logprob) pairs, most likely
    first; both None otherwise."""

    id: int
    text: str
    finish_reason: str | None = None
    logprob: float | None = None
    top_logprobs: tuple[tuple[int, float], ...] | None = None


def token_of(step: tuple) -> Token:
    """A Token from the engine's step tuple (id, text, finish_reason, logprob, top_logprobs)."""
    tid, text, finish, logprob, top = step
    return Token(tid, text, finish, logprob, None if top is None else tuple(tuple(t) for t in top))


class TokenStream(Iterator[Token]):
    """What `Model.generate(..., stream=True)` and `Model.chat(..., stream=True)` return: an
    iterator of Token, computed one token per `next()`.

    The generation starts at the first `next()`. A Model runs one generation at a time: any
    later call on the same Model that uses its KV cache (generate, chat, eval, logits, close,
    leaving `with`) ends a stream in progress, and resuming that stream raises RuntimeError.
    The Model is locked only while a token is computed, never while the stream waits, so an
    abandoned or paused stream never blocks other calls.

    Attributes: `finish_reason` (None until the generation ends, then "stop", "length", "eos" or
    "context"; also set when no token was generated), `n_prompt`, `n_reused` (prompt tokens
    reused from the cache), `n_generated`, `seed` (the seed the sampler used)."""

    def __init__(self, model: Any, generator: Any):
        self._model = model  # pyakvq.Model: _lock, _claim(), _epoch, _ended_message()
        self._gen = generator  # _akvq.Generator, not started
        self._epoch: int | None = None
        self._error: str | None = None  # set when a later call ended this stream
        self._done = False
        self.finish_reason: str | None = None
        self.n_prompt = generator.n_prompt
        self.n_reused = 0
        self.n_generated = 0
        self.seed = generator.seed

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> Token:
        with self._model._lock:
            tok = self._step()
        if tok is None:
            raise StopIteration
        return tok

    def close(self) -> None:
        """Ends the stream (no further tokens); the Model is not affected."""
        self._done = True
        self._gen = None

    def _release(self) -> None:
        """The Model was closed (its lock is held): drop the engine generator, which keeps the
        Model's session alive. The stream then raises the closed-Model error if resumed."""
        self._gen = None

    def _collect(self) -> list[Token]:
        """Runs the whole generation holding the Model's lock (generate() without stream)."""
        out = []
        with self._model._lock:
            while (tok := self._step()) is not None:
                out.append(tok)
        return out

    def _step(self) -> Token | None:
        """One engine step; the Model's lock is held."""
        if self._error is not None:
            raise RuntimeError(self._error)
        if self._done:
            return None
        m = self._model
        if self._epoch is None:
            self._epoch = m._claim()  # ends the stream in progress, if any
        elif m._epoch != self._epoch:
            self._error = m._ended_message()
            self._gen = None
            raise RuntimeError(self._error)
        gen = self._gen
        try:
            step = gen.next()
        except BaseException:
            self.close()
            raise
        self.n_reused = gen.n_reused
        self.n_generated = gen.n_generated
        if step is None:
            self._finish(gen.finish_reason)
            return None
        tok = token_of(step)
        if tok.finish_reason is not None:
            self._finish(tok.finish_reason)
        return tok

    def _finish(self, reason: str | None) -> None:
        self.close()
        self.finish_reason = reason
        if reason is not None:
            self._model.last_finish_reason = reason
