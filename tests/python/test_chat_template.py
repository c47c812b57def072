"""Chat templates render as transformers renders them.

The corpus (tests/fixtures/chat_templates/reference.json, made by
tests/fixtures/make_chat_template_reference.py with transformers) holds real templates of popular
model families and their outputs over conversations with system/user/assistant/tool turns, tool
calls, tools, documents, reasoning and image parts; pyakvq.chat must give every output byte for
byte and raise ValueError (with the template's message) where transformers raised. The other tests
pin the environment's parts one by one: tojson, loop controls, the generation tag,
raise_exception, strftime_now, message normalization, and template variables through chat()."""

import datetime
import json
import pathlib

import pytest

import pyakvq
from pyakvq import chat as _chat

ROOT = pathlib.Path(__file__).resolve().parents[2]
REFERENCE = json.loads((ROOT / "tests" / "fixtures" / "chat_templates" / "reference.json").read_text("utf-8"))
TEMPLATES = {t["id"]: t for t in REFERENCE["templates"]}
CONVERSATIONS = {c["id"]: c for c in REFERENCE["conversations"]}
CASES = REFERENCE["cases"]


@pytest.fixture
def frozen_now(monkeypatch):
    now = datetime.datetime.fromisoformat(REFERENCE["strftime_now"])
    monkeypatch.setattr(_chat, "_now", lambda: now)
    return now


def render_case(case):
    t, conv = TEMPLATES[case["template"]], CONVERSATIONS[case["conversation"]]
    return _chat.render(
        t["template"],
        conv["messages"],
        tools=conv.get("tools"),
        documents=conv.get("documents"),
        add_generation_prompt=conv["add_generation_prompt"],
        **t["special_tokens"],
        **t["variables"],
        **conv.get("variables", {}),
    )


def test_corpus_size():
    assert len(TEMPLATES) >= 20
    assert len({t["family"].split(" (")[0] for t in TEMPLATES.values()}) >= 15
    assert all(t["source"] and t["model"] for t in TEMPLATES.values())
    assert len(CASES) == len(TEMPLATES) * len(CONVERSATIONS)
    # Most cases render; the ones that raise are the templates' own refusals.
    assert sum("output" in c for c in CASES) > 0.7 * len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c['template']}/{c['conversation']}" for c in CASES])
def test_matches_transformers(case, frozen_now):
    if "output" in case:
        assert render_case(case) == case["output"]
    else:
        with pytest.raises(ValueError) as err:
            render_case(case)
        first_line = case["error"]["message"].splitlines()[0]
        assert first_line in str(err.value)


def test_tojson_leaves_text_unchanged():
    text = "a<b & 'c' — é 😊"
    out = _chat.render("{{ messages[0] | tojson }}", [{"role": "user", "content": text}])
    assert out == json.dumps({"role": "user", "content": text}, ensure_ascii=False)
    assert text in out
    # No key sorting either: the message's own order.
    assert out.index('"role"') < out.index('"content"')


def test_tojson_arguments():
    tools = [{"b": 1, "a": [1, 2]}]
    indented = '{\n  "b": 1,\n  "a": [\n    1,\n    2\n  ]\n}'
    assert _chat.render("{{ tools[0] | tojson(indent=2) }}", "x", tools=tools) == indented
    assert _chat.render("{{ tools[0] | tojson(separators=(',', ':')) }}", "x", tools=tools) == '{"b":1,"a":[1,2]}'
    assert _chat.render("{{ tools[0] | tojson(sort_keys=true) }}", "x", tools=tools) == '{"a": [1, 2], "b": 1}'


def test_loop_controls():
    msgs = [{"role": "user", "content": str(i)} for i in range(6)]
    tmpl = (
        "{% for m in messages %}{% if m.content == '1' %}{% continue %}{% endif %}"
        "{% if m.content == '4' %}{% break %}{% endif %}{{ m.content }}{% endfor %}"
    )
    assert _chat.render(tmpl, msgs) == "023"


def test_generation_tag_renders_its_body():
    tmpl = "{% for m in messages %}{% generation %}[{{ m.content }}]{% endgeneration %}{% endfor %}"
    assert _chat.render(tmpl, [{"role": "assistant", "content": "hi"}]) == "[hi]"


def test_template_errors_become_value_errors():
    with pytest.raises(ValueError, match="roles must alternate"):
        _chat.render("{{ raise_exception('roles must alternate') }}", "x")
    with pytest.raises(ValueError, match="syntax"):
        _chat.render("{% for m in messages %}", "x")
    with pytest.raises(ValueError, match="concatenate"):
        _chat.render("{{ 'a' + messages[0].content }}", [{"role": "user", "content": [{"type": "image"}]}])
    with pytest.raises(ValueError, match="underscore"):
        _chat.render("{% set ns = namespace(_x=1) %}", "x")


def test_strftime_now(frozen_now):
    assert _chat.render("{{ strftime_now('%d %b %Y') }}", "x") == "14 Mar 2025"


def test_special_tokens_and_variables():
    tmpl = "{{ bos_token }}|{{ eos_token }}|{{ foo }}|{{ bos_token is defined }}"
    assert _chat.render(tmpl, "x", bos_token="<s>", eos_token="</s>", foo=3) == "<s>|</s>|3|True"
    assert _chat.render(tmpl, "x") == "|||False"
    with pytest.raises(TypeError, match="messages"):
        _chat.render(tmpl, "x", messages=[])
    with pytest.raises(TypeError, match="tools"):
        _chat.render(tmpl, "x", tools=[lambda: None])
    with pytest.raises(TypeError, match="documents"):
        _chat.render(tmpl, "x", documents=["text"])


def test_message_normalization():
    msgs = _chat.normalize_messages(
        [
            {"role": "user", "content": [{"type": "image", "image": object()}, {"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
            {"role": "tool", "content": "42", "tool_call_id": "abc"},
            {"role": "assistant", "content": "ok", "reasoning": "because"},
        ]
    )
    # Image parts stay (their objects become placeholders), None values go, reasoning is aliased.
    assert msgs[0]["content"] == [{"type": "image", "image": "<object>"}, {"type": "text", "text": "hi"}]
    assert "content" not in msgs[1] and msgs[1]["tool_calls"][0]["function"]["name"] == "f"
    assert msgs[2] == {"role": "tool", "content": "42", "tool_call_id": "abc"}
    assert list(msgs[3]) == ["thinking", "role", "content", "reasoning", "reasoning_content"]
    assert msgs[3]["thinking"] == msgs[3]["reasoning_content"] == "because"
    # numpy: arrays (an image given as pixels) are placeholders as in transformers, scalars values;
    # an array once raised "can only convert an array of size 1" (or became a scalar if of size 1)
    import numpy as np

    pixels = {"type": "image", "image": np.zeros((8, 8, 3), np.uint8)}
    one = {"type": "image", "image": np.zeros((1,), np.uint8)}
    msgs = _chat.normalize_messages(
        [{"role": "user", "content": [pixels, one], "n": np.int64(3), "x": np.float32(0.5)}]
    )
    assert msgs[0]["content"] == [{"type": "image", "image": "<ndarray>"}, {"type": "image", "image": "<ndarray>"}]
    assert msgs[0]["n"] == 3 and type(msgs[0]["n"]) is int and msgs[0]["x"] == 0.5
    with pytest.raises(ValueError, match="role"):
        _chat.normalize_messages([{"role": "wizard", "content": "x"}])
    with pytest.raises(ValueError, match="content"):
        _chat.normalize_messages([{"role": "user"}])
    with pytest.raises(ValueError, match="content"):
        _chat.normalize_messages([{"role": "user", "content": 3}])
    with pytest.raises(ValueError, match="tool_calls"):
        _chat.normalize_messages([{"role": "assistant", "tool_calls": "f()"}])
    with pytest.raises(ValueError, match="at least one"):
        _chat.normalize_messages([])


# A template that shows every variable chat() hands over.
PROBE = (
    "{%- for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    "|tools={{ tools | map(attribute='function.name') | join(',') if tools else 'none' }}"
    "|docs={{ documents | map(attribute='title') | join(',') if documents else 'none' }}"
    "|thinking={{ enable_thinking if enable_thinking is defined else 'unset' }}"
    "|gen={{ add_generation_prompt }}|"
)


@pytest.fixture(scope="module")
def model(smollm2_path):
    with pyakvq.Model(smollm2_path, n_ctx=512, n_threads=2) as m:
        yield m


def test_chat_passes_template_variables(model):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    docs = [{"title": "Tides", "text": "The Moon pulls the sea."}]
    text = model.render_chat("Hi", template=PROBE, tools=tools, documents=docs, enable_thinking=False)
    assert text == "<user>Hi|tools=get_weather|docs=Tides|thinking=False|gen=True|"
    assert model.render_chat("Hi", template=PROBE, add_generation_prompt=False).endswith(
        "|tools=none|docs=none|thinking=unset|gen=False|"
    )
    # chat(): template variables go to the template, generation keywords to generate().
    reply = model.chat(
        "Hi", template=PROBE, tools=tools, documents=docs, enable_thinking=False, max_tokens=8, temperature=0
    )
    assert reply == model.generate(model.tokenize(text, add_special=False), max_tokens=8, temperature=0)
    streamed = model.chat("Hi", template=PROBE, enable_thinking=True, max_tokens=4, temperature=0, stream=True)
    assert isinstance("".join(t.text for t in streamed), str)


def test_chat_renders_the_file_template_with_tools(model):
    # SmolLM2's own template ignores tools but renders every turn kind as transformers does.
    ref = next(c for c in CASES if c["template"] == "smollm2-instruct" and c["conversation"] == "tools-offered")
    conv = CONVERSATIONS["tools-offered"]
    assert model.info["chat_template"] == TEMPLATES["smollm2-instruct"]["template"]
    assert model.render_chat(conv["messages"], tools=conv["tools"]) == ref["output"]
    with pytest.raises(ValueError, match="concatenate"):
        model.chat([{"role": "user", "content": [{"type": "image"}]}], max_tokens=1)


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("{{ 'hello ' * 5000000 }}", "repeats a str of length 6 5000000 times"),
        ("{{ [0] * 100000000 }}", "repeats a list"),
        ("{{ 9 ** 100000000 }}", "raises an integer of 4 bits to the power 100000000"),
        ("{{ (10 ** 1024) ** 1024 }}", "to the power 1024"),
        ("{{ '%0999999999d' % 1 }}", "formats a field 999999999 characters wide"),
        ("{{ '%0999999999d' | format(1) }}", "formats a field 999999999 characters wide"),
        ("{{ 'x' | center(999999999) }}", "centers text in 999999999 characters"),
        ("{% for i in range(100000) %}{{ 'x' * 1000000 }}{% endfor %}", "rendered prompt exceeds"),
    ],
)
def test_templates_cannot_exhaust_memory_or_time(template, match):
    """A template (from a file or a caller) is bounded: repetition, powers and the rendered text."""
    with pytest.raises(ValueError, match=match):
        _chat.render(template, "hi")
    # ordinary use of the same operators renders as Jinja does
    ordinary = "{{ '-' * 3 }}{{ 2 ** 10 }}{{ [1] * 2 }}{{ messages[0]['content'] * 2 }}"
    ordinary += "{{ '%03d' % 7 }}{{ 'a' | center(3) }}"
    assert _chat.render(ordinary, "hi") == "---1024[1, 1]hihi007 a "


def test_chat_template_kwargs_are_variables_only(model):
    from pyakvq.completions import create_chat_completion

    msgs = [{"role": "user", "content": "hi"}]
    for name in ("template", "tools", "images", "_check_keywords", "add_generation_prompt"):
        with pytest.raises(ValueError, match=f"{name!r} is not a template variable"):
            create_chat_completion(model, msgs, max_tokens=1, chat_template_kwargs={name: None})
    with pytest.raises(TypeError, match="must be an object"):
        create_chat_completion(model, msgs, max_tokens=1, chat_template_kwargs=[("x", 1)])


def test_templates_see_every_special_token_of_the_tokenizer(smollm2_path):
    """unk_token and pad_token reach the template beside bos_token and eos_token, as transformers
    hands a template its special_tokens_map (SmolLM2: unknown_token_id 0, padding_token_id 2;
    transformers renders this template "<|im_start|>|<|im_end|>|<|endoftext|>|<|im_end|>"). They
    were undefined."""
    import pyakvq

    with pyakvq.Model(str(smollm2_path), n_ctx=64) as m:
        assert (m.info["unk"], m.info["pad"]) == (0, 2)
        tmpl = "{{ bos_token }}|{{ eos_token }}|{{ unk_token }}|{{ pad_token }}"
        assert m.render_chat("x", template=tmpl) == "<|im_start|>|<|im_end|>|<|endoftext|>|<|im_end|>"
        assert m.render_chat("x", template=tmpl, pad_token="P") == "<|im_start|>|<|im_end|>|<|endoftext|>|P"
