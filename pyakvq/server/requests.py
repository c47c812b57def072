"""Request bodies of /v1/chat/completions and /v1/completions: JSON -> checked arguments.

Every field is checked here (or by pyakvq.completions, whose TypeError/ValueError become 400s with
the field as `param`): unknown fields, wrong types and unsupported features are refused with a
message that names them, never ignored silently."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import completion_args as _a
from .. import completions as _c
from .config import ServerConfig
from .errors import APIError, bad_request

# Sampling fields common to both endpoints (the last three are llama.cpp server extensions).
_SAMPLING = ("temperature", "top_p", "n", "stream", "stop", "seed", "top_k", "min_p", "repeat_penalty")
# Known OpenAI fields accepted when they ask for nothing (0, null, {}, false), refused otherwise.
_NEUTRAL = {"presence_penalty": 0, "frequency_penalty": 0, "logit_bias": {}}
# Known OpenAI fields with no effect here.
_IGNORED = ("user", "store", "metadata", "service_tier")
# Known OpenAI features this server does not have (accepted when they ask for nothing: null, [],
# false, or the value in _OFF).
_UNSUPPORTED = {
    "tools": "tool calling",
    "tool_choice": "tool calling",
    "functions": "function calling",
    "function_call": "function calling",
    "parallel_tool_calls": "tool calling",
    "audio": "audio output",
    "modalities": "output modalities other than text",
    "prediction": "predicted outputs",
    "reasoning_effort": "reasoning_effort",
    "web_search_options": "web search",
}
_OFF = {"tool_choice": "none", "function_call": "none"}

CHAT_FIELDS = frozenset(
    (
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "logprobs",
        "top_logprobs",
        "response_format",
        "stream_options",
        "chat_template_kwargs",
        *_SAMPLING,
        *_NEUTRAL,
        *_IGNORED,
        *_UNSUPPORTED,
    )
)
COMPLETION_FIELDS = frozenset(
    (
        "model",
        "prompt",
        "max_tokens",
        "logprobs",
        "echo",
        "suffix",
        "best_of",
        "stream_options",
        *_SAMPLING,
        *_NEUTRAL,
        *_IGNORED,
    )
)

_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_MESSAGE_KEYS = frozenset(("role", "content", "name", "tool_calls", "tool_call_id", "refusal", "function_call"))


def parse_json(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object (400 otherwise)."""
    if not body:
        raise bad_request("the request body is empty: expected a JSON object")
    try:
        obj = json.loads(body)
    except UnicodeDecodeError:
        raise bad_request("the request body is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise bad_request(f"the request body is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise bad_request("the request body is not valid JSON here: its arrays/objects nest too deeply") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise bad_request(f"the request body is not valid JSON here: {e}") from None
    if not isinstance(obj, dict):
        raise bad_request(f"the request body must be a JSON object, got {type(obj).__name__}")
    return obj


def _check_fields(body: Mapping[str, Any], allowed: frozenset[str], endpoint: str) -> None:
    for k in body:
        if k not in allowed:
            raise bad_request(f"unknown field {k!r} for {endpoint}", k, "unknown_field")
    for k, what in _UNSUPPORTED.items():
        if k in body and body[k] not in (None, [], False, _OFF.get(k, None)) and k in allowed:
            raise bad_request(f"{k}: {what} is not supported by this server", k, "unsupported")
    for k, neutral in _NEUTRAL.items():
        v = body.get(k)
        if v is not None and v != neutral:
            raise bad_request(f"{k} is not supported by this server (only {json.dumps(neutral)} or null)", k)


def check_model(body: Mapping[str, Any], cfg: ServerConfig) -> None:
    name = body.get("model")
    if name is None:
        raise bad_request("the field 'model' is required", "model")
    if not isinstance(name, str):
        raise bad_request(f"model must be a string, got {type(name).__name__}", "model")
    if name != cfg.model_name:
        raise APIError(
            404,
            f"the model {name!r} does not exist: this server serves {cfg.model_name!r}",
            param="model",
            code="model_not_found",
        )


def _param_of(message: str, names: tuple[str, ...]) -> str | None:
    """Which field a pyakvq argument error is about (its message starts with the name)."""
    for n in sorted(names, key=len, reverse=True):
        if message.startswith(n):
            return n
    return None


def _sampling(body: Mapping[str, Any], max_tokens: Any, logprobs: Any) -> _a.Sampling:
    kw = {
        "max_tokens": max_tokens,
        "temperature": body.get("temperature", _DEFAULTS["temperature"]),
        "top_k": body.get("top_k", _DEFAULTS["top_k"]),
        "top_p": body.get("top_p", _DEFAULTS["top_p"]),
        "min_p": body.get("min_p", _DEFAULTS["min_p"]),
        "repeat_penalty": body.get("repeat_penalty", _DEFAULTS["repeat_penalty"]),
        "repeat_last_n": 64,
        "seed": body.get("seed"),
        "stop": body.get("stop"),
        "logprobs": logprobs,
        "n": body.get("n", 1),
    }
    for k in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "n"):
        if kw[k] is None:
            kw[k] = _DEFAULTS[k]
    try:
        return _a.check_sampling(**kw)
    except (TypeError, ValueError) as e:
        raise bad_request(str(e), _param_of(str(e), tuple(kw) + ("stop",))) from None


#: sampling defaults of the server (OpenAI's temperature and top_p; the engine's top_k; no min_p)
_DEFAULTS = {"temperature": 1.0, "top_k": 40, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0, "n": 1}


def _bool(body: Mapping[str, Any], name: str, default: bool = False) -> bool:
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise bad_request(f"{name} must be true or false, got {json.dumps(v)[:40]}", name)
    return v


def _include_usage(body: Mapping[str, Any], stream: bool) -> bool:
    try:
        return _c._include_usage(body.get("stream_options"), stream)
    except (TypeError, ValueError) as e:
        raise bad_request(str(e), "stream_options") from None


@dataclass
class ImageRef:
    """An image part of the messages, fetched and decoded later (outside the event loop)."""

    url: Any
    where: str


@dataclass
class ChatRequest:
    messages: list[dict[str, Any]]
    images: list[ImageRef]
    sampling: _a.Sampling
    stream: bool
    include_usage: bool
    template_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class CompletionRequest:
    prompt: str | list[int]
    sampling: _a.Sampling
    stream: bool
    include_usage: bool
    echo: bool


def _messages(raw: Any, cfg: ServerConfig) -> tuple[list[dict[str, Any]], list[ImageRef]]:
    """Checks the messages; image_url parts become {"type": "image", "image": ImageRef}."""
    if not isinstance(raw, list) or not raw:
        raise bad_request("messages must be a non-empty array of messages", "messages")
    out: list[dict[str, Any]] = []
    images: list[ImageRef] = []
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise bad_request(f"{where} must be an object with 'role' and 'content'", "messages")
        for k in msg:
            if k not in _MESSAGE_KEYS:
                raise bad_request(f"{where}: unknown field {k!r}", "messages", "unknown_field")
        role = msg.get("role")
        if role not in _ROLES:
            raise bad_request(
                f"{where}.role must be one of {', '.join(_ROLES)}; got {json.dumps(role)[:40]}", "messages"
            )
        content = msg.get("content")
        m = {k: v for k, v in msg.items() if v is not None}
        if role == "developer":
            m["role"] = "system"
        calls = [k for k in ("tool_calls", "function_call") if msg.get(k)]
        if calls or role in ("tool", "function"):
            # a history of tool calls comes from tool calling, which this server does not do (see `tools`)
            what = f"'{calls[0]}'" if calls else f"a {role} message"
            raise bad_request(f"{where}: {what} is not supported (this server does no tool calling)", "messages")
        if content is None:
            raise bad_request(f"{where}.content is required (a string or an array of parts)", "messages")
        elif isinstance(content, list):
            if not content:
                raise bad_request(
                    f"{where}.content is an empty array (give a string, or an array of at least one part)", "messages"
                )
            parts = []
            for j, part in enumerate(content):
                pw = f"{where}.content[{j}]"
                if not isinstance(part, dict) or "type" not in part:
                    got = "an object without 'type'" if isinstance(part, dict) else f"{json.dumps(part)[:40]}"
                    raise bad_request(
                        f"{pw}: each content part must be an object with a 'type', like "
                        f"{{'type': 'text', 'text': ...}} or {{'type': 'image_url', 'image_url': {{'url': ...}}}}; "
                        f"got {got}",
                        "messages",
                    )
                kind = part.get("type")
                if kind == "text":
                    if set(part) - {"type", "text"} or not isinstance(part.get("text"), str):
                        raise bad_request(f"{pw}: a text part is {{'type': 'text', 'text': string}}", "messages")
                    parts.append(part)
                elif kind == "image_url":
                    if role != "user":
                        raise bad_request(
                            f"{pw}: images are allowed only in user messages ({where} has role {role!r})", "messages"
                        )
                    iu = part.get("image_url")
                    if set(part) - {"type", "image_url"} or not isinstance(iu, (dict, str)):
                        raise bad_request(
                            f"{pw}: an image part is {{'type': 'image_url', 'image_url': {{'url': ...}}}}", "messages"
                        )
                    if isinstance(iu, dict):
                        if set(iu) - {"url", "detail"}:
                            bad = sorted(set(iu) - {"url", "detail"})[0]
                            raise bad_request(f"{pw}.image_url: unknown field {bad!r}", "messages", "unknown_field")
                        iu = iu.get("url")
                    images.append(ImageRef(iu, pw))
                    if len(images) > cfg.max_images:
                        raise bad_request(
                            f"too many images: more than this server's limit of {cfg.max_images} per request",
                            "messages",
                            "too_many_images",
                        )
                    parts.append({"type": "image", "image": images[-1]})
                else:
                    raise bad_request(
                        f"{pw}: unsupported content part type {json.dumps(kind)[:40]} (text and image_url are)",
                        "messages",
                    )
            m["content"] = parts
        elif not isinstance(content, str):
            raise bad_request(f"{where}.content must be a string or an array of parts", "messages")
        out.append(m)
    return out, images


def parse_chat(body: Mapping[str, Any], cfg: ServerConfig) -> ChatRequest:
    _check_fields(body, CHAT_FIELDS, "/v1/chat/completions")
    check_model(body, cfg)
    try:
        _a.check_response_format(body.get("response_format"))
        max_tokens = _a.max_tokens_of(body.get("max_tokens"), body.get("max_completion_tokens"))
        k = _a.chat_logprobs(body.get("logprobs"), body.get("top_logprobs"))
    except (TypeError, ValueError) as e:
        msg = str(e)
        raise bad_request(msg, _param_of(msg, ("response_format", "max_tokens", "top_logprobs", "logprobs"))) from None
    stream = _bool(body, "stream")
    s = _sampling(body, max_tokens, k)
    messages, images = _messages(body.get("messages"), cfg)
    try:
        tk = _a.template_kwargs(body.get("chat_template_kwargs"))
    except (TypeError, ValueError) as e:
        raise bad_request(str(e), "chat_template_kwargs") from None
    return ChatRequest(messages, images, s, stream, _include_usage(body, stream), tk)


def parse_completion(body: Mapping[str, Any], cfg: ServerConfig) -> CompletionRequest:
    _check_fields(body, COMPLETION_FIELDS, "/v1/completions")
    check_model(body, cfg)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one prompt
    if isinstance(prompt, list):
        if not prompt or not all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            raise bad_request("prompt must be a string or an array of token ids (one prompt per request)", "prompt")
    elif not isinstance(prompt, str) or not prompt:
        raise bad_request("prompt must be a non-empty string or an array of token ids", "prompt")
    if body.get("suffix") is not None:
        raise bad_request("suffix is not supported (no fill-in-the-middle)", "suffix")
    echo = _bool(body, "echo")
    stream = _bool(body, "stream")
    logprobs = body.get("logprobs")
    if logprobs is not None and (isinstance(logprobs, bool) or not isinstance(logprobs, int)):
        raise bad_request("logprobs must be an integer (the number of alternatives, 0..20) or null", "logprobs")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:  # OpenAI: "integer or null, defaults to 16" (null is the default too)
        max_tokens = 16
    s = _sampling(body, max_tokens, logprobs)
    best_of = body.get("best_of")
    if best_of is not None and best_of != s.n:
        raise bad_request("best_of is not supported (only best_of equal to n)", "best_of")
    return CompletionRequest(prompt, s, stream, _include_usage(body, stream), echo)
