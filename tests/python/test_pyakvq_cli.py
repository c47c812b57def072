"""The `pyakvq` command line (chat, convert, --help, --version), run as `python -m pyakvq` in a
subprocess against the same pyakvq the tests import (the installed package, or the source tree with
PYTHONPATH=. AKVQ_EXT_DIR=build/dev). The model is a stand-in: the tiny LLaVA fixture
(tests/fixtures/llava/spm_default_pad) converted into a temporary directory, given with -m or as
AKVQ_DEMO_MODEL; its answers are noise, so the tests compare the streamed text with Model.chat.
The demo model's own answers are checked at the end, once pyakvq/data/demo-vlm.gguf exists."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import llava_convert as lc
import pytest

import pyakvq

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
RED_CIRCLE = EXAMPLES / "red_circle.png"
WIDE = EXAMPLES / "purple_circle_wide.png"
PKG_PARENT = pathlib.Path(pyakvq.__file__).resolve().parents[1]
DEMO_IN_REPO = ROOT / "pyakvq" / "data" / "demo-vlm.gguf"


def _env(**extra: str) -> dict[str, str]:
    """This process's environment for the child: PYTHONPATH and AKVQ_EXT_DIR made absolute (the
    child runs in another directory), no AKVQ_DEMO_MODEL unless given, UTF-8 output without colours."""
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(str(pathlib.Path(p).resolve()) for p in env["PYTHONPATH"].split(os.pathsep))
    if env.get("AKVQ_EXT_DIR"):
        env["AKVQ_EXT_DIR"] = str(pathlib.Path(env["AKVQ_EXT_DIR"]).resolve())
    env.pop("AKVQ_DEMO_MODEL", None)
    env.update(PYTHONIOENCODING="utf-8", NO_COLOR="1", PYTHON_COLORS="0")  # plain help text (Python >= 3.14)
    env.update(extra)
    return env


def run_py(*args, **env: str) -> subprocess.CompletedProcess:
    """`python -m pyakvq ARGS` from the directory that holds the imported pyakvq package."""
    return subprocess.run(
        [sys.executable, "-m", "pyakvq", *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        cwd=PKG_PARENT,
        env=_env(**env),
    )


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> pathlib.Path:
    """A LLaVA GGUF standing in for the demo model (the converted spm_default_pad fixture)."""
    (p,) = lc.convert_fixture("spm_default_pad", tmp_path_factory.mktemp("standin"), outtype="f16")
    return p


def _one_error_line(r: subprocess.CompletedProcess, prefix: str = "pyakvq chat: error:") -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    return lines[0]


# ---------------------------------------------------------------- help and version


def test_help_lists_commands():
    r = run_py("--help")
    assert r.returncode == 0, r.stderr
    for cmd in ("chat", "convert", "perplexity", "profile"):
        assert f"    {cmd}" in r.stdout, r.stdout
    assert run_py("--version").stdout == f"pyakvq {pyakvq.__version__}\n"


def test_chat_help():
    r = run_py("chat", "--help")
    assert r.returncode == 0, r.stderr
    flat = " ".join(r.stdout.split())
    for flag in ("--image", "-m MODEL", "--mmproj", "-n N", "--temp T", "--seed S", "--kv", "--kv-opt", "-t N", "-c N"):
        assert flag in flat, flag
    assert "default 0: greedy" in flat and "demo model" in flat


def test_no_command():
    r = run_py()
    assert r.returncode == 2 and "required: COMMAND" in r.stderr


# ---------------------------------------------------------------- chat


def test_chat_streams_the_chat_answer(standin):
    r = run_py("chat", "-m", standin, "--image", RED_CIRCLE, "-n", 6, "-t", 1, "What color is the shape?")
    assert r.returncode == 0, r.stderr
    with pyakvq.Model(standin, n_threads=1) as m:
        want = m.chat(str(RED_CIRCLE), "What color is the shape?", max_tokens=6, temperature=0)
    assert r.stdout == want + "\n"  # greedy by default
    for field in ("load:", "images:", "prompt:", "generation:", "tokens/s", "finish:     length"):
        assert field in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_chat_default_model_and_options(standin):
    """No -m: AKVQ_DEMO_MODEL (else the packaged demo); two images, a 2-bit cache, -p, a seed."""
    args = ("chat", "--image", RED_CIRCLE, "--image", WIDE, "--kv", "akvq2", "--kv-opt", "window=4")
    args += ("-c", 256, "-t", 1, "-n", 5, "--temp", 0.8, "--seed", 7, "-p", "What color is the shape in image 2?")
    r = run_py(*args, AKVQ_DEMO_MODEL=str(standin))
    assert r.returncode == 0, r.stderr
    assert f"model:      {standin}" in r.stderr and "2 images" in r.stderr
    assert run_py(*args, AKVQ_DEMO_MODEL=str(standin)).stdout == r.stdout  # a seed repeats the draws


def test_chat_text_only(standin):
    r = run_py("chat", "-m", standin, "-n", 4, "-t", 1, "Hello")
    assert r.returncode == 0, r.stderr
    assert "images:" not in r.stderr and "generation:" in r.stderr
    with pyakvq.Model(standin, n_threads=1) as m:
        assert r.stdout == m.chat("Hello", max_tokens=4, temperature=0) + "\n"
        # -n -1: until the end of generation or of the context, as akvq-cli
        r = run_py("chat", "-m", standin, "-n", -1, "-c", 64, "-t", 1, "Hello")
        assert r.returncode == 0, r.stderr
        with pyakvq.Model(standin, n_threads=1, n_ctx=64) as m64:
            assert r.stdout == m64.chat("Hello", max_tokens=10**6, temperature=0) + "\n"
    assert "-2 is out of range [-1," in _one_error_line(run_py("chat", "-m", standin, "-n", -2, "Hello"))


CHAT_ERRORS = [
    (("--image", "{tmp}/missing.png", "q"), "--image '{tmp}/missing.png': no such file"),
    (("--image", "{tmp}", "q"), "is a directory"),
    (("--image", "{tmp}/notes.png", "q"), "--image '{tmp}/notes.png': cannot read it (not an image"),
    (("--image", "{tmp}/truncated.png", "q"), "cannot read it"),
    (("-n", "many", "q"), "argument -n/--max-tokens/--n-predict: expected an integer, got 'many'"),
    (("--temp", "-1", "q"), "argument --temp/--temperature: -1 is out of range"),
    (("-t", "0", "q"), "argument -t/--threads: 0 is out of range"),
    (("--top-p", "2", "q"), "argument --top-p: 2 is out of range (a finite number in [0, 1])"),
    ((os.fsdecode(b"caf\xe9 au lait?"),), "the question is not UTF-8 text (byte 0xE9 at character 3)"),
    (("--top-k", "-2", "q"), "argument --top-k: -2 is out of range [-1, 2147483647]"),
    (("--temp", "1e308", "q"), "argument --temp/--temperature: 1e308 is out of range (a finite number >= 0)"),
    (("--bogus", "q"), "unrecognized arguments: --bogus"),
    ((), "the following arguments are required: QUESTION"),
    (("",), "the question is empty"),
    (("q", "-p", "q2"), "give the question once"),
    (("--kv", "k9", "q"), "kv mode 'k9' is not supported"),
    (("--kv", "akvq2", "--kv-opt", "window", "q"), "--kv-opt expects key=value, got 'window'"),
    (("--kv", "akvq2", "--kv-opt", "nonsense=1", "q"), "kv option 'nonsense'"),
    (("-m", "{tmp}/missing.gguf", "q"), "-m/--model '{tmp}/missing.gguf': no such file"),
    (("-m", "{tmp}", "q"), "-m/--model '{tmp}': is a directory"),
    (("-m", "{tmp}/notes.png", "q"), "not a GGUF file"),
    (("--mmproj", "{tmp}/missing.gguf", "q"), "--mmproj '{tmp}/missing.gguf': no such file"),
    (("-c", "8", "--image", str(RED_CIRCLE), "q"), "more than the context size n_ctx=8"),
]


@pytest.mark.parametrize("args, needle", CHAT_ERRORS, ids=[n for _, n in CHAT_ERRORS])
def test_chat_bad_input(args, needle, standin, tmp_path):
    (tmp_path / "notes.png").write_text("not a picture\n")
    (tmp_path / "truncated.png").write_bytes(RED_CIRCLE.read_bytes()[:100])
    args = [a.format(tmp=tmp_path) for a in args]
    line = _one_error_line(run_py("chat", *args, AKVQ_DEMO_MODEL=str(standin)))
    assert needle.format(tmp=tmp_path) in line, line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("perplexity", "--chunks", "0", "-f", "x.txt"), "--chunks: 0 is out of range"),
        (("perplexity", "-c", "abc"), "-c"),
        (("profile", "-m", "x.gguf", "-p", "hi", "--bogus"), "unrecognized arguments: --bogus"),
    ],
)
def test_other_commands_bad_arguments_are_one_line(args, needle):
    line = _one_error_line(run_py(*args), f"pyakvq {args[0]}: error:")
    assert needle in line and line.endswith(f"(see pyakvq {args[0]} --help)"), line


def test_chat_missing_demo_model(tmp_path):
    line = _one_error_line(run_py("chat", "q", AKVQ_DEMO_MODEL=str(tmp_path / "gone.gguf")))
    assert str(tmp_path / "gone.gguf") in line and "AKVQ_DEMO_MODEL" in line


def test_chat_text_model_refuses_images(smollm2_path):
    line = _one_error_line(run_py("chat", "-m", smollm2_path, "--image", RED_CIRCLE, "-c", 256, "q"))
    assert "no vision encoder" in line


# ---------------------------------------------------------------- convert


def test_convert_is_akvq_convert(tmp_path):
    r = run_py("convert", "--help")
    assert r.returncode == 0 and "HF_DIR" in r.stdout and "--outtype" in r.stdout
    assert r.stdout.startswith("usage: pyakvq convert ")
    _one_error_line(run_py("convert", tmp_path / "missing", "-o", tmp_path / "x.gguf"), "pyakvq convert: error:")
    line = _one_error_line(run_py("convert", tmp_path, "-o", tmp_path / "x.gguf", "--outtype", "q9"), "pyakvq convert:")
    assert "--outtype" in line and line.endswith("(see pyakvq convert --help)")
    out = tmp_path / "x.gguf"
    r = run_py("convert", lc.FIXTURES / "spm_default_pad", "-o", out, "--outtype", "f16", "-q")
    assert r.returncode == 0, r.stderr
    with pyakvq.Model(out, n_ctx=64, n_threads=1) as m:
        assert m.has_vision


# ---------------------------------------------------------------- the demo model


def test_chat_demo_model_answers():
    """`pyakvq chat` with its defaults (the packaged demo model) on the examples/ pictures."""
    if not DEMO_IN_REPO.is_file() and not pyakvq.demo.packaged_demo_model_path().is_file():
        pytest.skip("pyakvq/data/demo-vlm.gguf is not in the repository yet (the demo model is being trained)")
    r = run_py("chat", "--image", RED_CIRCLE, "What color is the shape?")
    assert r.returncode == 0, r.stderr
    assert "red" in r.stdout.lower(), r.stdout
    r = run_py("chat", "--image", EXAMPLES / "green_triangle.png", "What shape is it?")
    assert r.returncode == 0, r.stderr
    assert "triangle" in r.stdout.lower(), r.stdout


def test_chat_device_cuda_without_gpu_is_one_error_line():
    if pyakvq.cuda_available():
        pytest.skip("a GPU is available here: --device cuda works")
    r = run_py("chat", "--device", "cuda", "hello", AKVQ_DEMO_MODEL=str(pyakvq.demo_model_path()))
    line = _one_error_line(r)
    assert "[cuda]" in line, line
    r = run_py("chat", "--device", "tpu", "hello")
    assert r.returncode == 2 and "invalid choice: 'tpu'" in r.stderr


@pytest.mark.parametrize("command", [("serve", "--port", "0"), ("profile", "-p", "hi"), ("chat", "hi")])
def test_ctrl_c_while_the_model_loads_is_one_line(command, smollm2_path, monkeypatch, capsys):
    """Ctrl-C before a command's own handling starts (here: while the model loads) exits 130 with
    one line, not a traceback."""
    from pyakvq.__main__ import main

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pyakvq.Model, "__init__", interrupted)
    assert main([command[0], "-m", str(smollm2_path), *command[1:]]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"pyakvq {command[0]}: interrupted"


def test_output_paths_are_checked_before_the_work(smollm2_path, tmp_path):
    """--json and --write-tsa that cannot be written are refused before the model runs."""
    text = tmp_path / "t.txt"
    text.write_text("word " * 50)
    gone = tmp_path / "gone" / "out.json"
    for args, flag in (
        (("perplexity", "-m", smollm2_path, "-f", text, "--json", gone), "--json"),
        (("profile", "-m", smollm2_path, "-p", "hi", "--json", gone), "--json"),
        (("profile", "-m", smollm2_path, "-p", "hi", "--write-tsa", tmp_path), "--write-tsa"),
    ):
        r = run_py(*args)
        line = _one_error_line(r, f"pyakvq {args[0]}: error:")
        assert line.startswith(f"pyakvq {args[0]}: error: {flag} "), line


def test_an_output_is_never_one_of_the_inputs(smollm2_path, tmp_path):
    """--json naming the model, the text or --write-tsa's file (through another path or a link
    too) is refused before the work: it replaced a 98 MB model with its 12 KB report."""
    text = tmp_path / "t.txt"
    text.write_text("word " * 80)
    model = tmp_path / "m.gguf"
    model.write_bytes(pathlib.Path(smollm2_path).read_bytes())
    link = tmp_path / "link.gguf"
    link.symlink_to(model)
    size = model.stat().st_size
    for args, needle in (
        (("perplexity", "-m", model, "-f", text, "--json", model), "is the same file as -m/--model"),
        (("perplexity", "-m", link, "-f", text, "--json", tmp_path / "." / "m.gguf"), "is the same file as -m/--model"),
        (("perplexity", "-m", model, "-f", text, "--json", text), "is the same file as -f/--file"),
        (("profile", "-m", model, "-p", "hi", "--json", link), "is the same file as -m/--model"),
        (
            ("profile", "-m", model, "-p", "hi", "--write-tsa", tmp_path / "o.gguf", "--json", tmp_path / "o.gguf"),
            "is the same file as --write-tsa",
        ),
        (("profile", "-m", model, "-p", "hi", "--write-tsa", link), "is the same file as -m/--model"),
    ):
        r = run_py(*args)
        line = _one_error_line(r, f"pyakvq {args[0]}: error:")
        assert needle in line, line
    assert model.stat().st_size == size and text.read_text() == "word " * 80
    assert not (tmp_path / "o.gguf").exists()
    # the report itself is written whole (a temporary file renamed over the target)
    out = tmp_path / "ppl.json"
    r = run_py("perplexity", "-m", model, "-f", text, "-c", "64", "--chunks", "1", "-q", "--json", out)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["n_chunks"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.gguf", "m.gguf", "ppl.json", "t.txt"]


def test_image_that_is_a_loop_of_links(tmp_path):
    """--image naming a symbolic link that loops: the system's reason, not 'no such file'."""
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    r = run_py("chat", "--image", loop, "hi")
    assert "Too many levels of symbolic links" in _one_error_line(r, "pyakvq chat: error: --image")


def test_outputs_at_special_files(smollm2_path, tmp_path):
    """A report (--json) at a FIFO (as /dev/stdout) is written through it; a GGUF output
    (--write-tsa) there is refused before the work. Neither replaces the FIFO by a regular file
    (renaming over /dev/null would have replaced the device node)."""
    import stat
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    r = run_py("profile", "-m", smollm2_path, "-p", "hi", "--write-tsa", fifo)
    assert "is not a regular file" in _one_error_line(r, "pyakvq profile: error: --write-tsa")
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    text = tmp_path / "t.txt"
    text.write_text("word " * 80)
    r = run_py("perplexity", "-m", smollm2_path, "-f", text, "-c", "64", "--chunks", "1", "-q", "--json", fifo)
    reader.join(30)
    assert r.returncode == 0, r.stderr
    assert json.loads(got[0])["n_chunks"] == 1
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["pipe", "t.txt"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_output_that_cannot_be_written_is_status_1(smollm2_path):
    """A full disk is not bad input: exit status 1, one line naming the output (as akvq-cli)."""
    with open("/dev/full", "w") as full:
        r = subprocess.run(
            [sys.executable, "-m", "pyakvq", "chat", "-m", str(smollm2_path), "-c", "64", "-n", "4", "hi"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            cwd=PKG_PARENT,
            env=_env(),
        )
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("pyakvq chat: error: cannot write the output:"), r.stderr


def test_closed_pipe_ends_quietly(smollm2_path, tmp_path):
    """`pyakvq perplexity ... | head -c1`: the reader goes away; exit 1 without a traceback."""
    text = tmp_path / "t.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 20)
    r_fd, w_fd = os.pipe()
    os.close(r_fd)  # nobody reads: the first write fails with EPIPE
    try:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pyakvq",
                "perplexity",
                "-m",
                str(smollm2_path),
                "-f",
                str(text),
                "-c",
                "64",
                "--chunks",
                "1",
                "-q",
            ],
            stdout=w_fd,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            cwd=PKG_PARENT,
            env=_env(),
        )
    finally:
        os.close(w_fd)
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.strip() == "", r.stderr


def test_ctrl_c_while_the_answer_streams_prints_the_timings(smollm2_path):
    """Ctrl-C during `pyakvq chat`'s answer (as akvq-cli): the answer so far on stdout, the timings
    and 'finish: interrupted' on stderr, status 130, no traceback. (Before the first token it is
    one line: test_ctrl_c_while_the_model_loads_is_one_line.)"""
    from test_helpers import interrupt_after

    status, out, err, dt = interrupt_after(
        [
            sys.executable,
            "-m",
            "pyakvq",
            "chat",
            "-m",
            smollm2_path,
            "-n",
            "4000",
            "--temp",
            "0",
            "-t",
            "1",
            "Tell me a very long story about a cat who travels the world.",
        ],
        lambda out: len(out) > 20,
        env=_env(),
        cwd=PKG_PARENT,  # the pyakvq this test imported (installed, or the source tree)
    )
    assert status == 130, err
    assert len(out) > 20 and "Traceback" not in err, err
    assert "finish:     interrupted" in err and "generation:" in err, err
    n_gen = int(err.split("generation:")[1].split("/")[1].split("tokens")[0])
    assert 0 < n_gen < 4000
    assert dt < 10
