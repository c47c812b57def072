"""The arguments of the OpenAI-shaped completions (pyakvq.completions), checked once for the
Python API and the HTTP server: sampling into a `Sampling`, and the OpenAI / llama-cpp-python
fields that are accepted only when they ask for nothing (llama.cpp's reading of top_k and top_p:
see pyakvq.completions)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import _validate as _v

#: most alternatives per token (OpenAI's limit for chat top_logprobs)
MAX_LOGPROBS = _v.MAX_LOGPROBS
#: most choices per request
MAX_N = 128


@dataclass(frozen=True)
class Sampling:
    """Checked generation arguments of one request: the sampling arguments as Model.generate checks
    them (args; its max_tokens is unused), max_tokens None for up to the end of the context, and
    the number of choices n. args.seed None: the Model's seed, else random per choice;
    args.logprobs None: no log probabilities, K in [0, 20]: the sampled token's and K
    alternatives."""

    args: _v.SamplingArgs
    max_tokens: int | None
    n: int

    @property
    def logprobs(self) -> int | None:
        return self.args.logprobs

    def generate_kwargs(self, index: int, n_prompt: int, n_ctx: int, default_seed: int | None = None) -> dict[str, Any]:
        """Keywords of Model.generate / BatchEngine.submit for choice `index` of a prompt of
        n_prompt tokens. Choice i of a seeded request uses seed + i (reproducible, and the choices
        differ when sampling)."""
        max_tokens = self.max_tokens
        room = n_ctx - n_prompt
        if max_tokens is None or max_tokens > room:
            max_tokens = max(room, 0)  # the engine stops with "context" when the context fills
        seed = self.args.seed if self.args.seed is not None else default_seed
        if seed is not None and seed != -1:
            seed = (seed + index) % (_v.UINT64_MAX + 1)
        elif seed == -1:
            seed = None
        kw = self.args._replace(max_tokens=max_tokens, seed=seed, stop=list(self.args.stop) or None)._asdict()
        if kw["logprobs"] is None:
            del kw["logprobs"]
        return kw


def check_sampling(
    *,
    max_tokens: Any,
    temperature: Any,
    top_k: Any,
    top_p: Any,
    min_p: Any,
    repeat_penalty: Any,
    repeat_last_n: Any,
    seed: Any,
    stop: Any,
    logprobs: Any,
    n: Any,
) -> Sampling:
    """Checks the arguments (TypeError for a wrong type, ValueError for a bad value, each naming
    the argument) and returns them as a Sampling. top_k 0 or -1 disables it; top_p 0 keeps only
    the most likely token, as llama.cpp takes them (the engine's SamplingParams)."""
    n = _v.check_int("n", n, 1, MAX_N)
    if max_tokens is not None:
        max_tokens = _v.check_int("max_tokens", max_tokens, 0, _v.INT32_MAX)
    a = _v.sampling_args(
        0 if max_tokens is None else max_tokens,
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
    return Sampling(args=a, max_tokens=max_tokens, n=n)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_response_format(response_format: Any) -> None:
    """Only plain text output is produced: None or {"type": "text"}; anything else is refused."""
    if response_format is None:
        return
    if not isinstance(response_format, Mapping):
        raise TypeError(
            f"response_format must be an object like {{'type': 'text'}}, got {type(response_format).__name__}"
        )
    kind = response_format.get("type")
    if kind != "text":
        raise ValueError(
            f"response_format {{'type': {kind!r}}} is not supported: only plain text is produced "
            "(response_format {'type': 'text'} or none)"
        )


# llama-cpp-python's keywords for features pyakvq does not have: accepted when they ask for nothing
# (name -> (the neutral values, how the message shows them, the feature))
_NEUTRAL_KEYWORDS: dict[str, tuple[tuple[Any, ...], str, str]] = {
    "presence_penalty": ((0,), "0", "a presence penalty"),
    "frequency_penalty": ((0,), "0", "a frequency penalty"),
    "mirostat_mode": ((0,), "0", "mirostat sampling"),
    "typical_p": ((1,), "1.0", "locally typical sampling"),
    "tfs_z": ((1,), "1.0", "tail-free sampling"),
    "stopping_criteria": ((None,), "None", "stopping criteria callbacks"),
    "logits_processor": ((None,), "None", "logits processor callbacks"),
    "grammar": ((None,), "None", "grammar-constrained sampling"),
    "logit_bias": ((None, {}), "None or {}", "logit biases"),
    "tools": ((None, []), "None or []", "tool calling"),
    "functions": ((None, []), "None or []", "function calling"),
    "tool_choice": ((None, "none"), "None or 'none'", "tool calling"),
    "function_call": ((None, "none"), "None or 'none'", "function calling"),
}


def _is_neutral(value: Any, neutral: tuple[Any, ...]) -> bool:
    for a in neutral:
        if a is None:
            if value is None:
                return True
        elif isinstance(a, str):
            if isinstance(value, str) and value == a:
                return True
        elif isinstance(a, dict):
            if isinstance(value, Mapping) and not value:
                return True
        elif isinstance(a, list):
            if isinstance(value, (list, tuple)) and not value:
                return True
        elif _is_number(value) and value == a:
            return True
    return False


def check_neutral(*, mirostat_tau: Any = 5.0, mirostat_eta: Any = 0.1, **kw: Any) -> None:
    """llama-cpp-python's keywords of features pyakvq does not have (presence_penalty,
    frequency_penalty, mirostat_mode, typical_p, tfs_z, stopping_criteria, logits_processor,
    grammar, logit_bias, tools, functions, tool_choice, function_call): ValueError naming the
    argument unless its value asks for nothing. mirostat_tau and mirostat_eta ask for nothing
    while mirostat_mode is 0 (the only mode accepted), as in llama-cpp-python: numbers, unread."""
    for name, value in (("mirostat_tau", mirostat_tau), ("mirostat_eta", mirostat_eta)):
        if not _is_number(value):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    for name, value in kw.items():
        neutral, shown, feature = _NEUTRAL_KEYWORDS[name]
        if not _is_neutral(value, neutral):
            r = repr(value)
            r = r if len(r) <= 60 else r[:57] + "..."
            raise ValueError(f"{name}={r} is not supported: pyakvq does not have {feature} (only {name}={shown})")


def llama_cpp_temperature(temperature: Any, top_k: Any, top_p: Any, min_p: Any) -> tuple[Any, Any, Any, Any]:
    """llama-cpp-python's reading of a negative temperature in create_completion /
    create_chat_completion: a draw from the whole softmax at temperature 1, no top-k, top-p or
    min-p. (temperature, top_k, top_p, min_p) as the sampler takes them; others unchanged."""
    if _is_number(temperature) and not isinstance(temperature, bool) and temperature < 0:
        return 1.0, 0, 1.0, 0.0
    return temperature, top_k, top_p, min_p


def chat_logprobs(logprobs: Any, top_logprobs: Any) -> int | None:
    """The chat API's logprobs (bool) and top_logprobs (0..20, needs logprobs) -> K or None."""
    if logprobs is not None:
        logprobs = _v.check_bool("logprobs", logprobs)
    if top_logprobs is not None:
        top_logprobs = _v.check_int("top_logprobs", top_logprobs, 0, MAX_LOGPROBS)
        if not logprobs:
            raise ValueError("top_logprobs needs logprobs=true")
    if not logprobs:
        return None
    return top_logprobs or 0


def max_tokens_of(max_tokens: Any, max_completion_tokens: Any) -> Any:
    """max_completion_tokens (the chat API's newer name) or max_tokens; both: they must agree."""
    if max_completion_tokens is None:
        return max_tokens
    if max_tokens is not None and max_tokens != max_completion_tokens:
        raise ValueError(
            f"max_tokens ({max_tokens!r}) and max_completion_tokens ({max_completion_tokens!r}) differ: give one"
        )
    return max_completion_tokens


# chat()'s own arguments and the renderer's inputs: not template variables
_NOT_TEMPLATE_VARIABLES = frozenset(
    ("template", "chat_template", "messages", "tools", "documents", "images", "add_generation_prompt")
)


def template_kwargs(kwargs: Any) -> dict[str, Any]:
    """chat_template_kwargs (None or a mapping of template variables, e.g. {"enable_thinking":
    False}) as a dict. The names of chat()'s own arguments (template, tools, images, ...) and
    names starting with '_' are refused: a request sets variables the template reads, never the
    template, tools or the renderer's private options."""
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"chat_template_kwargs must be an object (a dict), got {type(kwargs).__name__}")
    for name in kwargs:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"chat_template_kwargs: {name!r} is not a template variable name")
        if name.startswith("_") or name in _NOT_TEMPLATE_VARIABLES:
            raise ValueError(
                f"chat_template_kwargs: {name!r} is not a template variable (chat_template_kwargs sets variables "
                "the chat template reads; the template, tools and images cannot be given there)"
            )
    return dict(kwargs)


def check_prompt_fits(n_prompt: int, n_ctx: int) -> None:
    if n_prompt >= n_ctx:
        raise ValueError(
            f"the prompt has {n_prompt} tokens, which leaves no room in the context of n_ctx={n_ctx} tokens"
        )


# ---------------------------------------------------------------------------------------------
# results
