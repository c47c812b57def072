"""The Python API on the real SmolLM2 model: loading, tokens, generation (greedy, sampled,
streamed, stop strings), chat templates, evaluation, lifetime, threads and error handling."""

import pathlib
import threading

import gguf
import jinja2
import numpy as np
import pytest

import pyakvq


@pytest.fixture(scope="module")
def model(smollm2_path):
    with pyakvq.Model(smollm2_path, n_ctx=512, n_threads=2) as m:
        yield m


def test_info_matches_file(model, smollm2_path):
    r = gguf.GGUFReader(str(smollm2_path))

    def field(k):
        return r.fields[k].contents()

    info = model.info
    assert info["arch"] == field("general.architecture")
    assert info["n_layer"] == field("llama.block_count")
    assert info["n_embd"] == field("llama.embedding_length")
    assert info["n_head"] == field("llama.attention.head_count")
    assert info["n_head_kv"] == field("llama.attention.head_count_kv")
    assert info["n_ff"] == field("llama.feed_forward_length")
    assert info["n_vocab"] == len(r.fields["tokenizer.ggml.tokens"].data)
    assert info["rope_theta"] == pytest.approx(field("llama.rope.freq_base"))
    assert info["chat_template"] == field("tokenizer.chat_template")
    assert info["n_ctx"] == 512 and info["n_threads"] == 2 and info["kv"] == "f16"


def test_tokenize_roundtrip(model):
    text = "Hello, world! Numbers 12345 and émojis 🚀 stay intact."
    ids = model.tokenize(text)
    assert all(isinstance(i, int) for i in ids)
    assert model.detokenize(ids) == text


def test_greedy_is_deterministic_and_stream_matches(model):
    a = model.generate("The capital of France is", max_tokens=24, temperature=0)
    b = model.generate("The capital of France is", max_tokens=24, temperature=0)
    assert a == b and len(a) > 0
    toks = list(model.generate("The capital of France is", max_tokens=24, temperature=0, stream=True))
    assert all(isinstance(t, pyakvq.Token) and isinstance(t.id, int) for t in toks)
    assert "".join(t.text for t in toks) == a
    assert model.generate_ids("The capital of France is", max_tokens=24, temperature=0) == [t.id for t in toks]


def test_generated_ids_follow_logits(model):
    """Greedy generation picks the argmax of the model's logits at every step."""
    prompt = model.tokenize("Once upon a time")
    gen = model.generate_ids(prompt, max_tokens=8, temperature=0)
    full = model.logits(prompt + gen)
    for i, tok in enumerate(gen):
        assert int(np.argmax(full[len(prompt) - 1 + i])) == tok


def test_seeded_sampling(model):
    kw = dict(max_tokens=24, temperature=1.0, top_k=0, top_p=1.0)
    a = model.generate("My favourite animal is", seed=1, **kw)
    b = model.generate("My favourite animal is", seed=1, **kw)
    c = [model.generate("My favourite animal is", seed=s, **kw) for s in range(2, 6)]
    assert a == b
    assert any(x != a for x in c)


def test_stop_strings(model):
    full = model.generate("List the days of the week: Monday,", max_tokens=32, temperature=0)
    words = [w for w in full.split(",") if w.strip()]
    assert len(words) >= 2, full
    stop = words[1].strip()[:4]
    cut = full.index(stop)
    got = model.generate("List the days of the week: Monday,", max_tokens=32, temperature=0, stop=[stop, "zzzz"])
    assert got == full[:cut]
    streamed = model.generate(
        "List the days of the week: Monday,", max_tokens=32, temperature=0, stop=stop, stream=True
    )
    assert "".join(t.text for t in streamed) == full[:cut]


def test_chat_uses_the_file_template(model):
    messages = [{"role": "user", "content": "What is 2+2?"}]
    # Reference rendering: plain jinja2 on the template stored in the file.
    ref = (
        jinja2.Environment()
        .from_string(model.info["chat_template"])
        .render(messages=messages, add_generation_prompt=True)
    )
    assert model.render_chat(messages) == ref
    assert model.render_chat("What is 2+2?") == ref
    reply = model.chat(messages, max_tokens=24, temperature=0)
    assert isinstance(reply, str) and reply
    assert "<|im_end|>" not in reply and "<|im_start|>" not in reply
    ids = model.tokenize(ref, add_special=False)
    assert reply == model.generate(ids, max_tokens=24, temperature=0)


def test_eval_matches_logits(model):
    ids = model.tokenize("The quick brown fox jumps over the lazy dog")
    last = model.eval(ids)
    allv = model.logits(ids)
    assert last.shape == (model.n_vocab,) and allv.shape == (len(ids), model.n_vocab)
    assert last.dtype == np.float32
    np.testing.assert_allclose(last, allv[-1], atol=1e-3, rtol=0)
    np.testing.assert_allclose(model.eval("The quick brown fox jumps over the lazy dog"), last, atol=1e-3, rtol=0)


def test_context_full_stops_cleanly(smollm2_path):
    with pyakvq.Model(smollm2_path, n_ctx=16, n_threads=1) as m:
        ids = m.tokenize("one two three four five six seven eight")
        out = m.generate_ids(ids, max_tokens=100, temperature=0)
        assert len(ids) + len(out) <= 16 + 1
        with pytest.raises(ValueError, match="context"):
            m.generate(ids * 3, max_tokens=4)
        with pytest.raises(ValueError):
            m.logits(ids * 3)


def test_bad_inputs(smollm2_path, tmp_path, model):
    with pytest.raises(FileNotFoundError, match=r"path: no such file.*missing\.gguf"):  # as open() says it
        pyakvq.Model(tmp_path / "missing.gguf")
    with pytest.raises(FileNotFoundError, match=r"mmproj: no such file.*nope\.gguf"):
        pyakvq.Model(smollm2_path, mmproj=tmp_path / "nope.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    with pytest.raises(ValueError, match="gguf"):
        pyakvq.Model(bad)
    with pytest.raises(ValueError, match="n_ctx"):
        pyakvq.Model(smollm2_path, n_ctx=0)
    with pytest.raises(ValueError, match="kv"):
        pyakvq.Model(smollm2_path, kv="bogus")
    with pytest.raises(ValueError, match="vocabulary"):
        model.logits([1, 2, model.n_vocab + 5])
    with pytest.raises(ValueError, match="empty"):
        model.logits([])
    with pytest.raises(ValueError, match="temperature"):
        model.generate("hi", temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        model.generate("hi", top_p=2.0)
    with pytest.raises(TypeError):
        model.generate(3.5)
    with pytest.raises(ValueError, match="role"):
        model.chat([{"role": "wizard", "content": "x"}])


def test_close_and_context_manager(smollm2_path):
    m = pyakvq.Model(smollm2_path, n_ctx=64, n_threads=1)
    with m:
        assert m.generate("Hi", max_tokens=2, temperature=0) is not None
    with pytest.raises(RuntimeError, match="closed"):
        m.generate("Hi", max_tokens=2)
    # every call and property, as the README says
    for use in (
        lambda: m.info,
        lambda: m.n_ctx,
        lambda: m.n_vocab,
        lambda: m.has_vision,
        lambda: m.vision_info,
        lambda: m.tokenize("x"),
        lambda: m.kv_stats(),
        lambda: m.eval("x"),
    ):
        with pytest.raises(RuntimeError, match="closed"):
            use()


def test_a_model_is_not_pickled_or_copied(model):
    """pickle / copy name what a Model is (the message was about a thread lock; copy.copy shared
    the native model between two Python objects)."""
    import copy
    import pickle

    for op in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match="a Model cannot be pickled or copied"):
            op(model)
    assert model.generate("Hi", max_tokens=1, temperature=0) is not None


def test_two_models_in_two_threads(smollm2_path):
    prompts = ["The sun is", "Water boils at"]
    ref = []
    with pyakvq.Model(smollm2_path, n_ctx=128, n_threads=1) as m:
        for p in prompts:
            ref.append(m.generate(p, max_tokens=16, temperature=0))
    out = [None, None]
    errors = []

    def work(i):
        try:
            with pyakvq.Model(smollm2_path, n_ctx=128, n_threads=1) as m:
                out[i] = m.generate(prompts[i], max_tokens=16, temperature=0)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert out == ref


def test_kv_modes_and_stats(smollm2_path):
    text = (pathlib.Path(__file__).parents[1] / "fixtures" / "text" / "prose_en.txt").read_text(encoding="utf-8")
    for mode in ["f16", "q8", "q4", "q2", "kivi2", "wht2", "akvq2", "akvq4"]:
        with pyakvq.Model(smollm2_path, n_ctx=512, n_threads=2, kv=mode) as m:
            ids = m.tokenize(text)[:300]
            m.eval(ids)
            st = m.kv_stats()
            assert st["mode"] == mode and st["n_tokens"] == 300
            assert len(st["layers"]) == m.info["n_layer"]
            per_layer = [sum(c["tokens"] for c in layer["classes"]) for layer in st["layers"]]
            assert per_layer == [300] * m.info["n_layer"], (mode, per_layer)
            assert st["bytes"] == sum(c["bytes"] for layer in st["layers"] for c in layer["classes"])
            elems = 300 * m.info["n_layer"] * m.info["n_head_kv"] * m.info["head_dim"] * 2
            assert st["bits_per_element"] == pytest.approx(st["bytes"] * 8 / elems)
            if mode == "f16":
                assert st["bits_per_element"] == 16
            else:
                assert st["bits_per_element"] < 16
            out = m.generate(ids[:40], max_tokens=8, temperature=0)
            assert isinstance(out, str)


def test_kv_options(smollm2_path):
    with pyakvq.Model(smollm2_path, n_ctx=256, n_threads=1, kv="akvq2", kv_options={"window": 16, "clip": 0.7}) as m:
        m.eval(m.tokenize("word " * 100))
        st = m.kv_stats()
        assert st["options"]["window"] == "16"
        assert float(st["options"]["clip"]) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="bogus"):
        pyakvq.Model(smollm2_path, kv="akvq2", kv_options={"bogus": 1})
    with pytest.raises(ValueError, match="clip"):
        pyakvq.Model(smollm2_path, kv="akvq2", kv_options={"clip": -2})
    with pytest.raises(ValueError, match="bits"):
        pyakvq.Model(smollm2_path, kv="q2", kv_options={"bits": 7})
    with pytest.raises(TypeError):
        pyakvq.Model(smollm2_path, kv="akvq2", kv_options=[("window", 4)])
    # the rotate switch takes Python bools and the engine's spellings; akvq2 without it is the
    # no-WHT ablation
    for value, want in ((False, "0"), (True, "1"), ("off", "0"), (0, "0")):
        with pyakvq.Model(smollm2_path, n_ctx=64, n_threads=1, kv="akvq2", kv_options={"rotate": value}) as m:
            assert m.kv_stats()["options"]["rotate"] == want, value
    with pytest.raises(ValueError, match="rotate"):
        pyakvq.Model(smollm2_path, kv="akvq2", kv_options={"rotate": "maybe"})
    # so does lut (the table scores of the 2-bit K rows; on by default)
    for opts, want in (({}, "1"), ({"lut": False}, "0"), ({"lut": True}, "1"), ({"lut": "0"}, "0")):
        with pyakvq.Model(smollm2_path, n_ctx=64, n_threads=1, kv="akvq2", kv_options=opts) as m:
            assert m.kv_stats()["options"]["lut"] == want, opts
    # and pv_bf16 (the V rows' products from bf16 pairs on AVX-512 CPUs; on by default)
    for opts, want in (({}, "1"), ({"pv_bf16": False}, "0"), ({"pv_bf16": True}, "1"), ({"pv_bf16": "0"}, "0")):
        with pyakvq.Model(smollm2_path, n_ctx=64, n_threads=1, kv="akvq2", kv_options=opts) as m:
            assert m.kv_stats()["options"]["pv_bf16"] == want, opts
    with pytest.raises(ValueError, match="pv_bf16"):
        pyakvq.Model(smollm2_path, kv="akvq2", kv_options={"pv_bf16": "maybe"})


def test_too_long_an_input_to_eval_or_logits_leaves_the_stream_and_cache(smollm2_path):
    """eval()/logits() of more than n_ctx tokens: a ValueError naming the context size, as from
    generate(), raised before anything changes. They used to end the stream in progress and empty
    the cache first, then fail with the engine's "context overflow"."""
    with pyakvq.Model(str(smollm2_path), n_ctx=32) as m:
        want = m.generate("Once upon a time", max_tokens=6, temperature=0)
        s = m.generate("Once upon a time", max_tokens=6, temperature=0, stream=True)
        first = next(s)
        cached = m.kv_stats()["n_tokens"]
        for call in (
            lambda: m.logits(list(range(1, 40))),
            lambda: m.eval(list(range(1, 40))),
            lambda: m.eval("x " * 60),
        ):
            with pytest.raises(ValueError, match=r"has \d+ tokens, more than the context size n_ctx=32"):
                call()
            assert m.kv_stats()["n_tokens"] == cached
        assert first.text + "".join(t.text for t in s) == want  # the stream goes on
