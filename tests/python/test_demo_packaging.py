"""The demo model as package data: pyakvq.demo_model_path(), Model() without a path, the
AKVQ_DEMO_MODEL override and the errors; then the demo model's answers on freshly generated scenes
(models/demo/shapes.py with fixed seeds that the training data does not use).

CI installs the package (non-editable) and tests it, so the check that demo_model_path() lies inside
the imported package's directory proves the file ships in the wheel. The tests that need the real
demo model skip only while the repository lacks pyakvq/data/demo-vlm.gguf (before it is added); once
the repository has it, a package without it fails them."""

from __future__ import annotations

import importlib.util
import pathlib
import random
import sys

import llava_convert as lc
import pytest

import pyakvq
import pyakvq.demo

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEMO_IN_REPO = ROOT / "pyakvq" / "data" / "demo-vlm.gguf"
SHAPES_PY = ROOT / "models" / "demo" / "shapes.py"
EXAMPLES = ROOT / "examples"
PKG_DIR = pathlib.Path(pyakvq.__file__).resolve().parent
SEED = 777_001  # scenes for these tests; the training data's seeds are train.data_seeds() (below 501_000)


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    monkeypatch.delenv(pyakvq.demo.DEMO_MODEL_ENV, raising=False)


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> pathlib.Path:
    """A LLaVA GGUF standing in for the demo model (the converted spm_default_pad fixture)."""
    (p,) = lc.convert_fixture("spm_default_pad", tmp_path_factory.mktemp("standin"), outtype="f16")
    return p


def demo_or_skip() -> pathlib.Path:
    """The packaged demo model; skips while the repository has no pyakvq/data/demo-vlm.gguf. When the
    repository has it but the imported package does not, demo_model_path() raises (a failure)."""
    if not DEMO_IN_REPO.is_file() and not pyakvq.demo.packaged_demo_model_path().is_file():
        pytest.skip("pyakvq/data/demo-vlm.gguf is not in the repository yet (the demo model is being trained)")
    return pyakvq.demo_model_path()


def load_shapes():
    """models/demo/shapes.py, imported by path (models/ is no package)."""
    if not SHAPES_PY.is_file():
        pytest.skip(f"{SHAPES_PY} is missing")
    name = "demo_shapes_for_tests"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SHAPES_PY)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # dataclasses look the module up by name
        spec.loader.exec_module(mod)
    return sys.modules[name]


# ---------------------------------------------------------------- where the file is, errors


def test_packaged_path_is_in_the_package():
    p = pyakvq.demo.packaged_demo_model_path()
    assert p.resolve() == PKG_DIR / "data" / "demo-vlm.gguf"


def test_demo_model_ships_with_the_package():
    p = demo_or_skip()
    assert p.is_file() and p.resolve().parent.parent == PKG_DIR, (p, PKG_DIR)
    assert p.read_bytes()[:4] == b"GGUF"
    assert 0 < p.stat().st_size < 64 << 20


def test_missing_packaged_model(monkeypatch, tmp_path):
    monkeypatch.setattr(pyakvq.demo, "_package_data_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        pyakvq.demo_model_path()
    msg = str(e.value)
    assert str(tmp_path / "demo-vlm.gguf") in msg and "pip install" in msg and "AKVQ_DEMO_MODEL" in msg
    with pytest.raises(FileNotFoundError, match="demo model is missing"):
        pyakvq.Model()


def test_override_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("AKVQ_DEMO_MODEL", str(tmp_path / "gone.gguf"))
    with pytest.raises(FileNotFoundError) as e:
        pyakvq.Model(kv="akvq2")
    assert str(tmp_path / "gone.gguf") in str(e.value) and "AKVQ_DEMO_MODEL" in str(e.value)


@pytest.mark.parametrize("kv", ["f16", "q4", "akvq2"])
def test_model_without_path_loads_the_override(monkeypatch, standin, kv):
    monkeypatch.setenv("AKVQ_DEMO_MODEL", str(standin))
    assert pyakvq.demo_model_path() == standin
    with pyakvq.Model(kv=kv, n_ctx=256, n_threads=1, kv_options={"window": 4} if kv == "akvq2" else None) as m:
        assert m.info["path"] == str(standin) and m.info["kv"] == kv and m.has_vision
        assert isinstance(m.chat(str(EXAMPLES / "red_circle.png"), "What color?", max_tokens=3, temperature=0), str)


def test_examples_are_small_pngs():
    names = sorted(p.name for p in EXAMPLES.glob("*.png"))
    assert {"red_circle.png", "blue_square.png", "green_triangle.png"} <= set(names), names
    for n in names:
        data = (EXAMPLES / n).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 10_000, n


# ---------------------------------------------------------------- the demo model's answers


def _ask(m, image, question: str) -> str:
    return m.chat(image, question, max_tokens=24, temperature=0)


def test_demo_answers_colour_and_shape():
    demo_or_skip()
    shapes = load_shapes()
    rng = random.Random(SEED)
    wrong, n = [], 0
    with pyakvq.Model() as m:
        for k in range(6):  # every colour once, the shapes in turn, random sizes and positions
            color, shape = list(shapes.COLORS)[k], shapes.SHAPES[k % 3]
            im, s = shapes.draw_scene(rng, color=color, shape=shape)
            questions = (("What color is the shape?", "color", s.color), ("What shape is it?", "shape", s.shape))
            for q, key, want in questions:
                a = _ask(m, im, q)
                n += 1
                if shapes.answer_words(a)[key] != want:
                    wrong.append(f"{s.caption()} ({s.size[0]}x{s.size[1]}): {q!r} -> {a!r}")
    assert len(wrong) <= 1, f"{len(wrong)} of {n} answers wrong:\n" + "\n".join(wrong)


def test_demo_answers_position_and_description():
    demo_or_skip()
    shapes = load_shapes()
    rng = random.Random(SEED + 1)
    wrong, n = [], 0
    with pyakvq.Model() as m:
        for pos in shapes.POSITIONS:
            im, s = shapes.draw_scene(rng, position=pos)
            a = _ask(m, im, "Where is the shape?")
            n += 1
            if shapes.answer_words(a)["position"] != s.position:
                wrong.append(f"{s.caption()}: 'Where is the shape?' -> {a!r}")
        im, s = shapes.draw_scene(rng)
        a = _ask(m, im, "What is in the picture?")
        n += 1
        if shapes.answer_words(a) != {"color": s.color, "shape": s.shape, "position": s.position}:
            wrong.append(f"{s.caption()}: 'What is in the picture?' -> {a!r}")
    assert len(wrong) <= 1, f"{len(wrong)} of {n} answers wrong:\n" + "\n".join(wrong)


@pytest.mark.parametrize("n, at_least", [(2, 2), (8, 7), (16, 12)])
def test_demo_answers_about_one_of_several_images(n, at_least):
    """The issue's case, "What color is the shape in image k?" among up to 16 images: one prompt of
    n fresh scenes, every image asked in turn; at most the issue's error rate (85% right with 8
    images, 75% with 16) of wrong colours."""
    demo_or_skip()
    shapes = load_shapes()
    rng = random.Random(SEED + 2 + n)
    scenes = [shapes.draw_scene(rng) for _ in range(n)]
    images = [im for im, _ in scenes]
    wrong = []
    with pyakvq.Model() as m:
        for k, (_, s) in enumerate(scenes):
            q = shapes.color_question_multi(k + 1)
            a = _ask(m, images, q)
            if shapes.answer_words(a)["color"] != s.color:
                wrong.append(f"{q!r} ({s.caption()}) -> {a!r}")
    assert n - len(wrong) >= at_least, f"{len(wrong)} of {n} answers wrong:\n" + "\n".join(wrong)


def test_demo_answers_the_readme_examples():
    """The quick start's pictures (examples/, made by examples/make_examples.py)."""
    demo_or_skip()
    with pyakvq.Model() as m:
        a = _ask(m, str(EXAMPLES / "red_circle.png"), "What color is the shape?")
        assert "red" in a.lower(), a
        a = _ask(m, str(EXAMPLES / "red_circle.png"), "What is in the picture?")
        assert "red" in a.lower() and "circle" in a.lower(), a
