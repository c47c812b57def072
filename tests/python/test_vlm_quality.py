"""bench/vlm_quality.py (issue 9, point 3): the scoring (answer parser + accuracy) and the test set
need no model; the whole pipeline runs on a tiny set (3 single images, 1 prompt of 8 and of 16
images, 2 cache modes) against the tiny LLaVA fixture (structure only: its random weights answer
nothing) and against the packaged demo model (skipped when the package lacks it)."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

import pyakvq

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import vlm_quality as vq  # noqa: E402  (bench/ is not a package)

if not vq.SHAPES_PY.is_file():
    pytest.skip(f"{vq.SHAPES_PY} is missing (the demo's scene generator)", allow_module_level=True)
sh = vq.load_shapes()


# ---------------------------------------------------------------- no model


@pytest.mark.parametrize(
    "answer,field,expected,ok",
    [
        ("Red.", "color", "red", True),
        ("red", "color", "red", True),
        ("It is GREEN.", "color", "green", True),
        ("The colour is blue.", "color", "blue", True),
        ("Blue.", "color", "red", False),
        ("Red and blue.", "color", "red", False),  # several colours: wrong
        ("", "color", "red", False),
        ("A circle.", "shape", "circle", True),
        ("A red triangle on the left.", "shape", "triangle", True),
        ("A square or a circle.", "shape", "square", False),
        ("A circle.", "color", "red", False),
    ],
)
def test_is_correct(answer, field, expected, ok):
    assert vq.is_correct(answer, field, expected) is ok


def test_accuracy_and_score():
    assert vq.accuracy([]) is None
    assert vq.accuracy([True, False, True, True]) == 0.75
    assert vq.accuracy(x == 1 for x in (1, 2)) == 0.5
    qs = [
        {"kind": "single", "index": 0, "question": "q", "field": "color", "expected": "red"},
        {"kind": "single", "index": 0, "question": "q", "field": "shape", "expected": "circle"},
        {"kind": "single", "index": 1, "question": "q", "field": "color", "expected": "blue"},
        {"kind": "single", "index": 1, "question": "q", "field": "shape", "expected": "square"},
        {"kind": "multi8", "index": 0, "question": "q", "field": "color", "expected": "green"},
        {"kind": "multi16", "index": 0, "question": "q", "field": "color", "expected": "yellow"},
        {"kind": "multi16", "index": 1, "question": "q", "field": "color", "expected": "purple"},
    ]
    answers = ["Red.", "A circle.", "Red.", "A triangle.", "Green.", "Yellow.", "Orange."]
    assert vq.score(qs, answers) == {"color_1": 0.5, "shape_1": 0.5, "color_8": 1.0, "color_16": 0.5}
    with pytest.raises(ValueError):
        vq.score(qs, answers[:-1])


def test_testset_balanced_and_reproducible():
    ts = vq.make_testset(12345, 18, 6)
    assert len(ts["single"]) == 18 and set(ts["multi"]) == set(vq.MULTI_SIZES)
    # every (colour, shape) pair once in 18 single images; every colour asked once in 6 multi prompts
    assert sorted((s.color, s.shape) for _, s in ts["single"]) == sorted((c, s) for c in sh.COLORS for s in sh.SHAPES)
    for n, items in ts["multi"].items():
        assert len(items) == 6
        assert sorted(sc[k].color for _, sc, k in items) == sorted(sh.COLORS)
        for imgs, scenes, k in items:
            assert len(imgs) == len(scenes) == n and 0 <= k < n
    again = vq.make_testset(12345, 18, 6)
    assert [s for _, s in again["single"]] == [s for _, s in ts["single"]]
    assert [(k, sc) for _, sc, k in again["multi"][16]] == [(k, sc) for _, sc, k in ts["multi"][16]]
    other = vq.make_testset(0, 18, 6)
    assert [s for _, s in other["single"]] != [s for _, s in ts["single"]]
    qs = vq.questions(ts)
    assert len(qs) == 2 * 18 + 6 * len(vq.MULTI_SIZES)
    assert qs[0]["question"] == sh.COLOR_QUESTIONS[0] and qs[1]["question"] == sh.SHAPE_QUESTIONS[0]
    k = ts["multi"][8][0][2]
    assert qs[36] == {
        "kind": "multi8",
        "index": 0,
        "question": sh.color_question_multi(k + 1),
        "field": "color",
        "expected": ts["multi"][8][0][1][k].color,
    }


def test_low_share_and_classes():
    st = {
        "layers": [
            {
                "classes": [
                    {"name": "fp16_window", "tokens": 96},
                    {"name": "fp16_pivot", "tokens": 4},
                    {"name": "q2g", "tokens": 300},
                    {"name": "q4", "tokens": 0},
                ]
            },
            {"classes": [{"name": "fp16_window", "tokens": 100}, {"name": "q2g", "tokens": 300}]},
        ]
    }
    assert vq.low_share(st) == 600 / 800
    assert vq.classes_brief(st["layers"][0]) == "fp16_window 96, fp16_pivot 4, q2g 300"
    assert vq.low_share({"layers": [{"classes": [{"name": "fp16", "tokens": 5}]}]}) == 0.0


def test_unknown_mode():
    with pytest.raises(SystemExit, match="unknown mode"):
        vq.resolve_modes(["f16", "akvq9"])


# ---------------------------------------------------------------- tiny end-to-end runs


def _check(res, modes):
    names = [r["name"] for r in res["rows"]]
    assert names == modes
    n_q = 2 * res["n_single"] + res["n_multi"] * len(vq.MULTI_SIZES)
    for r in res["rows"]:
        assert len(r["answers"]) == n_q and all(isinstance(a, str) for a in r["answers"])
        assert set(r["acc"]) == {"color_1", "shape_1", "color_8", "color_16"}
        for v in r["acc"].values():
            assert 0.0 <= v <= 1.0
        assert 0.0 <= r["agree_f16"] <= 1.0
        assert r["s_per_single"] > 0
        for key in ("stats_1", "stats_8", "stats_16"):
            assert 0.0 <= r[key]["low_share"] <= 1.0
        assert r["stats_16"]["n_tokens"] >= res["lengths"]["16"]
    f16 = res["rows"][0]
    assert f16["agree_f16"] == 1.0 and f16["logit_diff"] == 0.0
    assert f16["stats_16"]["bits"] == 16.0 and f16["stats_16"]["low_share"] == 0.0
    assert res["lengths"]["1"] < res["lengths"]["8"] < res["lengths"]["16"] < res["n_ctx"]
    p = res["saliency"]
    assert p is not None and len(p["layers"]) == p["n_layer"] >= 1
    for L in p["layers"]:
        assert 0.0 <= L["text_share"] <= 1.0
    text = vq.format_report(res)
    lines = text.splitlines()
    head = next(i for i, s in enumerate(lines) if s.startswith("| mode | kv options |"))
    assert lines[head + 1].startswith("|---|")
    for r, line in zip(res["rows"], lines[head + 2 : head + 2 + len(modes)], strict=True):
        assert line.startswith(f"| {r['name']} |") and line.count("|") == lines[head].count("|")
    for needle in ("Machine:", "Command:", "Prompt tokens:", "Suggested TSA layers", "| layer |", "Run time:"):
        assert needle in text
    json.dumps(vq.to_json(res), default=str)  # what --json writes
    return {r["name"]: r for r in res["rows"]}


def _run(path, modes):
    return vq.evaluate(
        str(path),
        n_single=3,
        n_multi=1,
        modes=modes,
        seed=12345,
        threads=2,
        max_tokens=4,
        saliency_prompts=2,
        progress=False,
        command="test",
        log=lambda s: None,
    )


@pytest.fixture(scope="module")
def fixture_model(tmp_path_factory):
    pytest.importorskip("gguf")
    pytest.importorskip("safetensors")
    import llava_convert as lc

    (p,) = lc.convert_fixture("spm_default_pad", tmp_path_factory.mktemp("vlm_quality"), outtype="f32")
    return p


def test_pipeline_on_fixture(fixture_model):
    """Random weights: the structure, the f16 reference and that akvq2 quantizes the 16-image prompt."""
    modes = ["f16", "akvq2-nowindow"]
    rows = _check(_run(fixture_model, modes), modes)
    r = rows["akvq2-nowindow"]
    assert r["stats_16"]["low_share"] == 1.0 and r["stats_16"]["bits"] < 16.0
    assert r["resolved"]["window"] == "0"


def demo_path() -> pathlib.Path:
    f = getattr(pyakvq, "demo_model_path", None)
    try:
        p = pathlib.Path(f()) if callable(f) else pathlib.Path(vq.default_model())
    except FileNotFoundError as e:
        pytest.skip(f"no demo model: {e}")
    if not p.is_file():
        pytest.skip(f"no demo model at {p}")
    return p


def test_pipeline_on_demo():
    modes = ["f16", "akvq2"]
    rows = _check(_run(demo_path(), modes), modes)
    ak = rows["akvq2"]["stats_16"]
    assert 2.0 < ak["bits"] < 4.0, ak
    assert ak["low_share"] > 0.5
