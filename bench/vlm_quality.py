"""Answer accuracy of the demo VLM under every KV cache mode (issue 9, point 3).

    python bench/vlm_quality.py [--model M.gguf] [--n-single 200] [--n-multi 100]
        [--modes f16,q8,...,akvq2-notsa] [--seed 12345] [--threads N] [--max-tokens auto]
        [--saliency-prompts 4] [--json OUT]

A fresh test set of generated scenes (models/demo/shapes.py; --seed must differ from the training
data seeds, training_seeds()): n single images, each asked its colour and its shape, and n prompts of 8 and of 16
images, each asked the colour of image k (k uniform). Labels are balanced where it is cheap (the 18
colour x shape pairs cycle over the single images, the asked colour cycles over the multi prompts).
Questions: shapes.COLOR_QUESTIONS[0], SHAPE_QUESTIONS[0], color_question_multi(k); greedy answers of
at most --max-tokens tokens (default: the longest expected answer's tokens + 2), parsed with
shapes.answer_words (an answer naming none or several colours is wrong).

For every cache mode (f16 q8 q4 q2 kivi2 wht2 akvq2 akvq4 and the akvq2 ablations: no WHT =
rotate 0; no window = window 0; no pivots = pivots 0; no TSA = tsa_layers none) it reports:
single-image colour and shape accuracy, 8- and 16-image colour
accuracy, the share of answers identical to f16's, the share of cached tokens held below fp16
after a 1-image and after a 16-image prompt (the cache's low precision only acts on those: the
most recent `window` tokens stay fp16), bits per element after a 16-image prompt (kv_stats), and
the mean wall seconds of one single-image question (chat() end to end: preprocessing, image
encoding, prompt, answer). A check table shows that each mode changes the cache: tokens per
precision class in the first and last layer after the first 16-image prompt and the largest
|logit difference| against f16 at that prompt's last position.

Speed: one Model per mode, reused for all its prompts. Single-image questions go through chat()
(timed); the multi-image prompts are rendered and their images encoded once (the vision tower does
not depend on the KV mode) and every mode generates from those same inputs.

Also prints the demo's saliency profile (pyakvq.saliency.profile_saliency on the f16 cache): per
layer the attention the question's tokens give to text vs vision tokens, over a few multi-image
prompts of the test set, and the TSA layers it suggests next to those the model uses.

Run time of the default run (200 single images, 100 prompts of 8 and of 16 images, 12 modes): about
4.5 min on 2 cores of a Sapphire Rapids Xeon (262 s; prompts of 106 / 603 / 1163 tokens); the
progress line updates the estimate after every mode.

Output: a markdown section ready for bench/RESULTS.md (machine, date, command, model, tables);
--json OUT also writes every figure and every answer.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import time
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
try:
    import pyakvq
except ImportError:  # run from a checkout: the package next to bench/
    sys.path.insert(0, str(ROOT))
    import pyakvq

SHAPES_PY = ROOT / "models" / "demo" / "shapes.py"
TRAIN_PY = ROOT / "models" / "demo" / "train.py"
MULTI_SIZES = (8, 16)

# name -> (kv mode, kv_options)
MODES: dict[str, tuple[str, dict[str, Any]]] = {
    "f16": ("f16", {}),
    "q8": ("q8", {}),
    "q4": ("q4", {}),
    "q2": ("q2", {}),
    "kivi2": ("kivi2", {}),
    "wht2": ("wht2", {}),
    "akvq2": ("akvq2", {}),
    "akvq4": ("akvq4", {}),
    "akvq2-nowht": ("akvq2", {"rotate": 0}),
    "akvq2-nowindow": ("akvq2", {"window": 0}),
    "akvq2-nopivots": ("akvq2", {"pivots": 0}),
    "akvq2-notsa": ("akvq2", {"tsa_layers": []}),
}
ALL_MODES = ",".join(MODES)


def load_shapes():
    """models/demo/shapes.py, imported by path (models/ is no package)."""
    if "shapes" in sys.modules and getattr(sys.modules["shapes"], "__file__", None) == str(SHAPES_PY):
        return sys.modules["shapes"]
    spec = importlib.util.spec_from_file_location("shapes", SHAPES_PY)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["shapes"] = mod
    spec.loader.exec_module(mod)
    return mod


def training_seeds() -> tuple[range, ...]:
    """The random.Random seeds models/demo/train.py draws its training data from at its defaults
    (its data_seeds(); the file is imported by path, without torch)."""
    load_shapes()  # train.py imports shapes: the same module
    spec = importlib.util.spec_from_file_location("akvq_demo_train", TRAIN_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.data_seeds()


def seeds_text(ranges: tuple[range, ...]) -> str:
    """'0..2399, 500000..500999'"""
    return ", ".join(f"{r.start}..{r.stop - 1}" for r in ranges)


def default_model() -> str:
    """The packaged demo model: pyakvq.demo_model_path() when the package has it, else its file."""
    f = getattr(pyakvq, "demo_model_path", None)
    if callable(f):
        try:
            return str(f())
        except Exception:  # noqa: BLE001 - fall back to the file's usual place
            pass
    return str(ROOT / "pyakvq" / "data" / "demo-vlm.gguf")


# ---------------------------------------------------------------- test set


def make_testset(seed: int, n_single: int, n_multi: int, sizes=MULTI_SIZES) -> dict[str, Any]:
    """{"single": [(image, scene)], "multi": {n: [(images, scenes, k)]}} with k the asked image (0-based).
    Single images cycle through the 18 (colour, shape) pairs in a shuffled order per cycle; in the
    multi prompts the asked image's colour cycles through the 6 colours, the other images are random."""
    sh = load_shapes()
    rng = random.Random(seed)
    colors = list(sh.COLORS)
    pairs = [(c, s) for c in colors for s in sh.SHAPES]
    single = []
    order: list[tuple[str, str]] = []
    for _ in range(n_single):
        if not order:
            order = pairs[:]
            rng.shuffle(order)
        c, s = order.pop()
        single.append(sh.draw_scene(rng, color=c, shape=s))
    multi: dict[int, list] = {}
    for n in sizes:
        items = []
        cyc: list[str] = []
        for _ in range(n_multi):
            if not cyc:
                cyc = colors[:]
                rng.shuffle(cyc)
            k = rng.randrange(n)
            drawn = [sh.draw_scene(rng, color=cyc.pop() if j == k else None) for j in range(n)]
            items.append(([im for im, _ in drawn], [sc for _, sc in drawn], k))
        multi[n] = items
    return {"seed": seed, "single": single, "multi": multi}


def questions(testset: dict[str, Any]) -> list[dict[str, Any]]:
    """Every question of the test set in run order: {"kind", "index", "question", "field", "expected"};
    kind "single" (images: the single image) or "multi<n>"."""
    sh = load_shapes()
    out = []
    for i, (_, sc) in enumerate(testset["single"]):
        out.append(
            {"kind": "single", "index": i, "question": sh.COLOR_QUESTIONS[0], "field": "color", "expected": sc.color}
        )
        out.append(
            {"kind": "single", "index": i, "question": sh.SHAPE_QUESTIONS[0], "field": "shape", "expected": sc.shape}
        )
    for n, items in testset["multi"].items():
        for i, (_, scenes, k) in enumerate(items):
            out.append(
                {
                    "kind": f"multi{n}",
                    "index": i,
                    "question": sh.color_question_multi(k + 1),
                    "field": "color",
                    "expected": scenes[k].color,
                }
            )
    return out


# ---------------------------------------------------------------- scoring


def is_correct(answer: str, field: str, expected: str) -> bool:
    """Whether the answer names exactly the expected colour / shape (answer_words: none or several = wrong)."""
    return load_shapes().answer_words(answer)[field] == expected


def accuracy(flags) -> float | None:
    flags = list(flags)
    return sum(bool(f) for f in flags) / len(flags) if flags else None


def score(qs: list[dict[str, Any]], answers: list[str]) -> dict[str, float | None]:
    """Accuracies by column: color_1, shape_1, color_<n> for each multi size."""
    cols: dict[str, list[bool]] = {}
    for q, a in zip(qs, answers, strict=True):
        key = f"{q['field']}_1" if q["kind"] == "single" else f"{q['field']}_{q['kind'][5:]}"
        cols.setdefault(key, []).append(is_correct(a, q["field"], q["expected"]))
    return {k: accuracy(v) for k, v in cols.items()}


# ---------------------------------------------------------------- cache facts


def low_share(stats: dict[str, Any]) -> float:
    """Share of cached tokens (all layers) held below fp16: in classes whose name is not fp16*."""
    tot = low = 0
    for L in stats["layers"]:
        for c in L["classes"]:
            tot += c["tokens"]
            if not c["name"].startswith("fp16"):
                low += c["tokens"]
    return low / tot if tot else 0.0


def classes_brief(layer: dict[str, Any]) -> str:
    """'fp16_window 96, q2g 1100' (classes with tokens only)."""
    return ", ".join(f"{c['name']} {c['tokens']}" for c in layer["classes"] if c["tokens"]) or "-"


def resolve_modes(names: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """(kv, kv_options) of each name."""
    out = {}
    for name in names:
        if name not in MODES:
            raise SystemExit(f"--modes: unknown mode {name!r} (known: {ALL_MODES})")
        kv, opts = MODES[name]
        out[name] = (kv, dict(opts))
    return out


# ---------------------------------------------------------------- running


def answer_budget(m) -> int:
    """Tokens enough for every expected answer ("Yellow.", "A triangle.", "Image 16: yellow.") plus 2."""
    sh = load_shapes()
    answers = [f"{c.capitalize()}." for c in sh.COLORS] + [f"A {s}." for s in sh.SHAPES]
    answers += [sh.multi_answer(sh.MAX_IMAGES, a) for a in answers]
    return max(len(m.tokenize(" " + a, add_special=False)) for a in answers) + 2


def build_input(m, images, question: str):
    """The engine input chat(images, question) evaluates: the rendered chat turn with the images' rows."""
    parts = [{"type": "image"} for _ in images] + [{"type": "text", "text": question}]
    text = m.render_chat([{"role": "user", "content": parts}])
    return m._image_input(text, list(images), not m._starts_with_bos(text))


def prompt_text(m, n_images: int, question: str) -> str:
    """The rendered prompt (without a leading BOS text) for the saliency profile."""
    parts = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": question}]
    text = m.render_chat([{"role": "user", "content": parts}])
    bos = m._piece(m._model.info["bos"])
    return text[len(bos) :] if bos and text.startswith(bos) else text


def last_logits(m, inp) -> np.ndarray:
    with m._lock:
        m._claim()
        s = m._sess()
        s.reset()
        return np.asarray(s.eval_rows(inp), dtype=np.float32)


def prepare(path: str, testset: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """Encodes the multi-image prompts once (f16 Model) and measures the prompt lengths."""
    sh = load_shapes()
    with pyakvq.Model(path, n_ctx=64, n_threads=threads) as m0:
        if not m0.has_vision:
            raise SystemExit(f"{path}: the model has no vision encoder")
        tpi = int(m0.vision_info["n_tokens_per_image"])
    n_ctx = max(MULTI_SIZES + (1,)) * tpi + 512
    m = pyakvq.Model(path, n_ctx=n_ctx, n_threads=threads)
    inputs: dict[int, list] = {}
    lengths: dict[str, int] = {}
    t0 = time.perf_counter()
    if testset["single"]:
        lengths["1"] = len(build_input(m, [testset["single"][0][0]], sh.COLOR_QUESTIONS[0]).kinds)
    for n, items in testset["multi"].items():
        inputs[n] = [build_input(m, imgs, sh.color_question_multi(k + 1)) for imgs, _, k in items]
        if inputs[n]:
            lengths[str(n)] = max(len(x.kinds) for x in inputs[n])
    return {
        "model": m,
        "n_ctx": n_ctx,
        "tokens_per_image": tpi,
        "inputs": inputs,
        "lengths": lengths,
        "encode_s": time.perf_counter() - t0,
    }


def run_mode(path, name, kv, opts, testset, qs, prep, threads, max_tokens, progress=True) -> dict[str, Any]:
    """Answers every question with one Model of this cache mode; returns its row."""
    from tqdm import tqdm

    answers: list[str] = []
    single_s: dict[str, list[float]] = {"color": [], "shape": []}
    row: dict[str, Any] = {"name": name, "kv": kv, "options": opts}
    t_mode = time.perf_counter()
    kw = {"kv_options": opts} if opts else {}
    with pyakvq.Model(path, n_ctx=prep["n_ctx"], n_threads=threads, kv=kv, **kw) as m:
        st = m.kv_stats()
        row["resolved"] = st.get("options", {})
        row["tsa_layers"] = st.get("tsa_layers", [])
        for q in tqdm(qs, desc=name, unit="q", disable=not progress, leave=False, file=sys.stderr):
            if q["kind"] == "single":
                img = testset["single"][q["index"]][0]
                t = time.perf_counter()
                a = m.chat(img, q["question"], max_tokens=max_tokens, temperature=0)
                single_s[q["field"]].append(time.perf_counter() - t)
                if "stats_1" not in row:
                    s1 = m.kv_stats()
                    row["stats_1"] = {
                        "n_tokens": s1["n_tokens"],
                        "bits": s1["bits_per_element"],
                        "low_share": low_share(s1),
                    }
            else:
                n = int(q["kind"][5:])
                inp = prep["inputs"][n][q["index"]]
                a = m.generate(inp, max_tokens=max_tokens, temperature=0)
                key = f"stats_{n}"
                if key not in row:
                    s = m.kv_stats()
                    row[key] = {
                        "n_tokens": s["n_tokens"],
                        "bits": s["bits_per_element"],
                        "low_share": low_share(s),
                        "classes_first": classes_brief(s["layers"][0]),
                        "classes_last": classes_brief(s["layers"][-1]),
                        "pivots": [len(L.get("pivots", [])) for L in s["layers"]],
                    }
                    if n == max(MULTI_SIZES):
                        row["check_logits"] = last_logits(m, inp)
            answers.append(a)
    row["answers"] = answers
    row["acc"] = score(qs, answers)
    # colour is asked first of each image (a fresh image: preprocessing, encoding, whole prompt);
    # the shape question then follows on the same image (the cache may keep the common prefix)
    row["s_fresh"] = float(np.mean(single_s["color"])) if single_s["color"] else None
    row["s_followup"] = float(np.mean(single_s["shape"])) if single_s["shape"] else None
    row["s_per_single"] = float(np.mean(single_s["color"] + single_s["shape"])) if single_s["color"] else None
    row["seconds"] = time.perf_counter() - t_mode
    return row


def run_saliency(prep, testset, n_prompts: int) -> dict[str, Any] | None:
    """profile_saliency on the f16 Model over up to n_prompts multi-image prompts (half 8, half 16 images)."""
    sh = load_shapes()
    m = prep["model"]
    samples = []
    sizes = [n for n in MULTI_SIZES if testset["multi"].get(n)]
    for j in range(n_prompts):
        if not sizes:
            break
        n = sizes[j % len(sizes)]
        items = testset["multi"][n]
        if j // len(sizes) >= len(items):
            continue
        imgs, _, k = items[j // len(sizes)]
        samples.append((prompt_text(m, n, sh.color_question_multi(k + 1)), imgs))
    if not samples:
        return None
    from pyakvq.saliency import profile_saliency

    p = profile_saliency(m, samples)
    for L in p["layers"]:
        L["top"] = L["top"][:5]
    return p


# ---------------------------------------------------------------- report


def machine() -> str:
    name = "unknown CPU"
    if shutil.which("lscpu"):
        r = subprocess.run(["lscpu"], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            if line.startswith("Model name:"):
                name = line.split(":", 1)[1].strip()
                break
    try:
        isa = pyakvq.cpu_info()["isa"]
    except Exception:  # noqa: BLE001
        isa = "?"
    return f"{name}, {os.cpu_count()} logical cores, pyakvq isa {isa}"


def git_head() -> str:
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or "?"


def file_id(path: str) -> str:
    p = pathlib.Path(path)
    h = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
    return f"{p.name}, {p.stat().st_size / 1e6:.1f} MB, sha256 {h}"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def opts_text(opts: dict[str, Any]) -> str:
    def v(x):
        return (
            "none"
            if isinstance(x, (list, tuple)) and not x
            else ("+".join(map(str, x)) if isinstance(x, (list, tuple)) else str(x))
        )

    return " ".join(f"{k}={v(x)}" for k, x in opts.items()) or "-"


def identical_to_akvq2(rows: list[dict[str, Any]]) -> list[str]:
    """The ablations whose answers and check logits equal akvq2's exactly."""
    ak = next((r for r in rows if r["name"] == "akvq2"), None)
    if ak is None:
        return []
    out = []
    for r in rows:
        if r["name"].startswith("akvq2-") and r["answers"] == ak["answers"]:
            a, b = r.get("check_logits"), ak.get("check_logits")
            if a is not None and b is not None and np.array_equal(a, b):
                out.append(r["name"])
    return out


def window_note(rows: list[dict[str, Any]], n_single: int, max_tokens: int) -> str:
    """What the fp16 window covers: the modes with a window and whether a single-image prompt fits."""
    win = {r["name"]: int(r.get("resolved", {}).get("window", 0) or 0) for r in rows if r["kv"] != "f16"}
    with_w = {k: v for k, v in win.items() if v > 0}
    without = [k for k, v in win.items() if v == 0]
    if not win:
        return "No quantized mode in this run."
    s = "fp16 window (the most recent tokens, never quantized): " + (
        ", ".join(f"{k} {v}" for k, v in with_w.items()) if with_w else "none"
    )
    s += f"; none in {' '.join(without)}." if without else "."
    inside = [k for k, v in with_w.items() if n_single + max_tokens <= v]
    if inside:
        s += (
            f" A single-image prompt ({n_single} tokens + at most {max_tokens} answer tokens) fits inside the window "
            f"of {' '.join(inside)}: for these the single-image columns measure the fp16 path (low-precision share 0); "
            "there only the multi-image columns test the quantized cache."
        )
    return s


def format_report(res: dict[str, Any]) -> str:
    rows = res["rows"]
    L = res["lengths"]
    lines = [
        f"### Demo VLM answer accuracy per KV cache mode: `bench/vlm_quality.py` ({res['date']})",
        "",
        f"Machine: {res['machine']}; {res['threads']} thread(s); pyakvq at {res['git']}.",
        f"Model: {res['model_id']}. Command: `{res['command']}`.",
        f"Test set: seed {res['seed']} (training: seeds {seeds_text(training_seeds())}): "
        f"{res['n_single']} single images (colour and shape asked), "
        f"{res['n_multi']} prompts each of {' and '.join(map(str, MULTI_SIZES))} images "
        "(colour of image k, k uniform); "
        f"greedy, at most {res['max_tokens']} answer tokens; accuracy in %.",
        f"Prompt tokens: {', '.join(f'{k} image(s) {v}' for k, v in L.items())} ({res['tokens_per_image']} per image); "
        f"n_ctx {res['n_ctx']}.",
    ]
    if "1" in L:
        lines.append(window_note(rows, L["1"], res["max_tokens"]))
    lines += [
        "",
        "| mode | kv options | colour 1 img | shape 1 img | colour 8 img | colour 16 img | same answer as f16 | "
        "low-precision share 1 img / 16 img | bits/elem (16 img) | s/question 1 img: new image / same image |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a = r["acc"]
        s1, s16 = r.get("stats_1"), r.get(f"stats_{max(MULTI_SIZES)}")
        low = f"{_pct(s1 and s1['low_share'])} / {_pct(s16 and s16['low_share'])}"
        bits = "-" if s16 is None else f"{s16['bits']:.2f}"
        sq = "-" if r["s_fresh"] is None else f"{r['s_fresh']:.3f} / {r['s_followup']:.3f}"
        agree = _pct(r.get("agree_f16"))
        lines.append(
            f"| {r['name']} | {opts_text(r['options'])} | {_pct(a.get('color_1'))} | {_pct(a.get('shape_1'))} | "
            f"{_pct(a.get('color_8'))} | {_pct(a.get('color_16'))} | {agree} | {low} | {bits} | {sq} |"
        )
    lines += [
        "",
        "s/question: wall seconds of one chat() call with a single image: a new image (the colour question, asked "
        "first: preprocessing, vision encoder, whole prompt, answer) / the same image again (the shape question, "
        "asked next: a cache that can restore the common prefix keeps it). Low-precision share: cached tokens "
        "(all layers) outside the fp16 classes after the first 1-image and 16-image prompt with its answer.",
    ]
    lines += [
        "",
        f"Check that every mode changes the cache (after the first {max(MULTI_SIZES)}-image prompt and its answer): "
        "tokens per precision class in the first and the last layer, and the largest |logit difference| "
        "against f16 at the prompt's last position.",
        "",
        "| mode | resolved options | first layer | last layer | pivots per layer | max abs logit diff vs f16 |",
        "|---|---|---|---|---|---|",
    ]
    keep = ("bits", "window", "pivots", "tsa_layers", "levels", "clip")
    for r in rows:
        s16 = r.get(f"stats_{max(MULTI_SIZES)}") or {}
        ro = r.get("resolved") or {}
        ropt = " ".join(f"{k}={ro[k]}" for k in keep if k in ro) or "-"
        d = r.get("logit_diff")
        lines.append(
            f"| {r['name']} ({r['kv']}) | {ropt} | {s16.get('classes_first', '-')} | {s16.get('classes_last', '-')} | "
            f"{','.join(map(str, s16.get('pivots', []))) or '-'} | {'-' if d is None else f'{d:.4f}'} |"
        )
    same = identical_to_akvq2(rows)
    if same:
        lines += [
            "",
            f"Identical to akvq2 (every answer and the check logits bit for bit): {', '.join(same)}; on this model "
            "that option changes nothing (e.g. no pivot found: the pivots-per-layer column).",
        ]
    p = res.get("saliency")
    if p:
        lines += [
            "",
            f"Saliency profile (f16 cache, {len(p['samples'])} multi-image prompts of the test set; queries: the "
            f"question's tokens after the last image; the first {p['skip_first']} positions counted apart; "
            f"TSA when text/token over vision/token >= {p['factor']:g}):",
            "",
            "| layer | text mass | vision mass | first tokens | text share | text/token | vision/token | ratio | TSA |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for q in p["layers"]:
            ratio = "-" if q["ratio"] is None else f"{q['ratio']:.2f}"
            vpt = "-" if q["vision_per_token"] is None else f"{q['vision_per_token']:.5f}"
            lines.append(
                f"| {q['layer']} | {q['text_mass']:.3f} | {q['vision_mass']:.3f} | {q['skipped_mass']:.3f} | "
                f"{q['text_share']:.3f} | {q['text_per_token']:.5f} | {vpt} | {ratio} | {'yes' if q['tsa'] else 'no'} |"
            )
        lines += [
            "",
            f"Suggested TSA layers: {p['tsa_layers'] or 'none'}; the model's akvq2 uses: "
            f"{res.get('tsa_layers_used') or 'none'}.",
        ]
    lines += ["", f"Run time: {res['total_s']:.0f} s ({res['prepare_s']:.0f} s encoding the multi-image prompts)."]
    return "\n".join(lines)


def finish(res: dict[str, Any]) -> None:
    """Derived figures: agreement with f16 and the logit check."""
    base = next((r for r in res["rows"] if r["name"] == "f16"), None)
    for r in res["rows"]:
        if base is not None:
            r["agree_f16"] = accuracy(a == b for a, b in zip(r["answers"], base["answers"], strict=True))
            if "check_logits" in r and "check_logits" in base:
                r["logit_diff"] = float(np.abs(r["check_logits"] - base["check_logits"]).max())
    ak = next((r for r in res["rows"] if r["name"] == "akvq2"), None)
    if ak is not None:
        res["window"] = int(ak["resolved"].get("window", 0))
        res["tsa_layers_used"] = ak["tsa_layers"]


def evaluate(
    path: str,
    *,
    n_single: int,
    n_multi: int,
    modes: list[str],
    seed: int,
    threads: int | None,
    max_tokens: int | None = None,
    saliency_prompts: int = 4,
    progress: bool = True,
    command: str = "",
    log=print,
) -> dict[str, Any]:
    """Runs the whole benchmark and returns its results (format_report renders them)."""
    t_all = time.perf_counter()
    train_seeds = training_seeds()
    if any(seed in r for r in train_seeds):
        log(f"warning: seed {seed} is one of the training seeds ({seeds_text(train_seeds)})")
    testset = make_testset(seed, n_single, n_multi)
    qs = questions(testset)
    specs = resolve_modes(modes)
    prep = prepare(path, testset, threads)
    if max_tokens is None:
        max_tokens = answer_budget(prep["model"])
    log(
        f"prompt tokens {prep['lengths']}, {prep['tokens_per_image']} per image, n_ctx {prep['n_ctx']}; "
        f"multi-image prompts encoded in {prep['encode_s']:.1f} s"
    )
    res: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "git": git_head(),
        "model": path,
        "model_id": file_id(path),
        "command": command,
        "seed": seed,
        "n_single": n_single,
        "n_multi": n_multi,
        "max_tokens": max_tokens,
        "threads": prep["model"].info["n_threads"],
        "n_ctx": prep["n_ctx"],
        "tokens_per_image": prep["tokens_per_image"],
        "lengths": prep["lengths"],
        "prepare_s": prep["encode_s"],
        "questions": [{k: q[k] for k in ("kind", "index", "question", "expected")} for q in qs],
        "rows": [],
    }
    order = (["f16"] if "f16" in specs else []) + [n for n in specs if n != "f16"]
    t_modes = time.perf_counter()
    for i, name in enumerate(order):
        kv, opts = specs[name]
        row = run_mode(path, name, kv, opts, testset, qs, prep, threads, max_tokens, progress)
        res["rows"].append(row)
        a = row["acc"]
        log(
            f"{name}: "
            + ", ".join(f"{k} {_pct(v)}%" for k, v in a.items())
            + f"; {row['seconds']:.1f} s"
            + (f"; s/question (1 img) {row['s_per_single']:.3f}" if row["s_per_single"] else "")
        )
        if i + 1 < len(order):
            done = time.perf_counter() - t_modes
            est = time.perf_counter() - t_all + done / (i + 1) * (len(order) - i - 1)
            log(f"[{i + 1}/{len(order)} modes] estimated total run time: {est:.0f} s ({len(qs)} questions per mode)")
    res["saliency"] = run_saliency(prep, testset, saliency_prompts) if saliency_prompts else None
    prep["model"].close()
    finish(res)
    res["total_s"] = time.perf_counter() - t_all
    return res


def to_json(res: dict[str, Any]) -> dict[str, Any]:
    out = dict(res)
    out["rows"] = [{k: v for k, v in r.items() if k != "check_logits"} for r in res["rows"]]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="the VLM GGUF (default: the packaged demo model)")
    ap.add_argument("--n-single", type=int, default=200, help="single images (each asked colour and shape)")
    ap.add_argument("--n-multi", type=int, default=100, help="prompts of 8 and of 16 images each")
    ap.add_argument("--modes", default=ALL_MODES, help=f"comma-separated subset of {ALL_MODES}")
    ap.add_argument(
        "--seed", type=int, default=12345, help="test set seed (not one of the training script's data seeds)"
    )
    ap.add_argument("--threads", type=int, default=None, help="engine threads (default: every core)")
    ap.add_argument(
        "--max-tokens", type=int, default=None, help="answer tokens at most (default: longest expected answer + 2)"
    )
    ap.add_argument("--saliency-prompts", type=int, default=4, help="multi-image prompts profiled (0: none)")
    ap.add_argument("--json", default=None, help="write every figure and answer here")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    path = a.model or default_model()
    if not pathlib.Path(path).is_file():
        print(f"model not found: {path} (give --model)", file=sys.stderr)
        return 2
    modes = [x.strip() for x in a.modes.split(",") if x.strip()]
    cmd = "python bench/vlm_quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    res = evaluate(
        path,
        n_single=a.n_single,
        n_multi=a.n_multi,
        modes=modes,
        seed=a.seed,
        threads=a.threads,
        max_tokens=a.max_tokens,
        saliency_prompts=a.saliency_prompts,
        progress=not a.no_progress,
        command=cmd.strip(),
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    print(format_report(res))
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(to_json(res), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
