"""Continuous batching: several generations over one model, decoded together.

The engine's BatchGenerator (engine/include/akvq/batch.h) holds a KV cache per slot and runs one
forward pass per step for every running sequence (each weight matrix is read once per step for
all of them); a request joins or leaves at step boundaries and long prompts are prefilled in
chunks beside the running streams. A request's tokens are exactly those `Model.generate` gives
for the same prompt and arguments on a fresh Model with the same n_ctx and KV mode, whatever
runs beside it. This module runs the steps on a worker thread and hands each request's tokens to
its BatchStream, for threads (`for tok in stream`) and asyncio (`async for tok in stream`).
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import _validate as _v
from ._ext import _akvq
from .generation import Token, token_of

#: Raised by BatchEngine.submit when max_queue requests already wait for a slot (a RuntimeError).
QueueFull = _akvq.QueueFull


@dataclass(frozen=True)
class _End:
    finish_reason: str | None
    error: str | None


class BatchStream:
    """The tokens of one request of a BatchEngine: an iterator of Token (`for` blocks until the
    next token; `async for` awaits it without blocking the event loop; a task cancelled while it
    awaits a token, asyncio.wait_for's timeout included, cancels the request as cancel() does).

    Attributes: `id`, `n_prompt`, `seed` (the sampler's), `n_reused` (prompt rows reused from a
    slot's cache), `n_generated`, `finish_reason` (None until the end, then "stop" | "length" |
    "eos" | "context"; stays None after cancel() or an engine error, which raises RuntimeError)."""

    def __init__(self, engine: BatchEngine, rid: int, n_prompt: int, seed: int):
        self._engine = engine
        self.id = rid
        self.n_prompt = n_prompt
        self.seed = seed
        self.n_reused = 0
        self.n_generated = 0
        self.finish_reason: str | None = None
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._ended = False  # the engine will deliver nothing more
        self._exhausted = False  # iteration has finished

    # ---- delivery (worker thread) ----
    def _deliver(self, item: Token | _End) -> None:
        self._q.put(item)
        loop, event = self._loop, self._event
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop is closed: nobody will read this stream
                self.cancel()

    # ---- consumption ----
    def _take(self, item: Token | _End) -> Token:
        if isinstance(item, Token):
            self.n_generated += 1
            if item.finish_reason is not None:
                self.finish_reason = item.finish_reason
            return item
        self._exhausted = True
        if item.finish_reason is not None:
            self.finish_reason = item.finish_reason
        if item.error is not None:
            raise RuntimeError(item.error)
        raise StopIteration

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> Token:
        if self._exhausted:
            raise StopIteration
        item = self._q.get()
        if self._exhausted:  # cancelled while waiting
            raise StopIteration
        return self._take(item)

    def __aiter__(self) -> BatchStream:
        return self

    async def __anext__(self) -> Token:
        if self._exhausted:
            raise StopAsyncIteration
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._event = asyncio.Event()
        while True:
            try:
                item = self._q.get_nowait()
                break
            except queue.Empty:
                pass
            self._event.clear()
            if not self._q.empty():
                continue
            try:
                await self._event.wait()
            except asyncio.CancelledError:  # the awaiting task is cancelled: nobody reads the rest
                self.cancel()
                raise
        if self._exhausted:  # cancelled while waiting
            raise StopAsyncIteration
        try:
            return self._take(item)
        except StopIteration:
            raise StopAsyncIteration from None

    def text(self) -> str:
        """Blocks until the generation ends; the whole text."""
        return "".join(t.text for t in self)

    def cancel(self) -> None:
        """Ends the request now (e.g. its client went away): its slot is free for the next step, no
        further token comes, and iteration stops (finish_reason None). Harmless when it has ended."""
        self._exhausted = True  # tokens delivered but not read yet are dropped too
        if self._ended:
            return
        self._ended = True
        self._engine._cancel(self)
        self._deliver(_End(None, None))  # wakes a reader waiting in another thread

    def __del__(self):
        try:
            if not self._ended:
                self._engine._cancel(self)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class _Core:
    """The state the worker thread shares with the engine: the engine's BatchGenerator, the
    streams by request id, and the closed flag, under one condition variable (an RLock: a
    stream's __del__ may run while it is held). The streams are held weakly: a stream nobody
    refers to any more is collected, and its request cancelled (by its __del__, or by the worker
    when it finds the reference dead), so that it does not run to its end holding a slot (and the
    engine it refers to can be collected too)."""

    def __init__(self, gen: Any):
        self.gen = gen
        self.cv = threading.Condition(threading.RLock())
        self.streams: dict[int, weakref.ref[BatchStream]] = {}
        self.closed = False
        self.close_reason = "this BatchEngine is closed"
        _CORES.add(self)

    def live_streams(self) -> list[BatchStream]:
        """The streams still referred to (cv held)."""
        return [s for s in (r() for r in self.streams.values()) if s is not None]

    def cancel(self, s: BatchStream) -> None:
        with self.cv:
            s._ended = True
            if self.streams.pop(s.id, None) is not None and not self.closed:
                self.gen.cancel(s.id)

    def close(self) -> None:
        with self.cv:
            if self.closed:
                return
            self.closed = True
            streams = self.live_streams()
            self.streams.clear()
            self.cv.notify_all()
        for s in streams:
            s._ended = True
            s._deliver(_End(None, "the BatchEngine was closed"))


_CORES: weakref.WeakSet[_Core] = weakref.WeakSet()  # every engine's core, for the fork handler
_FORKED = (
    "this BatchEngine was made before the process forked: its worker thread is not in the child "
    "process (make a new BatchEngine there)"
)


def _after_fork_in_child() -> None:
    """os.register_at_fork: an engine made before the fork has no worker thread in the child (only
    the forking thread is copied), and its locks may have been held by it. Each engine is closed
    with fresh locks, and each stream still running ends with RuntimeError instead of waiting
    forever for the tokens of a thread that is not there."""
    for core in list(_CORES):
        core.cv = threading.Condition(threading.RLock())
        core.closed = True
        core.close_reason = _FORKED
        streams = core.live_streams()
        core.streams.clear()
        for s in streams:
            s._ended = True
            s._q = queue.SimpleQueue()
            s._q.put(_End(None, _FORKED))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _run(core: _Core) -> None:
    """The worker: one engine step at a time while there is work, handing out the events."""
    gen = core.gen
    while True:
        _step(core, gen)
        if core.closed:
            return


def _step(core: _Core, gen: Any) -> None:
    """Waits for work, runs one step and delivers its events (a function of its own, so that no
    stream stays referenced from the worker's frame while it waits)."""
    with core.cv:
        while not core.closed and gen.idle:
            core.cv.wait()
        if core.closed:
            return
    try:
        events = gen.step()
    except Exception as e:  # noqa: BLE001 - the step failed as a whole: end every stream
        with core.cv:
            streams = core.live_streams()
        for s in streams:
            core.cancel(s)
            s._deliver(_End(None, f"batch step failed: {e}"))
        return
    with core.cv:
        for rid, step, done, finish, error, _n_prompt, n_reused, _n_gen in events:
            ref = core.streams.get(rid)
            s = ref() if ref is not None else None
            if s is None:
                if ref is not None:  # dropped by its owner before its __del__ could cancel it
                    del core.streams[rid]
                    if not done:
                        gen.cancel(rid)
                continue
            s.n_reused = n_reused
            if step is not None:
                s._deliver(token_of(step))
            if done:
                s._ended = True
                del core.streams[rid]
                s._deliver(_End(finish, error))


class BatchEngine:
    """Continuous batching over a Model's weights (see the module docstring).

    model: a pyakvq.Model; the engine uses its weights, tokenizer and vision encoder, and by
      default its n_ctx, KV mode, kv_options, n_batch and n_threads (not its KV cache).
    n_parallel: sequences decoded together at most (slots), [1, 1024].
    kv_memory: bytes for the KV caches of all slots, each priced at its bound for n_ctx tokens
      (a 2-bit mode fits several times as many sequences as f16); None: no budget. ValueError when
      not even one sequence fits. `n_slots` says how many fit.
    max_queue: requests waiting for a slot at most; submit() raises QueueFull beyond.
    n_batch: rows per step at most (every decoding sequence's token, then prefill chunks).

    submit() returns a BatchStream at once; the steps run on a worker thread, started here and
    ended by close() (also on leaving `with`)."""

    def __init__(
        self,
        model: Any,
        n_parallel: int = 4,
        kv_memory: int | None = None,
        max_queue: int = 64,
        *,
        n_ctx: int | None = None,
        kv: str | None = None,
        kv_options: dict[str, Any] | None = None,
        n_batch: int | None = None,
        n_threads: int | None = None,
    ):
        self._model = model
        info = model.info  # raises when the Model is closed
        n_parallel = _v.check_int("n_parallel", n_parallel, 1, 1024)
        kv_memory = 0 if kv_memory is None else _v.check_int("kv_memory", kv_memory, 1, 2**62)
        max_queue = _v.check_int("max_queue", max_queue, 0, 1 << 20)
        self.n_ctx = info["n_ctx"] if n_ctx is None else _v.check_int("n_ctx", n_ctx, 1, _v.MAX_CTX)
        kv = info["kv"] if kv is None else _v.check_text("kv", kv, allow_nul=False)
        opts = model._kv_options if kv_options is None else _v.kv_options(kv_options)
        n_batch = model._n_batch if n_batch is None else _v.check_int("n_batch", n_batch, 1, _v.MAX_BATCH)
        n_threads = info["n_threads"] if n_threads is None else _v.check_n_threads(n_threads)
        self._gen = _akvq.BatchGenerator(
            model._model,
            n_parallel=n_parallel,
            n_ctx=self.n_ctx,
            n_threads=n_threads,
            kv=kv,
            kv_options=opts,
            n_batch=n_batch,
            kv_memory=kv_memory,
            max_queue=max_queue,
        )
        self.kv = kv
        self.max_queue: int = max_queue
        self.n_slots: int = self._gen.n_slots
        self.kv_bytes_per_sequence: int = self._gen.kv_bytes_per_sequence
        # what the worker thread holds: not the engine itself, so that an engine nobody refers to
        # any more (and no running stream) is collected, and its __del__ stops the worker
        self._core = _Core(self._gen)
        self._thread = threading.Thread(target=_run, args=(self._core,), name="pyakvq-batch", daemon=True)
        self._thread.start()

    # ---- requests ----
    def submit(
        self,
        prompt: Any,
        *,
        images: Sequence[Any] | None = None,
        max_tokens: int | None = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.0,
        repeat_penalty: float = 1.0,
        repeat_last_n: int = 64,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        logprobs: int | None = None,
    ) -> BatchStream:
        """Queues a generation and returns its stream. prompt: text (tokenized with BOS as the
        model says), token ids, or what the Model's chat rendering produced; images as in
        Model.generate. The arguments are Model.generate's (seed None: the Model's seed, else a
        fresh random one). Raises ValueError/TypeError for bad arguments (nothing queued),
        QueueFull when max_queue requests wait, RuntimeError after close()."""
        inp = self._model._generate_input(prompt, images)
        a = _v.sampling_args(
            max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed, stop, logprobs
        )
        return self._submit_input(inp, a)

    def _submit_input(self, inp: Any, a: Any) -> BatchStream:
        """Queues a prepared input (Model._generate_input) with checked arguments (_v.sampling_args)."""
        m = self._model
        core = self._core
        with core.cv:
            if core.closed:
                raise RuntimeError(core.close_reason)
            rid, used_seed = self._gen.submit(inp, **a.engine_kwargs(m.seed))
            s = BatchStream(self, rid, len(inp), used_seed)
            core.streams[rid] = weakref.ref(s)
            core.cv.notify_all()
        return s

    def _cancel(self, s: BatchStream) -> None:
        self._core.cancel(s)

    def stats(self) -> dict[str, Any]:
        """n_slots, requests_running, requests_queued, requests_total, prompt_tokens_total,
        generated_tokens_total, steps_total, kv_bytes and kv_tokens (held by the slots' caches
        after the last step), kv_bits_per_element (None while empty), kv_bytes_per_sequence."""
        gen = self._gen
        return dict(gen.stats) if gen is not None else dict(self._final_stats)

    # ---- lifetime ----
    def close(self) -> None:
        """Stops the worker after its current step; streams still running end with RuntimeError.
        The engine's slots, caches and its hold on the weights are freed (stats() keeps the last
        figures), so that closing the Model too frees its memory at once."""
        self._core.close()
        if threading.current_thread() is not self._thread:
            self._thread.join()
            gen = self._gen
            if gen is not None:
                self._final_stats = dict(gen.stats)
                self._core.gen = None
                self._gen = None

    def __del__(self):
        core = self.__dict__.get("_core")
        if core is not None:
            core.close()

    def __enter__(self) -> BatchEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
