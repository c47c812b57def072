"""Saliency profiling of the AKVQ cache (issue 8, point 7): how much attention text and vision
tokens receive per layer, which tokens are pivots, and which layers are text-salient (TSA).

profile_saliency(model, samples) evaluates each (prompt, images) sample once through the engine's
analysis path (Session.attention_profile: head-averaged softmax(q.k / sqrt(d)) per layer from the
layer's RoPE'd queries and keys at full precision) and measures, per layer:

- queries: the text positions after the sample's last image (the question), or every position from
  skip_first on when the sample has no image;
- receivers: every position a query sees; the first skip_first positions (BOS, system prompt start:
  the usual attention sinks) are counted apart as "skipped";
- text_mass / vision_mass / skipped_mass: the mean (over queries) of the probability mass given to
  text (text and generated), vision and skipped positions; the three add up to 1 per query;
- text_share / vision_share: text and vision mass as shares of their sum;
- text_per_token / vision_per_token: mass per receiving token of the kind;
- ratio = text_per_token / vision_per_token.

Rule for suggesting TSA layers: a layer is text-salient when its ratio is at least `factor`
(default 2.0): a text token receives at least twice the attention of a vision token. Samples are
averaged with equal weight. write_tsa_layers() stores the suggestion (or any list) as
`akvq.tsa_layers` in a copy of a GGUF file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ._ext import _akvq

DEFAULT_FACTOR = 2.0
TSA_KEY = "akvq.tsa_layers"


def _sample_input(model, prompt, images):
    """The engine input of one sample and its kinds (a list of 'text' / 'vision' / 'generated')."""
    if images is not None and not isinstance(images, (list, tuple)):
        images = [images]
    if images:
        inp = model._image_input(prompt, list(images))
    else:
        inp = model._prompt_ids(prompt)
    if not isinstance(inp, _akvq.SessionInput):
        inp = _akvq.SessionInput(list(inp))
    return inp, list(inp.kinds)


def attention_probabilities(model, prompt, images=None, q_begin: int | None = None):
    """(probs, kinds, q_begin): head-averaged attention probabilities [n_layer, n - q_begin, n] of
    the queries at positions [q_begin, n) of prompt (+ images), and the kind of every position.
    q_begin None: the first position after the last image (0 without images). The model's session
    then holds this prompt (the next call re-evaluates what it needs)."""
    inp, kinds = _sample_input(model, prompt, images)
    if q_begin is None:
        vis = [i for i, k in enumerate(kinds) if k == "vision"]
        q_begin = vis[-1] + 1 if vis else 0
    with model._lock:
        model._claim()
        probs = model._sess().attention_profile(inp, int(q_begin))
    return np.asarray(probs), kinds, int(q_begin)


def _samples(samples) -> list[tuple[Any, Any]]:
    out = []
    for k, s in enumerate(samples):
        if isinstance(s, str):
            out.append((s, None))
            continue
        if not isinstance(s, (tuple, list)) or len(s) != 2:
            raise TypeError(f"sample {k}: expected a (prompt, images) pair, got {type(s).__name__}")
        out.append((s[0], s[1]))
    if not out:
        raise ValueError("profile_saliency: no samples")
    return out


def profile_saliency(
    model,
    samples: Iterable[tuple[Any, Sequence[Any] | None]],
    *,
    skip_first: int = 5,
    top_k: int = 10,
    factor: float = DEFAULT_FACTOR,
) -> dict[str, Any]:
    """Per-layer attention received by text vs vision tokens and the top receivers (pivot
    candidates) over samples of (prompt, images) pairs (images: a list, one per image marker, or
    None). Returns a dict: n_layer, skip_first, factor, rule, samples (per sample: n_tokens, n_text,
    n_vision, q_begin, n_queries), layers (per layer: text_mass, vision_mass, skipped_mass,
    text_share, vision_share, text_per_token, vision_per_token, ratio, tsa, top: [{sample,
    position, kind, mass}]), tsa_layers (the suggestion), max_row_error (max |sum of a query's
    probabilities - 1|)."""
    if not isinstance(skip_first, int) or skip_first < 0:
        raise ValueError(f"skip_first must be an int >= 0, got {skip_first!r}")
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
    if not factor > 0:
        raise ValueError(f"factor must be > 0, got {factor!r}")
    samples = _samples(samples)
    per: list[dict[str, np.ndarray]] = []
    info = []
    tops: list[list[dict[str, Any]]] | None = None
    max_err = 0.0
    for si, (prompt, images) in enumerate(samples):
        inp, kinds = _sample_input(model, prompt, images)
        n = len(kinds)
        kind = np.array(kinds)
        vis = np.flatnonzero(kind == "vision")
        q_begin = int(vis[-1]) + 1 if vis.size else skip_first
        if skip_first >= n:
            raise ValueError(f"sample {si}: skip_first = {skip_first} skips every one of its {n} positions")
        if q_begin >= n:
            raise ValueError(
                f"sample {si}: no text position after "
                f"{'the last image' if vis.size else 'the first skip_first tokens'} "
                "to act as a query (end the prompt with a question)"
            )
        with model._lock:
            model._claim()
            probs = np.asarray(model._sess().attention_profile(inp, q_begin), dtype=np.float64)  # [L, nq, n]
        max_err = max(max_err, float(np.abs(probs.sum(-1) - 1.0).max()))
        recv = probs.mean(axis=1)  # [L, n] mean mass each position receives
        pos = np.arange(n)
        skipped = pos < skip_first
        is_vis = (kind == "vision") & ~skipped
        is_txt = (kind != "vision") & ~skipped
        d = {
            "text_mass": recv[:, is_txt].sum(-1),
            "vision_mass": recv[:, is_vis].sum(-1),
            "skipped_mass": recv[:, skipped].sum(-1),
        }
        d["text_per_token"] = d["text_mass"] / max(int(is_txt.sum()), 1)
        d["vision_per_token"] = (
            d["vision_mass"] / max(int(is_vis.sum()), 1) if is_vis.any() else np.full(len(recv), np.nan)
        )
        per.append(d)
        info.append(
            {
                "n_tokens": n,
                "n_text": int((kind != "vision").sum()),
                "n_vision": int(vis.size),
                "q_begin": q_begin,
                "n_queries": n - q_begin,
            }
        )
        if tops is None:
            tops = [[] for _ in range(len(recv))]
        receivers = np.flatnonzero(~skipped)  # the top receivers are counted from skip_first on too
        for li in range(len(recv)):
            for j in receivers[np.argsort(-recv[li, receivers], kind="stable")[:top_k]]:
                tops[li].append({"sample": si, "position": int(j), "kind": kinds[j], "mass": float(recv[li, j])})
    n_layer = len(per[0]["text_mass"])
    mean = {k: np.mean([p[k] for p in per], axis=0) for k in per[0] if k != "vision_per_token"}
    with_vis = [p["vision_per_token"] for p in per if not np.isnan(p["vision_per_token"]).any()]
    mean["vision_per_token"] = np.mean(with_vis, axis=0) if with_vis else np.full(n_layer, np.nan)
    layers = []
    tsa = []
    for li in range(n_layer):
        tm, vm = float(mean["text_mass"][li]), float(mean["vision_mass"][li])
        tpt, vpt_l = float(mean["text_per_token"][li]), float(mean["vision_per_token"][li])
        ratio = None if np.isnan(vpt_l) else (tpt / vpt_l if vpt_l > 0 else float("inf"))
        is_tsa = ratio is not None and ratio >= factor
        if is_tsa:
            tsa.append(li)
        top = sorted(tops[li], key=lambda t: -t["mass"])[:top_k] if tops else []
        layers.append(
            {
                "layer": li,
                "text_mass": tm,
                "vision_mass": vm,
                "skipped_mass": float(mean["skipped_mass"][li]),
                "text_share": tm / (tm + vm) if tm + vm > 0 else float("nan"),
                "vision_share": vm / (tm + vm) if tm + vm > 0 else float("nan"),
                "text_per_token": tpt,
                "vision_per_token": None if np.isnan(vpt_l) else vpt_l,
                "ratio": ratio,
                "tsa": is_tsa,
                "top": top,
            }
        )
    return {
        "n_layer": n_layer,
        "skip_first": skip_first,
        "factor": factor,
        "rule": f"TSA when (text mass per text token) / (vision mass per vision token) >= {factor:g}, "
        f"receivers from position {skip_first} on, queries: text after the last image",
        "samples": info,
        "layers": layers,
        "tsa_layers": tsa,
        "max_row_error": max_err,
    }


def write_tsa_layers(src: str | os.PathLike, dst: str | os.PathLike, layers: Sequence[int]) -> None:
    """Copies the GGUF file src to dst with `akvq.tsa_layers` set to layers (an array of int32;
    an existing value is replaced). Every other key and every tensor is copied byte for byte
    (streamed: the tensor data is never loaded whole)."""
    from gguf import GGUFReader

    from .gguf_keys import copy_with_key, int32_array_value  # gguf only when a file is written

    layers = [int(x) for x in layers]
    if any(x < 0 for x in layers):
        raise ValueError(f"TSA layers must be >= 0, got {layers}")
    n_layer = None
    for f in GGUFReader(src, "r").fields.values():
        if f.name.endswith(".block_count") and not f.name.startswith("clip."):
            n_layer = int(f.parts[f.data[0]][0])
    if n_layer is not None and any(x >= n_layer for x in layers):
        raise ValueError(f"TSA layers {layers} out of range for a model of {n_layer} layers")
    copy_with_key(src, dst, TSA_KEY, int32_array_value(layers))


def _top_item(t: dict[str, Any], with_sample: bool) -> str:
    s = f"{t['position']}:{t['kind'][0]}:{t['mass']:.3f}"
    return f"s{t['sample']}:{s}" if with_sample else s


def format_profile(p: dict[str, Any]) -> str:
    """A table of the profile (one row per layer) and the suggestion."""
    lines = [
        f"{len(p['samples'])} sample(s); {p['rule']}",
        "layer  text_mass  vision_mass  skipped  text_share  ratio    tsa  top receivers ([sample:]position:kind:mass)",
    ]
    for L in p["layers"]:
        ratio = "-" if L["ratio"] is None else f"{L['ratio']:.2f}"
        top = " ".join(_top_item(t, len(p["samples"]) > 1) for t in L["top"][:5])
        lines.append(
            f"{L['layer']:5d}  {L['text_mass']:9.4f}  {L['vision_mass']:11.4f}  {L['skipped_mass']:7.4f}  "
            f"{L['text_share']:10.4f}  {ratio:>7}  {'yes' if L['tsa'] else ' no'}  {top}"
        )
    lines.append(f"suggested TSA layers: {p['tsa_layers']}")
    return "\n".join(lines)
