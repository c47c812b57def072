"""Argument checks of the Python API: every public argument is checked here before it reaches the
extension, so that a bad value gives a one-line TypeError/ValueError naming the argument (and the
allowed range) instead of a nanobind signature dump, a truncated value or silent acceptance.

The integer limits are the engine's (engine/api/session.cpp, engine/include/akvq/sampler.h)."""

from __future__ import annotations

import errno
import math
import operator
import os
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

MAX_CTX = 1 << 20  # SessionParams n_ctx
MAX_THREADS = 512  # SessionParams n_threads
MAX_BATCH = 1 << 16  # SessionParams n_batch
INT32_MAX = (1 << 31) - 1  # SamplingParams int32 fields, token counts
UINT64_MAX = (1 << 64) - 1  # SamplingParams seed

_FLOAT32_MAX = float(np.finfo(np.float32).max)


#: kv options that are on/off switches: they also take Python bools (engine/kv/kv_options.h).
_KV_SWITCHES = frozenset({"rotate", "checkpoint", "lut", "pv_bf16"})


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None, hint: str = "") -> int:
    """An int (or numpy integer, not bool) in [lo, hi]; returns it as a Python int. `hint` ends
    the range error's message."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    v = operator.index(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        if hi is None:
            raise ValueError(f"{name} must be >= {lo}, got {v}{hint}")
        if lo is None:
            raise ValueError(f"{name} must be <= {hi}, got {v}{hint}")
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}{hint}")
    return v


def check_float(
    name: str, value: Any, lo: float, hi: float = _FLOAT32_MAX, lo_open: bool = False, hint: str = ""
) -> float:
    """A real number (int, float or numpy scalar, not bool) in [lo, hi] (or (lo, hi] when lo_open);
    always finite and representable as float32. `hint` is appended to the range message."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < lo or (lo_open and v == lo) or v > hi:
        if hi == _FLOAT32_MAX:
            rng = f"{'>' if lo_open else '>='} {lo:g}"
        else:
            rng = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise ValueError(f"{name} must be a finite number {rng}{hint}, got {value!r}")
    return v


def check_bool(name: str, value: Any) -> bool:
    """True/False (numpy bools too); ints and other truthy objects are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _utf8_or_raise(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        ch = value[e.start]
        raise ValueError(
            f"{name} contains a lone surrogate U+{ord(ch):04X} at index {e.start} (not valid Unicode text; "
            "decode the bytes with errors='replace' or fix the string)"
        ) from None


def check_text(name: str, value: Any, allow_nul: bool = True) -> str:
    """A str that can be encoded as UTF-8 (no lone surrogates); NUL refused unless allow_nul."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    _utf8_or_raise(name, value)
    if not allow_nul and "\0" in value:
        raise ValueError(f"{name} contains a NUL character at index {value.index(chr(0))}")
    return value


def check_file_exists(name: str, path: str) -> None:
    """FileNotFoundError naming `name` and the path when nothing exists there (as open() raises it);
    a path that exists but is no readable GGUF file is left to the engine's OSError / ValueError."""
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, f"{name}: no such file", path)


def check_path(name: str, value: Any) -> str:
    """A file path (str, bytes or os.PathLike) as the engine takes it: non-empty, no NUL, UTF-8."""
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(value).__name__}")
    p = os.fspath(value)
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    if not isinstance(p, str):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(p).__name__} from __fspath__")
    if not p:
        raise ValueError(f"{name} is empty")
    if "\0" in p:
        raise ValueError(f"{name} contains a NUL character at index {p.index(chr(0))}: {p!r}")
    try:
        p.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} is not valid UTF-8 (the engine takes UTF-8 paths): {p!r}") from None
    return p


def check_seed(name: str, value: Any) -> int | None:
    """None (use the default), -1 (random) or an int in [0, 2**64 - 1]; returned unchanged."""
    if value is None:
        return None
    return check_int(name, value, -1, UINT64_MAX)


def resolve_seed(seed: int | None, default: int | None = None) -> int:
    """The seed a sampler is built with: `seed` (checked by check_seed), or when it is None the
    `default` (the Model's); None or -1 there means a fresh random 64-bit seed."""
    if seed is None:
        seed = default
    return secrets.randbits(64) if seed is None or seed == -1 else seed


def check_n_threads(value: Any) -> int:
    """None: every core this process may run on; else an int in [1, MAX_THREADS]."""
    if value is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(n, MAX_THREADS))
    return check_int("n_threads", value, 1, MAX_THREADS)


def kv_options(opts: Any) -> dict[str, str]:
    """kv_options as the engine takes them: option name -> text (numbers as text, lists of ints
    joined: {"tsa_layers": [0, 1]} -> {"tsa_layers": "0,1"}, [] -> "none"). The engine checks names
    and ranges; here only the Python types."""
    if opts is None:
        return {}
    if not isinstance(opts, Mapping):
        raise TypeError(f"kv_options must be a dict, got {type(opts).__name__}")
    out: dict[str, str] = {}
    for k, v in opts.items():
        if not isinstance(k, str):
            raise TypeError(f"kv_options keys must be str, got {type(k).__name__} {k!r}")
        check_text(f"kv_options key {k!r}", k, allow_nul=False)
        what = f"kv option {k!r}"
        if isinstance(v, (bool, np.bool_)):
            if k not in _KV_SWITCHES:  # True is no window size or bit width
                raise ValueError(f"{what}: expected a number, a string or a list of ints, got {v!r}")
            out[k] = "1" if v else "0"  # the engine's spelling of a switch
        elif isinstance(v, (int, np.integer)):
            out[k] = str(int(v))
        elif isinstance(v, (float, np.floating)):
            out[k] = repr(float(v))
        elif isinstance(v, str):
            out[k] = check_text(what, v, allow_nul=False)
        elif isinstance(v, (list, tuple, set, frozenset, range, np.ndarray)):
            if isinstance(v, np.ndarray):
                items = v.ravel().tolist()
            else:
                items = sorted(v, key=repr) if isinstance(v, (set, frozenset)) else list(v)
            for x in items:
                if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
                    raise ValueError(f"{what}: expected a list of ints, got the element {x!r} ({type(x).__name__})")
            out[k] = ",".join(str(int(x)) for x in items) if items else "none"
        else:
            raise TypeError(f"{what}: expected a number, a string or a list of ints, got {type(v).__name__}")
    return out


def token_ids(name: str, ids: Any, n_vocab: int, allow_empty: bool = False) -> list[int]:
    """A sequence (list, tuple, 1-D numpy array) of ints in [0, n_vocab)."""
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got an array of shape {ids.shape}")
        ids = ids.tolist()
    if isinstance(ids, (str, bytes, bytearray)) or not isinstance(ids, Sequence):
        raise TypeError(f"{name} must be a sequence of token ids (ints), got {type(ids).__name__}")
    out = []
    for i, t in enumerate(ids):
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
            raise TypeError(f"{name}[{i}] is a {type(t).__name__}, not an int token id")
        if not 0 <= t < n_vocab:
            raise ValueError(f"{name}[{i}] has id {t}, outside the vocabulary [0, {n_vocab})")
        out.append(int(t))
    if not out and not allow_empty:
        raise ValueError(f"{name}: no tokens to evaluate (empty prompt)")
    return out


def stop_strings(value: Any) -> list[str]:
    """stop: None, a str, or a list/tuple of str -> list of the non-empty strings."""
    if value is None:
        return []
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise TypeError(f"stop must be a str or a list of str, got {type(value).__name__}")
    for i, s in enumerate(items):
        if not isinstance(s, str):
            raise TypeError(f"stop[{i}] must be a str, got {type(s).__name__}")
        check_text(f"stop[{i}]" if not isinstance(value, str) else "stop", s)
    return [s for s in items if s]


MAX_LOGPROBS = 20  # GenerateParams::kMaxLogprobs


class SamplingArgs(NamedTuple):
    """Checked generation arguments. seed: None (the Model's default), -1 (random) or the seed;
    resolve_seed(seed, model.seed) gives the sampler's seed."""

    max_tokens: int
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repeat_penalty: float
    repeat_last_n: int
    seed: int | None
    stop: list[str]
    logprobs: int | None = None  # None: none; K in [0, MAX_LOGPROBS]: the token's and K alternatives'

    def engine_kwargs(self, default_seed: int | None) -> dict[str, Any]:
        """The keywords of the engine's generation calls (_akvq.Generator, BatchGenerator.submit),
        the seed resolved against `default_seed` (resolve_seed)."""
        return dict(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            min_p=self.min_p,
            repeat_penalty=self.repeat_penalty,
            repeat_last_n=self.repeat_last_n,
            seed=resolve_seed(self.seed, default_seed),
            stop=self.stop,
            logprobs=self.logprobs,
        )


def sampling_args(
    max_tokens: Any = 128,
    temperature: Any = 0.8,
    top_k: Any = 40,
    top_p: Any = 0.95,
    min_p: Any = 0.0,
    repeat_penalty: Any = 1.0,
    repeat_last_n: Any = 64,
    seed: Any = None,
    stop: Any = None,
    logprobs: Any = None,
) -> SamplingArgs:
    """Checks generate()'s arguments with the engine's ranges (SamplingParams::validate) and
    returns them cleaned (Python ints and floats, stop as a list of the non-empty str).
    max_tokens -1 or None: until the context is full, as `-n -1` and llama-cpp-python's
    create_completion (the engine stops with "context")."""
    if max_tokens is None or (
        isinstance(max_tokens, (int, np.integer)) and not isinstance(max_tokens, (bool, np.bool_)) and max_tokens == -1
    ):
        max_tokens = INT32_MAX
    return SamplingArgs(
        max_tokens=check_int("max_tokens", max_tokens, 0, INT32_MAX, hint=" (-1 or None: until the context is full)"),
        temperature=check_float("temperature", temperature, 0.0, hint=" (0 means greedy)"),
        top_k=check_int("top_k", top_k, -1, INT32_MAX),
        top_p=check_float("top_p", top_p, 0.0, 1.0, hint=" (1 disables it, 0 keeps only the most likely token)"),
        min_p=check_float("min_p", min_p, 0.0, 1.0, hint=" (0 disables it)"),
        repeat_penalty=check_float("repeat_penalty", repeat_penalty, 0.0, lo_open=True, hint=" (1 disables it)"),
        repeat_last_n=check_int("repeat_last_n", repeat_last_n, -1, INT32_MAX),
        seed=check_seed("seed", seed),
        stop=stop_strings(stop),
        logprobs=None if logprobs is None else check_int("logprobs", logprobs, 0, MAX_LOGPROBS),
    )
