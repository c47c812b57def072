"""akvq-cli: help, errors, and the same greedy output as the Python API."""

import os
import pathlib
import shutil
import subprocess

import pytest
from test_helpers import cli, elapsed, interrupt_after

import pyakvq

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def run(*args, exe=None, env=None):
    e = {k: v for k, v in os.environ.items() if k != "AKVQ_DEMO_MODEL"}
    e.update(env or {})
    return subprocess.run([exe or cli(), *map(str, args)], capture_output=True, text=True, timeout=300, env=e)


def test_help():
    r = run("--help")
    assert r.returncode == 0
    assert "-m, --model" in r.stdout and "--top-p" in r.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (("-m", "x.gguf"), "-p PROMPT"),
        (("-m", "x.gguf", "-p", "hi", "-n", "abc"), "-n: expected an integer"),
        (("-m", "x.gguf", "-p", "hi", "--top-p", "7"), "top_p"),
        (("-m", "x.gguf", "-p", "hi", "--bogus"), "unknown option '--bogus'"),
        # a positional prompt, as `pyakvq chat` takes it: not called an option
        (
            ("-m", "x.gguf", "The capital of France is"),
            "unexpected argument 'The capital of France is': give the prompt with -p/--prompt",
        ),
        (("-m", "x.gguf", "-p", "hi", "-t"), "-t: missing value"),
    ],
)
def test_bad_arguments(args, needle):
    r = run(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("akvq-cli: error:") and needle in lines[0], r.stderr


def test_without_model_runs_the_demo(monkeypatch):
    """No -m: the demo VLM that ships in the pyakvq package installed with the binary (or in the
    source tree of a build directory), as `pyakvq chat` does; the same answer as the Python API
    on the file it names."""
    monkeypatch.delenv("AKVQ_DEMO_MODEL", raising=False)
    q = "What color is the shape?"
    r = run("--image", EXAMPLES / "red_circle.png", "-p", q, "-n", 8, "--temp", 0, "-t", 2)
    if r.returncode == 2 and "no demo model found" in r.stderr:
        pytest.skip(f"{cli()} has no pyakvq package beside it (an out-of-tree build)")
    assert r.returncode == 0, r.stderr
    found = [ln for ln in r.stderr.splitlines() if "no -m given: the demo model " in ln]
    assert len(found) == 1, r.stderr
    path = found[0].split("the demo model ", 1)[1]
    assert path.endswith("demo-vlm.gguf")
    assert "red" in r.stdout.lower(), r.stdout
    with pyakvq.Model(path, n_threads=2) as m:
        ref = m.chat(str(EXAMPLES / "red_circle.png"), q, max_tokens=8, temperature=0)
    assert r.stdout.strip() == ref.strip()


def test_without_model_or_demo(tmp_path):
    """A binary with no pyakvq package beside it and no $AKVQ_DEMO_MODEL: exit 2, naming where it
    looked; $AKVQ_DEMO_MODEL names the file to load."""
    exe = tmp_path / "bin" / "akvq-cli"
    exe.parent.mkdir()
    shutil.copy(cli(), exe)
    r = run("-p", "hi", exe=exe)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no model given" in lines[0] and "site-packages" in lines[0], r.stderr
    r = run("-p", "hi", exe=exe, env={"AKVQ_DEMO_MODEL": str(tmp_path / "elsewhere.gguf")})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert f"the demo model $AKVQ_DEMO_MODEL ({tmp_path / 'elsewhere.gguf'}) is not a file" in lines[0]


def test_bad_model_file(tmp_path):
    r = run("-m", tmp_path / "missing.gguf", "-p", "hi")
    assert r.returncode == 2 and "error" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOTGGUF" * 10)
    r = run("-m", bad, "-p", "hi")
    assert r.returncode == 2 and "magic" in r.stderr.lower()


def test_greedy_output_matches_python(smollm2_path):
    prompt = "The three primary colours are"
    r = run("-m", smollm2_path, "-p", prompt, "-n", 24, "--temp", 0, "-t", 2, "-c", 256)
    assert r.returncode == 0, r.stderr
    with pyakvq.Model(smollm2_path, n_ctx=256, n_threads=2) as m:
        ref = m.generate(prompt, max_tokens=24, temperature=0)
    assert r.stdout.rstrip("\n") == ref
    assert "prompt:" in r.stderr and "generation:" in r.stderr and "tokens/s" in r.stderr


def test_image_marker_without_an_image(smollm2_path):
    # a VLM: refused, as the Python API refuses it; a text model: "<image>" is text
    from pyakvq.demo import demo_model_path

    demo = demo_model_path()
    r = run("-m", demo, "-p", "USER: <image>\nWhat color is the shape? ASSISTANT:", "-n", 4, "--temp", 0)
    assert r.returncode == 2 and "the prompt has 1 image marker but 0 images were given" in r.stderr, r.stderr
    r = run("-m", smollm2_path, "-p", "Say <image> please", "-n", 2, "--temp", 0)
    assert r.returncode == 0, r.stderr


def test_prompt_too_long(smollm2_path):
    r = run("-m", smollm2_path, "-p", "word " * 100, "-c", 16)
    assert r.returncode == 2 and "context" in r.stderr


def test_kv_mode_and_stats(smollm2_path):
    r = run(
        "-m",
        smollm2_path,
        "-p",
        "The sky is",
        "-n",
        8,
        "--temp",
        0,
        "-c",
        256,
        "--kv",
        "akvq2",
        "--kv-opt",
        "window=4",
        "--kv-stats",
    )
    assert r.returncode == 0, r.stderr
    assert "kv cache:   mode akvq2" in r.stderr and "bits/element" in r.stderr and "window=4" in r.stderr
    r = run("-m", smollm2_path, "-p", "hi", "--kv", "akvq2", "--kv-opt", "nonsense=1")
    assert r.returncode == 2 and "nonsense" in r.stderr
    r = run("-m", smollm2_path, "-p", "hi", "--kv-opt", "novalue")
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr


def test_several_images_get_the_models_labels_as_in_python():
    """A question about several images: akvq-cli's vicuna format labels them as the demo model's
    chat template does (akvq.chat.image_label), so the prompt and the answer are Python's."""
    from pyakvq.demo import demo_model_path

    names = ("red_circle.png", "green_triangle.png", "purple_circle_wide.png", "blue_square.png")
    images = [EXAMPLES / f for f in names]
    q = "What shape is in image 4?"
    args = [a for p in images for a in ("--image", p)]
    r = run("-m", demo_model_path(), *args, "-p", q, "-n", 12, "--temp", 0, "-c", 512)
    assert r.returncode == 0, r.stderr
    with pyakvq.Model(n_ctx=512) as m:
        want = m.chat([str(p) for p in images], q, max_tokens=12, temperature=0)
        n_prompt = len(m._chat_input([str(p) for p in images], q))
    assert r.stdout.strip() == want.strip() == "Image 4: a square."
    assert f"/ {n_prompt:5d} tokens" in r.stderr, r.stderr


def test_prompt_file_and_chat_template_file(smollm2_path, tmp_path):
    from pyakvq.demo import demo_model_path

    # -f drops one trailing newline, as llama.cpp's -f: the same answer as -p
    f = tmp_path / "p.txt"
    f.write_text("The three primary colours are\n")
    a = run("-m", smollm2_path, "-f", f, "-n", 8, "--temp", 0, "-c", 64)
    b = run("-m", smollm2_path, "-p", "The three primary colours are", "-n", 8, "--temp", 0, "-c", 64)
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout
    # a template file must hold {prompt} (and {images} with images); errors name the flag
    red = EXAMPLES / "red_circle.png"
    t = tmp_path / "t.txt"
    for text, extra, needle in (
        ("USER: {images}\nDescribe. ASSISTANT:", ("--image", red), "has no {prompt} placeholder"),
        ("USER: {prompt} ASSISTANT:", ("--image", red), "has no {images} placeholder for the 1 image"),
        ("Q: ...", (), "has no {prompt} placeholder"),
    ):
        t.write_text(text)
        m = demo_model_path() if extra else smollm2_path
        r = run("-m", m, *extra, "-p", "What color is the shape?", "--chat-template", t, "-n", 2)
        assert r.returncode == 2 and f"--chat-template file '{t}' {needle}" in r.stderr, r.stderr
    r = run("-m", smollm2_path, "-p", "hi", "--chat-template", tmp_path, "-n", 2)
    assert r.returncode == 2 and f"cannot read --chat-template file '{tmp_path}': it is a directory" in r.stderr


def test_mmproj_and_no_special_are_checked_without_images(smollm2_path, tmp_path):
    from pyakvq.demo import demo_model_path

    r = run("-m", smollm2_path, "--mmproj", tmp_path / "missing.gguf", "-p", "hi", "-n", 2)
    assert r.returncode == 2 and "missing.gguf" in r.stderr, r.stderr
    r = run("-m", demo_model_path(), "--mmproj", smollm2_path, "-p", "hi", "-n", 2)
    assert r.returncode == 2 and "vision" in r.stderr, r.stderr
    r = run("-m", demo_model_path(), "--image", EXAMPLES / "red_circle.png", "--no-special", "-p", "hi", "-n", 2)
    assert r.returncode == 2 and "--no-special cannot go with --image" in r.stderr, r.stderr


def test_ctrl_c_stops_the_generation_and_prints_the_timings(smollm2_path):
    """Ctrl-C while tokens stream (as llama.cpp's CLI): the answer so far stays on stdout, the
    timings and 'finish: interrupted' go to stderr, and the status is 130 (the shell's for SIGINT),
    not a death by the signal."""
    prompt = "the cat sat on the mat. " * 20  # greedy: repeats it for as long as asked
    status, out, err, dt = interrupt_after(
        [cli(), "-m", smollm2_path, "-p", prompt, "--temp", "0", "-n", "4000", "-t", "1"], lambda out: len(out) > 40
    )
    assert status == 130, err
    assert len(out) > 40 and out.endswith(b"\n")
    assert "finish:     interrupted" in err and "generation:" in err and "load:" in err, err
    n_gen = int(err.split("generation:")[1].split("/")[1].split("tokens")[0])
    assert 0 < n_gen < 4000
    assert dt < 10  # stops at the next token, not at -n


def test_ctrl_c_during_the_prompt_stops_between_its_chunks(smollm2_path):
    """Ctrl-C while a long prompt is evaluated (or the model loads): the command ends before the
    prompt's end with one line and status 130, printing no answer."""
    prompt = "the cat sat on the mat. " * 1000  # ~7000 tokens in chunks of 8: seconds on one thread
    status, out, err, dt = interrupt_after(
        [cli(), "-m", smollm2_path, "-p", prompt, "-n", "4", "-t", "1", "-b", "8", "-c", "8192"],
        elapsed(1.0),
    )
    assert status == 130, err
    assert out == b""
    assert err.strip().splitlines()[-1] == "akvq-cli: interrupted", err
    assert dt < 10
