"""Images in prompts: message parts with images (transformers' {"type": "image", "image": ...} and
the OpenAI API's {"type": "image_url", "image_url": {"url": ...}}), and LLaVA-1.5's vicuna chat
format for models whose file has no chat template."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from typing import Any

# LLaVA-1.5's conv_vicuna_v1 (the same text as akvq-cli's built-in "vicuna" format):
#   "{system} USER: <image>\n{question} ASSISTANT: {answer}</s>USER: ..."
LLAVA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)


def vicuna_template(marker: str) -> str:
    """LLaVA-1.5's vicuna format as a chat template; `marker` is the model's image token text."""
    system = LLAVA_SYSTEM.replace("'", "\\'")
    marker = marker.replace("\\", "\\\\").replace("'", "\\'")
    return (
        "{% if messages and messages[0]['role'] != 'system' %}{{ '" + system + " ' }}{% endif %}"
        "{% for message in messages %}"
        "{% if message['content'] is string %}{% set parts = [{'type': 'text', 'text': message['content']}] %}"
        "{% else %}{% set parts = message['content'] %}{% endif %}"
        "{% if message['role'] == 'system' %}"
        "{% for part in parts if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}{{ ' ' }}"
        "{% else %}{{ message['role'] | upper }}{{ ': ' }}"
        "{% for part in parts if part['type'] == 'image' %}{{ '" + marker + "\n' }}{% endfor %}"
        "{% for part in parts if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}"
        "{% if message['role'] == 'assistant' %}{{ eos_token }}{% else %}{{ ' ' }}{% endif %}"
        "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
    )


def _image_url(url: Any, where: str):
    """An OpenAI image_url: a data URL (base64) -> bytes; a local path or file:// URL -> the path."""
    if isinstance(url, Mapping):
        url = url.get("url")
    if not isinstance(url, str) or not url:
        raise ValueError(f"{where}: image_url needs a 'url' string (a data: URL or a local path)")
    if url.startswith("data:"):
        head, sep, data = url.partition(",")
        if not sep or not head.endswith(";base64"):
            raise ValueError(f"{where}: only base64 data URLs are supported ('data:image/png;base64,...')")
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{where}: the data URL is not valid base64") from None
    if url.startswith("file://"):
        return url[len("file://") :]
    if "://" in url:
        raise ValueError(f"{where}: remote image URLs are not fetched ({url.split('://')[0]}://); pass a local path")
    return url


def extract_images(messages: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Messages with image parts -> (messages whose image parts are {"type": "image"} only, the
    images in the order they appear)."""
    out: list[dict[str, Any]] = []
    images: list[Any] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping):
            out.append(msg)  # the renderer reports it
            continue
        content = msg.get("content")
        if isinstance(content, (str, bytes)) or not isinstance(content, Sequence):
            out.append(dict(msg))
            continue
        parts = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, Mapping) else None
            where = f"messages[{i}].content[{j}]"
            if kind == "image":
                img = part.get("image", part.get("url", part.get("path")))
                if img is None:
                    raise ValueError(f"{where}: an image part needs its image ('image': path, bytes, PIL or array)")
                images.append(img)
                parts.append({"type": "image"})
            elif kind == "image_url":
                images.append(_image_url(part.get("image_url"), where))
                parts.append({"type": "image"})
            else:
                parts.append(part)
        m = dict(msg)
        m["content"] = parts
        out.append(m)
    return out, images


def join_text_parts(messages: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Messages whose content is a list of text parts only ({"type": "text", "text": ...}) get that
    text as one string, the parts joined by newlines, as llama.cpp's server and vLLM pass such
    content to a text model's template (most of which concatenate content as a string). Other
    messages are returned as they are."""
    out: list[Any] = []
    for msg in messages:
        content = msg.get("content") if isinstance(msg, Mapping) else None
        if (
            isinstance(content, Sequence)
            and not isinstance(content, (str, bytes))
            and content
            and all(
                isinstance(p, Mapping) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
            )
        ):
            msg = {**msg, "content": "\n".join(p["text"] for p in content)}
        out.append(msg)
    return out


PART_TYPES = ("text", "image", "image_url")  # the content parts chat() renders
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def check_part_types(messages: Any) -> None:
    """Raises ValueError naming the first content part whose type chat() cannot render (audio,
    files, ...), instead of letting the template drop it (as the server answers 400), or the first
    message whose content is an empty list of parts (a text template would fail on it, a vision
    one render nothing)."""
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
        return
    for i, msg in enumerate(messages):
        content = msg.get("content") if isinstance(msg, Mapping) else None
        if isinstance(content, (str, bytes)) or not isinstance(content, Sequence):
            continue
        if len(content) == 0:
            raise ValueError(f"messages[{i}].content is an empty list (give a string, or a list of at least one part)")
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind not in PART_TYPES:
                what = repr(kind) if isinstance(part, Mapping) else f"a {type(part).__name__}, not a dict"
                raise ValueError(
                    f"messages[{i}].content[{j}]: unsupported content part type {what[:60]} "
                    f"(text, image and image_url are)"
                )


def check_prompt_and_template(prompt: str, template: str) -> None:
    """chat(x, y) where x is not an existing image: x is the prompt and y the chat template. Raises
    FileNotFoundError when x looks like an image path (one line ending in an image suffix), else
    ValueError when y has no Jinja markup ("{{" or "{%"), which a chat template needs to render the
    conversation: both mean an image that is not there, and the question would be rendered as the
    template."""
    p = prompt.strip()
    if "\n" not in p and p.lower().endswith(IMAGE_SUFFIXES):
        if "\0" in p:
            raise ValueError(f"image path {p!r}: embedded null byte")
        if os.path.isdir(p):
            raise IsADirectoryError(f"{p!r} is a directory, not an image file")
        if os.path.lexists(p):  # there, but not a readable file: a broken or looping link
            raise FileNotFoundError(f"image file {p!r}: a symbolic link to nothing readable")
        raise FileNotFoundError(f"image file not found: {p!r}")
    if "{{" not in template and "{%" not in template:
        raise ValueError(
            f"chat({prompt[:40]!r}, {template[:40]!r}): the first argument is not an existing image file, so the "
            "second is taken as the chat template, but it has no Jinja markup; give chat(image, prompt) an "
            "existing image (path, bytes, PIL image or array), or the template as template=..."
        )


def has_image_data(messages: Any) -> bool:
    """Whether some message part carries an image (an image part with its image, or an image_url)."""
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
        return False
    for msg in messages:
        content = msg.get("content") if isinstance(msg, Mapping) else None
        if isinstance(content, (str, bytes)) or not isinstance(content, Sequence):
            continue
        for part in content:
            if isinstance(part, Mapping) and (
                part.get("type") == "image_url"
                or (part.get("type") == "image" and any(k in part for k in ("image", "url", "path")))
            ):
                return True
    return False


def looks_like_images(x: Any) -> bool:
    """Whether chat()'s first argument is an image or a list of images rather than messages/a prompt."""
    if isinstance(x, (bytes, bytearray, memoryview, os.PathLike)):
        return True
    if isinstance(x, str):
        return os.path.isfile(x)
    if type(x).__module__.startswith(("PIL.", "numpy")):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(not isinstance(e, Mapping) for e in x)
    return False
