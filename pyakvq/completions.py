"""OpenAI-shaped completions: `create_completion` and `create_chat_completion` return the dicts
(and, when streaming, the chunk iterators) that the OpenAI API and llama-cpp-python return.

One implementation serves the Python API (`Model.create_completion`, `Model.create_chat_completion`)
and the HTTP server (pyakvq/server): the sampling arguments are checked into a `Sampling`, the
tokens of each choice come from `Model.generate(stream=True)` or from a `BatchEngine`, and a
`ResultBuilder` turns them into chunks and results.

Shapes (as OpenAI documents them):
- completion: {"id": "cmpl-...", "object": "text_completion", "created", "model",
  "choices": [{"index", "text", "logprobs", "finish_reason"}], "usage"}; a stream yields
  "text_completion" chunks with the text of each token and a last chunk with the finish reason.
- chat: {"id": "chatcmpl-...", "object": "chat.completion", "created", "model",
  "choices": [{"index", "message": {"role": "assistant", "content"}, "logprobs", "finish_reason"}],
  "usage"}; a stream yields "chat.completion.chunk"s: the role first, then content deltas, then an
  empty delta with the finish reason.
- usage: {"prompt_tokens", "completion_tokens", "total_tokens"}; the prompt is counted once for
  all `n` choices, completion_tokens sums the generated tokens of every choice.
- finish_reason: the engine's "stop" (a stop string) and "eos" (end of generation) are OpenAI's
  "stop"; "length" (max_tokens) and "context" (the context is full) are "length".
- logprobs (log-softmax of the model's logits): chat: {"content": [{"token", "logprob", "bytes",
  "top_logprobs": [{"token", "logprob", "bytes"}, ...]}]} with `top_logprobs` alternatives per
  token; completions: {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}, ...],
  "text_offset"} where each dict holds the `logprobs` best alternatives and the sampled token and
  text_offset is the character where the token's text starts, counted from the start of the
  prompt whether it is echoed or not (as OpenAI's legacy API; a token that ends inside a UTF-8
  character moves the next offset only when the character is complete).
  As llama-server does, they cover the tokens whose text starts before the end of the returned
  text: the tokens of a stop string that was cut off are left out (usage still counts them). A
  stream sends a token's entry with the chunk whose text reaches it.
- sampling as llama.cpp reads it: top_k 0 or -1 disables top-k; top_p 0 keeps only the most likely
  token (as the engine reads them for every API).
"""

from __future__ import annotations

import codecs
import math
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from . import _validate as _v
from .completion_args import (
    MAX_LOGPROBS,
    Sampling,
    chat_logprobs,
    check_neutral,
    check_prompt_fits,
    check_response_format,
    check_sampling,
    llama_cpp_temperature,
    max_tokens_of,
    template_kwargs,
)

#: the engine's finish reasons -> OpenAI's
FINISH_REASON = {"stop": "stop", "eos": "stop", "length": "length", "context": "length"}


def openai_finish_reason(reason: str | None) -> str | None:
    """The engine's finish reason ("stop", "eos", "length", "context") as OpenAI names it."""
    return None if reason is None else FINISH_REASON.get(reason, reason)


# ---------------------------------------------------------------------------------------------
# arguments


def _num(x: float) -> float:
    """A log probability as JSON can carry it (-inf -> a very small finite number)."""
    x = float(x)
    return x if math.isfinite(x) else -9999.0


class _Choice:
    __slots__ = (
        "text",
        "n_tokens",
        "n_bytes",
        "finish_reason",
        "lp_content",
        "lp_tokens",
        "lp_values",
        "lp_top",
        "lp_offset",
        "lp_pending",
        "lp_bytes",
        "lp_chars",
        "lp_decoder",
    )

    def __init__(self, text_offset: int = 0) -> None:
        self.text: list[str] = []
        self.n_tokens = 0
        self.n_bytes = 0  # UTF-8 bytes of the text so far
        self.finish_reason: str | None = None
        # the logprobs given out: tokens whose piece starts before the end of the text so far
        self.lp_content: list[dict[str, Any]] = []  # chat
        self.lp_tokens: list[str] = []  # completions
        self.lp_values: list[float] = []
        self.lp_top: list[dict[str, float] | None] = []
        self.lp_offset: list[int] = []
        # the tokens' records waiting for the text to reach them: (start byte of the piece, record)
        self.lp_pending: list[tuple[int, Any]] = []
        self.lp_bytes = 0  # UTF-8 bytes of the recorded tokens' pieces
        self.lp_chars = text_offset  # text_offset of the next token (completions)
        # the recorded pieces decoded as the text is (a token inside a character does not move the offset)
        self.lp_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")


class ResultBuilder:
    """Turns the Tokens of `n` choices into OpenAI chunks (streaming) or one result.

    kind: "chat" or "text". piece(id) -> the bytes of a token (for logprobs). logprobs: K or
    None (see Sampling). text_offset: where the completion starts in the legacy text_offset
    (the length of the prompt's text, echoed or not)."""

    def __init__(
        self,
        kind: str,
        model_name: str,
        n: int,
        piece: Callable[[int], bytes],
        logprobs: int | None = None,
        include_usage: bool = False,
        text_offset: int = 0,
    ):
        if kind not in ("chat", "text"):
            raise ValueError(f"kind must be 'chat' or 'text', got {kind!r}")
        self.kind = kind
        self.model = model_name
        self.id = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.logprobs = logprobs
        self.include_usage = include_usage
        self._piece = piece
        self._pieces: dict[int, tuple[str, bytes]] = {}
        self.choices = [_Choice(text_offset) for _ in range(n)]

    # ---- pieces ----
    def _tok(self, tid: int) -> tuple[str, bytes]:
        p = self._pieces.get(tid)
        if p is None:
            b = bytes(self._piece(tid))
            p = (b.decode("utf-8", errors="replace"), b)
            self._pieces[tid] = p
        return p

    def _lp_record(self, ch: _Choice, tok: Any) -> None:
        """Records the logprobs of `tok` in `ch` (pending until the text reaches the token)."""
        lp = getattr(tok, "logprob", None)
        if lp is None:
            raise RuntimeError(
                "the engine returned no log probabilities although they were asked for (logprobs needs "
                "an engine that computes them)"
            )
        top = getattr(tok, "top_logprobs", None) or ()
        text, raw = self._tok(tok.id)
        if self.kind == "chat":
            record: Any = {
                "token": text,
                "logprob": _num(lp),
                "bytes": list(raw),
                "top_logprobs": [
                    {"token": self._tok(t)[0], "logprob": _num(v), "bytes": list(self._tok(t)[1])}
                    for t, v in top[: self.logprobs]
                ],
            }
        else:
            alts: dict[str, float] = {}
            for t, v in top[: self.logprobs]:
                alts.setdefault(self._tok(t)[0], _num(v))
            alts.setdefault(text, _num(lp))  # the sampled token is always there (OpenAI: up to logprobs + 1)
            record = (ch.lp_chars, text, _num(lp), alts)
            ch.lp_chars += len(ch.lp_decoder.decode(raw))  # characters the token completes in the text
        ch.lp_pending.append((ch.lp_bytes, record))
        ch.lp_bytes += len(raw)

    def _lp_release(self, ch: _Choice) -> None:
        """Gives out the pending records of the tokens whose piece starts before the end of the
        text so far (the others may be cut with a stop string)."""
        k = 0
        while k < len(ch.lp_pending) and ch.lp_pending[k][0] < ch.n_bytes:
            record = ch.lp_pending[k][1]
            if self.kind == "chat":
                ch.lp_content.append(record)
            else:
                offset, text, value, alts = record
                ch.lp_offset.append(offset)
                ch.lp_tokens.append(text)
                ch.lp_values.append(value)
                ch.lp_top.append(alts)
            k += 1
        del ch.lp_pending[:k]

    def _text_logprobs(self, ch: _Choice, start: int) -> dict[str, Any] | None:
        if self.logprobs is None:
            return None
        return {
            "tokens": ch.lp_tokens[start:],
            "token_logprobs": ch.lp_values[start:],
            "top_logprobs": ch.lp_top[start:],
            "text_offset": ch.lp_offset[start:],
        }

    # ---- streaming ----
    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            d["usage"] = None
        return d

    def start_chunk(self, index: int) -> dict[str, Any] | None:
        """The first chunk of choice `index` (chat: the assistant's role; text: none)."""
        if self.kind != "chat":
            return None
        return self._chunk(
            [{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]
        )

    def text_chunk(self, index: int, text: str) -> dict[str, Any]:
        """A text completion chunk carrying `text` (an echoed prompt, with its tokens' logprobs
        when asked for) for choice `index`; sent before the choice's first token."""
        lp = self._text_logprobs(self.choices[index], 0)
        return self._chunk([{"index": index, "text": text, "logprobs": lp, "finish_reason": None}])

    def echo_logprobs(self, tokens: Sequence[int], lp: np.ndarray, top_ids: np.ndarray, top_lp: np.ndarray) -> None:
        """Puts the echoed prompt's tokens first in every choice's legacy logprobs: `tokens` with
        their log probabilities lp (NaN: none, OpenAI's null for the first token) and the
        `logprobs` best alternatives at each (Model._prompt_logprobs). Their text_offset counts
        from 0 and reaches the completion's start (the echoed text's length)."""
        dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        offsets, texts, chars = [], [], 0
        for t in tokens:
            text, raw = self._tok(int(t))
            offsets.append(chars)
            texts.append(text)
            chars += len(dec.decode(raw))
        end = self.choices[0].lp_chars  # the echoed text's length
        shift = max(0, chars - end)  # the detokenizer drops a leading space the pieces carry
        offsets = [max(0, o - shift) for o in offsets]
        values: list[float | None] = [None if math.isnan(v) else _num(v) for v in lp]
        tops: list[dict[str, float] | None] = []
        for j, text in enumerate(texts):
            if values[j] is None:
                tops.append(None)
                continue
            alts: dict[str, float] = {}
            for t, v in zip(top_ids[j][: self.logprobs], top_lp[j][: self.logprobs], strict=True):
                alts.setdefault(self._tok(int(t))[0], _num(v))
            alts.setdefault(text, values[j])
            tops.append(alts)
        for ch in self.choices:
            ch.lp_offset[:0], ch.lp_tokens[:0] = offsets, list(texts)
            ch.lp_values[:0], ch.lp_top[:0] = list(values), [None if a is None else dict(a) for a in tops]

    def add(self, index: int, tok: Any) -> dict[str, Any] | None:
        """Records one Token of choice `index`; returns its chunk (None when it carries nothing:
        no text and no logprobs)."""
        ch = self.choices[index]
        ch.text.append(tok.text)
        ch.n_tokens += 1
        ch.n_bytes += len(tok.text.encode("utf-8", errors="replace"))
        start = len(ch.lp_content) if self.kind == "chat" else len(ch.lp_tokens)
        if self.logprobs is not None:
            self._lp_record(ch, tok)
            self._lp_release(ch)
        if self.kind == "chat":
            entries = ch.lp_content[start:]
            if not tok.text and not entries:
                return None
            return self._chunk(
                [
                    {
                        "index": index,
                        "delta": {"content": tok.text},
                        "logprobs": None if self.logprobs is None else {"content": entries, "refusal": None},
                        "finish_reason": None,
                    }
                ]
            )
        if not tok.text and len(ch.lp_tokens) == start:
            return None
        return self._chunk(
            [{"index": index, "text": tok.text, "logprobs": self._text_logprobs(ch, start), "finish_reason": None}]
        )

    def finish(self, index: int, reason: str | None) -> dict[str, Any]:
        """Ends choice `index` with the engine's finish reason; returns its last chunk."""
        ch = self.choices[index]
        ch.finish_reason = openai_finish_reason(reason) or "stop"
        if self.kind == "chat":
            c = {"index": index, "delta": {}, "logprobs": None, "finish_reason": ch.finish_reason}
        else:
            c = {"index": index, "text": "", "logprobs": None, "finish_reason": ch.finish_reason}
        return self._chunk([c])

    def usage(self, n_prompt: int) -> dict[str, int]:
        n_gen = sum(c.n_tokens for c in self.choices)
        return {"prompt_tokens": n_prompt, "completion_tokens": n_gen, "total_tokens": n_prompt + n_gen}

    def usage_chunk(self, n_prompt: int) -> dict[str, Any]:
        """The last chunk when the client asked for stream_options.include_usage: no choices."""
        d = self._chunk([])
        d["usage"] = self.usage(n_prompt)
        return d

    # ---- whole result ----
    def result(self, n_prompt: int, prefix: str = "") -> dict[str, Any]:
        """The completion (every choice finished); prefix: an echoed prompt (text completions)."""
        choices = []
        for i, ch in enumerate(self.choices):
            text = "".join(ch.text)
            if self.kind == "chat":
                lp = None if self.logprobs is None else {"content": ch.lp_content, "refusal": None}
                choices.append(
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": lp,
                        "finish_reason": ch.finish_reason,
                    }
                )
            else:
                choices.append(
                    {
                        "index": i,
                        "text": prefix + text,
                        "logprobs": self._text_logprobs(ch, 0),
                        "finish_reason": ch.finish_reason,
                    }
                )
        return {
            "id": self.id,
            "object": "chat.completion" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(n_prompt),
        }


# ---------------------------------------------------------------------------------------------
# generation


def default_model_name(llm: Any) -> str:
    """The name results carry when none is given: the model file's path."""
    try:
        return str(llm.info["path"])
    except Exception:  # noqa: BLE001 - a name only
        return "pyakvq"


def _piece_fn(llm: Any) -> Callable[[int], bytes]:
    return lambda tid: llm._model.piece(int(tid), True)


class Source:
    """The tokens of one choice: `open()` returns an iterator of Token (once), `cancel()` ends it
    (frees an engine slot; harmless when it has ended or was never opened)."""

    def __init__(self, start: Callable[[], Any] | None = None, stream: Any = None):
        self._start = start
        self.stream = stream

    def open(self) -> Any:
        if self.stream is None:
            self.stream = self._start()
        return self.stream

    def cancel(self) -> None:
        st = self.stream
        if st is None:
            self._start = None
            return
        f = getattr(st, "cancel", None) or getattr(st, "close", None)
        if f is not None:
            f()


def open_sources(llm: Any, engine: Any, inp: Any, s: Sampling) -> list[Source]:
    """One Source per choice. With an engine every choice is submitted now (they decode together;
    QueueFull/ValueError/TypeError are raised here, after cancelling what was submitted); with a
    Model each generation starts when its Source is opened (a Model runs one generation at a time)."""
    n_prompt = len(inp)
    n_ctx = llm.n_ctx if engine is None else engine.n_ctx  # an engine's sequences have its own context
    check_prompt_fits(n_prompt, n_ctx)
    kws = [s.generate_kwargs(i, n_prompt, n_ctx, llm.seed) for i in range(s.n)]
    if engine is None:
        return [Source(start=lambda kw=kw: llm.generate(inp, stream=True, **kw)) for kw in kws]
    sources: list[Source] = []
    try:
        for kw in kws:
            sources.append(Source(stream=engine.submit(inp, **kw)))
    except BaseException:
        for src in sources:
            src.cancel()
        raise
    return sources


def _finish_reason(it: Any, last: Any) -> str | None:
    return getattr(it, "finish_reason", None) or getattr(last, "finish_reason", None)


def _run(
    builder: ResultBuilder, sources: list[Source], n_prompt: int, stream: bool, prefix: str = ""
) -> dict[str, Any] | Iterator[dict[str, Any]]:
    if stream:
        return _chunks(builder, sources, n_prompt, prefix)
    try:
        for i, src in enumerate(sources):
            it = src.open()
            last = None
            for tok in it:
                builder.add(i, tok)
                last = tok
            builder.finish(i, _finish_reason(it, last))
    finally:
        for src in sources:
            src.cancel()
    return builder.result(n_prompt, prefix)


def _check_engine(llm: Any, engine: Any) -> None:
    """TypeError unless `engine` is a BatchEngine, ValueError unless it runs `llm`'s weights (another
    Model's engine would run these token ids through its own weights and vocabulary)."""
    from .batch import BatchEngine  # noqa: PLC0415 - batch imports this module's neighbours

    if not isinstance(engine, BatchEngine):
        raise TypeError(f"engine must be a pyakvq.batch.BatchEngine or None, got {type(engine).__name__}")
    if engine._model is not llm:
        raise ValueError("engine was built on another Model: give the BatchEngine made over this Model")


def _run_on(
    llm: Any, engine: Any, builder: ResultBuilder, inp: Any, s: Sampling, stream: bool, prefix: str = ""
) -> dict[str, Any] | Iterator[dict[str, Any]]:
    """Opens the choices' sources and runs them (_run). A call that returns its whole result from
    the Model's own session holds the Model for all of it, as Model.generate does: a call from
    another thread waits for it instead of ending its generation."""
    if engine is not None:
        _check_engine(llm, engine)
    if stream or engine is not None:
        return _run(builder, open_sources(llm, engine, inp, s), len(inp), stream, prefix)
    with llm._lock:  # re-entrant: the generations take it per step
        return _run(builder, open_sources(llm, engine, inp, s), len(inp), stream, prefix)


def _chunks(builder: ResultBuilder, sources: list[Source], n_prompt: int, prefix: str) -> Iterator[dict[str, Any]]:
    try:
        for i, src in enumerate(sources):
            it = src.open()
            first = builder.start_chunk(i)
            if first is not None:
                yield first
            if prefix:
                yield builder.text_chunk(i, prefix)
            last = None
            for tok in it:
                last = tok
                c = builder.add(i, tok)
                if c is not None:
                    yield c
            yield builder.finish(i, _finish_reason(it, last))
        if builder.include_usage:
            yield builder.usage_chunk(n_prompt)
    finally:  # an abandoned iterator frees the engine's slots
        for src in sources:
            src.cancel()


def _unbounded_if_nonpositive(max_tokens: Any) -> Any:
    """llama-cpp-python's max_tokens: None or an integer <= 0 means up to the end of the context."""
    if isinstance(max_tokens, (int, np.integer)) and not isinstance(max_tokens, (bool, np.bool_)) and max_tokens <= 0:
        return None
    return max_tokens


def create_completion(
    llm: Any,
    prompt: str | Sequence[int],
    /,
    *,
    engine: Any = None,
    model: str | None = None,
    images: Sequence[Any] | None = None,
    max_tokens: int | None = 16,
    temperature: float = 0.8,
    top_p: float = 0.95,
    top_k: int = 40,
    min_p: float = 0.05,
    repeat_penalty: float = 1.0,
    repeat_last_n: int = 64,
    seed: int | None = None,
    stop: str | Sequence[str] | None = None,
    stream: bool = False,
    n: int = 1,
    logprobs: int | None = None,
    echo: bool = False,
    suffix: str | None = None,
    stream_options: Mapping[str, Any] | None = None,
    presence_penalty: float = 0.0,
    frequency_penalty: float = 0.0,
    mirostat_mode: int = 0,
    mirostat_tau: float = 5.0,
    mirostat_eta: float = 0.1,
    typical_p: float = 1.0,
    tfs_z: float = 1.0,
    stopping_criteria: Any = None,
    logits_processor: Any = None,
    grammar: Any = None,
    logit_bias: Mapping[int, float] | None = None,
) -> dict[str, Any] | Iterator[dict[str, Any]]:
    """An OpenAI text completion of `prompt` (text, tokenized as Model.generate does, or token
    ids) by the Model `llm`, in llama-cpp-python's shape (see the module docstring).

    engine: a pyakvq.batch.BatchEngine over `llm` (generation then goes through it; choices run
    together); None: `llm.generate`. model: the name results carry (default: the model's path).
    images: one image per image marker of the prompt (as Model.generate takes them).
    max_tokens None or <= 0 (llama-cpp-python's reading): up to the end of the context. n: choices
    (seeded choice i uses seed + i).
    logprobs: K in [0, 20], the sampled token's log probability and the K best alternatives.
    echo: the prompt text is put before the completion; with logprobs, the prompt's tokens come
    first in them, each scored given the tokens before it (the first: null; a BOS added by
    tokenizing a string is not listed), as OpenAI's legacy API and lm-eval's loglikelihood
    requests read them (text prompts only). stream: an iterator of chunks instead;
    stream_options={"include_usage": True} ends it with a usage chunk.
    temperature 0: greedy; top_k 0 or -1: no top-k; top_p 0: only the most likely token; min_p 0
    and repeat_penalty 1: off. seed None: the Model's seed (-1: random).
    temperature < 0 (llama-cpp-python's reading): a draw from the whole softmax at temperature 1
    (no top-k, top-p or min-p).
    presence_penalty, frequency_penalty, mirostat_mode (with mirostat_tau, mirostat_eta), typical_p,
    tfs_z, stopping_criteria, logits_processor, grammar, logit_bias: llama-cpp-python's keywords,
    accepted when they ask for nothing (0, 1.0, None, {}); other values raise ValueError.
    Bad arguments raise TypeError/ValueError (before anything is generated)."""
    check_neutral(
        presence_penalty=presence_penalty,
        frequency_penalty=frequency_penalty,
        mirostat_mode=mirostat_mode,
        mirostat_tau=mirostat_tau,
        mirostat_eta=mirostat_eta,
        typical_p=typical_p,
        tfs_z=tfs_z,
        stopping_criteria=stopping_criteria,
        logits_processor=logits_processor,
        grammar=grammar,
        logit_bias=logit_bias,
    )
    stream = _v.check_bool("stream", stream)
    echo = _v.check_bool("echo", echo)
    if suffix is not None:
        raise ValueError("suffix is not supported (no fill-in-the-middle)")
    temperature, top_k, top_p, min_p = llama_cpp_temperature(temperature, top_k, top_p, min_p)
    s = check_sampling(
        max_tokens=_unbounded_if_nonpositive(max_tokens),
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repeat_penalty=repeat_penalty,
        repeat_last_n=repeat_last_n,
        seed=seed,
        stop=stop,
        logprobs=logprobs,
        n=n,
    )
    include_usage = _include_usage(stream_options, stream)
    inp = llm._generate_input(prompt, images)
    text = prompt_text(llm, prompt)
    prefix = text if echo else ""
    builder = ResultBuilder(
        "text",
        model if model is not None else default_model_name(llm),
        s.n,
        _piece_fn(llm),
        s.logprobs,
        include_usage,
        text_offset=len(text),
    )
    if echo and s.logprobs is not None:
        check_prompt_fits(len(inp), llm.n_ctx)
        builder.echo_logprobs(*echo_logprobs(llm, prompt, inp, s.logprobs))
    return _run_on(llm, engine, builder, inp, s, stream, prefix)


def echo_logprobs(llm: Any, prompt: Any, inp: Any, k: int) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """The prompt's tokens and their log probabilities, each given the tokens before it with the
    Model's KV cache mode (Model._prompt_logprobs), for ResultBuilder.echo_logprobs: OpenAI's
    echo with logprobs. A BOS that tokenizing a string prompt added is not listed (it is not in
    the echoed text); the first listed token then has its probability after BOS. ValueError for
    a prompt with images."""
    if not isinstance(inp, list):
        raise ValueError("echo with logprobs needs a text prompt (the log probabilities of image rows are not tokens')")
    lp, top_ids, top_lp = llm._prompt_logprobs(inp, k)
    # tokenizing a string adds BOS whatever the text holds (a BOS spelled in it comes second)
    first = 1 if isinstance(prompt, str) and inp and llm.info.get("add_bos") and inp[0] == llm.info.get("bos") else 0
    return inp[first:], lp[first:], top_ids[first:], top_lp[first:]


def prompt_text(llm: Any, prompt: str | Sequence[int]) -> str:
    """The text of a completion's prompt (a string, or token ids rendered with their special
    tokens, as the string that tokenizes to them would read): what `echo` puts before the
    completion, and where the completion's `text_offset`s start (OpenAI's legacy API counts them
    from the start of the prompt, echoed or not)."""
    return prompt if isinstance(prompt, str) else llm.detokenize(list(prompt), render_special=True)


def _include_usage(stream_options: Any, stream: bool) -> bool:
    if stream_options is None:
        return False
    if not isinstance(stream_options, Mapping):
        raise TypeError(f"stream_options must be an object, got {type(stream_options).__name__}")
    if not stream:
        raise ValueError("stream_options is only allowed with stream=true")
    unknown = set(stream_options) - {"include_usage"}
    if unknown:
        raise ValueError(f"stream_options: unknown field {sorted(unknown)[0]!r} (supported: include_usage)")
    v = stream_options.get("include_usage", False)
    return _v.check_bool("stream_options.include_usage", v)


def create_chat_completion(
    llm: Any,
    messages: Sequence[Mapping[str, Any]],
    /,
    *,
    engine: Any = None,
    model: str | None = None,
    max_tokens: int | None = None,
    max_completion_tokens: int | None = None,
    temperature: float = 0.2,
    top_p: float = 0.95,
    top_k: int = 40,
    min_p: float = 0.05,
    repeat_penalty: float = 1.0,
    repeat_last_n: int = 64,
    seed: int | None = None,
    stop: str | Sequence[str] | None = None,
    stream: bool = False,
    n: int = 1,
    logprobs: bool | None = None,
    top_logprobs: int | None = None,
    response_format: Mapping[str, Any] | None = None,
    stream_options: Mapping[str, Any] | None = None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
    presence_penalty: float = 0.0,
    frequency_penalty: float = 0.0,
    mirostat_mode: int = 0,
    mirostat_tau: float = 5.0,
    mirostat_eta: float = 0.1,
    typical_p: float = 1.0,
    tfs_z: float = 1.0,
    stopping_criteria: Any = None,
    logits_processor: Any = None,
    grammar: Any = None,
    logit_bias: Mapping[int, float] | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: Any = None,
    functions: Sequence[Mapping[str, Any]] | None = None,
    function_call: Any = None,
) -> dict[str, Any] | Iterator[dict[str, Any]]:
    """An OpenAI chat completion by the Model `llm`: `messages` rendered with the model's chat
    template as Model.chat does (image parts, OpenAI image_url parts with data URLs or local paths
    included), in llama-cpp-python's shape (see the module docstring).

    engine, model, n, seed, stop, stream, stream_options: as create_completion.
    max_tokens / max_completion_tokens: at most this many tokens (None or <= 0: up to the end of
    the context). logprobs=True: the sampled tokens' log probabilities, with top_logprobs (0..20)
    alternatives each. response_format: only {"type": "text"} (anything else: ValueError).
    chat_template_kwargs: template variables (e.g. {"enable_thinking": False}); chat()'s own
    argument names (template, tools, images, ...) and names starting with '_' raise ValueError.
    temperature, top_p, top_k, min_p, repeat_penalty, repeat_last_n: as create_completion.
    presence_penalty, frequency_penalty, mirostat_mode, grammar, logit_bias, tools, tool_choice,
    functions, function_call: llama-cpp-python's keywords, accepted when they ask for nothing (0,
    None, {}, [], "none"); other values raise ValueError naming the argument (no tool calling).
    Bad arguments raise TypeError/ValueError (before anything is generated)."""
    check_neutral(
        presence_penalty=presence_penalty,
        frequency_penalty=frequency_penalty,
        mirostat_mode=mirostat_mode,
        mirostat_tau=mirostat_tau,
        mirostat_eta=mirostat_eta,
        typical_p=typical_p,
        tfs_z=tfs_z,
        stopping_criteria=stopping_criteria,
        logits_processor=logits_processor,
        grammar=grammar,
        logit_bias=logit_bias,
        tools=tools,
        tool_choice=tool_choice,
        functions=functions,
        function_call=function_call,
    )
    stream = _v.check_bool("stream", stream)
    check_response_format(response_format)
    temperature, top_k, top_p, min_p = llama_cpp_temperature(temperature, top_k, top_p, min_p)
    s = check_sampling(
        max_tokens=_unbounded_if_nonpositive(max_tokens_of(max_tokens, max_completion_tokens)),
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repeat_penalty=repeat_penalty,
        repeat_last_n=repeat_last_n,
        seed=seed,
        stop=stop,
        logprobs=chat_logprobs(logprobs, top_logprobs),
        n=n,
    )
    include_usage = _include_usage(stream_options, stream)
    chat_template_kwargs = template_kwargs(chat_template_kwargs)
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of messages, got {type(messages).__name__}")
    inp = llm._chat_input(list(messages), **chat_template_kwargs)
    builder = ResultBuilder(
        "chat", model if model is not None else default_model_name(llm), s.n, _piece_fn(llm), s.logprobs, include_usage
    )
    return _run_on(llm, engine, builder, inp, s, stream)


__all__ = [
    "FINISH_REASON",
    "MAX_LOGPROBS",
    "ResultBuilder",
    "Sampling",
    "check_sampling",
    "create_chat_completion",
    "create_completion",
    "openai_finish_reason",
]
