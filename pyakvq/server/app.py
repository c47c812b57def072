"""The OpenAI-compatible HTTP API over a BatchEngine (FastAPI/Starlette, served by uvicorn).

Routes: POST /v1/chat/completions, POST /v1/completions (Server-Sent Events when "stream" is
true, ending with `data: [DONE]`), GET /v1/models, GET /v1/models/{id}, GET /health, GET /metrics
(Prometheus text). Every route but /health needs the API key when one is set. Errors are the
OpenAI error JSON. A client that goes away (streaming or not, while sending its request, or while
its images and prompt are prepared) has its sequences cancelled, or its preparation stopped, at
once, which frees their engine slots; it is counted in /metrics as a client disconnect and, when no
response had started, with status 499 (nginx's "client closed request"). When the server stops
(create_app's `state.stopping`, set by cli.make_server), generations get STOP_GRACE_S to end, then
a 503 or a stream's error event."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .. import completion_args as _a
from .. import completions as _c
from ..batch import QueueFull
from . import images as _images
from . import requests as _rq
from .config import STOP_GRACE_S, ServerConfig
from .errors import APIError, bad_request, error_body
from .metrics import CONTENT_TYPE, Metrics

ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics")
#: the status counted for a request whose client went away before a response started
CLIENT_CLOSED = 499


def _dumps(obj: Any) -> bytes:
    """`obj` as compact UTF-8 JSON. A string that UTF-8 cannot encode (a lone surrogate that a
    request put in a field name and an error message repeats) is written as a JSON escape."""
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")


class _JSON(JSONResponse):
    """The handlers' JSON responses, rendered by _dumps (Starlette's render fails on a lone
    surrogate, and the client then got a 500 and a dropped connection)."""

    def render(self, content: Any) -> bytes:
        return _dumps(content)


async def _send_json(send: Callable[[dict], Awaitable[None]], status: int, obj: Any, headers=()) -> None:
    body = _dumps(obj)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_shutting_down(send: Callable[[dict], Awaitable[None]]) -> None:
    """The 503 of a request that the server's stop leaves unanswered (error JSON, Retry-After,
    the connection closed)."""
    err = APIError(503, "the server is shutting down; retry later", code="server_shutting_down")
    hdrs = [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
    await _send_json(send, 503, err.body(), [*hdrs, (b"connection", b"close")])


class _Guard:
    """ASGI middleware: counts responses by route and status (499 when the app ended without
    answering: the client went away; 500 when it raised before answering), checks the API key
    (every route but /health) and refuses a declared body larger than the limit (413) before it is
    read."""

    def __init__(self, app: Any, cfg: ServerConfig, metrics: Metrics):
        self.app = app
        self.cfg = cfg
        self.metrics = metrics
        self._key = None if cfg.api_key is None else cfg.api_key.encode("utf-8")

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        for k, v in headers:
            if k.lower() == b"authorization":
                scheme, _, token = v.partition(b" ")
                token = token.strip()
                return scheme.lower() == b"bearer" and bool(token) and hmac.compare_digest(token, self._key)
        return False

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in ROUTES else ("/v1/models/{id}" if path.startswith("/v1/models/") else "other")
        status: list[int | None] = [None]

        async def send_counted(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
            await send(msg)

        try:
            headers = scope.get("headers", [])
            if self._key is not None and path != "/health" and not self._authorized(headers):
                err = error_body(401, "invalid or missing API key (send 'Authorization: Bearer KEY')")
                err["error"]["code"] = "invalid_api_key"
                await _send_json(send_counted, 401, err, [(b"www-authenticate", b"Bearer")])
                return
            for k, v in headers:
                if k.lower() == b"content-length":
                    try:
                        n = int(v)
                    except ValueError:
                        n = -1
                    if n < 0:
                        await _send_json(send_counted, 400, error_body(400, "bad Content-Length header"))
                        return
                    if n > self.cfg.max_body_bytes:
                        await _send_json(
                            send_counted,
                            413,
                            error_body(
                                413,
                                f"the request body ({n} bytes) is larger than this server's limit of "
                                f"{self.cfg.max_body_bytes} bytes",
                                code="request_too_large",
                            ),
                            [(b"connection", b"close")],
                        )
                        return
            await self.app(scope, receive, send_counted)
        except asyncio.CancelledError:
            # the server stops (its grace period over): a request not yet answered gets a 503 in
            # the error JSON, not uvicorn's plain-text 500 and a logged traceback
            if status[0] is None:
                try:
                    await _send_shutting_down(send_counted)
                except Exception:  # noqa: BLE001 - the connection is gone too
                    status[0] = CLIENT_CLOSED
        except BaseException:
            if status[0] is None:
                status[0] = 500
            raise
        finally:
            self.metrics.count(route, CLIENT_CLOSED if status[0] is None else status[0])


async def _wait_disconnect(receive: Any) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return


async def _until_done(task: asyncio.Future, watch: asyncio.Future, stopping: asyncio.Event) -> bool:
    """Waits for `task` or the client's disconnect (`watch`); once the server begins to stop
    (`stopping`), STOP_GRACE_S more at most. True when the stop ended the wait."""
    stop = asyncio.ensure_future(stopping.wait())
    try:
        done, _ = await asyncio.wait({task, watch, stop}, return_when=asyncio.FIRST_COMPLETED)
        if task in done or watch in done:
            return False
        done, _ = await asyncio.wait({task, watch}, timeout=STOP_GRACE_S, return_when=asyncio.FIRST_COMPLETED)
        return not done
    finally:
        stop.cancel()


def _image_index(msg: str) -> int | None:
    """k of an "image k: ..." message (Model's per-image errors), else None."""
    m = re.match(r"image (\d+): ", msg)
    return int(m.group(1)) if m else None


def _cancel_all(sources: list[_c.Source]) -> None:
    for src in sources:
        src.cancel()


async def _drive(builder: _c.ResultBuilder, i: int, src: _c.Source, emit: Callable[[Any], None] | None) -> None:
    """Feeds choice i's tokens to the builder (and its chunks to `emit`)."""
    st = src.stream
    last = None
    async for tok in st:
        last = tok
        c = builder.add(i, tok)
        if emit is not None and c is not None:
            emit(c)
    c = builder.finish(i, getattr(st, "finish_reason", None) or getattr(last, "finish_reason", None))
    if emit is not None:
        emit(c)


def _engine_error(e: BaseException) -> APIError:
    if isinstance(e, APIError):
        return e
    if isinstance(e, (ValueError, TypeError)):
        return bad_request(str(e))
    return APIError(500, f"generation failed: {e}")


class _Generation(Response):
    """A response that runs the generation of its choices (sources) and builds the result."""

    def __init__(
        self,
        builder: _c.ResultBuilder,
        sources: list[_c.Source],
        n_prompt: int,
        prefix: str,
        metrics: Metrics,
        stopping: asyncio.Event,
    ):
        super().__init__()
        self.builder, self.sources, self.n_prompt, self.prefix = builder, sources, n_prompt, prefix
        self.metrics, self.stopping = metrics, stopping


class _Completion(_Generation):
    """A non-streaming completion: generates while watching for the client to go away (then the
    sequences are cancelled and nothing is sent) and for the server to stop (then, after
    STOP_GRACE_S, the sequences are cancelled and the answer is a 503)."""

    async def _work(self) -> dict[str, Any]:
        await asyncio.gather(*(_drive(self.builder, i, s, None) for i, s in enumerate(self.sources)))
        return self.builder.result(self.n_prompt, self.prefix)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        work = asyncio.ensure_future(self._work())
        watch = asyncio.ensure_future(_wait_disconnect(receive))
        stopped = False
        try:
            stopped = await _until_done(work, watch, self.stopping)
        finally:
            if not work.done():
                work.cancel()
                if watch.done():
                    self.metrics.disconnected()
            _cancel_all(self.sources)  # a disconnect, or a choice that failed: the others stop too
            watch.cancel()
            await asyncio.gather(work, watch, return_exceptions=True)
        if stopped:
            await _send_shutting_down(send)
            return
        if work.cancelled():
            return
        if work.exception() is not None:
            err = _engine_error(work.exception())
            await _send_json(send, err.status, err.body(), [(k.encode(), v.encode()) for k, v in err.headers.items()])
            return
        await _send_json(send, 200, work.result())


class _Gone(Response):
    """The answer to a client that went away while sending its request: nothing is sent (it is
    counted as a disconnect here and as status 499 by the _Guard)."""

    def __init__(self, metrics: Metrics):
        super().__init__()
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        self.metrics.disconnected()


class _SlowClient(Exception):
    """A streaming client that read nothing for the send deadline."""


class _EventStream(_Generation):
    """A streaming completion as Server-Sent Events: `data: {chunk}` per chunk, `data: [DONE]`
    last. When the client goes away the sequences are cancelled at once; so they are when the
    client reads nothing for `send_timeout` seconds (its connection is then dropped), so that a
    client that stops reading holds neither a slot nor a growing buffer of chunks. When the server
    stops, a stream still running ends with an error event (503) and `data: [DONE]`."""

    media_type = "text/event-stream"

    def __init__(self, *args, send_timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.send_timeout = send_timeout
        self.started = False

    async def _event(self, send: Any, obj: Any) -> None:
        data = b"data: " + (obj if isinstance(obj, bytes) else _dumps(obj)) + b"\n\n"
        try:
            await asyncio.wait_for(
                send({"type": "http.response.body", "body": data, "more_body": True}), self.send_timeout
            )
        except asyncio.TimeoutError:
            raise _SlowClient from None

    async def _pump(self, send: Any) -> None:
        b = self.builder

        async def event(obj: Any) -> None:
            await self._event(send, obj)

        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        self.started = True
        for i in range(len(self.sources)):
            first = b.start_chunk(i)
            if first is not None:
                await event(first)
            if self.prefix:
                await event(b.text_chunk(i, self.prefix))
        queue: asyncio.Queue[Any] = asyncio.Queue()
        done = object()

        async def run(i: int, src: _c.Source) -> None:
            try:
                await _drive(b, i, src, queue.put_nowait)
            except Exception as e:  # noqa: BLE001 - reported to the client
                queue.put_nowait(e)
            finally:
                queue.put_nowait(done)

        tasks = [asyncio.ensure_future(run(i, s)) for i, s in enumerate(self.sources)]
        try:
            remaining = len(tasks)
            while remaining:
                item = await queue.get()
                if item is done:
                    remaining -= 1
                elif isinstance(item, BaseException):
                    await event(_engine_error(item).body())
                    break
                else:
                    await event(item)
            else:
                if b.include_usage:
                    await event(b.usage_chunk(self.n_prompt))
            await event(b"[DONE]")
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            _cancel_all(self.sources)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    def _stopped_end() -> list[dict]:
        """The messages that end a stream the server's stop cut: the error event (503), `data:
        [DONE]` and the end of the response."""
        err = APIError(503, "the server is shutting down; the generation was stopped", code="server_shutting_down")
        events = [b"data: " + data + b"\n\n" for data in (_dumps(err.body()), b"[DONE]")]
        return [{"type": "http.response.body", "body": e, "more_body": True} for e in events] + [
            {"type": "http.response.body", "body": b"", "more_body": False}
        ]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        pump = asyncio.ensure_future(self._pump(send))
        watch = asyncio.ensure_future(_wait_disconnect(receive))
        stopped = False
        try:
            stopped = await _until_done(pump, watch, self.stopping)
        except asyncio.CancelledError:
            # cancelled by the server (another ASGI server, or uvicorn past its grace period), which
            # will not wait again: the end goes out before anything yields (a send returns at once
            # unless the client stopped reading)
            if not self.started:
                raise  # nothing sent: the _Guard answers 503
            pump.cancel()  # before it runs again: no chunk after the end
            _cancel_all(self.sources)
            with contextlib.suppress(Exception):  # the client is gone
                for msg in self._stopped_end():
                    await send(msg)
        finally:
            if not pump.done():
                _cancel_all(self.sources)  # at once: the slots are free before the tasks unwind
                pump.cancel()
                if watch.done():
                    self.metrics.disconnected()
            watch.cancel()
            await asyncio.gather(pump, watch, return_exceptions=True)
        if stopped:
            if not self.started:  # stopped before its first bytes
                await _send_shutting_down(send)
                return
            with contextlib.suppress(Exception):  # the client is gone or not reading
                for msg in self._stopped_end():
                    await asyncio.wait_for(send(msg), 1.0)
        elif not pump.cancelled() and isinstance(pump.exception(), _SlowClient):
            self.metrics.disconnected()  # the response stays incomplete: the server drops the connection


def create_app(model: Any, engine: Any, config: ServerConfig | None = None) -> FastAPI:
    """The ASGI app serving `model` through `engine` (a pyakvq.batch.BatchEngine over it)."""
    cfg = config or ServerConfig()
    if cfg.api_key is not None and not cfg.api_key.strip():
        raise ValueError("api_key is empty: give a key, or None for no key")
    if not 0 < cfg.request_timeout < float("inf"):
        raise ValueError(f"request_timeout is {cfg.request_timeout}: expected a finite number of seconds > 0")
    metrics = Metrics()
    # set when the server begins to stop (cli.make_server's uvicorn.Server does): generations still
    # running get STOP_GRACE_S to end, then are answered 503
    stopping = asyncio.Event()
    prep_lock = threading.Lock()  # the vision encoder: one prompt's images at a time
    created = int(time.time())
    n_ctx = model.n_ctx
    max_prompt = n_ctx if cfg.max_prompt_tokens is None else min(cfg.max_prompt_tokens, n_ctx)
    max_queue = cfg.max_queue if cfg.max_queue is not None else getattr(engine, "max_queue", None)

    # redirect_slashes off: "/v1/completions/" is an unknown route (404 in the error JSON), not a
    # bare 307 to an http:// URL
    app = FastAPI(
        title="pyakvq",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        default_response_class=_JSON,
        redirect_slashes=False,
    )
    app.state.model = model
    app.state.engine = engine
    app.state.config = cfg
    app.state.metrics = metrics
    app.state.stopping = stopping

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError) -> JSONResponse:
        return _JSON(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        if e.status_code == 404:
            msg = f"unknown route {request.method} {request.url.path}"
        elif e.status_code == 405:
            msg = f"method {request.method} is not allowed on {request.url.path}"
        else:
            msg = str(e.detail)
        return _JSON(error_body(e.status_code, msg), status_code=e.status_code, headers=e.headers)

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, e: ClientDisconnect) -> Response:
        return _Gone(metrics)

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception) -> JSONResponse:
        return _JSON(error_body(500, f"internal error: {type(e).__name__}: {e}"), status_code=500)

    async def read_body(request: Request) -> bytes:
        chunks, n = [], 0
        async for c in request.stream():
            n += len(c)
            if n > cfg.max_body_bytes:
                raise APIError(
                    413,
                    f"the request body is larger than this server's limit of {cfg.max_body_bytes} bytes",
                    code="request_too_large",
                )
            chunks.append(c)
        return b"".join(chunks)

    async def read_json(request: Request) -> dict[str, Any]:
        try:
            body = await asyncio.wait_for(read_body(request), cfg.request_timeout)
        except asyncio.TimeoutError:
            e = APIError(
                408, f"the request body did not arrive within {cfg.request_timeout:g} s", code="request_timeout"
            )
            e.headers["Connection"] = "close"  # the rest of the body may still come: not a next request
            raise e from None
        return _rq.parse_json(body)

    def check_prompt(n_prompt: int, param: str, has: str = "has") -> None:
        if n_prompt > max_prompt or n_prompt >= n_ctx:
            msg = f"the prompt {has} {n_prompt} tokens, more than this server's limit of {max_prompt} prompt tokens"
            if n_prompt >= n_ctx:
                msg = (
                    f"the prompt {has} {n_prompt} tokens: the context size of {n_ctx} tokens leaves no room for the "
                    "reply"
                )
            raise bad_request(msg, param, "context_length_exceeded")

    # The longest token piece in bytes: a prompt of B bytes has at least B / longest tokens, so a
    # prompt far past the limit is refused before it is tokenized.
    longest_piece = max(1, max((len(model._model.piece(t, True)) for t in range(model.n_vocab)), default=1))

    def check_prompt_bytes(n_bytes: int, param: str) -> None:
        check_prompt(n_bytes // longest_piece, param, f"({n_bytes} bytes of text) has at least")

    def text_bytes(messages: list[dict[str, Any]]) -> int:
        n = 0
        for m in messages:
            c = m.get("content")
            parts = c if isinstance(c, list) else [{"text": c}]
            for p in parts:
                t = p.get("text") if isinstance(p, dict) else None
                n += len(t.encode("utf-8", "surrogatepass")) if isinstance(t, str) else 0
        return n

    def prepare_chat(req: _rq.ChatRequest, check: Callable[[], None]) -> Any:
        check_prompt_bytes(text_bytes(req.messages), "messages")
        # fetched and decoded (within the limits) before the lock; the vision encoder runs one
        # prompt at a time
        decoded = {}
        for r in req.images:
            check()
            decoded[id(r)] = _images.decode(_images.fetch(r.url, cfg, r.where, check), cfg, r.where)
        messages = []
        for m in req.messages:
            m = dict(m)
            if isinstance(m.get("content"), list):
                m["content"] = [
                    {"type": "image", "image": decoded[id(p["image"])]} if p.get("type") == "image" else p
                    for p in m["content"]
                ]
            messages.append(m)
        with prep_lock if req.images else contextlib.nullcontext():
            check()
            try:
                inp = model._chat_input(messages, _check=check, **req.template_kwargs)
            except (TypeError, ValueError) as e:
                msg = str(e)
                if req.images and "image marker" in msg:  # the template left out an image part
                    n = len(req.images)
                    msg = (
                        f"the model's chat template did not render every image of the messages ({n} given): "
                        "it places images only where its format has them (in user messages)"
                    )
                elif (k := _image_index(msg)) is not None and k < len(req.images):
                    # "image k: ..." from the vision preprocessing: k counts the images in message order
                    msg = f"{req.images[k].where}: {msg.split(': ', 1)[1]}"
                raise bad_request(msg, "messages") from None
        check_prompt(len(inp), "messages")
        return inp

    def prepare_completion(req: _rq.CompletionRequest, check: Callable[[], None]) -> tuple[Any, str]:
        if isinstance(req.prompt, str):
            check_prompt_bytes(len(req.prompt.encode("utf-8", "surrogatepass")), "prompt")
        try:
            inp = model._generate_input(req.prompt, None)
        except (TypeError, ValueError) as e:
            raise bad_request(str(e), "prompt") from None
        check_prompt(len(inp), "prompt")
        return inp, _c.prompt_text(model, req.prompt)

    # Requests are prepared (images fetched, decoded and encoded; templates; tokens) on threads:
    # those with images on their own pool, so that text requests never wait behind them. A request
    # is admitted to preparation only while the engine's slots and queue can take its choices
    # beside those already admitted (else 503 at once, before any work), and a client that goes
    # away stops its preparation at the next image or piece of a transfer.
    text_prep = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="pyakvq-prep")
    image_prep = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="pyakvq-images")
    preparing = 0  # choices of the requests admitted and not yet submitted

    def admit(n: int) -> None:
        """503 unless the engine can hold n more choices beside those running, queued and prepared."""
        if max_queue is None:
            return
        st = engine.stats()
        held = st["requests_running"] + st["requests_queued"] + preparing
        if held + n > engine.n_slots + max_queue:
            raise APIError(
                503,
                f"the server is busy: {held} requests hold its {engine.n_slots} slots and queue of "
                f"{max_queue}; retry later",
                code="queue_full",
            )

    class _Stop(Exception):
        """The client of a request in preparation went away."""

    async def prepare(request: Request, pool: Any, n: int, fn: Callable[..., Any], req: Any) -> Any:
        nonlocal preparing
        admit(n)
        gone = threading.Event()

        def check() -> None:
            if gone.is_set():
                raise _Stop

        def done(f: asyncio.Future) -> None:
            nonlocal preparing
            preparing -= n  # when the thread is done with it, also after its client left
            if not f.cancelled():
                f.exception()  # retrieved: a preparation given up raised _Stop, or failed unseen

        preparing += n
        fut = asyncio.get_running_loop().run_in_executor(pool, fn, req, check)
        fut.add_done_callback(done)
        watch = asyncio.ensure_future(_wait_disconnect(request.receive))
        try:
            await asyncio.wait({fut, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not fut.done():
                gone.set()
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        if gone.is_set():  # the client left first, whatever the preparation did after (_Stop or not)
            raise ClientDisconnect()
        return fut.result()

    def check_n(s: _a.Sampling) -> None:
        if max_queue is not None and s.n > engine.n_slots + max_queue:
            # never schedulable: "retry later" would never succeed
            raise bad_request(
                f"n = {s.n} is more choices than this server can hold at once: at most "
                f"{engine.n_slots + max_queue} ({engine.n_slots} running + {max_queue} queued)",
                "n",
            )

    # echo with logprobs: the prompt is scored by the Model's own session, one prompt at a time on
    # a thread of its own (waiting requests hold no thread), at most as many waiting as the queue
    scoring_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyakvq-echo")
    scoring_waiting = 0

    async def score_prompt(req: _rq.CompletionRequest, inp: Any) -> Any:
        nonlocal scoring_waiting
        check_n(req.sampling)
        if max_queue is not None and scoring_waiting >= engine.n_slots + max_queue:
            busy = "the server is busy scoring prompts (echo with logprobs); retry later"
            raise APIError(503, busy, code="queue_full")
        scoring_waiting += 1
        try:
            loop = asyncio.get_running_loop()
            k = req.sampling.logprobs
            return await loop.run_in_executor(scoring_pool, _c.echo_logprobs, model, req.prompt, inp, k)
        finally:
            scoring_waiting -= 1

    def respond(
        kind: str,
        inp: Any,
        s: _a.Sampling,
        stream: bool,
        include_usage: bool,
        prefix: str = "",
        text_offset: int = 0,
        echo_lp: Any = None,
    ) -> Response:
        check_n(s)
        admit(s.n)  # all the choices or none: nothing is submitted, or counted, for a busy server
        try:
            sources = _c.open_sources(model, engine, inp, s)
        except QueueFull as e:
            raise APIError(503, f"the server is busy: {e}; retry later", code="queue_full") from None
        except (TypeError, ValueError) as e:
            raise bad_request(str(e)) from None
        builder = _c.ResultBuilder(
            kind,
            cfg.model_name,
            s.n,
            lambda t: model._model.piece(int(t), True),
            s.logprobs,
            include_usage,
            text_offset=text_offset,
        )
        if echo_lp is not None:
            builder.echo_logprobs(*echo_lp)
        if stream:
            return _EventStream(builder, sources, len(inp), prefix, metrics, stopping, send_timeout=cfg.request_timeout)
        return _Completion(builder, sources, len(inp), prefix, metrics, stopping)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        req = _rq.parse_chat(await read_json(request), cfg)
        check_n(req.sampling)
        inp = await prepare(request, image_prep if req.images else text_prep, req.sampling.n, prepare_chat, req)
        return respond("chat", inp, req.sampling, req.stream, req.include_usage)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        req = _rq.parse_completion(await read_json(request), cfg)
        check_n(req.sampling)
        inp, text = await prepare(request, text_prep, req.sampling.n, prepare_completion, req)
        echo_lp = None
        if req.echo and req.sampling.logprobs is not None:  # the prompt's own log probabilities
            echo_lp = await score_prompt(req, inp)
        prefix = text if req.echo else ""
        return respond("text", inp, req.sampling, req.stream, req.include_usage, prefix, len(text), echo_lp)

    def model_card() -> dict[str, Any]:
        return {"id": cfg.model_name, "object": "model", "created": created, "owned_by": "pyakvq"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        if model_id != cfg.model_name:
            raise APIError(404, f"the model {model_id!r} does not exist", param="model", code="model_not_found")
        return model_card()

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(engine.stats(), cfg.model_name), media_type=CONTENT_TYPE)

    app.add_middleware(_Guard, cfg=cfg, metrics=metrics)
    return app
