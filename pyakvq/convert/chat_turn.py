"""akvq.chat.image_turn: the model's chat template, rendered for akvq-cli.

akvq-cli has no Jinja. For a question with images it formats one chat turn, images first, in a
format with an {images} placeholder (one "<marker>\\n" line per image) and a {prompt} placeholder,
the syntax of its --chat-template FILE. The converter renders the model's template (as
Model.chat does, with pyakvq.chat.render) for one user turn of 1, 2 and 3 images and a question,
and stores the format that gives those same texts in the GGUF key akvq.chat.image_turn, so that
akvq-cli's prompt is Python's. A template that does not render such a turn that way (numbered
images, images after the text, a marker without its newline) gets no key; akvq-cli then uses its
built-in vicuna format, as for any other file.
"""

from __future__ import annotations

from ..chat import render

KEY = "akvq.chat.image_turn"
_PROMPT = "AKVQPROMPTSENTINEL"  # stands for the question: no spaces, no markup a template reads


def _render(template: str, n_images: int, bos: str | None, eos: str | None) -> str:
    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": _PROMPT}]
    return render(template, [{"role": "user", "content": content}], bos_token=bos, eos_token=eos)


def _expand(fmt: str, n_images: int, marker: str) -> str:
    return fmt.replace("{images}", (marker + "\n") * n_images).replace("{prompt}", _PROMPT)


def image_turn(template: str, marker: str, bos: str | None, eos: str | None) -> str | None:
    """The format (placeholders {images} and {prompt}) whose expansion equals `template`'s render
    of one user turn with 1, 2 and 3 images (each `marker` and a newline) before the question,
    with the generation prompt; None when there is none (or the template fails to render it).
    A leading BOS text stays in the format: akvq-cli, as Model.chat, adds no second one."""
    try:
        one = _render(template, 1, bos, eos)
    except ValueError:
        return None
    at, q = one.find(marker + "\n"), one.find(_PROMPT)
    if at < 0 or q < at or one.count(_PROMPT) != 1 or "{images}" in one or "{prompt}" in one:
        return None
    fmt = one[:at] + "{images}" + one[at + len(marker) + 1 : q] + "{prompt}" + one[q + len(_PROMPT) :]
    try:
        if any(_expand(fmt, n, marker) != _render(template, n, bos, eos) for n in (1, 2, 3)):
            return None
    except ValueError:
        return None
    return fmt
