"""pyakvq.Model: load a GGUF model, tokenize, evaluate, generate and chat."""

from __future__ import annotations

import difflib
import inspect
import math
import os
import threading
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from . import _validate as _v
from . import chat as _chat
from . import image as _image
from . import multimodal as _mm
from ._ext import _akvq
from .generation import Token, TokenStream


def _v_messages(messages):
    if not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a prompt string or a list of messages, got {type(messages).__name__}")
    return messages


def _check_int(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    return _v.check_int(name, value, lo, hi)


def _kv_options(opts: dict[str, Any] | None) -> dict[str, str]:
    """kv_options as the engine takes them: option name -> text ("tsa_layers": [0, 1] -> "0,1")."""
    return _v.kv_options(opts)


class _Closed:
    """Stands for the engine's model after close(): any use raises the closed-Model error."""

    def __getattr__(self, name: str):
        raise RuntimeError("this Model is closed")


_CLOSED = _Closed()


_MODELS: weakref.WeakSet[Model] = weakref.WeakSet()  # every open Model, for the fork handler
_FORK_BUSY = (
    "this Model was in use by another thread when the process forked: its KV cache is in an unknown "
    "state in the child process (load the model again there)"
)


def _after_fork_in_child() -> None:
    """os.register_at_fork: a Model whose lock another thread held at the fork would block every
    call in the child for ever (that thread is not copied). It gets a fresh lock, and its KV cache,
    left mid-call, is refused (RuntimeError) instead of used. The engine's thread pools run their
    work on the calling thread in a child (engine/cpu/thread_pool.cpp)."""
    for m in list(_MODELS):
        lock = m.__dict__.get("_lock")
        if lock is None or lock.acquire(blocking=False):
            if lock is not None:
                lock.release()
            continue
        m._lock = threading.RLock()
        m._fork_busy = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Model:
    """A language model loaded from a GGUF file, with its own KV cache.

    >>> m = Model("model.gguf", n_ctx=4096)
    >>> m.generate("The capital of France is", max_tokens=8, temperature=0)

    One Model is used by one thread at a time (calls are serialised by a lock); compute releases
    the GIL, so several Models can run in parallel threads. A Model runs one generation at a time:
    a call that uses the KV cache (generate, chat, eval, logits, close) ends a stream still in
    progress, which then raises RuntimeError if resumed; a paused or abandoned stream never blocks
    other calls.

    `last_finish_reason`: why the most recent generation on this Model ended ("stop", "length",
    "eos" or "context"; None before any), for generate()/chat() returning a str; streams also say
    it on their last Token and in their own `finish_reason`.
    """

    last_finish_reason: str | None = None
    _epoch = 0  # bumped by every call that takes over the KV cache (ends older streams)

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        kv: str = "f16",
        seed: int | None = None,
        n_batch: int = 256,
        kv_options: dict[str, Any] | None = None,
        mmproj: str | os.PathLike | None = None,
        act_bits: int = 16,
        device: str = "cpu",
    ):
        """path: the GGUF file; None (the default): the demo VLM shipped with the package,
        pyakvq.demo_model_path() (the environment variable AKVQ_DEMO_MODEL overrides it;
        FileNotFoundError naming the path when it is missing). n_ctx: context size in tokens,
        [1, 2**20]. n_threads: [1, 512] (None: every core this process may use). kv: KV cache mode
        (f16 q8 q4 q2 kivi2 wht2 akvq2 akvq4). seed: default seed of generate(); None or -1: random
        each call. n_batch: prompt tokens per forward pass, [1, 65536]. kv_options: options of the
        KV mode (see README). mmproj: the vision tower of llama.cpp's two-file layout (an mmproj
        GGUF); without it the vision tower of `path` is used when the file has one (ValueError when
        mmproj's projector width differs from the model's embedding width). act_bits: precision of
        the activations the quantized matmuls use, 16 (default) or 8 (faster prompt processing with
        Q4_0, Q4_1 and Q4_K weights on AVX2 and AVX-512 CPUs, slightly different logits;
        bench/RESULTS.md states the agreement with transformers). device: where the decoder runs, "cpu"
        (default), "cuda" (GPU 0; RuntimeError naming the reason when pyakvq.cuda_available() is False;
        every kv mode, see README "CUDA") or "auto" (the GPU when available and the model fits it, else
        the CPU: info["device"] says which, info["device_note"] why not the GPU); ValueError otherwise.
        The vision tower runs on the CPU."""
        if path is None:
            from .demo import demo_model_path  # noqa: PLC0415

            path = demo_model_path()
        path = _v.check_path("path", path)
        _v.check_file_exists("path", path)
        n_ctx = _v.check_int("n_ctx", n_ctx, 1, _v.MAX_CTX)
        n_threads = _v.check_n_threads(n_threads)
        n_batch = _v.check_int("n_batch", n_batch, 1, _v.MAX_BATCH)
        self.seed = _v.check_seed("seed", seed)
        kv = _v.check_text("kv", kv, allow_nul=False)
        opts = _v.kv_options(kv_options)
        self._lock = threading.RLock()  # re-entrant: create_completion holds it around its generations
        _MODELS.add(self)
        self._session = None
        self._vision = None
        mmproj = None if mmproj is None else _v.check_path("mmproj", mmproj)
        if mmproj is not None:
            _v.check_file_exists("mmproj", mmproj)
        if isinstance(act_bits, bool) or not isinstance(act_bits, int) or act_bits not in (8, 16):
            raise ValueError(f"act_bits must be 8 or 16, got {act_bits!r}")
        if not isinstance(device, str) or device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
        self._model = _akvq.Model.load(path, act_bits=int(act_bits), device=device)
        self._n_vocab = int(self._model.info["n_vocab"])
        if mmproj is not None:
            vision = _akvq.VisionModel.load(mmproj)
            vision.check_compatible(self._model)
            self._vision = vision
        else:
            try:
                self._vision = _akvq.VisionModel.from_model(self._model)
            except RuntimeError as e:
                if "no vision encoder" not in str(e):
                    raise
        self._session = _akvq.Session(
            self._model, n_ctx=n_ctx, n_threads=n_threads, kv=kv, n_batch=n_batch, kv_options=opts
        )
        self._kv = kv
        self._kv_options = opts
        self._n_batch = n_batch

    # ---- lifetime ----
    def close(self) -> None:
        """Frees the KV cache and unmaps the file. The Model is unusable afterwards; a stream still
        in progress is ended (it raises RuntimeError if resumed). Closing twice is harmless."""
        with self._lock:
            self._epoch += 1
            self._session = None
            self._model = _CLOSED
            self._vision = None
            for ts in list(self.__dict__.get("_streams", ())):
                ts._release()  # streams hold the engine's session: let it go now

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _sess(self):
        if self._session is None:
            raise RuntimeError("this Model is closed")
        if self.__dict__.get("_fork_busy"):
            raise RuntimeError(_FORK_BUSY)
        return self._session

    def __reduce__(self):
        raise TypeError(
            "a Model cannot be pickled or copied: it holds a loaded native model and its KV cache "
            "(load another Model from the same path and options)"
        )

    def _claim(self) -> int:
        """Takes over the KV cache for a new call (the lock is held): ends the stream in progress,
        if any. Returns the new epoch."""
        self._sess()
        self._epoch += 1
        return self._epoch

    def _ended_message(self) -> str:
        if self._session is None:
            return "this stream was ended because its Model was closed"
        return (
            "this stream was ended by a later call on the same Model (a Model runs one call at a time: "
            "generate, chat, eval, logits or close, from this thread or another, end the stream in progress; "
            "for concurrent requests use one Model per thread or generate_batch / BatchEngine)"
        )

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
        self._sess()
        return self._n_vocab

    def kv_stats(self) -> dict[str, Any]:
        """The KV cache's accounting: mode, resolved options, tokens, bytes and bits per element,
        bytes_reserved (bytes plus the checkpoint's fp16 copy of window and pivots, kv option
        `checkpoint`), and per layer the precision classes (name, tokens, bytes) and pivot positions."""
        with self._lock:
            return self._sess().kv_summary()

    # ---- tokens ----
    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """Token ids of `text`: the BOS the model adds first when add_special; with parse_special
        (the default, as transformers' tokenizers and as generate() reads a prompt) the text of a
        special token ("<|im_end|>") is that token, so pass parse_special=False for text from
        users (llama-cpp-python's tokenize(special=False) default). ValueError for a lone
        surrogate."""
        text = _v.check_text("text", text)
        add_special = _v.check_bool("add_special", add_special)
        parse_special = _v.check_bool("parse_special", parse_special)
        self._sess()
        return self._model.tokenize(text, add_special, parse_special)

    def detokenize(self, ids: Sequence[int], render_special: bool = False) -> str:
        ids = self._ids(ids, allow_empty=True, name="ids")
        render_special = _v.check_bool("render_special", render_special)
        return self._model.detokenize_bytes(ids, render_special).decode("utf-8", errors="replace")

    def _ids(self, ids, allow_empty: bool = False, name: str = "token_ids") -> list[int]:
        return _v.token_ids(name, ids, self.n_vocab, allow_empty)

    def _prompt_ids(self, prompt, name: str = "prompt") -> list[int]:
        if isinstance(prompt, str):
            return self._ids(self.tokenize(_v.check_text(name, prompt), add_special=True), name=name)
        if isinstance(prompt, (bytes, bytearray)):
            raise TypeError(f"{name} must be a str or a sequence of token ids, got {type(prompt).__name__}")
        return self._ids(prompt, name=name)

    # ---- evaluation ----
    def eval(self, prompt: str | Sequence[int], images: Sequence[Any] | None = None) -> np.ndarray:
        """Logits [n_vocab] of the last position of `prompt` (text or ids), from an empty cache.
        images: one image per image marker of the prompt (see generate())."""
        if images is not None:
            inp = self._image_input(prompt, images)
            self._check_fits(len(inp), "prompt")
            with self._lock:
                self._claim()
                s = self._sess()
                s.reset()
                return s.eval_rows(inp)
        ids = self._text_input(prompt)
        self._check_fits(len(ids), "prompt")
        with self._lock:
            self._claim()
            s = self._sess()
            s.reset()
            return s.eval(ids)

    def _check_fits(self, n: int, name: str) -> None:
        """ValueError for more than n_ctx tokens, before the cache or a running stream is touched."""
        if n > self.n_ctx:
            raise ValueError(f"{name} has {n} tokens, more than the context size n_ctx={self.n_ctx}")

    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """Logits [n_tokens, n_vocab] of every position of `token_ids`, from an empty cache.
        ValueError for more than n_ctx tokens (nothing else changes then)."""
        ids = self._ids(token_ids)
        self._check_fits(len(ids), "token_ids")
        with self._lock:
            self._claim()
            s = self._sess()
            s.reset()
            return s.eval_all(ids)

    def _prompt_logprobs(self, token_ids: Sequence[int], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Log probabilities of each prompt token given the ones before it, from an empty cache, in
        chunks of n_batch positions (memory: the chunk's logits, float32 [n_batch, n_vocab], never
        [n_tokens, n_vocab]). Returns lp [n] (lp[0] NaN: the first token has no context), top_ids
        [n, k] and top_lp [n, k] (the k most likely tokens at each position, best first; row 0
        unused). The log-sum-exp of each row is summed in float64."""
        ids = self._ids(token_ids)
        n = len(ids)
        self._check_fits(n, "token_ids")
        lp = np.full(n, np.nan)
        top_ids = np.zeros((n, k), np.int64)
        top_lp = np.full((n, k), np.nan)
        with self._lock:
            self._claim()
            s = self._sess()
            s.reset()
            for a in range(0, n, self._n_batch):
                rows = s.eval_all(ids[a : a + self._n_batch])  # float32 [c, n_vocab]; row r predicts a + r + 1
                c = min(len(rows), n - 1 - a)  # the last position predicts nothing in the prompt
                for r in range(max(c, 0)):
                    row = rows[r]
                    top = float(row.max())
                    lse = top + math.log(float(np.exp(row - top).sum(dtype=np.float64)))
                    p = a + 1 + r
                    lp[p] = float(row[ids[p]]) - lse
                    if k:
                        part = np.argpartition(-row, k - 1)[:k]
                        part = part[np.lexsort((part, -row[part]))]  # best first, lower id on ties
                        top_ids[p] = part
                        top_lp[p] = row[part].astype(np.float64) - lse
            s.reset()
        return lp, top_ids, top_lp

    # ---- generation ----
    def generate(
        self,
        prompt: str | Sequence[int],
        max_tokens: int | None = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.0,
        repeat_penalty: float = 1.0,
        repeat_last_n: int = 64,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
        images: Sequence[Any] | None = None,
        logprobs: int | None = None,
    ) -> str | Iterator[Token]:
        """Continues `prompt` (text, tokenized with BOS as the model says, or token ids).

        images: for a model with a vision encoder, one image per image marker of the prompt (the
        model's image token, `image_marker`, e.g. "<image>"; ValueError when the counts differ),
        each a path, bytes, a PIL image or a uint8 array [H, W, 3]. Each marker becomes the image's
        embedding rows; the images of a call are encoded together. A later call with the same text
        and images reuses the KV cache; a different image is never served from it.

        Stops after max_tokens ("length"; -1 or None: no limit but the context), at an
        end-of-generation token ("eos", not included), at
        a stop string ("stop", cut exactly: neither it nor anything after it is returned) or when
        the context is full ("context"). Returns the text, and sets `last_finish_reason`; with
        stream=True returns a TokenStream of Token(id, text, finish_reason), computed one token
        per next(), whose last Token (and the stream's `finish_reason`) says why it ended.

        Sampling: temperature 0 is greedy (deterministic); otherwise `seed` makes the draws
        reproducible, None uses the Model's seed, and when that is None too (or -1) a fresh random
        seed is drawn for each call.

        logprobs: None, or K in [0, 20]: each streamed Token carries its log-probability under the
        model's distribution and the K most likely alternatives (see Token)."""
        stream = _v.check_bool("stream", stream)
        ts = self._generate(
            self._generate_input(prompt, images),
            max_tokens,
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            repeat_last_n,
            seed,
            stop,
            logprobs,
        )
        if stream:
            return ts
        return "".join(t.text for t in ts._collect())

    def generate_batch(
        self,
        prompts: Sequence[str | Sequence[int]],
        *,
        images: Sequence[Sequence[Any] | None] | None = None,
        n_parallel: int | None = None,
        **kwargs,
    ) -> list[str]:
        """Generates a continuation of every prompt, decoded together (continuous batching, see
        pyakvq.batch.BatchEngine): the texts, in the prompts' order. Each text is what
        generate(prompt, **kwargs) returns on a fresh Model of the same n_ctx and KV mode (greedy, or
        with the same seed). images: None, or per prompt None or its list of images. n_parallel:
        sequences decoded at once (default: every prompt, at most 64). kwargs: generate()'s
        generation arguments (max_tokens, temperature, ..., seed, stop), stream excepted. Raises
        ValueError/TypeError for a bad prompt or argument before anything is generated."""
        from .batch import BatchEngine  # noqa: PLC0415

        if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
            raise TypeError("prompts must be a list of prompts (str or token ids)")
        if "stream" in kwargs:
            raise TypeError("generate_batch() does not stream; use pyakvq.batch.BatchEngine for streams")
        if images is not None and (not isinstance(images, Sequence) or len(images) != len(prompts)):
            raise ValueError("images must hold one entry (None or a list of images) per prompt")
        if not prompts:
            return []
        n = min(len(prompts), 64) if n_parallel is None else n_parallel
        unknown = sorted(set(kwargs) - set(inspect.signature(_v.sampling_args).parameters))
        if unknown:
            raise TypeError(f"generate_batch() got an unexpected keyword argument {unknown[0]!r}")
        a = _v.sampling_args(**kwargs)
        inputs = []
        for i, p in enumerate(prompts):
            try:
                inputs.append(self._generate_input(p, None if images is None else images[i]))
            except (ValueError, TypeError) as e:
                raise type(e)(f"prompts[{i}]: {e}") from None
        with BatchEngine(self, n_parallel=n, max_queue=len(prompts)) as eng:
            streams = []
            for i, inp in enumerate(inputs):
                try:
                    streams.append(eng._submit_input(inp, a))
                except (ValueError, TypeError) as e:  # the prompt against the context size
                    raise type(e)(f"prompts[{i}]: {e}") from None
            texts = [s.text() for s in streams]
        self.last_finish_reason = streams[-1].finish_reason
        return texts

    def generate_ids(self, prompt: str | Sequence[int], max_tokens: int | None = 128, **kw) -> list[int]:
        """Like generate() but returns the generated token ids (stop strings are not applied)."""
        kw.pop("stream", None)
        if kw.get("stop"):
            raise ValueError("generate_ids() does not apply stop strings")
        return [t.id for t in self.generate(prompt, max_tokens=max_tokens, stream=True, **kw)._collect()]

    # chat() keywords that go to generate(); every other keyword is a template variable.
    _GENERATE_KEYWORDS = (
        "max_tokens",
        "temperature",
        "top_k",
        "top_p",
        "min_p",
        "repeat_penalty",
        "repeat_last_n",
        "seed",
        "stop",
        "stream",
        "logprobs",
    )

    def chat(
        self,
        messages_or_prompt: str | Sequence[dict[str, Any]],
        template: str | None = None,
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        documents: Sequence[dict[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        images: Sequence[Any] | None = None,
        **kwargs,
    ) -> str | Iterator[Token]:
        """Renders the conversation with the model's chat template (or `template`; when the file
        has none: LLaVA-1.5's vicuna format for a model with a vision encoder, else ChatML) as
        transformers' apply_chat_template does, and generates the reply.

        chat(image_or_images, prompt, **gen): one user turn with the images first, then the
          prompt (an image: a path to an existing file, bytes, a PIL image or a uint8 array
          [H, W, 3]; several: a list of them). Also chat(prompt, images=[...]).
        messages_or_prompt: a prompt string (one user turn) or a list of messages: {"role",
          "content"} with role system/user/assistant/tool (also ipython, developer, function);
          content a string or a list of parts: {"type": "text", "text": ...}, {"type": "image",
          "image": IMAGE} or the OpenAI API's {"type": "image_url", "image_url": {"url": URL}}
          (URL: a base64 data URL or a local path); the template sees image parts as
          {"type": "image"} and renders the model's image marker for each; an assistant turn may
          carry "tool_calls", a tool turn "tool_call_id"/"name"; keys set to None are dropped.
        Template variables (as apply_chat_template takes them):
          tools: JSON-schema tool definitions, [{"type": "function", "function": {...}}, ...];
          documents: retrieval documents, [{"title": ..., "text": ...}, ...];
          add_generation_prompt: open the assistant's turn (default True);
          any other keyword (enable_thinking=False, date_string=..., ...) is passed to the template.
        Generation keywords, passed to generate(): max_tokens, temperature, top_k, top_p, min_p,
          repeat_penalty, repeat_last_n, seed, stop, stream.
        A template that refuses the conversation (raise_exception, e.g. roles that must alternate)
        raises ValueError with the template's message."""
        gen = {k: kwargs.pop(k) for k in self._GENERATE_KEYWORDS if k in kwargs}
        inp = self._chat_input(
            messages_or_prompt,
            template,
            tools=tools,
            documents=documents,
            add_generation_prompt=add_generation_prompt,
            images=images,
            _check_keywords=True,
            **kwargs,
        )
        return self.generate(inp, **gen)

    def _chat_input(
        self,
        messages_or_prompt,
        template: str | None = None,
        *,
        tools=None,
        documents=None,
        add_generation_prompt: bool = True,
        images=None,
        _check_keywords: bool = False,
        _check=None,
        **kwargs,
    ):
        """The prompt chat() generates from, with chat()'s arguments (no generation keywords): token
        ids, or a SessionInput holding the images' rows. _check_keywords: chat()'s keywords, which
        mix generation keywords and template variables, are checked against the template. _check:
        None, or called before each image's preprocessing and before the vision encoder (it raises
        to stop: the server's request whose client went away)."""
        if template is not None and not isinstance(template, str):
            if images is None and _mm.looks_like_images(messages_or_prompt):
                raise TypeError(f"chat(images, prompt): the prompt must be a str, got {type(template).__name__}")
            raise TypeError(f"template must be a str (a Jinja chat template) or None, got {type(template).__name__}")
        if images is None and isinstance(template, str):
            if isinstance(messages_or_prompt, (list, tuple)) and not messages_or_prompt:
                raise ValueError(
                    "chat() got an empty list and a string: no images for chat(images, prompt) (give at least "
                    "one, or chat(prompt) for text alone) and no messages for chat(messages, template)"
                )
            if _mm.looks_like_images(messages_or_prompt):
                images, messages_or_prompt, template = messages_or_prompt, template, None
            elif isinstance(messages_or_prompt, str):
                _mm.check_prompt_and_template(messages_or_prompt, template)
        if images is not None:
            if not isinstance(messages_or_prompt, str):
                raise TypeError("images= goes with a prompt string; in messages, give images as image parts")
            self._vision_model()  # raises for a model without a vision encoder
            images = list(images) if isinstance(images, (list, tuple)) else [images]
            parts = [{"type": "image"} for _ in images] + [{"type": "text", "text": messages_or_prompt}]
            messages_or_prompt = [{"role": "user", "content": parts}]
        elif not isinstance(messages_or_prompt, str):
            _mm.check_part_types(messages_or_prompt)
            if self._vision is not None:
                messages_or_prompt, found = _mm.extract_images(_v_messages(messages_or_prompt))
                images = found or None
            elif _mm.has_image_data(messages_or_prompt):
                self._vision_model()  # raises: no vision encoder
        if _check_keywords:
            self._check_template_keywords(template, kwargs)
        text = self.render_chat(
            messages_or_prompt,
            template=template,
            add_generation_prompt=add_generation_prompt,
            tools=tools,
            documents=documents,
            **kwargs,
        )
        add_special = not self._starts_with_bos(text)
        if images is not None:
            return self._image_input(text, images, add_special, _check)
        if self._vision is not None:  # image markers typed into the text: refused as in generate()
            return self._image_input(text, [], add_special)
        return self.tokenize(text, add_special=add_special)

    def create_completion(self, prompt: str | Sequence[int], **kwargs) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """An OpenAI-style text completion (llama-cpp-python's create_completion; also `model(prompt,
        ...)`). Keywords: max_tokens=16, temperature=0.8, top_p=0.95, top_k=40, min_p=0.05,
        repeat_penalty=1.0, repeat_last_n=64, seed, stop, stream, n, logprobs, echo, suffix,
        stream_options, images, engine, model, and llama-cpp-python's presence_penalty,
        frequency_penalty, mirostat_mode, mirostat_tau, mirostat_eta, typical_p, tfs_z,
        stopping_criteria, logits_processor, grammar, logit_bias (only when they ask for nothing).
        A negative temperature, as in llama-cpp-python: the whole softmax, no cuts.
        The signature and what each argument does: help(pyakvq.completions.create_completion)."""
        from .completions import create_completion  # noqa: PLC0415

        return create_completion(self, prompt, **kwargs)

    __call__ = create_completion

    def create_chat_completion(
        self, messages: Sequence[dict[str, Any]], **kwargs
    ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """An OpenAI-style chat completion (llama-cpp-python's create_chat_completion). Keywords:
        max_tokens=None, max_completion_tokens, temperature=0.2, top_p=0.95, top_k=40, min_p=0.05,
        repeat_penalty=1.0, repeat_last_n=64, seed, stop, stream, n, logprobs, top_logprobs,
        response_format, stream_options, chat_template_kwargs, engine, model, and llama-cpp-python's
        presence_penalty, frequency_penalty, mirostat_mode, mirostat_tau, mirostat_eta, typical_p,
        tfs_z, stopping_criteria, logits_processor, grammar, logit_bias, tools, tool_choice,
        functions, function_call (only when they ask for nothing). The signature and what each
        argument does: help(pyakvq.completions.create_chat_completion)."""
        from .completions import create_chat_completion  # noqa: PLC0415

        return create_chat_completion(self, messages, **kwargs)

    def render_chat(
        self,
        messages,
        template: str | None = None,
        add_generation_prompt: bool = True,
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        documents: Sequence[dict[str, Any]] | None = None,
        **variables,
    ) -> str:
        """The prompt text chat() generates from: the conversation rendered with the model's chat
        template (or `template`) and the template variables, as chat() describes them. For a model
        without a vision encoder, a message whose content is a list of text parts only is rendered
        with that text as one string, the parts joined by newlines (as llama.cpp's server and vLLM
        do)."""
        if self._vision is None and not isinstance(messages, str):
            # text-only part lists as one string (OpenAI clients send them; text templates
            # concatenate strings); a bare image part reaches the template as given
            messages = _mm.join_text_parts(_v_messages(messages))
        info = self._model.info
        # the tokenizer's special tokens, as transformers hands its special_tokens_map to templates; a
        # template variable of the same name overrides the model's token (chat.render)
        special = {
            f"{k}_token": variables.pop(f"{k}_token", self._piece(info[k]) if info[k] >= 0 else None)
            for k in ("bos", "eos", "unk", "pad")
        }
        return _chat.render(
            self._template_source(template),
            messages,
            **special,
            add_generation_prompt=add_generation_prompt,
            tools=tools,
            documents=documents,
            **variables,
        )

    def _template_source(self, template: str | None) -> str:
        """`template`, else the file's chat template, else LLaVA-1.5's vicuna format for a model with a
        vision encoder and ChatML for a text model."""
        tmpl = template or self._model.info["chat_template"]
        if not tmpl:
            tmpl = _mm.vicuna_template(self.image_marker) if self._vision is not None else _chat.CHATML_TEMPLATE
        return tmpl

    def _check_template_keywords(self, template: str | None, variables: Mapping[str, Any]) -> None:
        """chat()'s keywords that are neither generation keywords nor read by the template: TypeError
        for one that looks like a misspelt generation keyword (max_token), else a UserWarning (a
        variable such as enable_thinking that this model's template does not use)."""
        if not variables:
            return
        read = _chat.template_variables(self._template_source(template))
        for name in variables:
            if name in read:
                continue
            close = difflib.get_close_matches(name, self._GENERATE_KEYWORDS, n=1, cutoff=0.8)
            if close:
                raise TypeError(
                    f"chat() got an unexpected keyword argument {name!r} (did you mean {close[0]!r}?): it is not "
                    "a generation keyword and the chat template does not read it"
                )
            warnings.warn(
                f"chat(): the chat template does not read the keyword {name!r}; it has no effect",
                UserWarning,
                stacklevel=4,
            )

    # ---- images ----
    @property
    def has_vision(self) -> bool:
        """Whether this Model has a vision encoder (in its file, or from mmproj). RuntimeError
        once closed."""
        self._sess()
        return self._vision is not None

    @property
    def vision_info(self) -> dict[str, Any] | None:
        """Facts of the vision encoder (image size, tokens per image, image token, ...), or None.
        RuntimeError once closed."""
        self._sess()
        return None if self._vision is None else dict(self._vision.info)

    @property
    def image_marker(self) -> str:
        """The text that stands for one image in a raw prompt (the model's image token, e.g. "<image>")."""
        return _akvq.image_marker(self._model, self._image_token())

    def _vision_model(self):
        self._sess()
        if self._vision is None:
            raise ValueError(
                "this model has no vision encoder; load it with its mmproj GGUF (llama.cpp's two-file layout: "
                "Model(..., mmproj=...), or --mmproj of pyakvq serve / pyakvq chat / akvq-cli) to give it images"
            )
        return self._vision

    def _image_token(self) -> int:
        """The image token id; -1 for a pair without one (llama.cpp's published LLaVA-1.5 files), whose
        prompts mark images with the text "<image>"."""
        return int(_akvq.image_token_id(self._model, self._vision_model()))

    def _image_input(self, prompt, images, add_special: bool = True, check=None):
        """The SessionInput of a prompt (text or ids) whose image markers become the images' rows.
        check: None, or called before each image's preprocessing and before encoding (it raises to stop)."""
        vision = self._vision_model()
        image_id = self._image_token()
        if not isinstance(images, (list, tuple)):
            raise TypeError(f"images must be a list of images, got {type(images).__name__}")
        if isinstance(prompt, str):
            prompt = _v.check_text("prompt", prompt)
            ids = list(_akvq.tokenize_image_prompt(self._model, prompt, image_id, add_special))
            if not ids:
                raise ValueError("prompt: no tokens to evaluate (empty prompt)")
        elif image_id < 0:
            if not images:  # ids without an image token hold no image markers
                return self._prompt_ids(prompt)
            raise ValueError('this model has no image token: give the prompt as text with "<image>" markers')
        else:
            ids = self._prompt_ids(prompt)
        if not images:
            n = ids.count(image_id)
            if n:
                raise ValueError(f"the prompt has {n} image marker{'s' * (n != 1)} but 0 images were given")
            return ids
        pixels = []
        for k, img in enumerate(images):
            if check is not None:
                check()
            try:
                rgb = _image.to_rgb_array(img)
                pixels.append(_akvq.vision_preprocess(vision, rgb))
            except (TypeError, ValueError, OSError) as e:
                raise type(e)(f"image {k}: {e}") from None
        if check is not None:
            check()
        enc = _akvq.encode_images(vision, np.stack(pixels), self._sess().n_threads)
        return _akvq.image_prompt_input(ids, image_id, enc, self.n_ctx)

    def _text_input(self, prompt) -> list[int]:
        """Token ids of a prompt (text or ids) given without images. For a model with a vision encoder
        an image marker in it raises ValueError, as with images=[]: the marker's embedding would
        otherwise stand in for an image (transformers' LLaVA refuses the same)."""
        return self._prompt_ids(prompt) if self._vision is None else self._image_input(prompt, [])

    def _generate_input(self, prompt, images):
        if isinstance(prompt, _akvq.SessionInput):  # from chat(): images already in place
            return prompt
        return self._text_input(prompt) if images is None else self._image_input(prompt, images)

    def _piece(self, tid: int) -> str:
        if tid < 0:
            return ""
        return self._model.piece(tid, True).decode("utf-8", errors="replace")

    def _starts_with_bos(self, text: str) -> bool:
        text = _v.check_text("text", text)  # a lone surrogate: the ValueError tokenize gives
        return _akvq.starts_with_bos(self._model, text)  # the engine's rule, akvq-cli's too

    def _generate(
        self,
        ids,
        max_tokens,
        temperature,
        top_k,
        top_p,
        min_p,
        repeat_penalty,
        repeat_last_n,
        seed,
        stop,
        logprobs=None,
    ) -> TokenStream:
        """A TokenStream over the engine's generation loop (nothing is evaluated until its first
        step). Arguments are checked here, so that errors come from the call itself."""
        a = _v.sampling_args(
            max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed, stop, logprobs
        )
        self._check_fits(len(ids), "prompt")
        gen = _akvq.Generator(self._sess(), ids, **a.engine_kwargs(self.seed))
        ts = TokenStream(self, gen)
        self.__dict__.setdefault("_streams", weakref.WeakSet()).add(ts)
        return ts
