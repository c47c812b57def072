"""The OpenAI-shaped Python API (pyakvq.completions through Model.create_completion and
Model.create_chat_completion): result and chunk shapes, usage, finish reasons, n choices, seeds,
logprobs, argument errors; on the packaged demo VLM (greedy answers checked against Model.chat),
over Model.generate and over a BatchEngine."""

from __future__ import annotations

import math
import pathlib
import time

import numpy as np
import pytest

import pyakvq

ROOT = pathlib.Path(__file__).resolve().parents[2]
RED = str(ROOT / "examples" / "red_circle.png")
BLUE = str(ROOT / "examples" / "blue_square.png")


def _msgs(image: str, question: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]}]


@pytest.fixture(scope="module")
def demo():
    with pyakvq.Model(n_ctx=512) as m:
        yield m


@pytest.fixture(scope="module")
def engine(demo):
    from pyakvq.batch import BatchEngine

    e = BatchEngine(demo, n_parallel=4)
    yield e
    e.close()


def _n_prompt_expected(m, image_msgs) -> int:
    """Prompt tokens counted independently of the implementation: the rendered text's tokens, each
    image marker standing for the vision tower's rows."""
    placeholder = [
        {"role": msg["role"], "content": [p if p["type"] == "text" else {"type": "image"} for p in msg["content"]]}
        for msg in image_msgs
    ]
    n_text = len(m.tokenize(m.render_chat(placeholder)))
    n_images = sum(p["type"] != "text" for msg in image_msgs for p in msg["content"])
    return n_text + n_images * (m.vision_info["n_tokens_per_image"] - 1)


# ---- chat ----


def test_chat_completion_shape_answer_and_usage(demo):
    msgs = _msgs(RED, "What is in the picture?")
    ref = demo.chat(RED, "What is in the picture?", temperature=0)
    ref_ids = demo.generate_ids(demo._chat_input(msgs), temperature=0)
    r = demo.create_chat_completion(msgs, temperature=0)
    assert set(r) == {"id", "object", "created", "model", "choices", "usage"}
    assert r["object"] == "chat.completion" and r["id"].startswith("chatcmpl-")
    assert isinstance(r["created"], int) and r["model"] == demo.info["path"]
    (c,) = r["choices"]
    assert c["index"] == 0 and c["logprobs"] is None
    assert c["message"] == {"role": "assistant", "content": ref}
    assert "red" in ref.lower()
    assert c["finish_reason"] == "stop"  # the engine's "eos"
    n_prompt = _n_prompt_expected(demo, msgs)
    assert r["usage"] == {
        "prompt_tokens": n_prompt,
        "completion_tokens": len(ref_ids),
        "total_tokens": n_prompt + len(ref_ids),
    }
    assert demo.create_chat_completion(msgs, temperature=0, model="demo")["model"] == "demo"


def test_chat_stream_chunks_equal_the_result(demo):
    msgs = _msgs(BLUE, "What color is the shape?")
    full = demo.create_chat_completion(msgs, temperature=0)
    chunks = list(demo.create_chat_completion(msgs, temperature=0, stream=True, stream_options={"include_usage": True}))
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    body, usage = chunks[1:-1], chunks[-1]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in body)
    assert text == full["choices"][0]["message"]["content"] and "blue" in text.lower()
    assert [c["choices"][0]["finish_reason"] for c in body[:-1]] == [None] * (len(body) - 1)
    assert body[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert all(c["usage"] is None for c in chunks[:-1])
    assert usage["choices"] == [] and usage["usage"] == full["usage"]
    # without stream_options no usage field in chunks
    assert all("usage" not in c for c in demo.create_chat_completion(msgs, temperature=0, stream=True))


def test_chat_finish_reasons(demo):
    msgs = _msgs(RED, "What is in the picture?")
    full = demo.create_chat_completion(msgs, temperature=0)["choices"][0]["message"]["content"]
    assert full.count("circle") == 1
    r = demo.create_chat_completion(msgs, temperature=0, stop=["circle", "zzz"])
    assert r["choices"][0]["message"]["content"] == full.split("circle")[0]
    assert r["choices"][0]["finish_reason"] == "stop"
    r = demo.create_chat_completion(msgs, temperature=0, max_tokens=2)
    assert r["choices"][0]["finish_reason"] == "length" and r["usage"]["completion_tokens"] == 2
    assert full.startswith(r["choices"][0]["message"]["content"])
    for m in (0, -1):  # llama-cpp-python's reading of max_tokens <= 0: no limit but the context
        r = demo.create_chat_completion(msgs, temperature=0, max_completion_tokens=m)
        assert r["choices"][0]["message"]["content"] == full and r["choices"][0]["finish_reason"] == "stop"


def test_context_full_is_length(smollm2_path):
    # SmolLM2 counts on greedily without ending: with max_tokens=None it stops when the context is full
    with pyakvq.Model(str(smollm2_path), n_ctx=48) as small:
        prompt = "1, 2, 3, 4, 5,"
        n_prompt = len(small.tokenize(prompt))
        r = small.create_completion(prompt, max_tokens=None, temperature=0)
        assert r["choices"][0]["finish_reason"] == "length"  # the engine's "context"
        assert r["usage"] == {"prompt_tokens": n_prompt, "completion_tokens": 48 - n_prompt, "total_tokens": 48}
        assert r["choices"][0]["text"].startswith(" 6, 7, 8,")
        for m in (0, -1):  # llama-cpp-python's reading of max_tokens <= 0: as None
            r2 = small.create_completion(prompt, max_tokens=m, temperature=0)
            assert r2["choices"][0]["text"] == r["choices"][0]["text"] and r2["usage"] == r["usage"]
        full = small.generate(prompt, max_tokens=10**6, temperature=0)
        assert small.last_finish_reason == "context"  # one token more than the completion (the last
        assert full.startswith(r["choices"][0]["text"])  # one is sampled, never placed in the cache)
        for m in (-1, None):  # generate() reads -1 and None as `-n -1` does: until the context is full
            assert small.generate(prompt, max_tokens=m, temperature=0) == full
            assert small.last_finish_reason == "context"
            small.chat("Count: 1, 2, 3", max_tokens=m, temperature=0)
            assert small.last_finish_reason == "context"
        r = small.create_chat_completion([{"role": "user", "content": "Count: 1, 2, 3"}], max_tokens=10**6)
        assert r["usage"]["total_tokens"] <= 48
        with pytest.raises(ValueError, match="context"):
            small.create_completion(", ".join(str(i) for i in range(40)))


def test_n_choices_and_seeds(demo):
    msgs = _msgs(RED, "What is in the picture?")
    kw = {"temperature": 1.5, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "max_tokens": 12}
    r = demo.create_chat_completion(msgs, n=3, seed=11, **kw)
    assert [c["index"] for c in r["choices"]] == [0, 1, 2]
    texts = [c["message"]["content"] for c in r["choices"]]
    again = demo.create_chat_completion(msgs, n=3, seed=11, **kw)
    assert [c["message"]["content"] for c in again["choices"]] == texts  # reproducible
    for i in range(3):  # choice i is the single completion with seed + i
        one = demo.create_chat_completion(msgs, seed=11 + i, **kw)
        assert one["choices"][0]["message"]["content"] == texts[i]
    assert r["usage"]["completion_tokens"] == sum(
        demo.create_chat_completion(msgs, seed=11 + i, **kw)["usage"]["completion_tokens"] for i in range(3)
    )
    assert r["usage"]["prompt_tokens"] == _n_prompt_expected(demo, msgs)  # counted once
    # streaming n > 1: every choice's chunks carry its index, each ends with its finish reason
    chunks = list(demo.create_chat_completion(msgs, n=3, seed=11, stream=True, **kw))
    for i in range(3):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == i]
        assert "".join(c["delta"].get("content", "") for c in mine) == texts[i]
        assert mine[-1]["finish_reason"] == r["choices"][i]["finish_reason"]


def test_sampling_differs_between_seeds(demo):
    kw = {"temperature": 2.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "max_tokens": 8}
    outs = {demo.create_completion("USER: hello ASSISTANT:", seed=s, **kw)["choices"][0]["text"] for s in range(6)}
    assert len(outs) >= 2, outs


# ---- text completions ----


def test_completion_shape_echo_and_ids(demo):
    prompt = "USER: What color is the sky? ASSISTANT:"
    ref = demo.generate(prompt, max_tokens=16, temperature=0)
    r = demo.create_completion(prompt, temperature=0)
    assert r["object"] == "text_completion" and r["id"].startswith("cmpl-")
    (c,) = r["choices"]
    assert c["text"] == ref and c["logprobs"] is None and c["index"] == 0
    n_prompt = len(demo.tokenize(prompt))
    assert r["usage"]["prompt_tokens"] == n_prompt
    assert r["usage"]["total_tokens"] == n_prompt + r["usage"]["completion_tokens"]
    assert c["finish_reason"] == ("length" if r["usage"]["completion_tokens"] == 16 else "stop")
    ids = demo.tokenize(prompt)
    assert demo.create_completion(ids, temperature=0)["choices"][0]["text"] == ref
    assert demo.create_completion(prompt, temperature=0, echo=True)["choices"][0]["text"] == prompt + ref
    chunks = list(demo.create_completion(prompt, temperature=0, stream=True))
    assert all(ch["object"] == "text_completion" and ch["id"] == chunks[0]["id"] for ch in chunks)
    assert "".join(ch["choices"][0]["text"] for ch in chunks) == ref
    assert chunks[-1]["choices"][0]["finish_reason"] == c["finish_reason"]


def test_abandoned_stream_leaves_the_model_usable(demo):
    it = demo.create_completion("USER: hi ASSISTANT:", max_tokens=50, temperature=0, stream=True)
    next(it)
    it.close()
    assert demo.create_chat_completion(_msgs(RED, "What color is the shape?"), temperature=0)["choices"][0][
        "finish_reason"
    ] in ("stop", "length")


def test_calls_from_several_threads_wait_for_each_other(demo):
    """Non-streaming create_* calls on one Model from several threads run one after the other,
    each with its own answer (they were ended by each other's calls, as a stream is)."""
    import concurrent.futures

    prompts = ["What color is the shape?", "What is in the picture?", "Describe the shape."]
    want = [
        demo.create_chat_completion(_msgs(RED, p), max_tokens=6, temperature=0)["choices"][0]["message"]["content"]
        for p in prompts
    ]
    want_text = demo.create_completion("USER: hi ASSISTANT:", max_tokens=6, temperature=0)["choices"][0]["text"]

    def one(i: int) -> str:
        if i % 4 == 3:
            return demo.create_completion("USER: hi ASSISTANT:", max_tokens=6, temperature=0)["choices"][0]["text"]
        r = demo.create_chat_completion(_msgs(RED, prompts[i % 4]), max_tokens=6, temperature=0)
        return r["choices"][0]["message"]["content"]

    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        got = list(ex.map(one, range(12), timeout=300))
    assert got == [want_text if i % 4 == 3 else want[i % 4] for i in range(12)]


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"n": 0}, ValueError, "n must be"),
        ({"n": 1.5}, TypeError, "n must be an int"),
        ({"temperature": float("nan")}, ValueError, "temperature"),  # (< 0: llama-cpp-python's full softmax)
        ({"top_p": -0.5}, ValueError, "top_p"),
        ({"max_tokens": 1.5}, TypeError, "max_tokens"),
        ({"stop": 5}, TypeError, "stop"),
        ({"logprobs": True, "top_logprobs": 21}, ValueError, "top_logprobs"),
        ({"top_logprobs": 2}, ValueError, "needs logprobs"),
        ({"response_format": {"type": "json_object"}}, ValueError, "not supported"),
        ({"stream_options": {"include_usage": True}}, ValueError, "only allowed with stream"),
        ({"max_tokens": 3, "max_completion_tokens": 4}, ValueError, "differ"),
        ({"frequency_penalty": 1.0}, ValueError, "frequency_penalty=1.0 is not supported"),
        ({"presence_penalty": 0.5}, ValueError, "presence_penalty=0.5 is not supported"),
        ({"mirostat_mode": 2}, ValueError, "mirostat_mode=2 is not supported"),
        ({"grammar": "root ::= x"}, ValueError, "grammar="),
        ({"logit_bias": {5: 1.0}}, ValueError, "logit_bias="),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, ValueError, "tools=.*tool calling"),
        ({"tool_choice": "auto"}, ValueError, "tool_choice='auto'"),
        ({"functions": [{"name": "f"}]}, ValueError, "functions="),
    ],
)
def test_chat_argument_errors(demo, kw, exc, match):
    with pytest.raises(exc, match=match):
        demo.create_chat_completion(_msgs(RED, "hi"), **kw)


def test_llama_cpp_python_drop_in(demo):
    """llama-cpp-python code runs unchanged: `llm(prompt, ...)` is create_completion, and its
    keywords that ask for nothing are accepted."""
    kw = {"max_tokens": 6, "temperature": 0}
    ref = demo.create_completion("USER: hi ASSISTANT:", **kw)["choices"][0]["text"]
    assert demo("USER: hi ASSISTANT:", **kw)["choices"][0]["text"] == ref
    neutral = {
        "presence_penalty": 0.0,
        "frequency_penalty": 0,
        "mirostat_mode": 0,
        "mirostat_tau": 5.0,  # llama-cpp-python's defaults, unread without mirostat
        "mirostat_eta": 0.1,
        "typical_p": 1.0,
        "tfs_z": 1.0,
        "stopping_criteria": None,
        "logits_processor": None,
        "grammar": None,
        "logit_bias": {},
    }
    assert demo("USER: hi ASSISTANT:", **kw, **neutral)["choices"][0]["text"] == ref
    for name, value in (("typical_p", 0.9), ("tfs_z", 0.5), ("logits_processor", [print])):
        with pytest.raises(ValueError, match=f"^{name}=.* is not supported"):
            demo("USER: hi ASSISTANT:", **kw, **{name: value})
    # a negative temperature: llama-cpp-python's full-softmax draw (temperature 1, no cuts)
    full = {"max_tokens": 8, "seed": 11}
    assert demo.create_completion("USER: hi ASSISTANT:", temperature=-1, **full)["choices"][0]["text"] == demo.generate(
        "USER: hi ASSISTANT:", temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, **full
    )
    assert demo.create_completion("USER: hi ASSISTANT:", logit_bias=None, **kw)["choices"][0]["text"] == ref
    msgs = [{"role": "user", "content": "hi"}]
    ref = demo.create_chat_completion(msgs, **kw)["choices"][0]["message"]
    for tools in ({"tools": None, "tool_choice": None}, {"tools": [], "tool_choice": "none", "functions": None}):
        r = demo.create_chat_completion(msgs, **kw, **neutral, **tools)
        assert r["choices"][0]["message"] == ref
    # top_p 0: only the most likely token (greedy at any temperature); top_k -1: no top-k, as 0;
    # the same readings in every API (llama.cpp's)
    greedy = demo.create_completion("USER: hi ASSISTANT:", max_tokens=8, temperature=0)["choices"][0]["text"]
    for seed in range(3):
        r = demo.create_completion("USER: hi ASSISTANT:", max_tokens=8, temperature=1.5, top_p=0, seed=seed)
        assert r["choices"][0]["text"] == greedy
        assert demo.generate("USER: hi ASSISTANT:", max_tokens=8, temperature=1.5, top_p=0, seed=seed) == greedy
    a, b = (
        demo.create_completion("USER: hi ASSISTANT:", max_tokens=8, temperature=1.5, seed=4, top_k=k)["choices"][0]
        for k in (-1, 0)
    )
    assert a["text"] == b["text"]
    assert demo.generate("USER: hi ASSISTANT:", max_tokens=8, temperature=1.5, seed=4, top_k=-1) == a["text"]
    with pytest.raises(ValueError, match="response_format") as e:
        demo.create_chat_completion(msgs, response_format={"type": "json_object"})
    assert "server" not in str(e.value)  # the Python API is no server
    doc = pyakvq.Model.create_chat_completion.__doc__
    for name in (
        "max_tokens",
        "temperature",
        "top_logprobs",
        "tool_choice",
        "pyakvq.completions.create_chat_completion",
    ):
        assert name in doc, name
    assert "max_tokens" in pyakvq.Model.create_completion.__doc__


def test_completion_argument_errors(demo):
    with pytest.raises(ValueError, match="logprobs"):
        demo.create_completion("hi", logprobs=21)
    with pytest.raises(ValueError, match="suffix"):
        demo.create_completion("hi", suffix="x")
    with pytest.raises(ValueError, match="echo with logprobs needs a text prompt"):
        demo.create_completion("<image> hi", images=[str(RED)], echo=True, logprobs=1)
    with pytest.raises(ValueError, match="vocabulary"):
        demo.create_completion([10**6])


# ---- logprobs (need the engine's log probabilities on Token) ----


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x - (x.max() + np.log(np.exp(x - x.max()).sum()))


def test_chat_logprobs(demo):
    msgs = _msgs(RED, "What is in the picture?")
    r = demo.create_chat_completion(msgs, temperature=0, logprobs=True, top_logprobs=3)
    c = r["choices"][0]
    content = c["logprobs"]["content"]
    assert len(content) == r["usage"]["completion_tokens"]
    assert "".join(e["token"] for e in content) == c["message"]["content"]
    for e in content:
        assert e["logprob"] <= 0 and e["bytes"] == list(e["token"].encode())
        top = e["top_logprobs"]
        assert len(top) == 3
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        # greedy: the chosen token is the best alternative, with the same log probability
        assert top[0]["token"] == e["token"] and math.isclose(top[0]["logprob"], e["logprob"], abs_tol=1e-6)
    # the first token's log probability is the log-softmax of the prompt's last logits
    inp = demo._chat_input(msgs)
    lsm = _log_softmax(demo.eval(demo.render_chat(_placeholder(msgs)), images=[RED]))
    first = demo.generate_ids(inp, max_tokens=1, temperature=0)[0]
    assert math.isclose(content[0]["logprob"], lsm[first], abs_tol=2e-3)
    best = np.argsort(-lsm)[:3]
    assert [t["logprob"] for t in content[0]["top_logprobs"]] == pytest.approx(lsm[best].tolist(), abs=2e-3)
    # logprobs=True without top_logprobs: the chosen token only
    r0 = demo.create_chat_completion(msgs, temperature=0, logprobs=True)
    assert all(e["top_logprobs"] == [] for e in r0["choices"][0]["logprobs"]["content"])
    # streaming: each chunk carries its tokens' entries, together the same as the result
    chunks = list(demo.create_chat_completion(msgs, temperature=0, logprobs=True, top_logprobs=3, stream=True))
    streamed = [e for ch in chunks if ch["choices"][0]["logprobs"] for e in ch["choices"][0]["logprobs"]["content"]]
    assert streamed == content


def _placeholder(msgs):
    return [
        {"role": m["role"], "content": [p if p["type"] == "text" else {"type": "image"} for p in m["content"]]}
        for m in msgs
    ]


def test_completion_logprobs(demo):
    prompt = "USER: What color is the sky? ASSISTANT:"
    r = demo.create_completion(prompt, temperature=0, logprobs=2, max_tokens=6)
    c = r["choices"][0]
    lp = c["logprobs"]
    n = r["usage"]["completion_tokens"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"]) == n
    assert lp["text_offset"][0] == len(prompt)  # OpenAI's legacy API counts from the start of the prompt
    assert all(
        b - a == len(t)
        for a, b, t in zip(lp["text_offset"][:-1], lp["text_offset"][1:], lp["tokens"][:-1], strict=True)
    )
    for tok, v, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"], strict=True):
        assert v <= 0 and top[tok] == v and 2 <= len(top) <= 3
        assert max(top.values()) == v  # greedy
    lsm = _log_softmax(demo.eval(prompt))
    assert math.isclose(lp["token_logprobs"][0], lsm.max(), abs_tol=2e-3)


def test_logprobs_end_with_the_text(demo):
    """A stop string cut from the text takes its tokens out of the logprobs too (as llama-server):
    they cover the tokens whose text starts before the end of the returned text."""
    prompt = "USER: What color is the sky? ASSISTANT:"
    full = demo.create_completion(prompt, temperature=0, logprobs=1, max_tokens=16)["choices"][0]
    toks, offs = full["logprobs"]["tokens"], [o - len(prompt) for o in full["logprobs"]["text_offset"]]
    # a token that is a whole word or punctuation where it first occurs: a stop string ending the text there
    k = next(
        i
        for i in range(1, len(toks))
        if toks[i].strip() and not toks[i][0].isspace() and full["text"].find(toks[i]) == offs[i]
    )
    stop = toks[k]
    r = demo.create_completion(prompt, temperature=0, logprobs=1, max_tokens=16, stop=[stop])["choices"][0]
    assert r["text"] == full["text"][: offs[k]] and r["finish_reason"] == "stop"
    lp = r["logprobs"]
    assert lp["tokens"] == toks[:k] and [o - len(prompt) for o in lp["text_offset"]] == offs[:k]  # not the stop's
    assert len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == k
    assert all(o - len(prompt) < len(r["text"]) for o in lp["text_offset"])
    chunks = list(demo.create_completion(prompt, temperature=0, logprobs=1, max_tokens=16, stop=[stop], stream=True))
    assert [t for c in chunks if c["choices"][0]["logprobs"] for t in c["choices"][0]["logprobs"]["tokens"]] == toks[:k]
    # chat: the same
    msgs = [{"role": "user", "content": "What color is the sky?"}]
    full = demo.create_chat_completion(msgs, temperature=0, logprobs=True, max_tokens=16)["choices"][0]
    ctoks = [e["token"] for e in full["logprobs"]["content"]]
    starts = [len("".join(ctoks[:i])) for i in range(len(ctoks))]
    text = full["message"]["content"]
    k = next(
        i
        for i in range(1, len(ctoks))
        if ctoks[i].strip() and not ctoks[i][0].isspace() and text.find(ctoks[i]) == starts[i]
    )
    r = demo.create_chat_completion(msgs, temperature=0, logprobs=True, max_tokens=16, stop=ctoks[k])["choices"][0]
    assert r["message"]["content"] == text[: starts[k]]
    assert [e["token"] for e in r["logprobs"]["content"]] == ctoks[:k]


# ---- over a BatchEngine ----


def test_engine_path_equals_model_path(demo, engine):
    msgs = _msgs(RED, "What is in the picture?")
    a = demo.create_chat_completion(msgs, temperature=0, n=2)
    b = demo.create_chat_completion(msgs, temperature=0, n=2, engine=engine)
    assert [c["message"] for c in b["choices"]] == [c["message"] for c in a["choices"]]
    assert b["usage"] == a["usage"]
    lp = {"temperature": 0, "logprobs": True, "top_logprobs": 2}
    la = demo.create_chat_completion(msgs, **lp)["choices"][0]["logprobs"]["content"]
    lb = demo.create_chat_completion(msgs, engine=engine, **lp)["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in lb] == [e["token"] for e in la]
    for ea, eb in zip(la, lb, strict=True):
        assert eb["logprob"] == pytest.approx(ea["logprob"], abs=1e-4)
        assert [t["token"] for t in eb["top_logprobs"]] == [t["token"] for t in ea["top_logprobs"]]
    prompt = "USER: What color is the sky? ASSISTANT:"
    kw = {"temperature": 1.0, "seed": 3, "max_tokens": 8}
    ta = demo.create_completion(prompt, **kw)["choices"][0]["text"]
    tb = "".join(ch["choices"][0]["text"] for ch in demo.create_completion(prompt, engine=engine, stream=True, **kw))
    assert tb == ta
    # an abandoned stream frees its slot
    it = demo.create_completion(prompt, engine=engine, stream=True, max_tokens=200, temperature=0)
    next(it)
    it.close()
    deadline = time.monotonic() + 10
    while engine.stats()["requests_running"] and time.monotonic() < deadline:
        time.sleep(0.01)  # the slot is freed at the engine's next step
    assert engine.stats()["requests_running"] == 0


@pytest.fixture(scope="module")
def smol(smollm2_path):
    with pyakvq.Model(str(smollm2_path), n_ctx=256, n_threads=2) as m:
        yield m


def test_text_offset_counts_characters_when_tokens_split_them(smol):
    """Byte-level tokens that end inside a UTF-8 character: text_offset counts the characters of
    the returned text (as llama-cpp-python), so every offset is where its token's text starts."""
    prompt = "Emoji list: 😀 😃 😄 😁 😆 😅 🤣"
    r = smol.create_completion(prompt, max_tokens=8, temperature=0, logprobs=1)["choices"][0]
    toks, offs, text = r["logprobs"]["tokens"], r["logprobs"]["text_offset"], r["text"]
    assert any("\ufffd" in t for t in toks), toks  # the case under test: pieces of a character
    assert offs == sorted(offs) and offs[0] == len(prompt)
    full = prompt + text
    assert all(o <= len(full) for o in offs)
    for t, o in zip(toks, offs, strict=True):
        if "\ufffd" not in t:  # a whole-character token reads at its offset
            assert full[o : o + len(t)] == t, (t, o, full)
    # the same offsets streamed
    chunks = smol.create_completion(prompt, max_tokens=8, temperature=0, logprobs=1, stream=True)
    lps = [c["choices"][0]["logprobs"] for c in chunks]
    assert [o for lp in lps if lp for o in lp["text_offset"]] == offs


def test_echo_of_token_ids_renders_special_tokens(smol):
    prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = smol.tokenize(prompt, add_special=False)
    assert len(ids) < len(prompt) // 2  # the markers are special tokens, not text
    by_text = smol.create_completion(prompt, max_tokens=4, temperature=0, echo=True)["choices"][0]["text"]
    by_ids = smol.create_completion(ids, max_tokens=4, temperature=0, echo=True)["choices"][0]["text"]
    assert by_ids == by_text and by_text.startswith(prompt)


@pytest.mark.parametrize("n_batch", [256, 3])
def test_echo_with_logprobs_scores_the_prompt(smollm2_path, n_batch):
    """echo + logprobs (OpenAI's legacy API, what lm-eval's loglikelihood requests use): the
    prompt's tokens first, each with log p(token | the tokens before it) from the model's logits
    (numpy log-softmax as the reference), the first null; then the completion's, as without echo.
    The prompt is scored in chunks of n_batch positions: the values do not depend on it."""
    prompt = "The capital of France is Paris, and the capital of Spain is"
    with pyakvq.Model(str(smollm2_path), n_ctx=256, n_threads=2, n_batch=n_batch) as m:
        ids = m.tokenize(prompt)
        logits = m.logits(ids).astype(np.float64)
        ref = logits - logits.max(1, keepdims=True)
        ref -= np.log(np.exp(ref).sum(1, keepdims=True))
        for p in (prompt, ids):
            r = m.create_completion(p, max_tokens=3, temperature=0, logprobs=2, echo=True)["choices"][0]
            plain = m.create_completion(p, max_tokens=3, temperature=0, logprobs=2)["choices"][0]
            lp, n = r["logprobs"], len(ids)
            assert r["text"] == prompt + plain["text"]
            assert "".join(lp["tokens"][:n]) == prompt and lp["tokens"][n:] == plain["logprobs"]["tokens"]
            assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
            got = np.array(lp["token_logprobs"][1:n])
            np.testing.assert_allclose(got, ref[np.arange(n - 1), ids[1:]], atol=1e-5)
            for j in range(1, n):
                best = np.argsort(-ref[j - 1], kind="stable")[:2]
                want = {m.detokenize([int(t)]): ref[j - 1, t] for t in best}
                assert set(want) <= set(lp["top_logprobs"][j]), (j, want, lp["top_logprobs"][j])
            assert lp["text_offset"][:n] == [len("".join(lp["tokens"][:j])) for j in range(n)]
            assert lp["text_offset"][n:] == plain["logprobs"]["text_offset"]
            assert lp["token_logprobs"][n:] == plain["logprobs"]["token_logprobs"]
        # max_tokens 0 here means "to the end of the context" (llama-cpp-python); streamed, the
        # echo chunk carries the prompt's entries
        chunks = list(m.create_completion(ids, max_tokens=2, temperature=0, logprobs=1, echo=True, stream=True))
        first = chunks[0]["choices"][0]
        assert first["text"] == prompt and first["logprobs"]["tokens"] == lp["tokens"][:n]


def test_engine_context_bounds_its_completions(demo):
    """Over an engine whose sequences hold fewer tokens than the Model's context, a completion
    ends at the engine's context (usage within it), and a prompt it cannot hold is refused: the
    room was once reckoned from the Model's n_ctx (usage.total_tokens 65 over an engine of 64)."""
    from pyakvq.batch import BatchEngine

    prompt = "USER: Count from one to one hundred, in words. ASSISTANT:"
    n_prompt = len(demo.tokenize(prompt))
    eng = BatchEngine(demo, n_parallel=1, n_ctx=n_prompt + 3)
    try:
        r = demo.create_completion(prompt, engine=eng, max_tokens=None, temperature=0)
        assert r["usage"]["prompt_tokens"] == n_prompt and r["usage"]["total_tokens"] <= eng.n_ctx, r["usage"]
        assert r["choices"][0]["finish_reason"] == "length"
    finally:
        eng.close()
    small = BatchEngine(demo, n_parallel=1, n_ctx=n_prompt)
    try:
        with pytest.raises(ValueError, match=f"n_ctx={n_prompt} tokens"):
            demo.create_completion(prompt, engine=small, max_tokens=4)
    finally:
        small.close()


def test_an_engine_of_another_model_is_refused(demo, smollm2_path):
    """engine= must be a BatchEngine over this Model: one over SmolLM2 ran the demo's token ids
    through SmolLM2's weights and decoded them with the demo's vocabulary (an answer of garbage
    labelled as the demo's); a string failed with an AttributeError."""
    from pyakvq.batch import BatchEngine

    msgs = [{"role": "user", "content": "What color is the shape?"}]
    with pyakvq.Model(str(smollm2_path), n_ctx=256) as smol, BatchEngine(smol) as eng:
        with pytest.raises(ValueError, match="engine was built on another Model"):
            demo.create_chat_completion(msgs, max_tokens=8, temperature=0, engine=eng)
        with pytest.raises(ValueError, match="engine was built on another Model"):
            demo.create_completion("hi", max_tokens=2, engine=eng, stream=True)
        assert smol.create_completion("hi", max_tokens=2, temperature=0, engine=eng)["choices"][0]["text"]
    with pytest.raises(TypeError, match="engine must be a pyakvq.batch.BatchEngine or None, got str"):
        demo.create_completion("hi", engine="oops")
