"""`pyakvq serve` under misbehaving load, as an operator meets it: image requests whose images
arrive slowly (a local HTTP server trickles them), clients that leave while their request is
prepared, a streaming client that stops reading, prompts far over the limit, the server stopping
with requests in flight. Each case checks what the server must not do (hold up other requests,
keep working for a client that left, buffer without bound, answer in plain text) through the
official `openai` client, raw sockets and /metrics. Every HTTP call has a timeout."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.server
import json
import logging
import pathlib
import socket
import sys
import threading
import time

import httpx
import openai
import pytest
from server_harness import RunningServer, read_metrics, wait_for_port

import pyakvq
from pyakvq.server import ServerConfig, create_app

ROOT = pathlib.Path(__file__).resolve().parents[2]
RED = (ROOT / "examples" / "red_circle.png").read_bytes()
TIMEOUT = 30.0
COUNT = "1, 2, 3, 4, 5,"  # SmolLM2 counts on greedily for hundreds of tokens without ending


def metric(base: str, name: str) -> float:
    """The value of `name` in /metrics (0 when absent)."""
    return read_metrics(base, timeout=TIMEOUT).get(name, 0.0)


def wait_for(pred, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)  # polling interval
    return pred()


class Trickle:
    """An HTTP server whose /slow.png sends a PNG's first bytes and then one byte every 50 ms until
    `release` is set (then the rest) or the fetcher closes the connection; /fast.png is the whole
    PNG at once. `open` counts the /slow.png transfers in progress, `started` all of them,
    `dropped` those the fetcher closed before the end."""

    def __init__(self):
        self.release = threading.Event()
        self.open = 0
        self.started = 0
        self.dropped = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(RED)))
                self.end_headers()
                if self.path != "/slow.png":
                    self.wfile.write(RED)
                    return
                with outer.lock:
                    outer.open += 1
                    outer.started += 1
                try:
                    self.wfile.write(RED[:64])
                    self.wfile.flush()
                    for i in range(64, len(RED) - 1):
                        if outer.release.is_set():
                            self.wfile.write(RED[i:])
                            break
                        self.wfile.write(RED[i : i + 1])
                        self.wfile.flush()
                        time.sleep(0.05)  # the trickle's pace
                except OSError:
                    with outer.lock:
                        outer.dropped += 1
                finally:
                    with outer.lock:
                        outer.open -= 1

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def demo():
    m = pyakvq.Model(n_ctx=1024)
    yield m
    m.close()


def image_body(url: str) -> dict:
    parts = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What color is the shape?"}]
    return {"model": "demo", "messages": [{"role": "user", "content": parts}], "max_tokens": 4, "temperature": 0}


def raw_post(port: int, path: str, body: dict) -> socket.socket:
    """Sends a POST on a new connection and returns the socket without reading the answer."""
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    s.sendall(head.encode() + data)
    return s


def test_image_preparation_holds_up_no_text_request_and_stops_with_its_client(demo):
    from pyakvq.batch import BatchEngine

    trickle = Trickle()
    engine = BatchEngine(demo, n_parallel=2, max_queue=4)  # 6 choices at once
    cfg = ServerConfig(model_name="demo", allow_remote_images=True, remote_timeout=60.0, request_timeout=30.0)
    srv = RunningServer(create_app(demo, engine, cfg)).start()
    socks: list[socket.socket] = []
    try:
        slow = image_body(trickle.url + "/slow.png")
        # four requests whose images trickle in: every image-preparation thread is busy with one
        socks = [raw_post(srv.port, "/v1/chat/completions", slow) for _ in range(4)]
        assert wait_for(lambda: trickle.open == 4), trickle.open
        # a text request is prepared on its own threads and answered meanwhile
        t0 = time.monotonic()
        r = httpx.post(
            srv.base_url + "/v1/completions",
            json={"model": "demo", "prompt": "red", "max_tokens": 2, "temperature": 0},
            timeout=TIMEOUT,
        )
        assert r.status_code == 200, r.text
        assert trickle.open == 4 and time.monotonic() - t0 < TIMEOUT
        # two more fill the slots and queue (admitted, waiting for a thread); the next is refused
        # at once with 503, before anything of it is fetched
        socks += [raw_post(srv.port, "/v1/chat/completions", slow) for _ in range(2)]
        time.sleep(0.3)  # the two are admitted (they do not answer while their images are pending)
        r = httpx.post(
            srv.base_url + "/v1/chat/completions", json=image_body(trickle.url + "/fast.png"), timeout=TIMEOUT
        )
        assert r.status_code == 503 and r.json()["error"]["code"] == "queue_full", r.text
        assert r.headers["retry-after"] == "1"
        before = engine.stats()
        # the six clients go away: the four transfers are dropped, the two waiting requests never
        # start theirs, and none reaches the engine
        for s in socks:
            s.close()
        assert wait_for(lambda: trickle.dropped == 4 and trickle.open == 0), (trickle.dropped, trickle.open)
        gone = 'pyakvq_http_requests_total{route="/v1/chat/completions",status="499"}'
        assert wait_for(lambda: metric(srv.base_url, gone) == 6)
        after = engine.stats()
        assert after["requests_total"] == before["requests_total"]
        assert after["prompt_tokens_total"] == before["prompt_tokens_total"]
        assert trickle.started == 4
        # and the server takes image requests again (capacity back)
        trickle.release.set()
        r = httpx.post(
            srv.base_url + "/v1/chat/completions", json=image_body(trickle.url + "/fast.png"), timeout=TIMEOUT
        )
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"], r.text
    finally:
        for s in socks:
            s.close()
        srv.stop()
        engine.close()
        trickle.close()


def test_remote_image_has_a_deadline_for_the_whole_transfer(demo):
    from pyakvq.batch import BatchEngine

    trickle = Trickle()  # sends a byte every 50 ms: each read succeeds, the whole never ends
    engine = BatchEngine(demo, n_parallel=1, max_queue=1)
    cfg = ServerConfig(model_name="demo", allow_remote_images=True, remote_timeout=1.0)
    srv = RunningServer(create_app(demo, engine, cfg)).start()
    try:
        client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="x", timeout=TIMEOUT, max_retries=0)
        t0 = time.monotonic()
        with pytest.raises(openai.BadRequestError, match="did not arrive within 1 s"):
            client.chat.completions.create(**image_body(trickle.url + "/slow.png"))
        assert time.monotonic() - t0 < 10.0  # a whole transfer takes ~100 s at this pace
        assert wait_for(lambda: trickle.open == 0)
    finally:
        srv.stop()
        engine.close()
        trickle.close()


def test_a_client_gone_during_preparation_is_499_whenever_the_preparation_notices(counting, monkeypatch):
    """The preparation sees the client gone (check() raises) in the moment between the disconnect
    watcher's end and the request's own look at the preparation: still a 499, never the 500 and
    traceback it was. A preparation that checks in a tight loop makes that moment the usual case."""
    srv, _engine = counting
    model = srv.app.state.model
    started = threading.Event()

    def spin(messages, _check, **kw):
        started.set()
        while True:
            _check()

    monkeypatch.setattr(model, "_chat_input", spin)
    # the preparation thread takes the GIL as often as it can: it sees `gone` while the request's
    # coroutine is still between its awaits (with the default 5 ms the moment was ~1 in 150)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        _abort_preparations(srv, 40, started)
    finally:
        sys.setswitchinterval(interval)
    gone = 'pyakvq_http_requests_total{route="/v1/chat/completions",status="499"}'
    assert wait_for(lambda: metric(srv.base_url, gone) == 40), read_metrics(srv.base_url, timeout=TIMEOUT)
    failed = 'pyakvq_http_requests_total{route="/v1/chat/completions",status="500"}'
    assert metric(srv.base_url, failed) == 0


def _abort_preparations(srv, n: int, started: threading.Event) -> None:
    """n chat requests, each closed by its client once its preparation has started."""
    body = {"model": "smol", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    for _ in range(n):
        started.clear()
        s = raw_post(srv.port, "/v1/chat/completions", body)
        assert started.wait(TIMEOUT)
        s.close()


@pytest.fixture()
def counting(smollm2_path):
    """SmolLM2 behind a server with a 2 s request timeout (also the deadline of a stream's sends)."""
    from pyakvq.batch import BatchEngine

    m = pyakvq.Model(str(smollm2_path), n_ctx=2048)
    engine = BatchEngine(m, n_parallel=4, max_queue=4)
    srv = RunningServer(create_app(m, engine, ServerConfig(model_name="smol", request_timeout=2.0))).start()
    yield srv, engine
    srv.stop()
    engine.close()
    m.close()


def test_a_stream_nobody_reads_is_dropped_and_its_slots_freed(counting):
    """Driven as ASGI (the kernel's socket buffers would otherwise hold megabytes of a stalled
    stream first): after a few chunks the client's receive window is shut, so `send` never
    returns; after the 2 s deadline the sequences are cancelled and the response is left
    incomplete (uvicorn then drops the connection)."""
    srv, engine = counting
    app = srv.app
    body = json.dumps({"model": "smol", "prompt": COUNT, "max_tokens": 1500, "temperature": 0, "stream": True, "n": 2})
    data = body.encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/completions",
        "raw_path": b"/v1/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", srv.port),
    }
    sent: list[dict] = []
    before = engine.stats()["generated_tokens_total"]

    async def main() -> None:
        incoming = [{"type": "http.request", "body": data, "more_body": False}]
        never = asyncio.Event()

        async def receive() -> dict:
            if incoming:
                return incoming.pop(0)
            await never.wait()  # the client stays connected
            return {"type": "http.disconnect"}

        async def send(msg: dict) -> None:
            sent.append(msg)
            if len(sent) > 8:
                await never.wait()  # the client reads no more

        await asyncio.wait_for(app(scope, receive, send), TIMEOUT)

    t0 = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - t0 < 20.0  # the 2 s deadline, not the 2 x 1500 tokens
    assert wait_for(lambda: engine.stats()["requests_running"] == 0)
    assert engine.stats()["generated_tokens_total"] - before < 2 * 1500  # cancelled, not run to the end
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert sent[-1].get("more_body") is True  # no end: the response is left incomplete
    assert metric(srv.base_url, "pyakvq_client_disconnects_total") >= 1


def test_a_prompt_far_over_the_limit_is_refused_before_tokenizing(counting):
    srv, _ = counting
    client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="x", timeout=TIMEOUT, max_retries=0)
    prompt = "hello world " * 400_000  # 4.8 MB of text
    with pytest.raises(openai.BadRequestError, match=r"\(4800000 bytes of text\) has at least \d+ tokens") as e:
        client.completions.create(model="smol", prompt=prompt, max_tokens=1)
    assert e.value.code == "context_length_exceeded"
    msgs = [{"role": "user", "content": prompt}]
    with pytest.raises(openai.BadRequestError, match="bytes of text\\) has at least"):
        client.chat.completions.create(model="smol", messages=msgs, max_tokens=1)
    # a prompt just over the limit is counted exactly, from its tokens
    with pytest.raises(openai.BadRequestError, match=r"the prompt has \d+ tokens"):
        client.completions.create(model="smol", prompt="hello world " * 1100, max_tokens=1)


def test_a_trailing_slash_is_an_unknown_route(counting):
    srv, _ = counting
    r = httpx.post(srv.base_url + "/v1/completions/", json={"model": "smol", "prompt": "a"}, timeout=TIMEOUT)
    assert r.status_code == 404 and "unknown route POST /v1/completions/" in r.json()["error"]["message"], r.text


def test_a_busy_server_counts_no_request_it_refused(counting):
    srv, engine = counting
    client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="x", timeout=TIMEOUT, max_retries=0)
    long = {"model": "smol", "prompt": COUNT, "max_tokens": 1500, "temperature": 0}
    streams = [client.completions.create(stream=True, **long) for _ in range(5)]  # 4 running, 1 queued
    try:
        for st in streams[:4]:
            next(iter(st))
        assert wait_for(lambda: engine.stats()["requests_queued"] == 1)
        before = engine.stats()["requests_total"]
        with pytest.raises(openai.InternalServerError) as e:  # n = 4 > the 3 places left
            client.completions.create(n=4, **long)
        assert e.value.status_code == 503 and e.value.code == "queue_full"
        assert engine.stats()["requests_total"] == before  # none of its choices was submitted
    finally:
        for st in streams:
            st.close()


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("tell_app", [True, False], ids=["pyakvq-serve", "plain-uvicorn"])
def test_requests_in_flight_when_the_server_stops_get_an_answer(smollm2_path, tell_app):
    """The server begins to stop (as on Ctrl-C or SIGTERM) while a stream and a plain request
    generate 1900 tokens: after 3 s they are answered, a 503 in the error JSON and an error event
    then `data: [DONE]`, before uvicorn's grace period ends (it cancels nothing). Under a server
    that does not tell the app it stops (plain uvicorn, another ASGI server), the tasks it cancels
    at the end of its grace period give the same answers (they gave uvicorn's plain-text 500)."""
    from pyakvq.batch import BatchEngine

    m = pyakvq.Model(str(smollm2_path), n_ctx=2048)
    engine = BatchEngine(m, n_parallel=2, max_queue=2)
    srv = RunningServer(create_app(m, engine, ServerConfig(model_name="smol")), tell_app=tell_app).start()
    client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="x", timeout=TIMEOUT, max_retries=0)
    long = {"model": "smol", "prompt": COUNT, "max_tokens": 1900, "temperature": 0}
    pool = concurrent.futures.ThreadPoolExecutor(2)
    uvicorn_log = logging.getLogger("uvicorn.error")
    records = _Records()
    uvicorn_log.addHandler(records)
    try:
        stream = client.completions.create(stream=True, **long)
        it = iter(stream)
        first = next(it)
        assert first.choices[0].text
        plain = pool.submit(lambda: httpx.post(srv.base_url + "/v1/completions", json=long, timeout=TIMEOUT))
        assert wait_for(lambda: engine.stats()["requests_running"] == 2)
        rest = pool.submit(lambda: [c for c in it])  # the stream read to its end
        srv.stop(timeout=20.0)
        r = plain.result(TIMEOUT)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "server_shutting_down" and r.headers["retry-after"] == "1"
        with pytest.raises(openai.APIError, match="shutting down"):  # the stream's error event
            rest.result(TIMEOUT)
        cancelled = [x for x in records.messages if "Cancel" in x]
        assert not cancelled if tell_app else cancelled, records.messages
        assert engine.stats()["requests_running"] == 0
    finally:
        uvicorn_log.removeHandler(records)
        pool.shutdown(wait=False)
        srv.stop()
        engine.close()
        m.close()


def test_sigterm_answers_the_requests_in_flight(smollm2_path):
    """`pyakvq serve` stopped by SIGTERM (a service manager) with a request generating: the client
    gets the 503 JSON, not a dropped connection (SIGTERM ends the process once uvicorn has stopped,
    without the clean-up that Ctrl-C's KeyboardInterrupt allows)."""
    import signal
    import subprocess
    import sys

    from test_pyakvq_cli import PKG_PARENT, _env  # the child runs the pyakvq under test

    cmd = [sys.executable, "-m", "pyakvq", "serve", "--port", "0", "-m", str(smollm2_path), "-c", "2048"]
    proc = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env(), cwd=PKG_PARENT
    )
    try:
        port, seen = wait_for_port(proc, r"http://127\.0\.0\.1:(\d+)/v1$")
        assert port, "".join(seen)
        base = f"http://127.0.0.1:{port}"
        long = {"model": pathlib.Path(smollm2_path).stem, "prompt": COUNT, "max_tokens": 1900, "temperature": 0}
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            plain = pool.submit(lambda: httpx.post(base + "/v1/completions", json=long, timeout=TIMEOUT))
            assert wait_for(lambda: metric(base, "pyakvq_requests_running") == 1)
            proc.send_signal(signal.SIGTERM)
            r = plain.result(TIMEOUT)
        assert r.status_code == 503 and r.json()["error"]["code"] == "server_shutting_down", r.text
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
