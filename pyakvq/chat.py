"""Chat prompts: render a model's Jinja chat template (tokenizer.chat_template) with jinja2."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import jinja2
import jinja2.sandbox

# Used when a model file carries no template (the common ChatML layout).
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)

_ROLES = ("system", "user", "assistant", "tool")


def _raise(message: str):
    raise jinja2.exceptions.TemplateError(message)


def normalize_messages(messages_or_prompt: str | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A prompt string becomes one user message; a list of {"role", "content"} dicts is checked."""
    if isinstance(messages_or_prompt, str):
        return [{"role": "user", "content": messages_or_prompt}]
    if not isinstance(messages_or_prompt, Sequence) or isinstance(messages_or_prompt, (bytes, bytearray)):
        raise TypeError("chat() takes a prompt string or a list of {'role', 'content'} messages")
    out = []
    for i, msg in enumerate(messages_or_prompt):
        if not isinstance(msg, dict):
            raise TypeError(f"message {i} is a {type(msg).__name__}, not a dict")
        role, content = msg.get("role"), msg.get("content")
        if role not in _ROLES:
            raise ValueError(f"message {i}: role must be one of {_ROLES}, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"message {i}: content must be a string, got {type(content).__name__}")
        out.append(dict(msg))
    if not out:
        raise ValueError("chat() needs at least one message")
    return out


def render(
    template: str,
    messages: list[dict[str, Any]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    """Renders `template` in a sandbox, as Hugging Face's apply_chat_template does."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    try:
        tmpl = env.from_string(template)
        return tmpl.render(
            messages=messages,
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
        )
    except jinja2.exceptions.TemplateError as e:
        raise ValueError(f"chat template error: {e}") from e
