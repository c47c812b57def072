"""Errors a user can read, defaults a user expects (issue 7, point 5).

Every bad argument of the Python API gets a one-line TypeError (wrong type) or ValueError (bad
value) that names the argument, never a nanobind signature dump and never silent acceptance; a
closed Model says so; `import pyakvq` from the source tree says what is wrong and what to do;
sampling is random unless a seed is given; akvq-cli and `pyakvq perplexity` check their flags at
parse time with the API's limits, print usage without arguments and know --version."""

import math
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import pyakvq
from pyakvq import _validate

ROOT = pathlib.Path(__file__).resolve().parents[2]


def cli() -> str:
    """akvq-cli: $AKVQ_CLI, on PATH (pip install . puts it there) or in $AKVQ_EXT_DIR."""
    exe = os.environ.get("AKVQ_CLI") or shutil.which("akvq-cli")
    ext = os.environ.get("AKVQ_EXT_DIR")
    if exe is None and ext and (pathlib.Path(ext) / "akvq-cli").exists():
        exe = str(pathlib.Path(ext) / "akvq-cli")
    if exe is None:
        pytest.fail("akvq-cli is not on PATH (pip install . puts it there)")
    return exe


def check_message(exc_info, needle: str) -> None:
    msg = str(exc_info.value)
    assert "incompatible function arguments" not in msg, msg
    assert len(msg.splitlines()) == 1, msg
    assert needle in msg, msg


@pytest.fixture(scope="module")
def model(smollm2_path):
    with pyakvq.Model(smollm2_path, n_ctx=256, n_threads=1) as m:
        yield m


# ---- Model(...) arguments: checked before the file is opened ----

MODEL_OUT_OF_RANGE = [
    (dict(n_ctx=10**12), "n_ctx must be in [1, 1048576]"),
    (dict(n_ctx=0), "n_ctx"),
    (dict(n_ctx=(1 << 20) + 1), "n_ctx"),
    (dict(n_threads=2**40), "n_threads must be in [1, 512]"),
    (dict(n_threads=0), "n_threads"),
    (dict(n_threads=-1), "n_threads"),
    (dict(n_batch=0), "n_batch must be in [1, 65536]"),
    (dict(n_batch=65537), "n_batch"),
    (dict(n_batch=2**70), "n_batch"),
    (dict(seed=2**64), "seed must be in [-1, 18446744073709551615]"),
    (dict(seed=-2), "seed"),
]


@pytest.mark.parametrize("kw, needle", MODEL_OUT_OF_RANGE, ids=lambda x: repr(x)[:40])
def test_model_int_out_of_range(smollm2_path, kw, needle):
    with pytest.raises(ValueError) as ei:
        pyakvq.Model(smollm2_path, **kw)
    check_message(ei, needle)


MODEL_WRONG_TYPE = [
    (dict(n_ctx="4096"), "n_ctx must be an int, got str"),
    (dict(n_ctx=4096.0), "n_ctx must be an int, got float"),
    (dict(n_threads=True), "n_threads must be an int, got bool"),
    (dict(n_batch=None), "n_batch must be an int"),
    (dict(seed=1.5), "seed must be an int"),
    (dict(kv=None), "kv must be a str"),
    (dict(kv=b"f16"), "kv must be a str"),
    (dict(kv_options=[("window", 4)]), "kv_options must be a dict"),
    (dict(kv_options={1: 2}), "kv_options keys must be str"),
    (dict(kv_options={"window": None}), "kv option 'window'"),
    (dict(kv_options={"window": {"a": 1}}), "kv option 'window'"),
]


@pytest.mark.parametrize("kw, needle", MODEL_WRONG_TYPE, ids=lambda x: repr(x)[:40])
def test_model_wrong_type(smollm2_path, kw, needle):
    with pytest.raises(TypeError) as ei:
        pyakvq.Model(smollm2_path, **kw)
    check_message(ei, needle)


def test_model_path_errors(smollm2_path, tmp_path):
    for bad, exc, needle in [
        (str(smollm2_path) + "\0.txt", ValueError, "path contains a NUL character"),
        (os.fsencode(str(smollm2_path)) + b"\0", ValueError, "path contains a NUL character"),
        ("", ValueError, "path is empty"),
        (str(tmp_path / "x\udcff.gguf"), ValueError, "path is not valid UTF-8"),
        (12, TypeError, "path must be a str or os.PathLike, got int"),
        (3.5, TypeError, "path must be a str or os.PathLike, got float"),  # (None: the demo model)
    ]:
        with pytest.raises(exc) as ei:
            pyakvq.Model(bad)
        check_message(ei, needle)
    # bytes and PathLike paths work
    with pyakvq.Model(os.fsencode(str(smollm2_path)), n_ctx=64, n_threads=1) as m:
        assert m.n_ctx == 64
    with pyakvq.Model(pathlib.Path(smollm2_path), n_ctx=64, n_threads=1) as m:
        assert m.n_vocab > 0


KV_OPTION_VALUES = [
    ({"tsa_layers": ["a"]}, "kv option 'tsa_layers': expected a list of ints, got the element 'a'"),
    ({"tsa_layers": [0, 1.5]}, "kv option 'tsa_layers'"),
    ({"tsa_layers": [True]}, "kv option 'tsa_layers'"),
    ({"window": True}, "kv option 'window'"),
    ({"window": "16\0"}, "kv option 'window' contains a NUL character"),
    ({"levels": "uniform\ud800"}, "kv option 'levels' contains a lone surrogate"),
    ({"window": "sixteen"}, "window"),  # the engine's message, through the same path
    ({"clip": float("nan")}, "clip"),
]


@pytest.mark.parametrize("opts, needle", KV_OPTION_VALUES, ids=lambda x: repr(x)[:40])
def test_kv_option_values(smollm2_path, opts, needle):
    with pytest.raises(ValueError) as ei:
        pyakvq.Model(smollm2_path, n_ctx=64, n_threads=1, kv="akvq2", kv_options=opts)
    check_message(ei, needle)


def test_kv_option_conversions():
    assert _validate.kv_options({"tsa_layers": (1, 0), "window": np.int64(8), "clip": 0.5}) == {
        "tsa_layers": "1,0",
        "window": "8",
        "clip": "0.5",
    }
    assert _validate.kv_options({"tsa_layers": []}) == {"tsa_layers": "none"}
    assert _validate.kv_options({"tsa_layers": np.array([2, 3])}) == {"tsa_layers": "2,3"}
    assert _validate.kv_options(None) == {}


# ---- calls on a loaded Model ----

CALL_WRONG_TYPE = [
    (lambda m: m.tokenize(b"hello"), "text must be a str, got bytes"),
    (lambda m: m.tokenize(None), "text must be a str"),
    (lambda m: m.tokenize("hi", add_special=1), "add_special must be a bool, got int"),
    (lambda m: m.tokenize("hi", parse_special="yes"), "parse_special must be a bool"),
    (lambda m: m.detokenize("abc"), "ids must be a sequence of token ids"),
    (lambda m: m.detokenize([1, "a"]), "ids[1] is a str"),
    (lambda m: m.detokenize([1], render_special=None), "render_special must be a bool"),
    (lambda m: m.generate(b"hello"), "prompt must be a str or a sequence of token ids, got bytes"),
    (lambda m: m.generate(None), "prompt must be a sequence of token ids"),
    (lambda m: m.generate([1, 2.0]), "prompt[1] is a float"),
    (lambda m: m.eval(42), "prompt must be a sequence"),
    (lambda m: m.logits([1.0]), "token_ids[0] is a float"),
    (lambda m: m.generate("hi", temperature="hot"), "temperature must be a number, got str"),
    (lambda m: m.generate("hi", top_k=1.5), "top_k must be an int, got float"),
    (lambda m: m.generate("hi", top_p=None), "top_p must be a number"),
    (lambda m: m.generate("hi", max_tokens="8"), "max_tokens must be an int"),
    (lambda m: m.generate("hi", seed="7"), "seed must be an int"),
    (lambda m: m.generate("hi", stop=b"x"), "stop must be a str or a list of str, got bytes"),
    (lambda m: m.generate("hi", stop=["ok", 1]), "stop[1] must be a str, got int"),
    (lambda m: m.generate("hi", stop={"a"}), "stop must be a str or a list of str"),
]


@pytest.mark.parametrize("call, needle", CALL_WRONG_TYPE, ids=[n for _, n in CALL_WRONG_TYPE])
def test_call_wrong_type(model, call, needle):
    with pytest.raises(TypeError) as ei:
        call(model)
    check_message(ei, needle)


CALL_BAD_VALUE = [
    (lambda m: m.generate("\ud800", max_tokens=1), "prompt contains a lone surrogate U+D800 at index 0"),
    (lambda m: m.generate("ok \udcff", max_tokens=1), "prompt contains a lone surrogate U+DCFF at index 3"),
    (lambda m: m.eval("x\ud83d"), "prompt contains a lone surrogate"),
    (lambda m: m.tokenize("a\udfff"), "text contains a lone surrogate"),
    (lambda m: m.chat("hi \ud800", max_tokens=1), "text contains a lone surrogate U+D800"),
    (lambda m: m.generate("hi", stop="\udc80"), "stop contains a lone surrogate"),
    (lambda m: m.generate("hi", stop=["a", "\udc80"]), "stop[1] contains a lone surrogate"),
    (lambda m: m.generate("hi", top_k=10**12), "top_k must be in [-1, 2147483647]"),
    (lambda m: m.generate("hi", top_k=-2), "top_k"),
    (lambda m: m.generate("hi", max_tokens=-2), "max_tokens must be in [0, 2147483647], got -2 (-1 or None: until"),
    (lambda m: m.generate("hi", max_tokens=2**40), "max_tokens"),
    (lambda m: m.generate("hi", repeat_last_n=-2), "repeat_last_n must be in [-1, 2147483647]"),
    (lambda m: m.generate("hi", seed=2**64), "seed must be in [-1, 18446744073709551615]"),
    (lambda m: m.generate("hi", temperature=math.nan), "temperature must be a finite number >= 0"),
    (lambda m: m.generate("hi", temperature=-1), "temperature"),
    (lambda m: m.generate("hi", temperature=1e300), "temperature"),
    (lambda m: m.generate("hi", top_p=-0.1), "top_p must be a finite number in [0, 1]"),
    (lambda m: m.generate("hi", top_p=1.5), "top_p"),
    (lambda m: m.generate("hi", min_p=-0.1), "min_p must be a finite number in [0, 1]"),
    (lambda m: m.generate("hi", repeat_penalty=0), "repeat_penalty must be a finite number > 0"),
    (lambda m: m.generate([10**12]), "prompt[0] has id 1000000000000, outside the vocabulary"),
    (lambda m: m.logits([-1]), "token_ids[0] has id -1, outside the vocabulary"),
    (lambda m: m.generate([]), "prompt: no tokens"),
    (lambda m: m.logits(np.zeros((2, 2), dtype=np.int32)), "token_ids must be one-dimensional"),
]


@pytest.mark.parametrize("call, needle", CALL_BAD_VALUE, ids=[n for _, n in CALL_BAD_VALUE])
def test_call_bad_value(model, call, needle):
    with pytest.raises(ValueError) as ei:
        call(model)
    check_message(ei, needle)


def test_sampling_args_helper():
    a = _validate.sampling_args(
        max_tokens=np.int32(4), temperature=1, top_k=np.int64(3), stop=("a", ""), seed=-1, repeat_last_n=-1
    )
    assert a == _validate.SamplingArgs(4, 1.0, 3, 0.95, 0.0, 1.0, -1, -1, ["a"])
    assert type(a.max_tokens) is int and type(a.temperature) is float
    assert _validate.sampling_args(stop="x").stop == ["x"]
    assert _validate.resolve_seed(None, 5) == 5 and _validate.resolve_seed(3, 5) == 3
    draws = {_validate.resolve_seed(None, None) for _ in range(4)} | {_validate.resolve_seed(-1, 5) for _ in range(4)}
    assert len(draws) == 8 and all(0 <= d < 2**64 for d in draws)


CLOSED_CALLS = {
    "info": lambda m: m.info,
    "n_ctx": lambda m: m.n_ctx,
    "n_vocab": lambda m: m.n_vocab,
    "tokenize": lambda m: m.tokenize("hi"),
    "detokenize": lambda m: m.detokenize([1, 2]),
    "generate": lambda m: m.generate("hi", max_tokens=1),
    "eval": lambda m: m.eval("hi"),
    "logits": lambda m: m.logits([1, 2]),
    "kv_stats": lambda m: m.kv_stats(),
}


@pytest.mark.parametrize("name", sorted(CLOSED_CALLS))
def test_closed_model(smollm2_path, name):
    m = pyakvq.Model(smollm2_path, n_ctx=64, n_threads=1)
    m.close()
    with pytest.raises((RuntimeError, ValueError)) as ei:
        CLOSED_CALLS[name](m)
    check_message(ei, "closed")


# ---- defaults: sampling is random unless a seed is given ----


def test_seed_default_is_random(model, smollm2_path):
    p, kw = "My favourite animal is", dict(max_tokens=16, temperature=1.0, top_k=0, top_p=1.0)
    assert model.seed is None
    outs = {model.generate(p, **kw) for _ in range(3)}
    assert len(outs) > 1, "seed=None must draw a fresh seed per call"
    outs = {model.generate(p, seed=-1, **kw) for _ in range(3)}
    assert len(outs) > 1, "seed=-1 must draw a fresh seed per call"
    assert model.generate(p, seed=11, **kw) == model.generate(p, seed=11, **kw)
    greedy = {model.generate(p, max_tokens=8, temperature=0) for _ in range(2)}
    assert len(greedy) == 1
    with pyakvq.Model(smollm2_path, n_ctx=256, n_threads=1, seed=2**64 - 1) as m:
        assert m.generate(p, **kw) == m.generate(p, **kw)  # the Model's seed is the default
    with pyakvq.Model(smollm2_path, n_ctx=256, n_threads=1, seed=-1) as m:
        assert len({m.generate(p, **kw) for _ in range(3)}) > 1


# ---- import from the source tree ----


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("AKVQ_EXT_DIR", "PYTHONPATH", "PYTHONHOME")}
    env.update(extra)
    return env


def _import_in_root(env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import pyakvq"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_import_from_source_tree_without_extension():
    if any(p.name.startswith("_akvq") for p in (ROOT / "pyakvq").iterdir()):
        pytest.skip("an extension was built in place into pyakvq/")
    r = _import_in_root(_clean_env())
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: pyakvq's compiled extension (_akvq) is missing"), r.stderr
    assert "source tree" in last and "pip install ." in last and "AKVQ_EXT_DIR" in last
    assert "circular" not in r.stderr


def test_import_with_bad_ext_dir(tmp_path):
    r = _import_in_root(_clean_env(AKVQ_EXT_DIR=str(tmp_path)))
    assert r.returncode != 0 and "holds no _akvq extension" in r.stderr.strip().splitlines()[-1], r.stderr
    r = _import_in_root(_clean_env(AKVQ_EXT_DIR=str(tmp_path / "missing")))
    assert r.returncode != 0 and "cannot be read" in r.stderr.strip().splitlines()[-1], r.stderr


# ---- akvq-cli ----


def run_cli(*args):
    return subprocess.run([cli(), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_cli_no_arguments_prints_usage():
    r = run_cli()
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("usage: akvq-cli") and "--ctx-size" in r.stderr


def test_cli_version():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout == f"akvq-cli {pyakvq.__version__}\n" and r.stderr == ""
    assert "--version" in run_cli("--help").stdout


CLI_RANGES = [
    (("-c", 2**20 + 1), "-c: 1048577 is out of range [1, 1048576]"),
    (("--ctx-size", 0), "--ctx-size: 0 is out of range"),
    (("-c", "99999999999999999999"), "-c: 99999999999999999999 is out of range"),
    (("-t", 513), "-t: 513 is out of range [1, 512]"),
    (("--threads", 2**40), "--threads"),
    (("-b", 65537), "-b: 65537 is out of range [1, 65536]"),
    (("--batch-size", 0), "--batch-size"),
    (("-n", -2), "-n: -2 is out of range [-1, 2147483647]"),
    (("--top-k", 10**12), "--top-k: 1000000000000 is out of range [-1, 2147483647]"),
    (("--repeat-last-n", -2), "--repeat-last-n"),
    (("-s", 2**64), "-s: 18446744073709551616 is out of range [-1, 18446744073709551615]"),
    (("--seed", -2), "--seed: -2 is out of range"),
    (("-s", "abc"), "-s: expected an integer, got 'abc'"),
    (("--temp", "hot"), "--temp: expected a number"),
    (("--temp", -1), "temperature"),
]


@pytest.mark.parametrize("args, needle", CLI_RANGES, ids=[n for _, n in CLI_RANGES])
def test_cli_ranges(args, needle):
    r = run_cli("-m", "missing.gguf", "-p", "hi", *args)  # parse errors come before the model is opened
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("akvq-cli: error: ") and needle in lines[0], r.stderr


def test_cli_seed(smollm2_path):
    args = ("-m", smollm2_path, "-p", "My favourite animal is", "-n", 16, "--temp", 1, "--top-k", 0, "-c", 64)
    outs = [run_cli(*args, "-t", 1) for _ in range(3)]
    assert all(r.returncode == 0 for r in outs), outs[0].stderr
    assert len({r.stdout for r in outs}) > 1, "without -s the seed must be random"
    assert len({run_cli(*args, "-s", -1).stdout for _ in range(3)}) > 1
    a, b = (run_cli(*args, "-s", 2**64 - 1) for _ in range(2))
    assert a.returncode == 0 and a.stdout == b.stdout


def test_cli_n_predict_minus_one(smollm2_path):
    r = run_cli("-m", smollm2_path, "-p", "Once upon a time", "-n", -1, "--temp", 0, "-c", 24, "-t", 1)
    assert r.returncode == 0, r.stderr
    assert len(pyakvq.Model(smollm2_path, n_ctx=64, n_threads=1).tokenize(r.stdout.strip())) > 8


# ---- python -m pyakvq ----


def run_py(*args):
    return subprocess.run(
        [sys.executable, "-m", "pyakvq", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=pathlib.Path(pyakvq.__file__).resolve().parents[1],
    )


def test_py_cli_version():
    r = run_py("--version")
    assert r.returncode == 0 and r.stdout == f"pyakvq {pyakvq.__version__}\n"


PY_CLI_ERRORS = [
    (("-c", 2**20 + 1), "argument -c/--ctx-size/--ctx: 1048577 is out of range [1, 1048576]"),
    (("--ctx", "x"), "expected an integer, got 'x'"),
    (("-t", 513), "argument -t/--threads: 513 is out of range [1, 512]"),
    (("-b", 0), "argument -b/--batch-size/--batch: 0 is out of range [1, 65536]"),
    (("--chunks", 0), "--chunks: 0 is out of range"),
    (("-m", "a.gguf", "b.gguf", "c.txt"), "give the model once"),
    ((), "the following arguments are required: MODEL (-m), FILE (-f)"),
]


@pytest.mark.parametrize("args, needle", PY_CLI_ERRORS, ids=[n for _, n in PY_CLI_ERRORS])
def test_py_cli_errors(args, needle):
    r = run_py("perplexity", *args)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("pyakvq perplexity: error:") and needle in r.stderr, r.stderr


def test_py_cli_flag_vocabulary():
    from pyakvq.__main__ import _resolve_files, build_parser

    def parse(*argv):
        a = build_parser().parse_args(["perplexity", *argv])
        _resolve_files(a)
        return a

    a = parse(
        "-m",
        "M",
        "-f",
        "F",
        "-c",
        "512",
        "-t",
        "3",
        "-b",
        "8",
        "--kv",
        "akvq2",
        "--kv-opt",
        "bits=2",
        "--kv-opt",
        "clip=0.7",
    )
    assert (a.model, a.file, a.ctx, a.threads, a.batch, a.kv) == ("M", "F", 512, 3, 8, "akvq2")
    assert a.kv_opt == ["bits=2", "clip=0.7"]
    a = parse("M", "F", "--ctx-size", "64", "--threads", "2", "--batch-size", "4")
    assert (a.model, a.file, a.ctx, a.threads, a.batch) == ("M", "F", 64, 2, 4)
    a = parse("-m", "M", "F", "--ctx", "32", "--batch", "1")  # older spellings, -m with a positional FILE
    assert (a.model, a.file, a.ctx, a.batch) == ("M", "F", 32, 1)
