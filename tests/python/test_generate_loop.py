"""The engine's one generation loop (akvq::Generator) as both frontends see it: finish reasons,
stop strings cut exactly, UTF-8 assembly, the context limit, and akvq-cli printing what the
Python API returns; plus the CLI's input and output handling around the loop."""

import os
import pathlib
import random
import shutil
import signal
import subprocess
import threading

import pytest

import pyakvq
from pyakvq._ext import _akvq

PROMPT = "The capital of France is"
ROCKETS = "Rocket emoji: 🚀🚀🚀🚀🚀"  # SmolLM2 continues with 🚀 as three byte tokens per character


def cli() -> str:
    exe = os.environ.get("AKVQ_CLI") or shutil.which("akvq-cli")
    ext = os.environ.get("AKVQ_EXT_DIR")
    if exe is None and ext and (pathlib.Path(ext) / "akvq-cli").exists():
        exe = str(pathlib.Path(ext) / "akvq-cli")
    if exe is None:
        pytest.fail("akvq-cli is not on PATH (pip install . puts it there)")
    return exe


def run_cli(*args, stdin=None, stdout=subprocess.PIPE):
    return subprocess.run([cli(), *map(str, args)], input=stdin, stdout=stdout, stderr=subprocess.PIPE, timeout=120)


@pytest.fixture(scope="module")
def model(smollm2_path):
    with pyakvq.Model(smollm2_path, n_ctx=512, n_threads=2) as m:
        yield m


# ---- finish reasons ----


def test_finish_reason_length(model):
    toks = list(model.generate(PROMPT, max_tokens=5, temperature=0, stream=True))
    assert len(toks) == 5
    assert [t.finish_reason for t in toks] == [None] * 4 + ["length"]
    assert model.generate(PROMPT, max_tokens=5, temperature=0) == "".join(t.text for t in toks)
    assert model.last_finish_reason == "length"


def test_finish_reason_eos(model):
    # The instruct model answers a short question and ends its turn (<|im_end|>, not in the text).
    stream = model.chat([{"role": "user", "content": "Say hello."}], max_tokens=200, temperature=0, stream=True)
    toks = list(stream)
    assert 0 < len(toks) < 200 and toks[-1].finish_reason == "eos"
    assert stream.finish_reason == "eos" and model.last_finish_reason == "eos"
    assert all(not model._model.is_eog(t.id) for t in toks)
    assert "<|im_end|>" not in "".join(t.text for t in toks)


def test_finish_reason_without_tokens(model):
    stream = model.generate(PROMPT, max_tokens=0, stream=True)
    assert list(stream) == [] and stream.finish_reason == "length"
    assert model.generate(PROMPT, max_tokens=0) == "" and model.last_finish_reason == "length"
    # An end-of-generation token as the very first token: nothing generated, reason "eos".
    ids = model.tokenize("<|im_start|>user\nSay OK.<|im_end|>\n<|im_start|>assistant\nOK.", add_special=False)
    stream = model.generate(ids, max_tokens=4, temperature=0, stream=True)
    assert list(stream) == [] and stream.finish_reason == "eos"
    assert model.generate(ids, max_tokens=4, temperature=0) == "" and model.last_finish_reason == "eos"


def test_finish_reason_context(smollm2_path):
    with pyakvq.Model(smollm2_path, n_ctx=16, n_threads=1) as m:
        ids = m.tokenize("one two three four five six")
        stream = m.generate(ids, max_tokens=100, temperature=0, stream=True)
        toks = list(stream)
        # Every slot of the cache is used; the last token is sampled but cannot be evaluated.
        assert len(ids) + len(toks) == 16 + 1
        assert toks[-1].finish_reason == "context" and stream.finish_reason == "context"
        assert m.generate(ids, max_tokens=100, temperature=0) == "".join(t.text for t in toks)
        assert m.last_finish_reason == "context"
        # A prompt that fills the context exactly still yields one token.
        full = (ids * 4)[:16]
        assert [t.finish_reason for t in m.generate(full, max_tokens=5, temperature=0, stream=True)] == ["context"]


def test_ctrl_c_stops_a_long_prompt(smollm2_path):
    # SIGINT while a prompt is evaluated: KeyboardInterrupt between two prefill chunks, with the
    # cache rolled back (not after the whole prompt, which takes minutes on a 7B model); the Model
    # answers as before
    prompt = "The quick brown fox jumps over the lazy dog. " * 200  # ~2000 tokens: 60+ chunks of 32
    # Python's own SIGINT handler, also where the test runner inherited SIGINT ignored (a shell's
    # background job)
    old_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_during_prompts(smollm2_path, prompt)
    finally:
        signal.signal(signal.SIGINT, old_handler)


def _ctrl_c_during_prompts(smollm2_path, prompt: str) -> None:
    with pyakvq.Model(str(smollm2_path), n_ctx=4096, n_batch=32, n_threads=2) as m:
        n_prompt = len(m.tokenize(prompt))
        ref = m.generate("Hello", max_tokens=4, temperature=0)
        for call in (lambda: m.eval(prompt), lambda: m.generate(prompt, max_tokens=1)):
            timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            try:
                with pytest.raises(KeyboardInterrupt):
                    call()
            finally:
                timer.cancel()
            assert m._sess().n_past < n_prompt  # stopped inside the prompt, nothing half-kept
        assert m.generate("Hello", max_tokens=4, temperature=0) == ref


def test_cli_reports_finish_reason_and_full_context(smollm2_path):
    r = run_cli("-m", smollm2_path, "-p", "one two three four five six", "-n", 100, "--temp", 0, "-c", 16, "-t", 1)
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "finish:     context" in err
    assert len([line for line in err.splitlines() if "context is full" in line]) == 1
    with pyakvq.Model(smollm2_path, n_ctx=16, n_threads=1) as m:
        assert r.stdout.decode() == m.generate("one two three four five six", max_tokens=100, temperature=0) + "\n"
    r = run_cli("-m", smollm2_path, "-p", PROMPT, "-n", 3, "--temp", 0, "-t", 1)
    assert r.returncode == 0 and "finish:     length" in r.stderr.decode()
    assert "context is full" not in r.stderr.decode()


# ---- stop strings ----


def test_stop_string_cut_exactly_cli_equals_python(model, smollm2_path):
    """The issue's repro: the CLI printed the stop text, Python did not. Both cut exactly now."""
    full = model.generate(PROMPT, max_tokens=16, temperature=0)
    assert "answ" in full, full
    got = model.generate(PROMPT, max_tokens=16, temperature=0, stop="answ")
    assert got == full[: full.index("answ")] and model.last_finish_reason == "stop"
    r = run_cli("-m", smollm2_path, "-p", PROMPT, "-n", 16, "--temp", 0, "--stop", "answ", "-t", 2, "-c", 512)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out == got + "\n" and "answ" not in out
    assert "finish:     stop" in r.stderr.decode()


def test_stop_strings_at_every_position(model):
    """Any substring of the greedy output as a stop string (within a token, across tokens, at a
    token boundary, one character, whole words) cuts the output at its first occurrence."""
    toks = list(model.generate(PROMPT, max_tokens=16, temperature=0, stream=True))
    full = "".join(t.text for t in toks)
    rng = random.Random(7)
    stops = {"P", "Paris", ".\n\nThe", "\n", " is:", full[-3:]}
    while len(stops) < 14:
        i = rng.randrange(len(full))
        stops.add(full[i : i + rng.randint(1, 6)])
    for stop in sorted(stops):
        stream = model.generate(PROMPT, max_tokens=16, temperature=0, stop=[stop, "\x00never"], stream=True)
        got = list(stream)
        text = "".join(t.text for t in got)
        assert text == full[: full.index(stop)], stop
        assert stream.finish_reason == "stop"
        assert got[-1].finish_reason == "stop"
        # No token's text ever contains the stop string, even partially released.
        assert stop not in text
        # The token that completed the stop string is the last one.
        assert [t.id for t in got] == [t.id for t in toks[: len(got)]]


def test_stop_string_never_generated_holds_nothing_back(model):
    full = model.generate(PROMPT, max_tokens=16, temperature=0)
    # "Paris!" shares the prefix "Paris" with the output: it is held back, then released.
    assert model.generate(PROMPT, max_tokens=16, temperature=0, stop=["Paris!", "zzz"]) == full
    assert model.last_finish_reason == "length"


# ---- UTF-8 assembly ----


def test_split_characters_come_whole(model):
    toks = list(model.generate(ROCKETS, max_tokens=9, temperature=0, stream=True))
    pieces = [model._model.piece(t.id) for t in toks]
    assert pieces[:3] == [b"\xf0\x9f", b"\x9a", b"\x80"]
    assert [t.text for t in toks] == ["", "", "🚀"] * 3
    for n in range(1, 9):  # cut inside a character: the partial character becomes one U+FFFD
        got = model.generate(ROCKETS, max_tokens=n, temperature=0)
        assert got == b"".join(pieces[:n]).decode("utf-8", errors="replace"), n
    assert model.generate(ROCKETS, max_tokens=9, temperature=0, stop="🚀🚀") == ""
    assert model.last_finish_reason == "stop"
    # The U+FFFD of a character cut by max_tokens is text like any other, stop strings included.
    assert model.generate(ROCKETS, max_tokens=8, temperature=0, stop="🚀\ufffd") == "🚀"
    assert model.last_finish_reason == "length"


def test_cli_prints_the_same_bytes(model, smollm2_path):
    for n in (2, 6):
        r = run_cli("-m", smollm2_path, "-p", ROCKETS, "-n", n, "--temp", 0, "-t", 2, "-c", 512)
        assert r.returncode == 0
        assert r.stdout.decode("utf-8") == model.generate(ROCKETS, max_tokens=n, temperature=0) + "\n"


def _random_bytes(rng: random.Random, n: int) -> bytes:
    alphabet = [
        b"a",
        b"b",
        b"\xc3\xa9",
        b"\xe2\x82\xac",
        b"\xf0\x9f\x9a\x80",
        b"\xed\xa0\x80",
        b"\xc0\xaf",
        b"\xf4\x90\x80\x80",
        b"\xe0\x80\x80",
        b"\x80",
        b"\xff",
        b"\xf0\x9f",
        b"\xe2",
        b"\xc3",
    ]
    return b"".join(rng.choice(alphabet) for _ in range(n))


def _chunks(rng: random.Random, data: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        k = rng.randint(0, 4)
        out.append(data[i : i + k])
        i += k
    return out


def test_text_stream_matches_python_decoding():
    """Byte stream split anywhere: the released text is Python's decode(errors='replace') of the
    whole (one U+FFFD per maximal invalid subpart, a truncated character at the end too)."""
    rng = random.Random(1)
    for _ in range(400):
        data = _random_bytes(rng, rng.randint(0, 12))
        ts = _akvq.TextStream()
        parts = [ts.feed(c) for c in _chunks(rng, data)]
        parts.append(ts.finish())
        assert "".join(parts) == data.decode("utf-8", errors="replace"), data


def test_text_stream_stop_strings_cut_exactly():
    rng = random.Random(2)
    for _ in range(400):
        data = _random_bytes(rng, rng.randint(0, 14))
        text = data.decode("utf-8", errors="replace")
        stops = [text[i : i + rng.randint(1, 4)] for i in (rng.randrange(len(text) + 1) for _ in range(2))]
        stops = [s for s in stops if s] + ["é€x"]
        ts = _akvq.TextStream(stops)
        released = ""
        for c in _chunks(rng, data):
            released += ts.feed(c)
            # Released text is final: a prefix of the answer, never part of a stop string.
            assert not any(s in released for s in stops)
        released += ts.finish()
        # Cut before the occurrence that ends first (a tie: the longer one), whatever the chunks.
        cuts = [(text.find(s) + len(s), text.find(s)) for s in stops if s in text]
        assert released == (text[: min(cuts)[1]] if cuts else text), (data, stops)
        assert ts.stopped == bool(cuts)


def test_invalid_stop_strings_are_refused(model):
    with pytest.raises(TypeError, match="stop"):
        model.generate(PROMPT, stop=b"x")
    with pytest.raises(ValueError, match="stop"):
        model.generate(PROMPT, stop=["ok", "\ud800"])


# ---- seeds ----


def test_stream_reports_its_seed(model):
    kw = dict(max_tokens=12, temperature=1.0, top_k=0, top_p=1.0)
    s = model.generate(PROMPT, stream=True, **kw)
    text = "".join(t.text for t in s)
    assert model.generate(PROMPT, seed=s.seed, **kw) == text
    g = _akvq.Generator(model._sess(), model.tokenize(PROMPT), seed=None)
    h = _akvq.Generator(model._sess(), model.tokenize(PROMPT), seed=None)
    assert g.seed != h.seed  # None: a fresh random seed each time


# ---- CLI input and output ----


def test_cli_reads_the_prompt_from_stdin(model, smollm2_path):
    r = run_cli("-m", smollm2_path, "-f", "-", "-n", 8, "--temp", 0, "-t", 2, "-c", 512, stdin=PROMPT.encode())
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == model.generate(PROMPT, max_tokens=8, temperature=0) + "\n"
    r = run_cli("-m", smollm2_path, "-f", "-", stdin=b"")
    assert r.returncode == 2 and r.stderr.decode().count("\n") == 1 and "standard input" in r.stderr.decode()


@pytest.mark.parametrize(
    "args, needle",
    [
        (("-p", ""), "the prompt is empty"),
        (("-f", "{tmp}"), "is a directory"),
        (("-f", "{tmp}/missing.txt"), "No such file"),
        (("-f", "{tmp}/empty.txt"), "is empty"),
        (("-p", "a", "-p", "b"), "-p: a second prompt"),
        (("-f", "{tmp}/empty.txt", "--file", "{tmp}/empty.txt"), "--file: a second prompt file"),
    ],
)
def test_cli_prompt_errors_are_one_line(smollm2_path, tmp_path, args, needle):
    (tmp_path / "empty.txt").write_bytes(b"")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = run_cli("-m", smollm2_path, *args)
    err = r.stderr.decode()
    assert r.returncode == 2 and r.stdout == b""
    assert len(err.strip().splitlines()) == 1 and err.startswith("akvq-cli: error:") and needle in err, err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_cli_write_error_fails(smollm2_path):
    with open("/dev/full", "wb") as full:
        r = run_cli("-m", smollm2_path, "-p", PROMPT, "-n", 4, "--temp", 0, "-t", 1, stdout=full)
    assert r.returncode == 1
    assert "cannot write" in r.stderr.decode() and "No space left" in r.stderr.decode()


def test_cli_closed_pipe_fails_with_1(smollm2_path):
    """`akvq-cli ... | head -c 5`: the reader goes away; status 1 as for any output that cannot be
    written (SIGPIPE killed it: 141 in a shell)."""
    r_fd, w_fd = os.pipe()
    os.close(r_fd)  # nobody reads: the first write fails
    try:
        r = run_cli("-m", smollm2_path, "-p", PROMPT, "-n", 4, "--temp", 0, "-t", 1, stdout=w_fd)
    finally:
        os.close(w_fd)
    assert r.returncode == 1, r.returncode
    assert "cannot write the output to stdout: Broken pipe" in r.stderr.decode()
