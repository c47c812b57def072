"""pyakvq.Model: load a GGUF model, tokenize, evaluate, generate and chat."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from . import chat as _chat
from ._ext import _akvq
from .generation import StopMatcher, Token, normalize_stop, utf8_decoder


def _check_int(name: str, value, lo: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if lo is not None and value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    return int(value)


def _kv_options(opts: dict[str, Any] | None) -> dict[str, str]:
    """kv_options as the engine takes them: option name -> text ("tsa_layers": [0, 1] -> "0,1")."""
    if opts is None:
        return {}
    if not isinstance(opts, dict):
        raise TypeError(f"kv_options must be a dict, got {type(opts).__name__}")
    out = {}
    for k, v in opts.items():
        if not isinstance(k, str):
            raise TypeError(f"kv_options keys must be str, got {k!r}")
        if isinstance(v, bool):
            raise ValueError(f"kv option {k!r}: expected a number, list or string, got {v!r}")
        if isinstance(v, (list, tuple, set)):
            v = ",".join(str(int(x)) for x in v) if v else "none"
        out[k] = str(v)
    return out


class Model:
    """A language model loaded from a GGUF file, with its own KV cache.

    >>> m = Model("model.gguf", n_ctx=4096)
    >>> m.generate("The capital of France is", max_tokens=8, temperature=0)

    One Model is used by one thread at a time (calls are serialised by a lock); compute releases
    the GIL, so several Models can run in parallel threads.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        kv: str = "f16",
        seed: int = 0,
        n_batch: int = 256,
        kv_options: dict[str, Any] | None = None,
    ):
        n_ctx = _check_int("n_ctx", n_ctx, 1)
        if n_threads is None:
            n_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        n_threads = _check_int("n_threads", n_threads, 1)
        n_batch = _check_int("n_batch", n_batch, 1)
        self.seed = _check_int("seed", seed, 0)
        if not isinstance(kv, str):
            raise TypeError(f"kv must be a str, got {type(kv).__name__}")
        path = os.fspath(path)
        self._lock = threading.Lock()
        self._model = _akvq.Model.load(path)
        self._session = _akvq.Session(
            self._model, n_ctx=n_ctx, n_threads=n_threads, kv=kv, n_batch=n_batch, kv_options=_kv_options(kv_options)
        )
        self._kv = kv

    # ---- lifetime ----
    def close(self) -> None:
        """Frees the KV cache and unmaps the file. The Model is unusable afterwards."""
        with self._lock:
            self._session = None
            self._model = None

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _sess(self):
        if self._session is None:
            raise RuntimeError("this Model is closed")
        return self._session

    # ---- facts ----
    @property
    def info(self) -> dict[str, Any]:
        """Hyperparameters and file facts, plus the session's n_ctx, n_threads and kv mode."""
        s = self._sess()
        d = dict(self._model.info)
        d.update(n_ctx=s.n_ctx, n_threads=s.n_threads, kv=self._kv)
        return d

    @property
    def n_ctx(self) -> int:
        return self._sess().n_ctx

    @property
    def n_vocab(self) -> int:
        return self._model.info["n_vocab"]

    def kv_stats(self) -> dict[str, Any]:
        """The KV cache's accounting: mode, resolved options, tokens, bytes and bits per element,
        and per layer the precision classes (name, tokens, bytes) and pivot positions."""
        return self._sess().kv_summary()

    # ---- tokens ----
    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        self._sess()
        return self._model.tokenize(text, add_special, parse_special)

    def detokenize(self, ids: Sequence[int], render_special: bool = False) -> str:
        self._sess()
        return self._model.detokenize_bytes(self._ids(ids, allow_empty=True), render_special).decode(
            "utf-8", errors="replace"
        )

    def _ids(self, ids, allow_empty: bool = False) -> list[int]:
        if isinstance(ids, np.ndarray):
            ids = ids.tolist()
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
            raise TypeError("token ids must be a sequence of ints")
        out = []
        n_vocab = self.n_vocab
        for i, t in enumerate(ids):
            if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
                raise TypeError(f"token {i} is a {type(t).__name__}, not an int")
            if not 0 <= t < n_vocab:
                raise ValueError(f"token {i} has id {t}, outside the vocabulary [0, {n_vocab})")
            out.append(int(t))
        if not out and not allow_empty:
            raise ValueError("no tokens to evaluate (empty prompt)")
        return out

    def _prompt_ids(self, prompt) -> list[int]:
        if isinstance(prompt, str):
            return self._ids(self.tokenize(prompt, add_special=True))
        return self._ids(prompt)

    # ---- evaluation ----
    def eval(self, prompt: str | Sequence[int]) -> np.ndarray:
        """Logits [n_vocab] of the last position of `prompt` (text or ids), from an empty cache."""
        ids = self._prompt_ids(prompt)
        with self._lock:
            s = self._sess()
            s.reset()
            return s.eval(ids)

    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """Logits [n_tokens, n_vocab] of every position of `token_ids`, from an empty cache."""
        ids = self._ids(token_ids)
        with self._lock:
            s = self._sess()
            s.reset()
            return s.eval_all(ids)

    # ---- generation ----
    def generate(
        self,
        prompt: str | Sequence[int],
        max_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.0,
        repeat_penalty: float = 1.0,
        repeat_last_n: int = 64,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
    ) -> str | Iterator[Token]:
        """Continues `prompt` (text, tokenized with BOS as the model says, or token ids).

        Stops after max_tokens, at an end-of-generation token (not included), at a stop string
        (not included) or when the context is full. Returns the text, or with stream=True an
        iterator of Token(id, text)."""
        it = self._generate(
            self._prompt_ids(prompt),
            max_tokens,
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            repeat_last_n,
            seed,
            stop,
        )
        if stream:
            return it
        return "".join(t.text for t in it)

    def generate_ids(self, prompt: str | Sequence[int], max_tokens: int = 128, **kw) -> list[int]:
        """Like generate() but returns the generated token ids (stop strings are not applied)."""
        kw.pop("stream", None)
        if kw.get("stop"):
            raise ValueError("generate_ids() does not apply stop strings")
        return [t.id for t in self.generate(prompt, max_tokens=max_tokens, stream=True, **kw)]

    def chat(
        self,
        messages_or_prompt: str | Sequence[dict[str, Any]],
        template: str | None = None,
        **gen,
    ) -> str | Iterator[Token]:
        """Renders the conversation with the model's chat template (or `template`; ChatML when the
        file has none) and generates the assistant's reply. Keyword arguments as generate()."""
        messages = _chat.normalize_messages(messages_or_prompt)
        text = self.render_chat(messages, template=template)
        ids = self.tokenize(text, add_special=not self._starts_with_bos(text))
        return self.generate(ids, **gen)

    def render_chat(self, messages, template: str | None = None, add_generation_prompt: bool = True) -> str:
        info = self._model.info
        tmpl = template or info["chat_template"] or _chat.CHATML_TEMPLATE
        bos = self._piece(info["bos"])
        eos = self._piece(info["eos"])
        return _chat.render(
            tmpl,
            _chat.normalize_messages(messages),
            bos_token=bos,
            eos_token=eos,
            add_generation_prompt=add_generation_prompt,
        )

    def _piece(self, tid: int) -> str:
        if tid < 0:
            return ""
        return self._model.piece(tid, True).decode("utf-8", errors="replace")

    def _starts_with_bos(self, text: str) -> bool:
        bos = self._piece(self._model.info["bos"])
        return bool(bos) and text.startswith(bos)

    def _generate(
        self, ids, max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed, stop
    ) -> Iterator[Token]:
        max_tokens = _check_int("max_tokens", max_tokens, 0)
        stops = normalize_stop(stop)
        sampler = _akvq.Sampler(
            temperature=float(temperature),
            top_k=_check_int("top_k", top_k, 0),
            top_p=float(top_p),
            min_p=float(min_p),
            repeat_penalty=float(repeat_penalty),
            repeat_last_n=_check_int("repeat_last_n", repeat_last_n, 0),
            seed=self.seed if seed is None else _check_int("seed", seed, 0),
        )
        n_ctx = self.n_ctx
        if len(ids) > n_ctx:
            raise ValueError(f"prompt has {len(ids)} tokens, more than the context size n_ctx={n_ctx}")

        def run() -> Iterator[Token]:
            with self._lock:
                s = self._sess()
                logits = self._eval_prompt(s, ids)
                history = list(ids)
                dec = utf8_decoder()
                matcher = StopMatcher(stops)
                # One-token lag: text held back (a possible stop-string start, a split UTF-8
                # character) is released with a later token or with the last one.
                pending: Token | None = None
                for _ in range(max_tokens):
                    tok = sampler.sample(logits, history)
                    if self._model.is_eog(tok):
                        break
                    history.append(tok)
                    text, stopped = matcher.feed(dec.decode(self._model.piece(tok)))
                    if pending is not None:
                        yield pending
                    pending = Token(tok, text)
                    if stopped or s.n_past >= n_ctx:
                        break
                    logits = s.eval([tok], "generated")
                if pending is not None:
                    if not matcher.stopped:
                        tail = matcher.feed(dec.decode(b"", final=True))[0] + matcher.flush()
                        pending = Token(pending.id, pending.text + tail)
                    yield pending

        return run()

    @staticmethod
    def _eval_prompt(s, ids: list[int]) -> np.ndarray:
        """Evaluates ids, reusing the longest common prefix already in the cache."""
        cached = s.tokens
        n = 0
        limit = min(len(cached), len(ids) - 1)  # always evaluate at least one token
        while n < limit and cached[n] == ids[n]:
            n += 1
        s.truncate(n)
        return s.eval(ids[n:])
