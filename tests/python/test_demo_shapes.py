"""The demo VLM's scene generator (models/demo/shapes.py): the labels it returns match the pixels it
drew, the images keep to the stated sizes, and the question/answer texts parse back to the labels."""

import pathlib
import random
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "models" / "demo"))
import shapes  # noqa: E402


def measured(im) -> dict:
    """Colour, shape and position read off the pixels: the shape's pixels are the ones far from the
    (light, smooth) background; colour = the nearest palette entry to their mean; shape = their
    fill ratio inside their bounding box (circle pi/4, square 1, triangle 1/2); centroid in pixel
    coordinates (a pixel's centre is at +0.5)."""
    a = np.asarray(im, dtype=np.float32)
    h, w, _ = a.shape
    mask = a.min(axis=2) < 190  # backgrounds have every channel >= 200; every palette colour has one <= 60
    ys, xs = np.nonzero(mask)
    mean = a[mask].mean(axis=0)
    color = min(shapes.COLORS, key=lambda c: float(np.sum((np.array(shapes.COLORS[c]) - mean) ** 2)))
    bw, bh = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    fill = mask.sum() / (bw * bh)
    shape = "triangle" if fill < 0.64 else "circle" if fill < 0.9 else "square"
    return {
        "color": color,
        "shape": shape,
        "cx": xs.mean() + 0.5,
        "cy": ys.mean() + 0.5,
        "fill": fill,
        "extent": max(bw, bh),
    }


@pytest.mark.parametrize("seed", range(4))
def test_labels_match_pixels(seed):
    rng = random.Random(seed)
    for _ in range(100):
        im, s = shapes.draw_scene(rng)
        w, h = im.size
        assert (w, h) == s.size and 64 <= w <= 300 and 64 <= h <= 300 and max(w, h) <= 2 * min(w, h)
        m = measured(im)
        assert m["color"] == s.color, (s, m)
        assert m["shape"] == s.shape, (s, m)
        # the label follows from the drawn centre, and the pixels sit where that centre says: the
        # centroid is the centre for circles and squares, a sixth of the side lower for triangles
        assert shapes.position_of(*s.center, w, h) == s.position
        cx, cy = s.center
        if s.shape == "triangle":
            cy += s.extent / 6
        assert abs(m["cx"] - cx) <= 1.5 and abs(m["cy"] - cy) <= 1.5, (s, m)
        assert abs(m["extent"] - s.extent) <= 3
        assert 0.35 * min(w, h) - 2 <= m["extent"] <= 0.55 * min(w, h) + 2


def test_given_labels_are_used():
    rng = random.Random(5)
    for color in shapes.COLORS:
        for shape in shapes.SHAPES:
            for pos in shapes.POSITIONS:
                im, s = shapes.draw_scene(rng, color=color, shape=shape, position=pos)
                assert (s.color, s.shape, s.position) == (color, shape, pos)
                assert measured(im)["color"] == color


def test_answers_parse_back():
    rng = random.Random(9)
    for _ in range(50):
        _, s = shapes.draw_scene(rng)
        assert shapes.answer_words(shapes.color_answer(s))["color"] == s.color
        assert shapes.answer_words(shapes.shape_answer(s))["shape"] == s.shape
        assert shapes.answer_words(shapes.position_answer(s))["position"] == s.position
        d = shapes.answer_words(shapes.describe_answer(s))
        assert (d["color"], d["shape"], d["position"]) == (s.color, s.shape, s.position)
    assert shapes.answer_words("Red or blue?")["color"] is None  # two colours: no answer
    assert shapes.answer_words("I don't know.") == {"color": None, "shape": None, "position": None}


def test_multi_questions_name_the_image():
    rng = random.Random(3)
    scenes = [shapes.draw_scene(rng)[1] for _ in range(16)]
    for _ in range(50):
        q, a = shapes.multi_qa(rng, scenes)
        k = int(q.rstrip("?.").split()[-1])
        s = scenes[k - 1]
        assert a.startswith(f"Image {k}: "), (q, a)  # the answer names the image first
        words = shapes.answer_words(a)
        assert words["color"] in (None, s.color) and words["shape"] in (None, s.shape)
        assert words["color"] == s.color or words["shape"] == s.shape


def test_training_conversations_ask_each_image_once():
    """train.sample: a multi-image conversation never asks twice about one image (a second answer
    could be copied from the first instead of read off the image); single images get 3 questions."""
    import train  # models/demo/train.py; imports torch only inside its functions

    rng = random.Random(5)
    for n in (1, 2, 3, 8, 16):
        for _ in range(20):
            qa, drawn = train.sample(rng, n)
            assert len(drawn) == n
            if n == 1:
                assert len(qa) == 3
                continue
            ks = [int(q.rstrip("?.").split()[-1]) for q, _ in qa]
            assert len(ks) == len(set(ks)) and all(1 <= k <= n for k in ks), ks
            assert min(n, 4) <= len(qa) <= min(n, 10)


class _WordTokenizer:
    """A stand-in for the demo's BPE (the tests have no transformers): words with their leading
    space, punctuation, newlines and the special tokens, each its own id."""

    eos_token, pad_token = "</s>", "<pad>"

    def __init__(self):
        self.vocab = {"</s>": 0, "<pad>": 1, "<image>": 2}
        self.eos_token_id, self.pad_token_id = 0, 1

    def convert_tokens_to_ids(self, t: str) -> int:
        return self.vocab.setdefault(t, len(self.vocab))

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        import re

        pieces = re.findall(r"<image>|</s>| ?\w+|\n| |[^\w\s]", text)
        assert "".join(pieces) == text
        return {"input_ids": [self.convert_tokens_to_ids(p) for p in pieces]}

    def decode(self, ids) -> str:
        inv = {v: k for k, v in self.vocab.items()}
        return "".join(inv[i] for i in ids)


class _Processor:
    """apply_chat_template as the processor renders the demo's template (jinja2)."""

    def __init__(self, template: str):
        import jinja2

        self.tokenizer = _WordTokenizer()
        self.template = jinja2.Environment().from_string(template)

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=False) -> str:
        return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                    eos_token=self.tokenizer.eos_token)


@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_training_marks_number_tokens_and_reads(n):
    """train.Encoder: the auxiliary losses' positions. Each image's number token (NumberProbe) is
    the " k" after image k's rows, and each answer's read position (ReadGuide) is the ":" of
    "Image k:" whose next, trained token is the content; its target is image k's number token."""
    import train

    enc = train.Encoder(_Processor(train.CHAT_TEMPLATE), torch=None)
    tok = enc.tok
    rng = random.Random(n)
    for _ in range(5):
        qa, drawn = train.sample(rng, n)
        ids, labels, reads = enc.conversation(qa, n)
        numbers = enc.label_positions(ids, n)
        assert len(ids) == len(labels) and ids.count(enc.image_token) == n * train.ROWS_PER_IMAGE
        if n == 1:
            assert numbers == [] and reads == []
            continue
        assert len(numbers) == n and numbers == sorted(numbers)
        for k, p in enumerate(numbers):
            assert tok.decode(ids[p - 2: p + 1]) == f"\nImage {k + 1}"  # "...<image>\nImage k.\n"
            assert ids[p - 3] == enc.image_token and tok.decode(ids[p + 1: p + 3]) == ".\n"
        assert len(reads) == len(qa)
        for (p, k), (q, a) in zip(reads, qa, strict=True):
            assert int(q.rstrip("?.").split()[-1]) == k + 1
            assert tok.decode(ids[p - 2: p + 1]) == f" Image {k + 1}:"
            assert labels[p] != -100 and labels[p + 1] == ids[p + 1]  # the content is trained
            assert tok.decode(ids[p + 1: p + 2]).strip() == a.split(": ", 1)[1].split()[0].rstrip(".")
