"""Chat prompts: render a model's Jinja chat template (tokenizer.chat_template) as Hugging Face
transformers' `apply_chat_template(..., tokenize=False)` renders it.

The environment is the one transformers builds (utils/chat_template_utils.py): a jinja2
ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the loop controls
(`{% break %}`, `{% continue %}`), the `{% generation %}...{% endgeneration %}` tag (renders its
body), a `tojson` filter that neither sorts keys nor escapes HTML or non-ASCII characters and takes
`indent`/`separators`/`sort_keys`, and the globals `raise_exception`, `strftime_now`, `dict` and a
`namespace` that refuses underscore names. Messages are normalized the same way too: keys whose
value is None are dropped, a message's reasoning (`reasoning_content`, `thinking` or `reasoning`)
is also offered under `thinking` and `reasoning_content`, and every value the template sees is
rebuilt from plain JSON types (anything else, an image object for instance, becomes a placeholder
string such as "<Image>"). Template variables (`tools`, `documents`, `enable_thinking`, ...) are
passed as apply_chat_template passes them.

tests/python/test_chat_template.py checks every output of a corpus of real model templates
rendered with transformers (tests/fixtures/chat_templates/) byte for byte.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
import jinja2.ext
import jinja2.filters
import jinja2.meta
import jinja2.nodes
import jinja2.sandbox
import jinja2.utils

# Used when a model file carries no template (the common ChatML layout).
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)

# Roles a message may have: the OpenAI/transformers ones plus the aliases templates know
# (Llama 3.1 "ipython", gpt-oss "developer", the legacy "function").
ROLES = ("system", "user", "assistant", "tool", "ipython", "developer", "function")

# Names the renderer sets itself; a template variable cannot take them.
RESERVED = ("messages", "add_generation_prompt", "tools", "documents")

# Names a message's reasoning comes under; templates read `reasoning_content` (and gpt-oss `thinking`).
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def _now() -> datetime.datetime:
    """The time strftime_now() formats (a function so that tests can fix it)."""
    return datetime.datetime.now()


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt):
    return _now().strftime(fmt)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # Jinja's own tojson sorts keys and escapes <, >, &, ' as \u sequences; chat templates expect
    # plain json.dumps output.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _TemplateDict:
    """`dict` as templates see it: construction only, no access to the type itself."""

    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    """`namespace(...)` that refuses underscore-prefixed attribute names."""

    def __init__(*args, **kwargs):  # noqa: N805 - same signature trick as jinja2.utils.Namespace
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"chat templates cannot store underscore-prefixed attributes on a namespace, got {name!r}"
            )


class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` marks the assistant's tokens for training masks;
    rendering only outputs the body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

    def _render_body(self, caller):
        return caller()


#: the longest string or list a template may build with `*`, and the longest text it may render
#: (characters): far beyond any prompt, short of what would exhaust memory or time
MAX_TEMPLATE_CHARS = 1 << 24


#: the largest integer a template may compute with `**` (bits)
MAX_TEMPLATE_INT_BITS = 1 << 16

_PERCENT_WIDTHS = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d*)(?:\.(\d*))?")


def _check_percent_format(fmt: str) -> None:
    """Refuses a %-format whose widths or precisions would build more than MAX_TEMPLATE_CHARS."""
    for m in _PERCENT_WIDTHS.finditer(fmt):
        for g in m.groups():
            if g and int(g) > MAX_TEMPLATE_CHARS:
                raise jinja2.exceptions.SecurityError(f"the template formats a field {g} characters wide")


def _bounded_center(value, width=80):
    if isinstance(width, int) and width > MAX_TEMPLATE_CHARS:
        raise jinja2.exceptions.SecurityError(f"the template centers text in {width} characters")
    return jinja2.filters.do_center(value, width)


def _bounded_format(value, *args, **kwargs):
    _check_percent_format(str(value))
    return jinja2.filters.do_format(value, *args, **kwargs)


class _Sandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """The sandbox with bounded repetition, powers and %-formats: `'x' * 10**9`, `9 ** 10**9` or
    `'%0999999999d' % 1` in a template raise instead of taking the process's memory or time."""

    intercepted_binops = frozenset(("*", "**", "%"))

    def call_binop(self, context, operator, left, right):
        if operator == "*":
            for seq, k in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(k, int) and len(seq) * k > MAX_TEMPLATE_CHARS:
                    raise jinja2.exceptions.SecurityError(
                        f"the template repeats a {type(seq).__name__} of length {len(seq)} {k} times "
                        f"(more than {MAX_TEMPLATE_CHARS} items)"
                    )
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if abs(left) > 1 and right > 0 and right * math.log2(abs(left)) > MAX_TEMPLATE_INT_BITS:
                raise jinja2.exceptions.SecurityError(
                    f"the template raises an integer of {abs(left).bit_length()} bits to the power {right}"
                )
        elif operator == "%" and isinstance(left, str):
            _check_percent_format(left)
        return super().call_binop(context, operator, left, right)


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    env = _Sandbox(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.filters["center"] = _bounded_center
    env.filters["format"] = _bounded_format
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _TemplateNamespace
    return env


@functools.lru_cache(maxsize=32)
def _compile(template: str) -> jinja2.Template:
    try:
        return _environment().from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise ValueError(f"chat template syntax error (line {e.lineno}): {e.message}") from e


@functools.lru_cache(maxsize=32)
def template_variables(template: str) -> frozenset[str]:
    """The names `template` reads from its context (jinja2.meta.find_undeclared_variables), the
    renderer's globals (raise_exception, namespace, ...) excepted."""
    env = _environment()
    try:
        names = jinja2.meta.find_undeclared_variables(env.parse(template))
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise ValueError(f"chat template syntax error (line {e.lineno}): {e.message}") from e
    return frozenset(names - set(env.globals))


def _plain(value: Any) -> Any:
    """Rebuilds `value` from plain JSON types (as transformers' _plain_template_data): objects
    with methods the sandbox does not know about never reach the template."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return _plain(item())  # numpy scalars (not arrays: an image array is a placeholder as below)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):
        return _plain(value.model_dump())  # pydantic models (OpenAI SDK messages)
    return f"<{type(value).__name__}>"


def _check_content(i: int, content: Any) -> None:
    if isinstance(content, str) or isinstance(content, Mapping):
        return
    if isinstance(content, (list, tuple)):
        for j, part in enumerate(content):
            if not isinstance(part, Mapping):
                raise ValueError(f"message {i}: content part {j} is a {type(part).__name__}, not a dict")
            if part.get("type") == "text" and not isinstance(part.get("text"), str):
                raise ValueError(f"message {i}: content part {j} is a text part without a 'text' string")
        return
    raise ValueError(f"message {i}: content must be a string or a list of parts, got {type(content).__name__}")


def normalize_messages(messages_or_prompt: str | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A prompt string becomes one user message; a list of message dicts is checked and normalized
    as transformers does: None values dropped, reasoning aliased, values made plain.

    A message has a `role` (one of ROLES) and a `content`: a string, or a list of parts
    ({"type": "text", "text": ...}, {"type": "image", ...}; image parts are kept for templates
    that render them). An assistant message may carry `tool_calls` instead of content; a tool
    message may carry `tool_call_id` / `name`. Other keys are passed through to the template."""
    if isinstance(messages_or_prompt, str):
        return [{"role": "user", "content": messages_or_prompt}]
    if not isinstance(messages_or_prompt, Sequence) or isinstance(messages_or_prompt, (bytes, bytearray)):
        raise TypeError("chat() takes a prompt string or a list of {'role', 'content'} messages")
    out = []
    for i, msg in enumerate(messages_or_prompt):
        if not isinstance(msg, Mapping):
            raise TypeError(f"message {i} is a {type(msg).__name__}, not a dict")
        msg = {k: v for k, v in msg.items() if v is not None}
        role = msg.get("role")
        if role not in ROLES:
            raise ValueError(f"message {i}: role must be one of {ROLES}, got {role!r}")
        tool_calls = msg.get("tool_calls")
        if tool_calls is not None and (
            not isinstance(tool_calls, (list, tuple)) or not all(isinstance(c, Mapping) for c in tool_calls)
        ):
            raise ValueError(f"message {i}: tool_calls must be a list of dicts")
        if "content" in msg:
            _check_content(i, msg["content"])
        elif tool_calls is None:
            raise ValueError(f"message {i}: a {role} message needs 'content'")
        msg = _plain(msg)
        reasoning = next((msg[k] for k in _REASONING_FIELDS if msg.get(k) is not None), None)
        if reasoning is not None:
            msg = {"thinking": reasoning, **msg, "reasoning_content": reasoning}
        out.append(msg)
    if not out:
        raise ValueError("chat() needs at least one message")
    return out


def render(
    template: str,
    messages: str | Sequence[Mapping[str, Any]],
    *,
    bos_token: str | None = None,
    eos_token: str | None = None,
    unk_token: str | None = None,
    pad_token: str | None = None,
    add_generation_prompt: bool = True,
    tools: Sequence[Mapping[str, Any]] | None = None,
    documents: Sequence[Mapping[str, Any]] | None = None,
    **variables: Any,
) -> str:
    """Renders `template` over `messages` (normalized with normalize_messages) as transformers'
    apply_chat_template(messages, tools=tools, documents=documents,
    add_generation_prompt=add_generation_prompt, tokenize=False, **variables) does for a tokenizer
    whose special tokens are bos_token/eos_token/unk_token/pad_token (None: the tokenizer has no
    such token, the template sees it undefined).

    `tools` are JSON-schema dicts ({"type": "function", "function": {...}}), `documents` dicts
    (usually {"title", "text"}); any other keyword (enable_thinking, date_string, ...) becomes a
    template variable and overrides a special token of the same name. A template that raises
    (raise_exception, an undefined attribute, a type error) gives a ValueError with its message, as
    does one that renders more than MAX_TEMPLATE_CHARS characters or repeats a string or list
    beyond that length."""
    for name in RESERVED:
        if name in variables:
            raise TypeError(f"{name!r} is set by the renderer and cannot be a template variable")
    if tools is not None:
        if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
            raise TypeError("tools must be a list of JSON-schema dicts")
        for t in tools:
            if not isinstance(t, Mapping):
                raise TypeError(f"tools must be JSON-schema dicts, got a {type(t).__name__}")
    if documents is not None:
        if isinstance(documents, (str, bytes, Mapping)) or not isinstance(documents, Sequence):
            raise TypeError("documents must be a list of dicts with 'title' and 'text' keys")
        for d in documents:
            if not isinstance(d, Mapping):
                raise TypeError("documents must be a list of dicts with 'title' and 'text' keys")
    msgs = normalize_messages(messages)
    # As a tokenizer's special_tokens_map: a token the model does not have is not defined at all.
    special = (("bos_token", bos_token), ("eos_token", eos_token), ("unk_token", unk_token), ("pad_token", pad_token))
    context = {k: v for k, v in special if v is not None}
    context.update(_plain(variables))
    tmpl = _compile(template)
    try:
        pieces, n = [], 0
        for piece in tmpl.generate(
            messages=msgs,
            tools=_plain(tools),
            documents=_plain(documents),
            add_generation_prompt=bool(add_generation_prompt),
            **context,
        ):
            n += len(piece)
            if n > MAX_TEMPLATE_CHARS:
                raise jinja2.exceptions.TemplateRuntimeError(
                    f"the rendered prompt exceeds {MAX_TEMPLATE_CHARS} characters"
                )
            pieces.append(piece)
        return "".join(pieces)
    except jinja2.exceptions.TemplateError as e:
        raise ValueError(f"chat template error: {e.message if e.message is not None else e}") from e
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError) as e:
        raise ValueError(f"chat template error: {type(e).__name__}: {e}") from e
