"""`pyakvq serve`'s HTTP API, exercised as a user would: uvicorn serving the app on a free loopback
port in a background thread, spoken to with the official `openai` package (and raw httpx for
malformed requests). The demo VLM answers about the example pictures (greedy answers checked
against Model.chat, computed before the server starts); SmolLM2 provides long generations for the
disconnect and overload tests. Every HTTP call has a timeout."""

from __future__ import annotations

import base64
import concurrent.futures
import functools
import io
import json
import pathlib
import re
import struct
import time
import zlib

import httpx
import openai
import pytest
from PIL import Image
from server_harness import RunningServer, read_metrics, wait_for_port

import pyakvq
from pyakvq.server import ServerConfig, create_app

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
KEY = "test-key-123"
NAME = "demo"
TIMEOUT = 30.0
AUTH = {"Authorization": f"Bearer {KEY}"}
IMAGES = {
    "red_circle.png": "red",
    "blue_square.png": "blue",
    "green_triangle.png": "green",
    "purple_circle_wide.png": "purple",
}
QUESTIONS = ("What color is the shape?", "What is in the picture?")
LIMITS = {
    "max_body_bytes": 1 << 20,
    "max_image_pixels": 300 * 300,
    "max_images": 2,
    "max_prompt_tokens": 300,
    "request_timeout": 3.0,
}


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def image_msgs(image_url: str, question: str) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": question}],
        }
    ]


def png(w: int, h: int, color=(255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format="PNG")
    return buf.getvalue()


def encoded(w: int, h: int, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (255, 0, 0)).save(buf, format=fmt)
    return buf.getvalue()


def eps() -> bytes:
    """An EPS file (PostScript: Pillow hands it to Ghostscript)."""
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n"


def png_claiming(w: int, h: int) -> bytes:
    """A 1x1 PNG whose header says w x h (a decompression bomb's header; decoding it would fail)."""
    data = bytearray(png(1, 1))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


@functools.cache
def http() -> httpx.Client:
    """One httpx client for the raw requests (making one costs ~50 ms: its TLS context)."""
    return httpx.Client(timeout=TIMEOUT)


def post(base: str, path: str, body, headers=None, timeout: float = TIMEOUT) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"content-type": "application/json", **AUTH, **(headers or {})}
    return http().post(base + path, content=content, headers=h, timeout=timeout)


def metrics(base: str) -> dict[str, float]:
    """/metrics as {sample name with labels: value}; also {bare name: value} for labelled gauges."""
    return read_metrics(base, AUTH, TIMEOUT)


def wait_metric(base: str, name: str, pred, timeout: float = 10.0) -> float:
    """Polls /metrics until pred(value of `name`, 0 while absent) holds; returns the value (fails
    after timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        v = metrics(base).get(name, 0.0)
        if pred(v) or time.monotonic() > deadline:
            return v
        time.sleep(0.02)  # polling interval


class Served:
    pass


@pytest.fixture(scope="module")
def served():
    from pyakvq.batch import BatchEngine

    m = pyakvq.Model(n_ctx=1024)
    s = Served()
    s.model = m
    s.urls = {f: data_url((EXAMPLES / f).read_bytes()) for f in IMAGES}
    # reference answers from Model.chat, before the engine shares the model
    s.refs = {(f, q): m.chat(str(EXAMPLES / f), q, temperature=0) for f in IMAGES for q in QUESTIONS}
    s.ref_ids = len(m.generate_ids(m._chat_input(image_msgs(s.urls["red_circle.png"], QUESTIONS[1])), temperature=0))
    s.engine = BatchEngine(m, n_parallel=8, max_queue=32)
    cfg = ServerConfig(model_name=NAME, api_key=KEY, max_queue=32, **LIMITS)
    s.server = RunningServer(create_app(m, s.engine, cfg)).start()
    s.base = s.server.base_url
    s.client = openai.OpenAI(base_url=s.base + "/v1", api_key=KEY, timeout=TIMEOUT, max_retries=0)
    yield s
    s.server.stop()
    s.engine.close()
    m.close()


def chat(s, image: str, question: str, **kw):
    return s.client.chat.completions.create(
        model=NAME, messages=image_msgs(s.urls[image], question), temperature=kw.pop("temperature", 0), **kw
    )


def stream_text(stream) -> tuple[str, str | None]:
    text, finish = [], None
    for ch in stream:
        for c in ch.choices:
            text.append(c.delta.content or "")
            finish = c.finish_reason or finish
    return "".join(text), finish


# ---- answers ----


def test_chat_with_an_image_names_its_colour(served):
    for image, colour in IMAGES.items():
        r = chat(served, image, QUESTIONS[0])
        answer = r.choices[0].message.content
        assert colour in answer.lower(), (image, answer)
        assert answer == served.refs[(image, QUESTIONS[0])]
        assert r.choices[0].finish_reason == "stop" and r.model == NAME and r.object == "chat.completion"


def test_streaming_equals_non_streaming(served):
    r = chat(served, "red_circle.png", QUESTIONS[1])
    text, finish = stream_text(chat(served, "red_circle.png", QUESTIONS[1], stream=True))
    assert text == r.choices[0].message.content == served.refs[("red_circle.png", QUESTIONS[1])]
    assert finish == r.choices[0].finish_reason == "stop"
    prompt = "USER: What color is the sky? ASSISTANT:"
    c = served.client.completions.create(model=NAME, prompt=prompt, max_tokens=10, temperature=0)
    chunks = list(
        served.client.completions.create(model=NAME, prompt=prompt, max_tokens=10, temperature=0, stream=True)
    )
    assert "".join(ch.choices[0].text for ch in chunks) == c.choices[0].text
    assert chunks[-1].choices[0].finish_reason == c.choices[0].finish_reason
    kw = {"model": NAME, "prompt": prompt, "max_tokens": 10, "temperature": 0, "echo": True}
    assert served.client.completions.create(**kw).choices[0].text == prompt + c.choices[0].text
    echoed = "".join(ch.choices[0].text for ch in served.client.completions.create(stream=True, **kw))
    assert echoed == prompt + c.choices[0].text


def test_stop_strings(served):
    full = served.refs[("red_circle.png", QUESTIONS[1])]
    assert "circle" in full
    r = chat(served, "red_circle.png", QUESTIONS[1], stop=["circle", "nowhere"])
    assert r.choices[0].message.content == full.split("circle")[0]
    assert r.choices[0].finish_reason == "stop"
    text, finish = stream_text(chat(served, "red_circle.png", QUESTIONS[1], stop="circle", stream=True))
    assert (text, finish) == (full.split("circle")[0], "stop")
    r = chat(served, "red_circle.png", QUESTIONS[1], max_tokens=2)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 2
    # logprobs end with the text: the tokens of the stop string are left out (usage counts them)
    r = chat(served, "red_circle.png", QUESTIONS[1], stop="circle", logprobs=True)
    text, content = r.choices[0].message.content, r.choices[0].logprobs.content
    assert text == full.split("circle")[0]
    assert "".join(e.token for e in content).startswith(text)
    assert (
        len("".join(e.token for e in content[:-1]).encode())
        < len(text.encode())
        <= len("".join(e.token for e in content).encode())
    )
    chunks = list(chat(served, "red_circle.png", QUESTIONS[1], stop="circle", logprobs=True, stream=True))
    streamed = [e for ch in chunks for c in ch.choices if c.logprobs for e in c.logprobs.content]
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content]


def test_seeds(served):
    kw = {"model": NAME, "prompt": "USER: hello ASSISTANT:", "max_tokens": 10, "temperature": 1.5}
    a = [served.client.completions.create(seed=s, **kw).choices[0].text for s in range(6)]
    b = [served.client.completions.create(seed=s, **kw).choices[0].text for s in range(6)]
    assert a == b  # the same seed gives the same text
    assert len(set(a)) >= 2, a  # and sampling does depend on it
    r = served.client.completions.create(seed=3, n=3, **kw)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert [c.text for c in r.choices] == a[3:6]  # choice i uses seed + i
    texts = ["", "", ""]
    for ch in served.client.completions.create(seed=3, n=3, stream=True, **kw):  # chunks of the choices interleave
        for c in ch.choices:
            texts[c.index] += c.text
    assert texts == a[3:6]


def test_logprobs(served):
    r = chat(served, "red_circle.png", QUESTIONS[1], logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert "".join(e.token for e in content) == r.choices[0].message.content
    for e in content:
        assert e.logprob <= 0 and len(e.top_logprobs) == 3 and e.bytes == list(e.token.encode())
        assert all(t.logprob <= 0 for t in e.top_logprobs)
        assert e.token in [t.token for t in e.top_logprobs]  # greedy: the chosen token is among the best
        assert e.top_logprobs[0].token == e.token and abs(e.top_logprobs[0].logprob - e.logprob) < 1e-6
    c = served.client.completions.create(
        model=NAME, prompt="USER: hi ASSISTANT:", max_tokens=5, temperature=0, logprobs=2
    )
    lp = c.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == c.usage.completion_tokens
    for tok, v, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert v <= 0 and top[tok] == v


def test_usage_counts(served):
    m = served.model
    r = chat(served, "red_circle.png", QUESTIONS[1])
    placeholder = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTIONS[1]}]}]
    n_text = len(m.tokenize(m.render_chat(placeholder)))
    n_prompt = n_text + m.vision_info["n_tokens_per_image"] - 1  # the image marker becomes the image's rows
    assert r.usage.prompt_tokens == n_prompt
    assert r.usage.completion_tokens == served.ref_ids
    assert r.usage.total_tokens == n_prompt + served.ref_ids
    msgs = [{"role": "user", "content": "What color is the shape?"}]
    r = served.client.chat.completions.create(model=NAME, messages=msgs, temperature=0, max_tokens=4)
    assert r.usage.prompt_tokens == len(m.tokenize(m.render_chat(msgs)))
    chunks = list(
        served.client.chat.completions.create(
            model=NAME, messages=msgs, temperature=0, max_tokens=4, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage == r.usage


def test_metrics_count_the_tokens(served):
    before = metrics(served.base)
    r = chat(served, "blue_square.png", QUESTIONS[1])
    after = metrics(served.base)
    assert after["pyakvq_generated_tokens_total"] - before["pyakvq_generated_tokens_total"] == r.usage.completion_tokens
    assert after["pyakvq_prompt_tokens_total"] - before["pyakvq_prompt_tokens_total"] <= r.usage.prompt_tokens
    assert after["pyakvq_requests_total"] - before["pyakvq_requests_total"] == 1
    assert after["pyakvq_slots"] == served.engine.n_slots
    assert after["pyakvq_requests_running"] == 0 and after["pyakvq_requests_queued"] == 0
    stats = served.engine.stats()  # nothing ran since: the same figures
    assert after["pyakvq_kv_bytes"] == stats["kv_bytes"] > 0
    assert after["pyakvq_kv_bits_per_element"] == pytest.approx(stats["kv_bits_per_element"], rel=1e-9)
    assert 0 < after["pyakvq_kv_bits_per_element"] <= 16  # the f16 cache
    assert after["pyakvq_kv_bytes_per_sequence"] == served.engine.kv_bytes_per_sequence
    key = 'pyakvq_http_requests_total{route="/v1/chat/completions",status="200"}'
    assert after[key] - before.get(key, 0) == 1


def test_concurrent_streams_equal_sequential(served):
    jobs = [(f, q) for f in IMAGES for q in QUESTIONS]
    assert len(jobs) == 8
    sequential = [stream_text(chat(served, f, q, stream=True))[0] for f, q in jobs]
    assert sequential == [served.refs[j] for j in jobs]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(lambda j=j: stream_text(chat(served, *j, stream=True))[0]) for j in jobs]
        concurrent_ = [f.result(timeout=TIMEOUT) for f in futures]
    assert concurrent_ == sequential


def test_llama_server_sampling_values(served):
    """top_p 0 keeps only the most likely token (greedy whatever the temperature and seed), top_k
    -1 and 0 mean no top-k, tool_choice "none" asks for no tools: all accepted as llama-server does."""
    kw = {"model": NAME, "prompt": "USER: hello ASSISTANT:", "max_tokens": 8}
    greedy = served.client.completions.create(temperature=0, **kw).choices[0].text
    for seed in range(3):
        r = served.client.completions.create(temperature=1.5, top_p=0, seed=seed, **kw)
        assert r.choices[0].text == greedy, seed
    no_k = [
        served.client.completions.create(temperature=1.5, seed=5, extra_body={"top_k": k}, **kw).choices[0].text
        for k in (-1, 0)
    ]
    assert no_k[0] == no_k[1]
    r = served.client.chat.completions.create(
        model=NAME, messages=_TEXT, temperature=0, max_tokens=3, tool_choice="none", extra_body={"tools": None}
    )
    assert r.choices[0].finish_reason in ("stop", "length")
    r = post(served.base, "/v1/chat/completions", {"model": NAME, "messages": _TEXT, "tool_choice": "auto"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tool_choice"


def test_idle_connections_do_not_shut_out_requests(served):
    """Open connections that send nothing (keep-alive clients, a slow network, a careless script)
    do not use up the server: /health and generation still answer."""
    import socket

    state = served.server.server.server_state
    idle = []
    opened = time.monotonic()
    try:
        for _ in range(150):
            idle.append(socket.create_connection(("127.0.0.1", served.server.port), timeout=TIMEOUT))
        deadline = time.monotonic() + 10
        while len(state.connections) < 150 and time.monotonic() < deadline:
            time.sleep(0.02)  # until uvicorn has accepted them all
        assert len(state.connections) >= 150
        assert http().get(served.base + "/health", timeout=5).status_code == 200
        r = served.client.chat.completions.create(model=NAME, messages=_TEXT, temperature=0, max_tokens=2)
        assert r.choices[0].finish_reason == "length"
        # and the server closes them once they have been silent for the keep-alive timeout (5 s)
        for sock in idle:
            sock.settimeout(10)
            assert sock.recv(1) == b""
        assert time.monotonic() - opened < 10
    finally:
        for sock in idle:
            sock.close()


def test_engine_prefixes_are_not_shown_to_clients():
    from pyakvq.server.errors import APIError, error_body, public_message

    assert public_message("[batch] the queue is full: 3 requests wait") == "the queue is full: 3 requests wait"
    assert public_message("image 0: [image] cannot decode") == "image 0: cannot decode"
    assert public_message("generation failed: [generate] context full") == "generation failed: context full"
    assert public_message("the text [kv] stays") == "the text [kv] stays"  # only where a message starts
    assert APIError(500, "[kv] out of memory").body()["error"]["message"] == "out of memory"
    assert error_body(400, "[session] bad")["error"]["message"] == "bad"


def test_client_gone_while_sending_the_body_is_499(served):
    """A client that closes the connection in the middle of its request body: no 500, no traceback,
    counted as a disconnect with status 499."""
    import socket

    ok = 'pyakvq_http_requests_total{route="/v1/chat/completions",status="499"}'
    err = 'pyakvq_http_requests_total{route="/v1/chat/completions",status="500"}'
    before = metrics(served.base)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", served.server.port), timeout=TIMEOUT) as sock:
        sock.sendall(head.encode() + b'{"model": "demo", "messages": [')
        time.sleep(0.2)  # the app is reading the body
    assert wait_metric(served.base, ok, lambda v: v == before.get(ok, 0) + 1) == before.get(ok, 0) + 1
    after = metrics(served.base)
    assert after.get(err, 0) == before.get(err, 0)
    assert after["pyakvq_client_disconnects_total"] == before["pyakvq_client_disconnects_total"] + 1


def test_slow_body_is_408_and_closed(served):
    """A client trickling its body (a byte every 0.25 s, as a slowloris) gets 408 once the body
    timeout passes, and the connection is closed: it cannot hold the connection for ever."""
    import socket

    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", served.server.port), timeout=TIMEOUT) as sock:
        sock.sendall(head.encode())
        t0 = time.monotonic()
        sock.settimeout(0.25)
        got = b""
        while time.monotonic() - t0 < 15:
            try:
                sock.sendall(b" ")
            except OSError:  # closed by the server
                break
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            got += chunk
        dt = time.monotonic() - t0
    status_line, _, rest = got.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), got
    assert b"connection: close" in rest.lower()
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "request_timeout" and "within 3 s" in body["error"]["message"]
    assert 2.5 < dt < 10, dt
    assert chat(served, "red_circle.png", QUESTIONS[0]).choices[0].message.content  # still serving


def test_slow_head_is_closed(served):
    """A client trickling its request head (a header byte every 0.25 s) has its connection closed
    once the request timeout passes; a head sent in pieces within it is served, and the same
    connection serves a second request after the first (keep-alive)."""
    import socket

    with socket.create_connection(("127.0.0.1", served.server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        t0 = time.monotonic()
        sock.settimeout(0.25)
        closed = False
        while time.monotonic() - t0 < 15 and not closed:
            try:
                sock.sendall(b"a")
                closed = sock.recv(65536) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
        dt = time.monotonic() - t0
    assert closed and 2.5 < dt < 10, dt
    with socket.create_connection(("127.0.0.1", served.server.port), timeout=TIMEOUT) as sock:
        for _ in range(2):  # a head in pieces, twice on one connection
            for piece in (b"GET /health HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
                sock.sendall(piece)
                time.sleep(0.3)
            got = b""
            while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                assert chunk, got
                got += chunk
            assert got.startswith(b"HTTP/1.1 200"), got
        time.sleep(2)  # idle less than keep-alive's 5 s after a response: still open for a third
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


# ---- models, routes, keys ----


def test_models_and_routes(served):
    assert [m.id for m in served.client.models.list().data] == [NAME]
    assert served.client.models.retrieve(NAME).id == NAME
    with pytest.raises(openai.NotFoundError):
        served.client.models.retrieve("gpt-4")
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        served.client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    r = http().get(served.base + "/v1/nothing", headers=AUTH)
    assert r.status_code == 404 and "unknown route" in r.json()["error"]["message"]
    r = http().get(served.base + "/v1/chat/completions", headers=AUTH)
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"


def test_api_key(served):
    bad = openai.OpenAI(base_url=served.base + "/v1", api_key="wrong", timeout=TIMEOUT, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "hi"}])
    for path in ("/v1/models", "/metrics", "/v1/nothing"):
        r = http().get(served.base + path)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", path
    r = http().post(served.base + "/v1/completions", json={"model": NAME, "prompt": "hi"})
    assert r.status_code == 401
    assert http().get(served.base + "/v1/models", headers={"Authorization": "Bearer"}).status_code == 401
    assert http().get(served.base + "/health").status_code == 200  # no key needed


# ---- bad requests and limits ----

_TEXT = [{"role": "user", "content": "hi"}]


def _bad_cases(s) -> list[tuple[str, object, int, str, str | None]]:
    """(path, body, status, text in the message, param)."""
    red = s.urls["red_circle.png"]
    return [
        ("/v1/chat/completions", b'{"model": "demo", "messages": [', 400, "not valid JSON", None),
        ("/v1/chat/completions", b"", 400, "empty", None),
        ("/v1/chat/completions", b"[" * 100000 + b"]" * 100000, 400, "nest too deeply", None),
        ("/v1/chat/completions", b'{"model": "demo", "seed": ' + b"9" * 5000 + b"}", 400, "not valid JSON", None),
        ("/v1/chat/completions", b"[1, 2]", 400, "JSON object", None),
        ("/v1/chat/completions", {"model": NAME, "messages": _TEXT, "foo": 1}, 400, "unknown field 'foo'", "foo"),
        ("/v1/chat/completions", {"messages": _TEXT}, 400, "'model' is required", "model"),
        ("/v1/chat/completions", {"model": NAME, "messages": []}, 400, "non-empty", "messages"),
        ("/v1/chat/completions", {"model": NAME, "messages": [{"role": "robot", "content": "x"}]}, 400, "role", None),
        # a field name that UTF-8 cannot encode (a lone surrogate): 400 naming it, as any other
        (
            "/v1/completions",
            b'{"model": "demo", "prompt": "hi", "\\udfff": 1}',
            400,
            "unknown field '\\udfff'",
            "\udfff",
        ),
        (
            "/v1/chat/completions",
            {"model": NAME, "messages": [{"role": "user", "content": []}]},
            400,
            "messages[0].content is an empty array",
            "messages",
        ),
        ("/v1/chat/completions", {"model": NAME, "messages": _TEXT, "temperature": "hot"}, 400, "temperature", None),
        ("/v1/chat/completions", {"model": NAME, "messages": _TEXT, "n": 0}, 400, "n must be", "n"),
        ("/v1/chat/completions", {"model": NAME, "messages": _TEXT, "stream": "yes"}, 400, "stream", "stream"),
        (
            "/v1/chat/completions",
            {"model": NAME, "messages": _TEXT, "response_format": {"type": "json_object"}},
            400,
            "not supported",
            "response_format",
        ),
        (
            "/v1/chat/completions",
            {"model": NAME, "messages": _TEXT, "tools": [{"type": "function"}]},
            400,
            "tool",
            "tools",
        ),
        ("/v1/chat/completions", {"model": NAME, "messages": _TEXT, "top_logprobs": 2}, 400, "logprobs", None),
        (
            "/v1/chat/completions",
            {"model": NAME, "messages": image_msgs("data:image/png;base64,!!notbase64!!", "hi")},
            400,
            "base64",
            "messages",
        ),
        (
            "/v1/chat/completions",
            {"model": NAME, "messages": image_msgs(data_url(b"not an image at all"), "hi")},
            400,
            "not an image",
            "messages",
        ),
        (
            "/v1/chat/completions",
            {"model": NAME, "messages": image_msgs("https://example.com/cat.png", "hi")},
            400,
            "--allow-remote-images",
            "messages",
        ),
        (
            "/v1/chat/completions",
            {"model": NAME, "messages": image_msgs(str(EXAMPLES / "red_circle.png"), "hi")},
            400,
            "--allow-local-images",
            "messages",
        ),
        (
            "/v1/chat/completions",
            {
                "model": NAME,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": red}} for _ in range(3)]
                        + [{"type": "text", "text": "hi"}],
                    }
                ],
            },
            400,
            "too many images",
            "messages",
        ),
        (
            "/v1/chat/completions",
            {"model": NAME, "messages": image_msgs(data_url(png(320, 320)), "hi")},
            400,
            "102400 pixels",
            "messages",
        ),
        (  # header of a bomb, under Pillow's own limit: refused from the header before decoding
            "/v1/chat/completions",
            {"model": NAME, "messages": image_msgs(data_url(png_claiming(8000, 8000)), "hi")},
            400,
            "64000000 pixels",
            "messages",
        ),
        (  # past Pillow's own bomb limit: this server's limit named, not Pillow's
            "/v1/chat/completions",
            {"model": NAME, "messages": image_msgs(data_url(png_claiming(60000, 60000)), "hi")},
            400,
            "more pixels than this server's limit of 90000 pixels",
            "messages",
        ),
        (  # formats a server should not decode (EPS runs Ghostscript), whatever the mime type says
            "/v1/chat/completions",
            {"model": NAME, "messages": image_msgs(data_url(eps(), "image/png"), "hi")},
            400,
            "not an image this server can read (PNG, JPEG, WebP, GIF or BMP)",
            "messages",
        ),
        (
            "/v1/chat/completions",
            {"model": NAME, "messages": image_msgs(data_url(encoded(8, 8, "TIFF"), "image/tiff"), "hi")},
            400,
            "not an image this server can read",
            "messages",
        ),
        (  # under the pixel limit, over the engine's side limit: the part is named
            "/v1/chat/completions",
            {"model": NAME, "messages": image_msgs(data_url(png(1, 70000)), "hi")},
            400,
            "messages[0].content[0]: image: size 1x70000 is out of range",
            "messages",
        ),
        (
            "/v1/chat/completions",
            {"model": NAME, "messages": [{"role": "user", "content": "word " * 400}]},
            400,
            "more than this server's limit of 300 prompt tokens",
            "messages",
        ),
        (
            "/v1/completions",
            {"model": NAME, "prompt": "word " * 400},
            400,
            "more than this server's limit of 300 prompt tokens",
            "prompt",
        ),
        (  # 8 slots + 32 queued: n = 41 can never run, "busy, retry later" would be a lie
            "/v1/chat/completions",
            {"model": NAME, "messages": _TEXT, "n": 41},
            400,
            "n = 41 is more choices than this server can hold at once: at most 40",
            "n",
        ),
        (
            "/v1/chat/completions",
            {
                "model": NAME,
                "messages": [
                    {"role": "system", "content": [{"type": "image_url", "image_url": {"url": red}}]},
                    {"role": "user", "content": "What color is the shape?"},
                ],
            },
            400,
            "images are allowed only in user messages",
            "messages",
        ),
        (
            "/v1/chat/completions",
            {"model": NAME, "messages": [{"role": "user", "content": ["hi"]}]},
            400,
            "each content part must be an object with a 'type'",
            "messages",
        ),
        ("/v1/completions", {"model": NAME, "prompt": "hi", "suffix": "x"}, 400, "suffix", "suffix"),
        ("/v1/completions", {"model": NAME, "prompt": "hi", "logprobs": 50}, 400, "logprobs", "logprobs"),
        ("/v1/completions", {"model": NAME, "prompt": ["a", "b"]}, 400, "one prompt", "prompt"),
        ("/v1/completions", {"model": NAME, "prompt": [1, 10**9]}, 400, "vocabulary", "prompt"),
        ("/v1/completions", {"model": NAME, "prompt": "hi", "messages": _TEXT}, 400, "unknown field", "messages"),
        # a client sets template variables, never the template, tools or the renderer's private options
        *(
            (
                "/v1/chat/completions",
                {"model": NAME, "messages": _TEXT, "chat_template_kwargs": {name: value}},
                400,
                f"chat_template_kwargs: {name!r} is not a template variable",
                "chat_template_kwargs",
            )
            for name, value in (
                ("template", "{{ 'hello ' * 5000000 }}"),
                ("tools", [{"type": "function", "function": {"name": "f"}}]),
                ("_check_keywords", True),
                ("images", []),
            )
        ),
        (
            "/v1/chat/completions",
            {"model": NAME, "messages": _TEXT, "chat_template_kwargs": [1]},
            400,
            "must be an object",
            "chat_template_kwargs",
        ),
        # a history of tool calls (this server does no tool calling), a message without content
        (
            "/v1/chat/completions",
            {
                "model": NAME,
                "messages": [
                    *_TEXT,
                    {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function"}]},
                ],
            },
            400,
            "messages[1]: 'tool_calls' is not supported",
            "messages",
        ),
        (
            "/v1/chat/completions",
            {"model": NAME, "messages": [*_TEXT, {"role": "tool", "content": "42", "tool_call_id": "c"}]},
            400,
            "messages[1]: a tool message is not supported",
            "messages",
        ),
        (
            "/v1/chat/completions",
            {"model": NAME, "messages": [*_TEXT, {"role": "assistant", "content": None}]},
            400,
            "messages[1].content is required",
            "messages",
        ),
    ]


def test_bad_requests_are_400_with_a_message(served):
    for path, body, status, text, param in _bad_cases(served):
        r = post(served.base, path, body)
        err = r.json()["error"]
        assert r.status_code == status, (body if isinstance(body, bytes) else json.dumps(body)[:200], r.text)
        assert text in err["message"], (text, err)
        assert err["type"] == "invalid_request_error"
        if param is not None:
            assert err["param"] == param, err
    # the openai client raises BadRequestError with the message
    with pytest.raises(openai.BadRequestError, match="unknown field 'bogus'"):
        served.client.chat.completions.create(model=NAME, messages=_TEXT, extra_body={"bogus": True})


def test_an_error_keeps_the_connection(served):
    """A request whose error message repeats a string UTF-8 cannot encode (a lone surrogate in a
    field name) was a 500 and a dropped keep-alive connection: the next request on it failed."""
    with httpx.Client(timeout=TIMEOUT, headers={"content-type": "application/json", **AUTH}) as c:
        bad = b'{"model": "demo", "messages": [{"role": "user", "content": "hi"}], "\\ud800x": 1}'
        r = c.post(served.base + "/v1/chat/completions", content=bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_field", r.text
        ok = {"model": NAME, "messages": _TEXT, "max_tokens": 2, "temperature": 0}
        assert c.post(served.base + "/v1/chat/completions", json=ok).status_code == 200
        assert c.head(served.base + "/health").status_code == 200  # HEAD, as health checkers send


def test_template_variables_override_the_special_tokens(served):
    """chat_template_kwargs may set bos_token / eos_token (chat.render's contract); it was a 400
    about a keyword given twice."""
    tmpl = "{{ bos_token }}|{{ messages[0]['content'] }}|{{ eos_token }}"
    m = served.model
    assert m.render_chat(_TEXT, template=tmpl, bos_token="<B>", eos_token="<E>") == f"<B>|{_TEXT[0]['content']}|<E>"
    default = m.render_chat(_TEXT, template=tmpl)
    assert default.startswith(m.render_chat(_TEXT, template="{{ bos_token }}") + "|")
    body = {"model": NAME, "messages": _TEXT, "max_tokens": 2, "chat_template_kwargs": {"bos_token": "x"}}
    assert post(served.base, "/v1/chat/completions", body).status_code == 200


def test_body_too_large_is_413(served):
    big = {"model": NAME, "messages": image_msgs(data_url(b"\0" * (1 << 20)), "hi")}
    r = post(served.base, "/v1/chat/completions", big)
    assert r.status_code == 413 and "limit of 1048576 bytes" in r.json()["error"]["message"]

    def chunked():  # no Content-Length: the limit is enforced while reading
        payload = json.dumps(big).encode()
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    r = httpx.post(
        served.base + "/v1/chat/completions",
        content=chunked(),
        headers={"content-type": "application/json", **AUTH},
        timeout=TIMEOUT,
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert chat(served, "red_circle.png", QUESTIONS[0]).choices[0].message.content  # still serving


# ---- disconnects and overload (long generations: SmolLM2 counting) ----

COUNT = "1, 2, 3, 4, 5,"  # SmolLM2 counts on greedily for hundreds of tokens without ending


@pytest.fixture(scope="module")
def counting(smollm2_path):
    from pyakvq.batch import BatchEngine

    m = pyakvq.Model(str(smollm2_path), n_ctx=2048)
    engine = BatchEngine(m, n_parallel=1, max_queue=1)
    srv = RunningServer(create_app(m, engine, ServerConfig(model_name="smol", api_key=KEY))).start()
    s = Served()
    s.base, s.engine, s.model = srv.base_url, engine, m
    s.client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key=KEY, timeout=TIMEOUT, max_retries=0)
    yield s
    srv.stop()
    engine.close()
    m.close()


LONG = {"model": "smol", "prompt": COUNT, "max_tokens": 1500, "temperature": 0}


def test_prompt_that_fills_the_context(counting):
    # as many prompt tokens as the context holds: refused for want of room, not called "more"
    for n in (2048, 2100):
        auth = {"Authorization": f"Bearer {KEY}"}
        r = post(counting.base, "/v1/completions", {"model": "smol", "prompt": [1] * n}, auth)
        err = r.json()["error"]
        assert r.status_code == 400 and err["code"] == "context_length_exceeded", r.text
        want = f"the prompt has {n} tokens: the context size of 2048 tokens leaves no room for the reply"
        assert want in err["message"], err


def test_text_parts_to_a_text_model(counting):
    # the openai client's list-of-parts content reaches SmolLM2's template (which concatenates
    # strings) as one string: the same answer as the string content, from the server and from Python
    parts = [{"type": "text", "text": "What is the capital of France?"}, {"type": "text", "text": "One word."}]
    joined = "What is the capital of France?\nOne word."
    ask = lambda content: counting.client.chat.completions.create(  # noqa: E731
        model="smol", messages=[{"role": "user", "content": content}], max_tokens=6, temperature=0
    ).choices[0].message.content
    got = ask(parts)
    assert got and got == ask(joined)
    assert got == counting.model.chat([{"role": "user", "content": parts}], max_tokens=6, temperature=0)


def test_disconnect_while_streaming_frees_the_slot(counting):
    before = metrics(counting.base)["pyakvq_generated_tokens_total"]
    stream = counting.client.completions.create(stream=True, **LONG)
    text = ""
    for ch in stream:
        text += ch.choices[0].text
        if text.count(",") >= 3:
            break
    assert re.match(r"^ 6, 7, 8", text), text
    stream.close()  # the client goes away mid-stream
    assert wait_metric(counting.base, "pyakvq_requests_running", lambda v: v == 0) == 0
    generated = metrics(counting.base)["pyakvq_generated_tokens_total"] - before
    assert generated < LONG["max_tokens"] / 3, generated  # cancelled, not run to the end
    assert metrics(counting.base)["pyakvq_client_disconnects_total"] >= 1


def test_disconnect_while_waiting_frees_the_slot(counting):
    closed = 'pyakvq_http_requests_total{route="/v1/completions",status="499"}'
    failed = 'pyakvq_http_requests_total{route="/v1/completions",status="500"}'
    before = metrics(counting.base)
    with pytest.raises(httpx.ReadTimeout):
        post(counting.base, "/v1/completions", LONG, timeout=0.5)  # non-streaming: the client gives up
    assert wait_metric(counting.base, "pyakvq_requests_running", lambda v: v == 0) == 0
    n = before.get(closed, 0) + 1
    assert wait_metric(counting.base, closed, lambda v: v == n) == n  # 499 "client closed request"
    after = metrics(counting.base)
    assert after.get(failed, 0) == before.get(failed, 0)  # not a server error
    assert after["pyakvq_generated_tokens_total"] - before["pyakvq_generated_tokens_total"] < LONG["max_tokens"] / 2
    assert after["pyakvq_client_disconnects_total"] == before["pyakvq_client_disconnects_total"] + 1


def test_full_queue_is_503(counting):
    running = counting.client.completions.create(stream=True, **LONG)
    next(iter(running))  # it holds the only slot
    queued = counting.client.completions.create(stream=True, **LONG)  # waits in the queue (max_queue=1)
    assert wait_metric(counting.base, "pyakvq_requests_queued", lambda v: v == 1) == 1
    with pytest.raises(openai.InternalServerError) as e:  # 503
        counting.client.completions.create(**LONG)
    assert e.value.status_code == 503 and "busy" in str(e.value)
    assert e.value.response.headers["retry-after"] == "1"  # when to come back
    assert "[batch]" not in str(e.value)  # the engine's prefix is not the client's business
    queued.close()  # a queued request whose client goes away leaves the queue
    running.close()
    assert wait_metric(counting.base, "pyakvq_requests_queued", lambda v: v == 0) == 0
    assert wait_metric(counting.base, "pyakvq_requests_running", lambda v: v == 0) == 0
    r = counting.client.completions.create(model="smol", prompt=COUNT, max_tokens=12, temperature=0)
    assert r.choices[0].text.startswith(" 6, 7, 8") and r.choices[0].finish_reason == "length"


# ---- the command line ----


def test_parse_bytes():
    from pyakvq.server import parse_bytes

    assert parse_bytes("1048576") == 1 << 20
    assert parse_bytes("512M") == 512 << 20 and parse_bytes("512MiB") == 512 << 20 and parse_bytes("2g") == 2 << 30
    assert parse_bytes("1.5G") == 3 << 29 and parse_bytes("64k") == 64 << 10 and parse_bytes("1TB") == 1 << 40
    for bad in ("", "12X", "-1", "0", "1.2.3M", "M"):
        with pytest.raises(ValueError, match="byte count"):
            parse_bytes(bad)


def test_serve_flags(capsys):
    from pyakvq.__main__ import build_parser, main

    a = build_parser().parse_args(["serve", "--kv-memory", "256M", "--parallel", "3", "--kv-opt", "window=64"])
    assert (a.batch, a.act_bits, a.request_timeout) == (256, 16, 60.0)
    assert build_parser().parse_args(["serve", "--request-timeout", "2.5"]).request_timeout == 2.5
    assert (a.kv_memory, a.parallel, a.host, a.port, a.api_key, a.allow_remote_images) == (
        256 << 20,
        3,
        "127.0.0.1",  # loopback unless asked
        8000,
        None,
        False,
    )
    for argv, text in (
        (["serve", "--kv-memory", "lots"], "--kv-memory"),
        (["serve", "--port", "70000"], "--port"),
        (["serve", "--parallel", "0"], "--parallel"),
        (["serve", "-b", "0"], "--batch-size"),
        (["serve", "--act-bits", "4"], "--act-bits"),
        (["serve", "--request-timeout", "0"], "--request-timeout"),
        (["serve", "--request-timeout", "inf"], "--request-timeout"),
        (["serve", "--request-timeout", "soon"], "--request-timeout"),
    ):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("pyakvq serve: error:") and text in err and "\n" not in err
    with pytest.raises(SystemExit) as e:  # parsing only: a regression must not start a server
        build_parser().parse_args(["serve", "--api-key", ""])  # an empty key would let "Bearer " in
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pyakvq serve: error:") and "--api-key" in err and "empty" in err and "\n" not in err
    from pyakvq.server.cli import api_key_of, uvicorn_options

    assert api_key_of(None, {"AKVQ_API_KEY": ""}) is None  # empty: no key, as when unset
    assert api_key_of(None, {"AKVQ_API_KEY": "  "}) is None
    assert api_key_of(None, {}) is None
    assert api_key_of(None, {"AKVQ_API_KEY": "k1"}) == "k1" and api_key_of("k2", {"AKVQ_API_KEY": "k1"}) == "k2"
    with pytest.raises(ValueError, match="api_key is empty"):
        create_app(None, None, ServerConfig(api_key=""))
    for t in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="request_timeout"):
            create_app(None, None, ServerConfig(request_timeout=t))
    # idle connections must not shut out the service: uvicorn's limit is far above the engine's
    opts = uvicorn_options(4, 64)
    assert opts["limit_concurrency"] >= 4096 and opts["timeout_keep_alive"] == 5
    assert main(["serve", "-m", "/nonexistent/model.gguf"]) == 2
    assert "no such file" in capsys.readouterr().err
    for argv, text in (
        (["--model-name", " "], "--model-name is empty"),
        (["-c", "512", "--max-prompt-tokens", "600"], "--max-prompt-tokens 600 is larger than the context (-c 512)"),
    ):
        assert main(["serve", "--port", "0", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("pyakvq serve: error:") and text in err and "\n" not in err, err
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
        err = capsys.readouterr().err
        # the busy port is the one line, before the model loads (no warning from a loaded model)
        assert err.strip() == f"pyakvq serve: error: cannot listen on 127.0.0.1:{port} (Address already in use)", err


def test_pyakvq_serve_command():
    """`python -m pyakvq serve` end to end: starts on a free port, answers with the key, stops on SIGINT."""
    import signal
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "pyakvq",
        "serve",
        "--port",
        "0",
        "--api-key",
        KEY,
        "--parallel",
        "2",
        "-c",
        "2560",
        "-b",
        "16",
    ]
    from test_pyakvq_cli import PKG_PARENT, _env  # the child runs the pyakvq under test, not the source tree's

    proc = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env(), cwd=PKG_PARENT
    )
    try:
        port, seen = wait_for_port(proc, r"as 'demo-vlm', .* http://127\.0\.0\.1:(\d+)/v1$")
        assert port, "".join(seen)
        # -c 2560 asks for more than the demo model's training context (2048): one warning (none when
        # -c is not given, though the default 4096 is larger too: test_serve_flags)
        (warning,) = [x for x in seen if "warning" in x]
        assert "context size 2560 (-c)" in warning and "2048 tokens" in warning, warning
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, timeout=TIMEOUT, max_retries=0)
        r = client.chat.completions.create(
            model="demo-vlm",
            messages=image_msgs(data_url((EXAMPLES / "red_circle.png").read_bytes()), QUESTIONS[0]),
            temperature=0,
        )
        assert "red" in r.choices[0].message.content.lower()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_image_sources_when_allowed(served):
    """--allow-local-images and --allow-remote-images: paths, file:// and http:// URLs (from a local
    HTTP server) give the same answer as the data URL; what cannot be read is a 400."""
    import http.server
    import threading

    quiet = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: quiet(*a, directory=str(EXAMPLES)))
    threading.Thread(target=files.serve_forever, daemon=True).start()
    cfg = ServerConfig(model_name=NAME, allow_local_images=True, allow_remote_images=True, remote_timeout=5.0, **LIMITS)
    srv = RunningServer(create_app(served.model, served.engine, cfg)).start()
    try:
        client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="unused", timeout=TIMEOUT, max_retries=0)
        path = EXAMPLES / "green_triangle.png"
        expected = served.refs[("green_triangle.png", QUESTIONS[0])]
        remote = f"http://127.0.0.1:{files.server_address[1]}/green_triangle.png"
        for url in (str(path), path.as_uri(), remote):
            r = client.chat.completions.create(model=NAME, messages=image_msgs(url, QUESTIONS[0]), temperature=0)
            assert r.choices[0].message.content == expected, url
        for url, text in (
            (str(EXAMPLES / "missing.png"), "no such image file"),
            (f"http://127.0.0.1:{files.server_address[1]}/missing.png", "cannot fetch"),
            ("ftp://example.com/x.png", "unsupported image URL scheme"),
        ):
            with pytest.raises(openai.BadRequestError, match=text):
                client.chat.completions.create(model=NAME, messages=image_msgs(url, QUESTIONS[0]))
    finally:
        srv.stop()
        files.shutdown()
        files.server_close()


def test_completions_max_tokens_null_is_the_default_16(counting):
    """OpenAI's legacy completions: max_tokens "integer or null, defaults to 16"."""
    auth = {"Authorization": f"Bearer {KEY}"}
    body = {"model": "smol", "prompt": COUNT, "temperature": 0}
    omitted = post(counting.base, "/v1/completions", body, auth).json()
    null = post(counting.base, "/v1/completions", {**body, "max_tokens": None}, auth).json()
    assert omitted["usage"]["completion_tokens"] == null["usage"]["completion_tokens"] == 16
    assert null["choices"][0]["text"] == omitted["choices"][0]["text"]
    assert null["choices"][0]["finish_reason"] == "length"


def test_completion_text_offsets_count_from_the_prompt(counting):
    """Legacy logprobs: text_offset counts characters from the start of the prompt, echoed or not."""
    r = counting.client.completions.create(model="smol", prompt=COUNT, max_tokens=5, temperature=0, logprobs=1)
    lp, text = r.choices[0].logprobs, r.choices[0].text
    assert lp.text_offset[0] == len(COUNT)
    assert all((COUNT + text)[o : o + len(t)] == t for o, t in zip(lp.text_offset, lp.tokens, strict=True))
    ids = counting.model.tokenize(COUNT)
    by_ids = counting.client.completions.create(model="smol", prompt=ids, max_tokens=5, temperature=0, echo=True)
    assert by_ids.choices[0].text == counting.model.detokenize(ids, render_special=True) + text


def test_echo_with_logprobs_scores_the_prompt(counting):
    """lm-eval's loglikelihood request: token ids, echo, logprobs 1, max_tokens 0: the prompt's
    own log probabilities (the first null), as the Python API computes them."""
    ids = counting.model.tokenize("The capital of France is Paris")
    r = counting.client.completions.create(model="smol", prompt=ids, max_tokens=0, echo=True, logprobs=1)
    lp = r.choices[0].logprobs
    assert r.usage.completion_tokens == 0 and r.choices[0].text == counting.model.detokenize(ids)
    assert len(lp.tokens) == len(ids) and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    want = counting.model.create_completion(ids, max_tokens=1, echo=True, logprobs=1, temperature=0)["choices"][0]
    assert lp.token_logprobs == want["logprobs"]["token_logprobs"][: len(ids)]
    assert lp.text_offset == want["logprobs"]["text_offset"][: len(ids)]
    assert all(v < 0 for v in lp.token_logprobs[1:])
