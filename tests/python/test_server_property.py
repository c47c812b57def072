"""Property test of `pyakvq serve`'s request parsing: random JSON bodies (well-formed requests,
wrong types, odd values, unknown fields, broken image parts, invalid JSON) sent to the chat and
completion routes always get a well-formed answer in bounded time: 200 with an OpenAI-shaped result
(or an SSE stream ending in [DONE]), or a 4xx with OpenAI's error JSON naming the problem; never
a 5xx, a hang or a dropped connection; and the server keeps answering correctly afterwards."""

from __future__ import annotations

import base64
import collections
import io
import json
import math

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from server_harness import RunningServer

import pyakvq
from pyakvq.server import ServerConfig, create_app

NAME = "demo"
TIMEOUT = 30.0
STATUSES: collections.Counter = collections.Counter()  # (route, status) over the random requests


def _png(color) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (20, 12), color).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


RED = _png((220, 30, 30))


@pytest.fixture(scope="module")
def server():
    from pyakvq.batch import BatchEngine

    m = pyakvq.Model(n_ctx=512)
    eng = BatchEngine(m, n_parallel=2, max_queue=8)
    cfg = ServerConfig(model_name=NAME, api_key=None, max_queue=8, max_images=2, max_image_pixels=64 * 64)
    srv = RunningServer(create_app(m, eng, cfg)).start()
    client = httpx.Client(timeout=TIMEOUT)
    yield srv.base_url, client
    client.close()
    srv.stop()
    eng.close()
    m.close()


scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
anything = st.recursive(
    scalar,
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=6), c, max_size=3)),
    max_leaves=6,
)


@st.composite
def mostly(draw, valid, n_coins: int = 3):
    """valid, or (when n_coins fair coins all come up heads: 1 in 2**n_coins) anything JSON."""
    if all(draw(st.booleans()) for _ in range(n_coins)):
        return draw(anything)
    return draw(valid)


image_part = st.builds(
    lambda url: {"type": "image_url", "image_url": {"url": url}},
    st.sampled_from([RED, RED, RED, "data:image/png;base64,!!!", "http://example.invalid/x.png"]),
)
text_part = st.builds(lambda t: {"type": "text", "text": t}, st.text(max_size=20))
content = mostly(st.one_of(st.text(max_size=30), st.lists(st.one_of(text_part, text_part, image_part), max_size=3)))
role = mostly(st.sampled_from(["user", "user", "user", "system", "assistant"]))
message = mostly(st.fixed_dictionaries({"role": role, "content": content}))
common = {
    "max_tokens": mostly(st.integers(0, 6)),
    "temperature": mostly(st.floats(0, 2)),
    "top_p": mostly(st.floats(0.05, 1)),
    "top_k": mostly(st.integers(0, 50)),
    "seed": mostly(st.integers(0, 2**63)),
    "stop": mostly(st.one_of(st.text(max_size=3), st.lists(st.text(max_size=3), max_size=3))),
    "n": mostly(st.integers(1, 3)),
    "stream": mostly(st.booleans()),
}
unknown = st.one_of(
    st.just({}), st.just({}), st.just({}), st.dictionaries(st.text(min_size=1, max_size=6), anything, max_size=2)
)
chat_body = st.builds(
    lambda body, extra: {**extra, **body},
    st.fixed_dictionaries(
        {"model": mostly(st.just(NAME), 5), "messages": mostly(st.lists(message, min_size=1, max_size=3))},
        optional={
            **common,
            "response_format": mostly(st.just({"type": "text"})),
            "logprobs": mostly(st.booleans()),
            "top_logprobs": mostly(st.integers(0, 20)),
            "max_completion_tokens": mostly(st.integers(0, 6)),
        },
    ),
    unknown,
)
completion_body = st.builds(
    lambda body, extra: {**extra, **body},
    st.fixed_dictionaries(
        {
            "model": mostly(st.just(NAME), 5),
            "prompt": mostly(st.one_of(st.text(max_size=40), st.lists(st.integers(-5, 600), min_size=1, max_size=8))),
        },
        optional={**common, "logprobs": mostly(st.integers(0, 5)), "echo": mostly(st.booleans())},
    ),
    unknown,
)


def check(base: str, client: httpx.Client, path: str, body: dict) -> None:
    if "max_tokens" not in body and "max_completion_tokens" not in body:
        body = {**body, "max_tokens": 8}  # keep every generation short
    try:
        raw = json.dumps(body).encode()  # NaN / Infinity: not JSON, the server must refuse it
    except ValueError:
        raw = b"{" + repr(body).encode()
    with client.stream("POST", base + path, content=raw, headers={"content-type": "application/json"}) as r:
        data = r.read()
    STATUSES[(path, r.status_code)] += 1
    assert r.status_code in (200, 400, 404, 413), (r.status_code, data[:300], body)
    if r.status_code != 200:
        err = json.loads(data)["error"]
        assert isinstance(err["message"], str) and err["message"], err
        return
    if r.headers["content-type"].startswith("text/event-stream"):
        events = [x[len("data: ") :] for x in data.decode().split("\n\n") if x.startswith("data: ")]
        assert events and events[-1] == "[DONE]", data[-300:]
        for e in events[:-1]:
            obj = json.loads(e)
            assert "choices" in obj or "error" in obj
        return
    out = json.loads(data)
    assert out["choices"] and all(c["finish_reason"] in ("stop", "length") for c in out["choices"])
    u = out["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert all(math.isfinite(v) for v in u.values())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=chat_body)
def test_random_chat_requests(server, body):
    base, client = server
    check(base, client, "/v1/chat/completions", body)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=completion_body)
def test_random_completion_requests(server, body):
    base, client = server
    check(base, client, "/v1/completions", body)


def test_still_answers_after_the_random_requests(server):
    base, client = server
    # the strategies reach both sides: generations and refusals on each route
    for path in ("/v1/chat/completions", "/v1/completions"):
        assert STATUSES[(path, 200)] >= 3 and STATUSES[(path, 400)] >= 3, STATUSES
    body = {
        "model": NAME,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": RED}},
                    {"type": "text", "text": "What color is the shape?"},
                ],
            }
        ],
        "temperature": 0,
    }
    r = client.post(base + "/v1/chat/completions", json=body)
    assert r.status_code == 200 and "red" in r.json()["choices"][0]["message"]["content"].lower()
    h = client.get(base + "/health")
    assert h.status_code == 200
