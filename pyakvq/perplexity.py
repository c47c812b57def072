"""Perplexity of a model over a text with a given KV cache mode (llama.cpp's protocol), and the KL
divergence / top-1 agreement of its next-token distributions against a reference cache (f16).

Protocol (as llama.cpp's `llama-perplexity`):
- the whole text is tokenized once as llama.cpp's common_tokenize(ctx, text, true) does: with
  the BOS the model adds (if it adds one) and special-token text read as plain text
  (protocol_tokens);
- it is cut into non-overlapping chunks of n_ctx tokens (the tail that does not fill a chunk is
  dropped); when the model adds a BOS token, the first token of EACH chunk is replaced by BOS (so
  chunk 0 is BOS and the text's first n_ctx - 1 tokens);
- each chunk is evaluated from an empty cache; only the second half is scored: the logits at
  positions j = n_ctx/2 .. n_ctx-2 predict the token at j+1 (n_ctx/2 - 1 scored tokens per chunk);
- ppl = exp(mean negative log-likelihood over all scored tokens).

The first half of a chunk is evaluated with Session.eval (only the last logits come back), the
second half with Session.eval_all in pieces that are a multiple of n_batch. n_batch changes speed
only: every scored token reads all older tokens as the cache stores them at its position, exactly
as decoding does (and as llama.cpp's perplexity does with its quantized caches, which it writes
before attending), and the engine's kernels are batch-invariant, so the figures are the same bit
for bit for any n_batch (tests/python/test_state_invariance.py). Log-softmax sums are done in
float64.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .model import Model

# Upper bound on one piece of logits [piece, n_vocab] float32 (the float64 work arrays are 2x).
_PIECE_BYTES = 64 << 20


def check_n_ctx(n_ctx: int, name: str = "n_ctx") -> int:
    """The chunk size rule (halves are scored): even and >= 16; ValueError naming `name` else."""
    if n_ctx < 16 or n_ctx % 2:
        raise ValueError(f"{name} must be even and >= 16, got {n_ctx}")
    return n_ctx


def _check_int(name: str, value, lo: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if lo is not None and value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    return int(value)


def _log_softmax64(logits: np.ndarray) -> np.ndarray:
    """[n, n_vocab] float32 -> [n, n_vocab] float64 log-probabilities."""
    x = logits.astype(np.float64)
    x -= x.max(axis=1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=1, keepdims=True))
    return x


def _open_model(model_path, n_ctx: int, kv: str, kv_options: dict, n_threads, n_batch: int) -> Model:
    kw: dict[str, Any] = dict(n_ctx=n_ctx, n_threads=n_threads, kv=kv, n_batch=n_batch)
    if kv_options:
        if "kv_options" not in inspect.signature(Model.__init__).parameters:
            raise ValueError(f"kv options {sorted(kv_options)} are not supported by this build of pyakvq")
        kw["kv_options"] = dict(kv_options)
    return Model(model_path, **kw)


def _kv_stats(m: Model) -> dict[str, Any] | None:
    """kv_stats() when the build has it, else the session's short summary; None when neither."""
    fn = getattr(m, "kv_stats", None)
    if fn is not None:
        return fn()
    s = m._sess()
    if hasattr(s, "kv_summary"):
        return dict(s.kv_summary())
    return None


def protocol_tokens(m: Model, text: str) -> list[int]:
    """The text's tokens as llama-perplexity makes them: the model's BOS first when it adds one,
    special-token text ("<|im_start|>") tokenized as plain text."""
    return m.tokenize(text, add_special=True, parse_special=False)


def chunk_tokens(ids: Sequence[int], n_ctx: int, bos: int | None, max_chunks: int | None = None) -> list[list[int]]:
    """The evaluation chunks of the protocol: non-overlapping windows of n_ctx tokens, the first
    token of each replaced by `bos` when it is not None."""
    n = len(ids) // n_ctx
    if max_chunks is not None:
        n = min(n, max_chunks)
    out = []
    for c in range(n):
        chunk = list(ids[c * n_ctx : (c + 1) * n_ctx])
        if bos is not None:
            chunk[0] = bos
        out.append(chunk)
    return out


def perplexity_many(
    model_path: str | os.PathLike,
    text: str,
    configs: Sequence[tuple[str, dict[str, Any]]],
    n_ctx: int = 1024,
    reference: str | None = None,
    n_threads: int | None = None,
    max_chunks: int | None = None,
    n_batch: int = 256,
    progress: Callable[[int, int, list[float]], None] | None = None,
    share_reference: bool = True,
) -> list[dict[str, Any]]:
    """Runs the protocol for several (kv, kv_options) configurations in lock-step over the same
    chunks, so the reference logits (when `reference` is a mode such as "f16") are computed once
    per piece and shared. Returns one result dict per configuration, as perplexity() does.

    progress(chunk_index, n_chunks, running_ppl_per_config) is called after each chunk.
    share_reference=False evaluates the reference with a model of its own even when one of the
    configurations is the reference mode (tests use it to check that two runs agree)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    n_ctx = check_n_ctx(_check_int("n_ctx", n_ctx))
    n_batch = _check_int("n_batch", n_batch, 1)
    if n_threads is not None:
        n_threads = _check_int("n_threads", n_threads, 1)
    if max_chunks is not None:
        max_chunks = _check_int("max_chunks", max_chunks, 1)
    if reference is not None and not isinstance(reference, str):
        raise TypeError(f"reference must be a str (a kv mode such as 'f16') or None, got {type(reference).__name__}")
    if not configs:
        raise ValueError("configs is empty: give at least one (kv, kv_options) pair")
    for kv, opts in configs:
        if not isinstance(kv, str):
            raise TypeError(f"kv must be a str, got {type(kv).__name__}")
        if not isinstance(opts, dict):
            raise TypeError(f"kv_options must be a dict, got {type(opts).__name__}")

    models: list[Model] = []
    ref: Model | None = None
    try:
        for kv, opts in configs:
            models.append(_open_model(model_path, n_ctx, kv, opts, n_threads, n_batch))
        m0 = models[0]
        info = m0._model.info
        ids = protocol_tokens(m0, text)
        if len(ids) < n_ctx:
            raise ValueError(f"text has {len(ids)} tokens, fewer than n_ctx={n_ctx}: too short for one chunk")
        bos = info["bos"] if info.get("add_bos") and info.get("bos", -1) >= 0 else None
        chunks = chunk_tokens(ids, n_ctx, bos, max_chunks)
        # the reference's logits come from a configuration that is the reference mode itself
        # when there is one, else from a model of its own
        ref_index = None
        if reference is not None:
            same = [i for i, (kv, opts) in enumerate(configs) if kv == reference and not opts]
            if same and share_reference:
                ref_index = same[0]
            else:
                ref = _open_model(model_path, n_ctx, reference, {}, n_threads, n_batch)

        order = list(range(len(configs)))
        if ref_index is not None:
            order.remove(ref_index)
            order.insert(0, ref_index)
        first = n_ctx // 2
        n_vocab = m0.n_vocab
        # piece: a multiple of n_batch (same batch boundaries as one eval_all of the half chunk)
        piece = max(1, _PIECE_BYTES // (4 * n_vocab) // n_batch) * n_batch
        k = len(configs)
        nll = [0.0] * k
        kl = [0.0] * k
        top1 = [0] * k
        n_scored = 0
        stats: list[dict | None] = [None] * k
        t0 = time.perf_counter()
        for ci, chunk in enumerate(chunks):
            for m in models + ([ref] if ref is not None else []):
                s = m._sess()
                s.reset()
                s.eval(chunk[:first])
            pos = first
            while pos < n_ctx:
                end = min(pos + piece, n_ctx)
                # logits at positions pos..end-1 predict tokens pos+1..end; the last position of
                # the chunk (n_ctx-1) predicts nothing: it is evaluated but not scored.
                n_use = min(end, n_ctx - 1) - pos
                target = np.asarray(chunk[pos + 1 : pos + 1 + n_use], dtype=np.int64)
                ref_lp = ref_top = p_ref = None
                if ref is not None:
                    rl = ref._sess().eval_all(chunk[pos:end])[:n_use]
                    ref_top = rl.argmax(axis=1)
                    ref_lp = _log_softmax64(rl)
                    del rl
                    p_ref = np.exp(ref_lp)
                # the reference configuration first, so its log-probs are at hand for the others
                for i in order:
                    lg = models[i]._sess().eval_all(chunk[pos:end])[:n_use]
                    top = lg.argmax(axis=1)
                    lp = _log_softmax64(lg)
                    del lg
                    nll[i] -= float(lp[np.arange(n_use), target].sum())
                    if i == ref_index:
                        ref_lp, ref_top, p_ref = lp, top, np.exp(lp)
                        top1[i] += n_use
                        continue
                    if p_ref is not None:
                        # KL(ref || mode) = sum_v p_ref (log p_ref - log p_mode)
                        kl[i] += float((p_ref * (ref_lp - lp)).sum())
                        top1[i] += int((top == ref_top).sum())
                    del lp
                del ref_lp, p_ref
                n_scored += n_use
                pos = end
            if ci == 0:
                stats = [_kv_stats(m) for m in models]
            if progress is not None:
                progress(ci, len(chunks), [math.exp(x / n_scored) for x in nll])
        seconds = time.perf_counter() - t0
    finally:
        for m in models:
            m.close()
        if ref is not None:
            ref.close()

    out = []
    for i, (kv, opts) in enumerate(configs):
        st = stats[i]
        r: dict[str, Any] = {
            "ppl": math.exp(nll[i] / n_scored),
            "nll": nll[i] / n_scored,
            "n_tokens": n_scored,
            "n_chunks": len(chunks),
            "n_ctx": n_ctx,
            "kv": kv,
            "kv_options": dict(opts),
            "bits_per_element": None if st is None else st.get("bits_per_element"),
            "seconds": seconds,
        }
        if st is not None and "bits_per_element" in st:
            r["kv_stats"] = st
        if reference is not None:
            r["reference"] = reference
            r["kl"] = kl[i] / n_scored
            r["top1"] = top1[i] / n_scored
        out.append(r)
    return out


def perplexity(
    model_path: str | os.PathLike,
    text: str,
    n_ctx: int = 1024,
    kv: str = "f16",
    reference: str | None = None,
    n_threads: int | None = None,
    max_chunks: int | None = None,
    n_batch: int = 256,
    progress: Callable[[int, int, list[float]], None] | None = None,
    **kv_options,
) -> dict[str, Any]:
    """Perplexity of the model at `model_path` over `text` with KV cache mode `kv` (and kv options
    such as bits=2, clip=0.7, window=128), by llama.cpp's protocol (see the module docstring).

    Returns {"ppl", "nll" (mean), "n_tokens" (scored), "n_chunks", "n_ctx", "kv", "kv_options",
    "bits_per_element" (from the cache stats after the first chunk; None if unavailable),
    "seconds"} and, with reference="f16" (or another mode), "kl" (mean KL(reference || kv) of the
    next-token distributions, nats) and "top1" (fraction of scored positions whose argmax agrees).

    >>> perplexity("SmolLM2.gguf", open("prose.txt").read(), n_ctx=1024, kv="akvq2", reference="f16")
    """
    return perplexity_many(
        model_path,
        text,
        [(kv, kv_options)],
        n_ctx=n_ctx,
        reference=reference,
        n_threads=n_threads,
        max_chunks=max_chunks,
        n_batch=n_batch,
        progress=progress,
    )[0]
