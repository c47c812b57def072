"""Generated scenes for the demo VLM: one filled shape on a light background, with its labels, and
the questions and answers the model is trained and evaluated on.

A scene: an RGB image of W x H pixels (each side in [64, 300], aspect ratio at most 2:1 either way)
with one filled circle, square or triangle in one of six colours. Its size is 35-55% of the shorter
side; its position is drawn label-first so every label is unambiguous:

    left / right   centre x in the outer 30% of the width, centre y in the middle 30% of the height
    top / bottom   centre y in the outer 30% of the height, centre x in the middle 30% of the width
    center         centre within 8% of the middle both ways

`position_of(cx, cy, w, h)` is that rule as a classifier (the tests check the drawn pixels with it).
Only PIL and the standard library: the training script, the tests and bench/vlm_quality.py share it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 160, 55),
    "blue": (35, 75, 215),
    "yellow": (235, 205, 30),
    "purple": (135, 55, 175),
    "orange": (245, 135, 25),
}
SHAPES = ("circle", "square", "triangle")
POSITIONS = ("left", "right", "top", "bottom", "center")
MAX_IMAGES = 16

# Where each position puts the shape's centre, as fractions of (width, height): (x range, y range).
_REGIONS = {
    "left": ((0.0, 0.3), (0.35, 0.65)),
    "right": ((0.7, 1.0), (0.35, 0.65)),
    "top": ((0.35, 0.65), (0.0, 0.3)),
    "bottom": ((0.35, 0.65), (0.7, 1.0)),
    "center": ((0.42, 0.58), (0.42, 0.58)),
}

POSITION_PHRASE = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}


@dataclass(frozen=True)
class Scene:
    color: str
    shape: str
    position: str
    size: tuple[int, int]  # (width, height) in pixels
    center: tuple[float, float]  # the shape's centre in pixels (x, y)
    extent: float  # the shape's bounding-box side in pixels

    def caption(self) -> str:
        """'a red circle on the left'"""
        return f"a {self.color} {self.shape} {POSITION_PHRASE[self.position]}"


def position_of(cx: float, cy: float, w: int, h: int) -> str | None:
    """The position label of a shape centred at (cx, cy) pixels in a w x h image, or None when the
    centre lies in none of the regions (never for a generated scene)."""
    fx, fy = cx / w, cy / h
    for name, ((x0, x1), (y0, y1)) in _REGIONS.items():
        if x0 <= fx <= x1 and y0 <= fy <= y1:
            return name
    return None


def _image_size(rng: random.Random) -> tuple[int, int]:
    while True:
        w, h = rng.randint(64, 300), rng.randint(64, 300)
        if max(w, h) <= 2 * min(w, h):
            return w, h


def _background(rng: random.Random, w: int, h: int) -> Image.Image:
    """A light, slightly tinted background with a gentle vertical gradient."""
    base = [rng.randint(225, 250) for _ in range(3)]
    delta = [rng.randint(-12, 12) for _ in range(3)]
    top = tuple(min(255, max(200, b - d // 2)) for b, d in zip(base, delta, strict=True))
    bottom = tuple(min(255, max(200, b + d // 2)) for b, d in zip(base, delta, strict=True))
    col = Image.new("RGB", (1, 2))
    col.putpixel((0, 0), top)
    col.putpixel((0, 1), bottom)
    return col.resize((w, h), Image.BILINEAR)


def draw_scene(rng: random.Random, color: str | None = None, shape: str | None = None,
               position: str | None = None) -> tuple[Image.Image, Scene]:
    """A random scene (labels drawn from rng unless given) -> (RGB image, its labels)."""
    color = color or rng.choice(list(COLORS))
    shape = shape or rng.choice(SHAPES)
    position = position or rng.choice(POSITIONS)
    w, h = _image_size(rng)
    s = rng.uniform(0.35, 0.55) * min(w, h)
    half = s / 2
    (x0, x1), (y0, y1) = _REGIONS[position]
    # The centre range, kept inside the image with a 1-pixel margin (the region always allows it:
    # half <= 0.275 * min(w, h) < 0.3 * either side).
    cx = rng.uniform(max(x0 * w, half + 1), min(x1 * w, w - half - 1))
    cy = rng.uniform(max(y0 * h, half + 1), min(y1 * h, h - half - 1))
    im = _background(rng, w, h)
    d = ImageDraw.Draw(im)
    rgb = tuple(min(255, max(0, c + rng.randint(-12, 12))) for c in COLORS[color])
    if shape == "circle":
        d.ellipse([cx - half, cy - half, cx + half, cy + half], fill=rgb)
    elif shape == "square":
        d.rectangle([cx - half, cy - half, cx + half, cy + half], fill=rgb)
    else:  # an upward triangle whose bounding box is the s x s square; centre = the box's centre
        d.polygon([(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], fill=rgb)
    return im, Scene(color, shape, position, (w, h), (cx, cy), s)


# ---------------------------------------------------------------- questions and answers

COLOR_QUESTIONS = ("What color is the shape?", "What colour is the shape?", "Which color is it?",
                   "What color is the shape in the picture?")
SHAPE_QUESTIONS = ("What shape is it?", "What shape is in the picture?", "Which shape is shown?",
                   "What is the shape?")
POSITION_QUESTIONS = ("Where is the shape?", "Where is the shape in the picture?", "Where is it?")
DESCRIBE_QUESTIONS = ("What is in the picture?", "Describe the image.", "What do you see?",
                      "Describe the picture in a few words.")


def color_answer(s: Scene) -> str:
    return f"{s.color.capitalize()}."


def shape_answer(s: Scene) -> str:
    return f"A {s.shape}."


def position_answer(s: Scene) -> str:
    p = POSITION_PHRASE[s.position]
    return p[0].upper() + p[1:] + "."


def describe_answer(s: Scene) -> str:
    c = s.caption()
    return c[0].upper() + c[1:] + "."


def color_question_multi(k: int) -> str:
    """k: the image's number, from 1."""
    return f"What color is the shape in image {k}?"


def shape_question_multi(k: int) -> str:
    return f"What shape is in image {k}?"


def describe_question_multi(k: int) -> str:
    return f"Describe image {k}."


def single_qa(rng: random.Random, s: Scene) -> tuple[str, str]:
    """A (question, answer) about a single-image prompt; descriptions are half of them, so the
    model must look at every attribute."""
    kind = rng.random()
    if kind < 0.4:
        return rng.choice(DESCRIBE_QUESTIONS), describe_answer(s)
    if kind < 0.6:
        return rng.choice(COLOR_QUESTIONS), color_answer(s)
    if kind < 0.8:
        return rng.choice(SHAPE_QUESTIONS), shape_answer(s)
    return rng.choice(POSITION_QUESTIONS), position_answer(s)


def multi_answer(k: int, answer: str) -> str:
    """The answer about image k (from 1) of several: it names the image first ("Image 5: red."),
    so the token the answer is read from follows that image's number."""
    return f"Image {k}: {answer[0].lower()}{answer[1:]}"


def multi_qa(rng: random.Random, scenes: list[Scene], k: int | None = None) -> tuple[str, str]:
    """A (question, answer) about image k (from 0; random when None) of a multi-image prompt."""
    if k is None:
        k = rng.randrange(len(scenes))
    s = scenes[k]
    kind = rng.random()
    if kind < 0.6:
        return color_question_multi(k + 1), multi_answer(k + 1, color_answer(s))
    if kind < 0.8:
        return shape_question_multi(k + 1), multi_answer(k + 1, shape_answer(s))
    return describe_question_multi(k + 1), multi_answer(k + 1, describe_answer(s))


def answer_words(text: str) -> dict[str, str | None]:
    """The colour, shape and position an answer names (None where it names none or several)."""
    low = text.lower().replace("colour", "color")

    def one(words) -> str | None:
        found = [w for w in words if w in low]
        return found[0] if len(found) == 1 else None

    pos = [p for p, phrase in POSITION_PHRASE.items() if phrase in low]
    return {"color": one(COLORS), "shape": one(SHAPES), "position": pos[0] if len(pos) == 1 else None}
