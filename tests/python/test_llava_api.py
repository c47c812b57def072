"""The LLaVA API end to end on the fixture checkpoints of tests/fixtures/llava, converted (f32) by the
converter's command line: Model.generate / eval with images, chat with images and message parts,
llama.cpp's two-file layout (mmproj=), a changed image after a first turn, akvq-cli --image, and
every bad input of issue 8 point 6 (typed errors naming the image)."""

from __future__ import annotations

import base64
import pathlib
import shutil
import subprocess
import sys
import warnings

import llava_convert as lc
import numpy as np
import pytest
from test_helpers import cli, cosine

import pyakvq
from pyakvq.multimodal import LLAVA_SYSTEM

pytest.importorskip("gguf")
pytest.importorskip("safetensors")

IMAGES = lc.FIXTURES / "images"


def convert_cli(name: str, out_dir: pathlib.Path, mmproj: bool = False) -> list[pathlib.Path]:
    """Converts a fixture checkpoint (f32) with akvq-convert (or `python -m pyakvq.convert`, the same
    command, when the console script is not installed)."""
    exe = shutil.which("akvq-convert")
    cmd = [exe] if exe else [sys.executable, "-m", "pyakvq.convert"]
    stem = out_dir / f"{name}.f32"
    outs = [stem.with_suffix(".text.gguf"), stem.with_suffix(".mmproj.gguf")] if mmproj else [stem.with_suffix(".gguf")]
    args = [str(lc.FIXTURES / name), "-o", str(outs[0]), "--outtype", "f32"]
    if mmproj:
        args += ["--mmproj-out", str(outs[1])]
    # the pyakvq this test imported: run in the directory above that package, environment inherited
    cwd = pathlib.Path(pyakvq.__file__).resolve().parents[1]
    r = subprocess.run(cmd + args, capture_output=True, text=True, timeout=300, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return outs


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("llava_api")
    out = {}
    for name in lc.CHECKPOINTS:
        (out[name],) = convert_cli(name, d)
    out["text"], out["mmproj"] = convert_cli("spm_default_pad", d, mmproj=True)
    out["bpe_text"], out["bpe_mmproj"] = convert_cli("bpe_full_crop", d, mmproj=True)
    return out


def prompt_case(name: str, p: int):
    ref, meta = lc.reference(name)
    pm = meta["prompts"][p]
    return pm, [str(IMAGES / n) for n in pm["images"]], ref[f"p{p}_greedy_ids"].tolist(), ref[f"p{p}_logits"]


def until_eos(ids: list[int], m: pyakvq.Model) -> list[int]:
    """transformers' greedy tokens up to the model's end-of-generation token, where the engine's
    generation loop stops (finish reason "eos", the token not included)."""
    eog = {m.info["eos"]} | {i for i in range(m.n_vocab) if m.detokenize([i], True) in ("<|im_end|>", "</s>")}
    for k, t in enumerate(ids):
        if t in eog:
            return ids[:k]
    return ids


def greedy(stream) -> list[int]:
    return [t.id for t in stream]


# ---- generate / eval / chat against transformers ----------------------------------------------------


@pytest.mark.parametrize("name", lc.CHECKPOINTS)
@pytest.mark.parametrize("p", [0, 1])
def test_generate_and_eval_match_transformers(files, name, p):
    pm, images, want_ids, want_logits = prompt_case(name, p)
    with pyakvq.Model(files[name], n_ctx=512, n_threads=2) as m:
        assert m.has_vision and m.image_marker == "<image>"
        ts = m.generate(pm["text"], images=images, max_tokens=8, temperature=0, stream=True)
        toks = list(ts)
        want = until_eos(want_ids, m)
        assert [t.id for t in toks] == want and ts.finish_reason == ("length" if want == want_ids else "eos")
        text = m.generate(pm["text"], images=images, max_tokens=8, temperature=0)
        assert text == "".join(t.text for t in toks)
        logits = m.eval(pm["text"], images=images)
        assert cosine(logits, want_logits) >= 0.9999
        assert int(np.argmax(logits)) == int(np.argmax(want_logits))


@pytest.mark.parametrize("name", lc.CHECKPOINTS)
def test_chat_with_message_parts(files, name):
    """The fixture's conversations with image parts, rendered by the file's chat template."""
    with pyakvq.Model(files[name], n_ctx=512, n_threads=2) as m:
        for p in (0, 1):
            pm, images, want_ids, _ = prompt_case(name, p)
            it = iter(images)
            messages = [
                {
                    "role": msg["role"],
                    "content": [
                        {"type": "image", "image": next(it)} if part["type"] == "image" else part
                        for part in msg["content"]
                    ],
                }
                for msg in pm["messages"]
            ]
            assert m.render_chat(lc_strip(messages)) == pm["text"]
            assert greedy(m.chat(messages, max_tokens=8, temperature=0, stream=True)) == until_eos(want_ids, m)


def lc_strip(messages):
    return [
        {"role": m["role"], "content": [{"type": "image"} if q["type"] == "image" else q for q in m["content"]]}
        for m in messages
    ]


def test_chat_image_forms(files):
    """chat(image, prompt) and image parts as path, bytes, PIL image, array, data URL and file path."""
    from PIL import Image

    pm, images, want_ids, _ = prompt_case("spm_default_pad", 0)
    question = pm["messages"][0]["content"][1]["text"]
    path = images[0]
    data = pathlib.Path(path).read_bytes()
    arr = np.asarray(Image.open(path).convert("RGB"))
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    gen = dict(max_tokens=8, temperature=0, stream=True)
    with pyakvq.Model(files["spm_default_pad"], n_ctx=512, n_threads=2) as m:
        for img in (path, pathlib.Path(path), data, Image.open(path), arr):
            assert greedy(m.chat(img, question, **gen)) == want_ids
        assert greedy(m.chat([path], question, **gen)) == want_ids
        assert greedy(m.chat(question, images=[arr], **gen)) == want_ids
        for part in (
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "image_url", "image_url": {"url": path}},
            {"type": "image_url", "image_url": {"url": "file://" + path}},
        ):
            msgs = [{"role": "user", "content": [part, {"type": "text", "text": question}]}]
            assert greedy(m.chat(msgs, **gen)) == want_ids
        # streamed answer, then a follow-up turn that reuses the cache (same image, same prefix)
        ts = m.chat(path, question, **gen)
        answer = "".join(t.text for t in ts)
        msgs = [
            {"role": "user", "content": [{"type": "image", "image": path}, {"type": "text", "text": question}]},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "And its colour?"},
        ]
        ts = m.chat(msgs, **gen)
        list(ts)
        image_end = m.tokenize(pm["text"]).index(1000) + 16
        assert ts.n_reused > image_end  # the image's rows are reused


def test_vicuna_template_is_the_cli_format(files):
    """chat()'s template for a vision model whose file has none: LLaVA-1.5's vicuna format, the same
    text as akvq-cli's built-in "vicuna" format (pyakvq._akvq.format_image_chat)."""
    from pyakvq._ext import _akvq

    tmpl = pyakvq.multimodal.vicuna_template("<image>")
    with pyakvq.Model(files["spm_default_pad"], n_ctx=512) as m:
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Hi?"}]}]
        got = m.render_chat(msgs, template=tmpl)
        assert got == f"{LLAVA_SYSTEM} USER: <image>\n<image>\nHi? ASSISTANT:"
        assert got == _akvq.format_image_chat("vicuna", "Hi?", 2)
        two = msgs + [{"role": "assistant", "content": "A cat."}, {"role": "user", "content": "More?"}]
        assert m.render_chat(two, template=tmpl) == got + " A cat.</s>USER: More? ASSISTANT:"
        sys_msgs = [{"role": "system", "content": "Be brief."}] + msgs
        assert m.render_chat(sys_msgs, template=tmpl) == "Be brief. USER: <image>\n<image>\nHi? ASSISTANT:"
    # the demo model's own template labels each of several images; its file states the label
    # (akvq.chat.image_label) for akvq-cli's vicuna format, which then gives the same text
    from gguf import GGUFReader

    f = GGUFReader(pyakvq.demo_model_path()).fields["akvq.chat.image_label"]
    label = bytes(f.parts[f.data[0]]).decode()
    with pyakvq.Model(n_ctx=512) as demo:
        for n in (1, 2, 3):
            msgs = [{"role": "user", "content": [{"type": "image"}] * n + [{"type": "text", "text": "Hi?"}]}]
            assert demo.render_chat(msgs) == _akvq.format_image_chat("vicuna", "Hi?", n, "<image>", label)


def test_two_file_layout(files):
    for name, text, mmproj in (("spm_default_pad", "text", "mmproj"), ("bpe_full_crop", "bpe_text", "bpe_mmproj")):
        with pyakvq.Model(files[text], n_ctx=512, n_threads=2) as plain:
            assert not plain.has_vision
        with pyakvq.Model(files[text], mmproj=files[mmproj], n_ctx=512, n_threads=2) as m:
            for p in (0, 1):
                pm, images, want_ids, want_logits = prompt_case(name, p)
                got = greedy(m.generate(pm["text"], images=images, max_tokens=8, temperature=0, stream=True))
                assert got == until_eos(want_ids, m)
                assert cosine(m.eval(pm["text"], images=images), want_logits) >= 0.9999


def test_llama_cpp_legacy_pair(files, tmp_path):
    """llama.cpp's published two-file layout (23 blocks, swapped ffn names, no akvq keys, no image
    token in the mmproj): the image token comes from the text vocabulary; with the reference's ids
    the greedy tokens are transformers' (the text tokenizer follows llama.cpp's space rule, so a text
    prompt tokenizes differently there)."""
    text, mmproj = lc.write_legacy_pair(lc.FIXTURES / "spm_default_pad", tmp_path, outtype="f32")
    ref, _ = lc.reference("spm_default_pad")
    with pyakvq.Model(text, mmproj=mmproj, n_ctx=512, n_threads=2) as m:
        assert m.vision_info["image_token_id"] == -1 and m.image_marker == "<image>"
        for p in (0, 1):
            pm, images, want_ids, want_logits = prompt_case("spm_default_pad", p)
            ids = lc.collapse_image_tokens(ref[f"p{p}_prompt_ids"], 1000)
            assert greedy(m.generate(ids, images=images, max_tokens=8, temperature=0, stream=True)) == want_ids
            assert cosine(m.eval(ids, images=images), want_logits) >= 0.9999
        assert len(m.generate(pm["text"], images=images, max_tokens=2, temperature=0)) >= 0


def test_prompt_without_an_image_token(files):
    """A pair without any image token (llama.cpp's LLaVA-1.5 vocabulary has none): the text "<image>"
    splits the prompt, the first piece tokenized with BOS, the others without, as llama.cpp does."""
    from pyakvq._ext import _akvq

    img = str(IMAGES / "square_64.png")
    with pyakvq.Model(files["spm_default_pad"], n_ctx=512, n_threads=2) as m:
        ids = _akvq.tokenize_image_prompt(m._model, "USER: <image>\nWhat? ASSISTANT:", -1, True)
        k = ids.index(-1)
        assert ids[:k] == m.tokenize("USER: ") and ids.count(-1) == 1
        assert ids[k + 1 :] == m.tokenize("\nWhat? ASSISTANT:", add_special=False)
        assert _akvq.tokenize_image_prompt(m._model, "<image><image>", -1, True) == [m.info["bos"], -1, -1]
        vision = m._vision
        enc = _akvq.encode_images(vision, _akvq.vision_preprocess(vision, pyakvq.image.to_rgb_array(img))[None])
        slots = _akvq.image_prompt_input(ids, -1, enc, 512)
        same = [1000 if t == -1 else t for t in ids]
        s = _akvq.Session(m._model, n_ctx=512, n_threads=2)
        assert np.array_equal(s.eval_rows(slots), m.eval(same, images=[img]))
        with pytest.raises(ValueError, match="1 image marker but 2 images"):
            _akvq.image_prompt_input(ids, -1, _akvq.encode_images(vision, np.stack([enc_px(vision, img)] * 2)), 512)


def enc_px(vision, img):
    from pyakvq._ext import _akvq

    return _akvq.vision_preprocess(vision, pyakvq.image.to_rgb_array(img))


def test_changed_image_is_not_served_from_the_cache(files):
    pm, images, _, _ = prompt_case("spm_default_pad", 0)
    other = str(IMAGES / "square_64.png")
    gen = dict(max_tokens=8, temperature=0, stream=True)
    with pyakvq.Model(files["spm_default_pad"], n_ctx=512, n_threads=2) as m:
        first = m.generate(pm["text"], images=images, **gen)
        a = greedy(first)
        same = m.generate(pm["text"], images=images, **gen)
        assert greedy(same) == a and same.n_reused == same.n_prompt - 1  # the whole prompt but its last row
        changed = m.generate(pm["text"], images=[other], **gen)
        b = greedy(changed)
        image_pos = m.tokenize(pm["text"]).index(m.vision_info["image_token_id"])
        assert changed.n_reused <= image_pos  # nothing from the first image's rows on is reused
    with pyakvq.Model(files["spm_default_pad"], n_ctx=512, n_threads=2) as fresh:
        assert greedy(fresh.generate(pm["text"], images=[other], **gen)) == b
        fresh_logits = fresh.eval(pm["text"], images=[other])
        assert not np.array_equal(fresh_logits, fresh.eval(pm["text"], images=images))
    assert a != b


def test_projector_without_biases(tmp_path):
    """A checkpoint whose projector has no biases (transformers' multimodal_projector_bias = false)
    converts and runs: its logits equal, bit for bit, those of the same checkpoint with the biases
    present and zero (an absent bias adds nothing). The converted file once failed to load."""
    import json

    from safetensors.numpy import load_file, save_file

    def variant(name: str, drop: bool) -> pathlib.Path:
        d = tmp_path / name
        shutil.copytree(lc.FIXTURES / "spm_default_pad", d)
        index = json.loads((d / "model.safetensors.index.json").read_text())
        biases = [k for k in index["weight_map"] if k.startswith("multi_modal_projector.") and k.endswith(".bias")]
        assert len(biases) == 2
        for shard in {index["weight_map"][k] for k in biases}:
            t = load_file(d / shard)
            for k in biases:
                if k in t:
                    if drop:
                        del t[k]
                    else:
                        t[k] = np.zeros_like(t[k])
            save_file(t, d / shard, metadata={"format": "pt"})
        if drop:
            for k in biases:
                del index["weight_map"][k]
            (d / "model.safetensors.index.json").write_text(json.dumps(index))
            cfg = json.loads((d / "config.json").read_text())
            cfg["multimodal_projector_bias"] = False
            (d / "config.json").write_text(json.dumps(cfg))
        from pyakvq.convert import convert

        (out,) = convert(d, tmp_path / f"{name}.gguf")
        return out

    pm, images, _, _ = prompt_case("spm_default_pad", 0)
    logits = []
    for path in (variant("zero_bias", False), variant("no_bias", True)):
        with pyakvq.Model(path, n_ctx=512, n_threads=2) as m:
            logits.append(m.eval(pm["text"], images=images))
    assert np.array_equal(logits[0], logits[1])
    r = subprocess.run(
        [cli(), "-m", tmp_path / "no_bias.gguf", "--image", images[0], "-p", "hi", "-n", "2", "-t", "2"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr


def test_two_bit_cache_keeps_the_image_rows_for_another_question(files):
    """akvq2 with a window far shorter than the image: the prompt's checkpoint at the end of the
    image rows lets the next question about the same image keep them (n_reused = the image's end)
    although they left the window, and the answer and logits equal a fresh Model's bit for bit.
    The same question again restores the same checkpoint (f16 would keep all but the last row)."""
    pm, images, _, _ = prompt_case("spm_default_pad", 0)
    other_q = pm["text"].replace("What shape is in the picture?", "Which colours do you see?")
    assert other_q != pm["text"]
    opts = dict(n_ctx=512, n_threads=2, kv="akvq2", kv_options={"window": 4, "pivots": 2})
    gen = dict(max_tokens=8, temperature=0, stream=True)
    with pyakvq.Model(files["spm_default_pad"], **opts) as m:
        first = m.generate(pm["text"], images=images, **gen)
        greedy(first)
        image_end = m.tokenize(pm["text"]).index(m.vision_info["image_token_id"]) + 16
        again = m.generate(pm["text"], images=images, **gen)
        a = greedy(again)
        assert again.n_reused == image_end < again.n_prompt - 1
        second = m.generate(other_q, images=images, **gen)
        b = greedy(second)
        assert second.n_reused == image_end
        logits = m.eval(other_q, images=images)
    with pyakvq.Model(files["spm_default_pad"], **opts) as fresh:
        assert greedy(fresh.generate(pm["text"], images=images, **gen)) == a
    with pyakvq.Model(files["spm_default_pad"], **opts) as fresh:
        assert greedy(fresh.generate(other_q, images=images, **gen)) == b
        assert np.array_equal(fresh.eval(other_q, images=images), logits)


# ---- akvq-cli --image ---------------------------------------------------------------------------------


def run_cli(*args):
    return subprocess.run([cli(), *map(str, args)], capture_output=True, text=True, timeout=300)


def cli_can_read_images() -> bool:
    c = pyakvq.image.codecs()
    return c["png"] and c["jpeg"]


@pytest.mark.parametrize("name", ["spm_default_pad", "bpe_full_crop"])
def test_cli_same_answer_as_python(files, name):
    if not cli_can_read_images():
        pytest.skip("this build has no PNG/JPEG decoders")
    with pyakvq.Model(files[name], n_ctx=512, n_threads=2) as m:
        for p in (0, 1):
            pm, images, want_ids, _ = prompt_case(name, p)
            args = ["-m", files[name], "-p", pm["text"], "-n", 8, "--temp", 0, "-t", 2, "-c", 512]
            for img in images:
                args += ["--image", img]
            r = run_cli(*args)
            assert r.returncode == 0, r.stderr
            want = m.generate(pm["text"], images=images, max_tokens=8, temperature=0)
            assert greedy(m.generate(pm["text"], images=images, max_tokens=8, temperature=0, stream=True)) == until_eos(
                want_ids, m
            )
            assert r.stdout == want + "\n"
        # no marker in -p: one vicuna chat turn with the images first (the built-in format)
        pm, images, _, _ = prompt_case(name, 1)
        r = run_cli(
            "-m",
            files[name],
            "-p",
            "Compare them.",
            "-n",
            8,
            "--temp",
            0,
            "-c",
            512,
            *sum((["--image", i] for i in images), []),
        )
        assert r.returncode == 0, r.stderr
        # no --chat-template: the file's own template (as akvq-convert rendered it into
        # akvq.chat.image_turn), so the answer is Model.chat's, whatever the template's format
        assert r.stdout == m.chat(images, "Compare them.", max_tokens=8, temperature=0) + "\n"
        r = run_cli(*sum((["--image", i] for i in images), []), "-m", files[name], "-p", "Compare them.",
                    "-n", 8, "--temp", 0, "-c", 512, "--chat-template", "vicuna")
        vicuna = f"{LLAVA_SYSTEM} USER: <image>\n<image>\n<image>\nCompare them. ASSISTANT:"
        assert r.returncode == 0 and r.stdout == m.generate(vicuna, images=images, max_tokens=8, temperature=0) + "\n"
        r = run_cli(
            "-m",
            files[name],
            "-p",
            "Compare them.",
            "-n",
            8,
            "--temp",
            0,
            "-c",
            512,
            "--chat-template",
            "chatml",
            "--image",
            images[0],
        )
        chatml = "<|im_start|>user\n<image>\nCompare them.<|im_end|>\n<|im_start|>assistant\n"
        assert (
            r.returncode == 0 and r.stdout == m.generate(chatml, images=images[:1], max_tokens=8, temperature=0) + "\n"
        )


def test_cli_chat_template_file(files, tmp_path):
    if not cli_can_read_images():
        pytest.skip("this build has no PNG/JPEG decoders")
    tmpl = tmp_path / "fmt.txt"
    tmpl.write_text("{images}Q: {prompt} A:")
    img = str(IMAGES / "square_64.png")
    r = run_cli(
        "-m", files["spm_default_pad"], "-p", "Hi", "--chat-template", tmpl, "--image", img, "-n", 6, "--temp", 0
    )
    assert r.returncode == 0, r.stderr
    with pyakvq.Model(files["spm_default_pad"], n_ctx=512) as m:
        assert r.stdout == m.generate("<image>\nQ: Hi A:", images=[img], max_tokens=6, temperature=0) + "\n"
    # a prompt with markers is used as it is, whatever --chat-template says
    r2 = run_cli(
        "-m",
        files["spm_default_pad"],
        "-p",
        "<image>\nQ: Hi A:",
        "--chat-template",
        "vicuna",
        "--image",
        img,
        "-n",
        6,
        "--temp",
        0,
    )
    assert r2.returncode == 0 and r2.stdout == r.stdout


def test_cli_two_file_and_errors(files, tmp_path):
    if not cli_can_read_images():
        r = run_cli("-m", files["spm_default_pad"], "-p", "x", "--image", IMAGES / "square_64.png")
        assert r.returncode == 2 and "cannot read" in r.stderr
        return
    img = IMAGES / "landscape_120x80.png"
    pm, images, want_ids, _ = prompt_case("spm_default_pad", 0)
    r = run_cli(
        "-m", files["text"], "--mmproj", files["mmproj"], "-p", pm["text"], "-n", 8, "--temp", 0, "--image", images[0]
    )
    assert r.returncode == 0, r.stderr
    with pyakvq.Model(files["spm_default_pad"], n_ctx=512) as m:
        assert r.stdout == m.generate(pm["text"], images=images, max_tokens=8, temperature=0) + "\n"

    def err(*args):
        r = run_cli(*args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and lines[-1].startswith("akvq-cli: error:"), r.stderr
        return lines[-1]

    base = ["-m", files["spm_default_pad"], "-n", 2, "--temp", 0]
    assert "no vision encoder" in err("-m", files["text"], "-p", "x", "--image", img)
    # a vision tower the engine cannot run is named as such, not as a missing one
    from pyakvq.gguf_keys import copy_with_key, string_value

    tanh = tmp_path / "tanh.gguf"
    copy_with_key(files["spm_default_pad"], tanh, "akvq.vision.projector_hidden_act", string_value("tanh"))
    line = err("-m", tanh, "-p", "x", "--image", img)
    assert "projector activation 'tanh' is not supported" in line and "no vision encoder" not in line, line
    assert "--mmproj" not in line, line  # the file has a vision tower: no hint to give it one
    with pytest.raises(ValueError, match="projector activation 'tanh' is not supported"):  # a file it cannot run
        pyakvq.Model(tanh)
    assert "n_embd" in err("-m", files["bpe_text"], "--mmproj", files["mmproj"], "-p", "x", "--image", img)
    assert "2 image markers but 1 image" in err(*base, "-p", "<image> <image>", "--image", img)
    corrupt = tmp_path / "bad.png"
    corrupt.write_bytes(img.read_bytes()[:200])
    assert "bad.png" in err(*base, "-p", "x", "--image", corrupt)
    gif = tmp_path / "x.gif"
    gif.write_bytes(b"GIF89a" + bytes(40))
    assert "x.gif" in err(*base, "-p", "x", "--image", gif)
    assert "missing.png" in err(*base, "-p", "x", "--image", tmp_path / "missing.png")
    line = err(*base, "-c", 30, "-p", "x", "--image", img, "--image", img)
    assert "n_ctx=30" in line and "2 images x 16 = 32" in line
    assert "neither a built-in format" in err(*base, "-p", "x", "--chat-template", "nope", "--image", img)


# ---- bad input -> typed errors ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(files):
    with pyakvq.Model(files["spm_default_pad"], n_ctx=128, n_threads=2) as m:
        yield m


def test_bad_images_name_their_index(model, tmp_path):
    good = str(IMAGES / "square_64.png")
    prompt = "USER: <image>\n<image>\nWhat? ASSISTANT:"
    png = (IMAGES / "landscape_120x80.png").read_bytes()
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(png[: len(png) // 2])
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    cases = [
        (b"\x89PNG\r\n\x1a\n" + bytes(30), ValueError, "corrupt|truncated|not an image"),  # corrupt
        (str(trunc), ValueError, "truncated|corrupt"),
        (np.zeros((0, 5, 3), np.uint8), ValueError, "zero-size"),
        (str(text_file), ValueError, "not an image|unsupported"),
        (b"", ValueError, "empty"),
        (np.zeros((8, 8, 3), np.float32), TypeError, "uint8"),
        (np.zeros((8, 8, 5), np.uint8), ValueError, "shape"),
        (np.zeros((8,), np.uint8), ValueError, "shape"),
        (3.5, TypeError, "an image must be"),
        (str(tmp_path / "missing.png"), FileNotFoundError, "missing.png"),
    ]
    for bad, exc, msg in cases:
        for k, images in ((1, [good, bad]), (0, [bad, good])):
            for call in (model.generate, model.eval):
                with pytest.raises(exc, match=rf"^image {k}: .*({msg})"):
                    call(prompt, images=images)
    # nothing was evaluated: the Model still answers
    assert len(model.generate(prompt, images=[good, good], max_tokens=2, temperature=0)) >= 0


def test_marker_count_mismatch(model):
    img = str(IMAGES / "square_64.png")
    with pytest.raises(ValueError, match="2 image markers but 1 image was given"):
        model.generate("<image> and <image>", images=[img])
    with pytest.raises(ValueError, match="0 image markers but 2 images were given"):
        model.eval("no marker", images=[img, img])
    with pytest.raises(ValueError, match="1 image marker but 0 images"):
        model.generate("<image>", images=[])
    with pytest.raises(TypeError, match="list of images"):
        model.generate("<image>", images=img)
    with pytest.raises(ValueError, match=r"empty list and a string: no images for chat\(images, prompt\)"):
        model.chat([], "What color is the shape?")
    # no images at all: the marker's embedding must not stand in for an image (as images=[])
    prompt = "USER: <image>\nWhat color is the shape? ASSISTANT:"
    for call in (
        lambda: model.generate(prompt, max_tokens=2),
        lambda: model.eval(prompt),
        lambda: model.create_completion(prompt, max_tokens=2),
        lambda: model.chat("<image> What color is the shape?", max_tokens=2),
        lambda: model.generate(model.tokenize(prompt), max_tokens=2),
    ):
        with pytest.raises(ValueError, match="the prompt has 1 image marker but 0 images were given"):
            call()
    with pytest.raises(ValueError, match=r"^prompts\[1\]: the prompt has 1 image marker but 0 images"):
        model.generate_batch(["USER: hi ASSISTANT:", prompt], max_tokens=2)
    assert isinstance(model.generate("USER: hi ASSISTANT:", max_tokens=2, temperature=0), str)


def test_chat_arguments_that_are_not_what_they_seem(model, tmp_path):
    img = str(IMAGES / "square_64.png")
    # a mistyped image path is not a prompt whose question becomes the template
    with pytest.raises(FileNotFoundError, match="image file not found: .*squar_64.png"):
        model.chat(str(IMAGES / "squar_64.png"), "What color is the shape?")
    with pytest.raises(ValueError, match="not an existing image file.*no Jinja markup"):
        model.chat(str(tmp_path / "photo"), "What color is the shape?")
    # an image path that names something else says what (as the list form does)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(IsADirectoryError, match="dir.png' is a directory, not an image file"):
        model.chat(str(tmp_path / "dir.png"), "q")
    with pytest.raises(ValueError, match="embedded null byte"):
        model.chat(str(tmp_path / "a\0.png"), "q")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    with pytest.raises(FileNotFoundError, match="a symbolic link to nothing readable"):
        model.chat(str(tmp_path / "loop.png"), "q")
    # a question that is not a string, after images
    for q in (123, ["a"]):
        with pytest.raises(TypeError, match=f"the prompt must be a str, got {type(q).__name__}"):
            model.chat(img, q)
    with pytest.raises(TypeError, match="template must be a str"):
        model.chat([{"role": "user", "content": "hi"}], 7)
    # content parts chat() cannot render are refused, not dropped by the template
    with pytest.raises(ValueError, match=r"messages\[0\]\.content\[0\]: unsupported content part type 'audio'"):
        model.chat([{"role": "user", "content": [{"type": "audio", "audio": "x"}, {"type": "text", "text": "hi"}]}])
    with pytest.raises(ValueError, match=r"^messages\[0\]\.content is an empty list"):
        model.chat([{"role": "user", "content": []}])
    # a misspelt generation keyword is refused; a variable the template does not read warns
    for kw, right in (("max_token", "max_tokens"), ("temprature", "temperature"), ("top_pp", "top_p")):
        with pytest.raises(TypeError, match=rf"unexpected keyword argument '{kw}' \(did you mean '{right}'\?\)"):
            model.chat(img, "What color is the shape?", **{kw: 1})
    with pytest.warns(UserWarning, match="does not read the keyword 'enable_thinking'"):
        model.chat(img, "What color is the shape?", enable_thinking=False, max_tokens=1, temperature=0)
    read = "{% for m in messages %}{{ m['content'] }}{{ suffix }}{% endfor %}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a variable the template reads: no warning
        model.chat("hi", template=read, suffix="!", max_tokens=1, temperature=0)


def test_prompt_and_images_longer_than_n_ctx(model):
    img = str(IMAGES / "square_64.png")
    prompt = "USER: " + "<image>\n" * 8 + "Describe. ASSISTANT:"
    n_text = len(model.tokenize(prompt)) - 8
    with pytest.raises(
        ValueError, match=rf"takes {n_text + 128} tokens \(text {n_text}, 8 images x 16 = 128\).*n_ctx=128"
    ):
        model.generate(prompt, images=[img] * 8)
    with pytest.raises(ValueError, match="8 images x 16 = 128"):
        model.eval(prompt, images=[img] * 8)


def test_mmproj_that_does_not_match(files):
    with pytest.raises(ValueError, match=r"96.*64|64.*96"):
        pyakvq.Model(files["spm_default_pad"], mmproj=files["bpe_mmproj"])
    with pytest.raises(ValueError, match=r"64.*96|96.*64"):
        pyakvq.Model(files["bpe_text"], mmproj=files["mmproj"])
    with pytest.raises(OSError, match="nope.gguf"):
        pyakvq.Model(files["text"], mmproj=files["text"].parent / "nope.gguf")
    with pytest.raises(ValueError, match="no vision encoder.*a vision tower file, llama.cpp's mmproj, is expected"):
        pyakvq.Model(files["text"], mmproj=files["text"])  # a text model given as the vision tower


def test_image_to_a_text_only_model(files):
    img = str(IMAGES / "square_64.png")
    with pyakvq.Model(files["text"], n_ctx=128) as m:
        assert not m.has_vision and m.vision_info is None
        for call in (
            lambda: m.generate("<image> hi", images=[img]),
            lambda: m.eval("<image> hi", images=[img]),
            lambda: m.chat(img, "What is it?"),
            lambda: m.chat([{"role": "user", "content": [{"type": "image", "image": img}]}]),
            lambda: m.chat("What is it?", images=[img]),
            # a template that concatenates string content (SmolLM2's) is not reached
            lambda: m.chat("What is it?", images=[img], template=CONCAT_TEMPLATE),
        ):
            with pytest.raises(ValueError, match=r"no vision encoder; load it with its mmproj GGUF"):
                call()
        assert isinstance(m.chat("hello", max_tokens=2, temperature=0), str)  # text chat unchanged


CONCAT_TEMPLATE = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}assistant:"


def test_text_parts_reach_a_text_models_template_as_one_string(files):
    # OpenAI clients send content as a list of text parts; a text model's template that concatenates
    # strings gets them joined by newlines (llama.cpp's server and vLLM do the same)
    parts = [{"type": "text", "text": "Say hi."}, {"type": "text", "text": "Briefly."}]
    with pyakvq.Model(files["text"], n_ctx=128) as m:
        joined = [{"role": "user", "content": "Say hi.\nBriefly."}]
        assert m.render_chat([{"role": "user", "content": parts}], template=CONCAT_TEMPLATE) == m.render_chat(
            joined, template=CONCAT_TEMPLATE
        )
        got = m.chat([{"role": "user", "content": parts}], template=CONCAT_TEMPLATE, max_tokens=4, temperature=0)
        assert got == m.chat(joined, template=CONCAT_TEMPLATE, max_tokens=4, temperature=0)
        with pytest.raises(ValueError, match=r"content\[1\]: unsupported content part type 'note'"):
            m.chat([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "note"}]}],
                   template=CONCAT_TEMPLATE)
        # an empty list of parts: one clear error for a text model (its template failed on the list)
        # as for a vision one (which rendered nothing)
        empty = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": []}]
        with pytest.raises(ValueError, match=r"^messages\[1\]\.content is an empty list"):
            m.chat(empty, template=CONCAT_TEMPLATE, max_tokens=2)
        with pytest.raises(ValueError, match=r"^messages\[1\]\.content is an empty list"):
            m.create_chat_completion(empty, max_tokens=2)


def test_echo_logprobs_leave_out_the_added_bos(files):
    """A tokenizer that adds BOS (SPM here): echo with logprobs lists the prompt's own tokens, so
    they join into the echoed text and each offset is where its token starts; the first is scored
    after the BOS. A BOS spelled in the text is listed (it is the text's)."""
    with pyakvq.Model(files["spm_default_pad"], n_ctx=128) as m:
        assert m.info["add_bos"]
        for prompt in ("Hello world", "<s>Hello world"):
            ids = m.tokenize(prompt)
            r = m.create_completion(prompt, echo=True, logprobs=1, max_tokens=1, temperature=0)["choices"][0]
            lp, n = r["logprobs"], len(ids) - 1  # the added BOS is not listed
            assert len(lp["tokens"]) == n + 1 and r["text"].startswith(prompt)
            assert lp["token_logprobs"][0] is not None and all(v < 0 for v in lp["token_logprobs"])
            for j, (t, o) in enumerate(zip(lp["tokens"], lp["text_offset"], strict=True)):
                t = t.lstrip() if j == 0 else t  # the detokenizer drops the first token's leading space
                assert r["text"][o : o + len(t)] == t, (t, o, r["text"])
            assert lp["text_offset"][n] == len(prompt)
