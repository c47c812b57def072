"""akvq-cli: help, errors, and the same greedy output as the Python API."""

import os
import pathlib
import shutil
import subprocess

import pytest
from test_helpers import cli

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
