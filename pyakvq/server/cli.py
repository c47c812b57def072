"""`pyakvq serve`: its flags (added to the subcommand's parser by pyakvq.__main__) and the run.

This module imports neither FastAPI nor uvicorn until the server starts, so `pyakvq --help` works
without the `server` extra."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from .config import STOP_GRACE_S, ServerConfig, parse_bytes

DESCRIPTION = (
    "Serves a model over an OpenAI-compatible HTTP API: POST /v1/chat/completions (messages with "
    "image_url parts as data: URLs), POST /v1/completions (both stream Server-Sent Events when asked), "
    "GET /v1/models, /health and /metrics (Prometheus text). Requests are decoded together by the "
    "batched engine (--parallel sequences at once, within --kv-memory bytes of KV cache). Binds to "
    "127.0.0.1 unless --host says otherwise; with --api-key every route but /health needs "
    "'Authorization: Bearer KEY'. Needs the server extra: pip install 'pyakvq[server]'."
)


#: open connections uvicorn serves at most (beyond: plain-text 503). Idle keep-alive connections
#: count too, so this is far above what the engine holds (its bounded queue answers 503 JSON when
#: full); it only bounds the memory of open connections.
MAX_CONNECTIONS = 4096
#: seconds an idle connection stays open: after a response (keep-alive), and also before its first
#: request (uvicorn alone would keep a connection that never sends anything open for ever)
KEEP_ALIVE_S = 5


def _http_protocol(request_timeout: float) -> type:
    """uvicorn's HTTP protocol (httptools when installed, else h11, as uvicorn chooses) with two
    timers more:
    - the keep-alive timer also started when a connection opens: one that sends no request is
      closed after KEEP_ALIVE_S as an idle kept-alive one is (its first bytes stop the timer);
    - a request's head (request line and headers) must be complete within request_timeout seconds
      of its first bytes, else the connection is closed: a client trickling header bytes cannot
      hold it for ever (the body's own deadline is the app's: 408)."""
    try:
        import httptools  # noqa: F401, PLC0415
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base  # noqa: PLC0415
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol as base  # noqa: PLC0415

    class Protocol(base):  # type: ignore[misc, valid-type]
        _head_timer: Any = None
        _head_cycle: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            try:
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )
            except AttributeError:  # another uvicorn's internals: its own behaviour then
                pass

        def data_received(self, data: bytes) -> None:
            # uvicorn makes a new request cycle when a head is complete; between requests (none
            # yet, or the last one answered) these bytes start a head
            cycle = getattr(self, "cycle", None)
            if self._head_timer is None and (cycle is None or getattr(cycle, "response_complete", False)):
                self._head_cycle = cycle
                self._head_timer = self.loop.call_later(request_timeout, self._head_timeout)
            super().data_received(data)
            if self._head_timer is not None and getattr(self, "cycle", None) is not self._head_cycle:
                self._head_timer.cancel()  # the head arrived
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if getattr(self, "cycle", None) is self._head_cycle and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

    return Protocol


def uvicorn_options(n_slots: int, max_queue: int, request_timeout: float = 60.0) -> dict[str, Any]:
    """The uvicorn.Config keywords of `pyakvq serve` for an engine of n_slots sequences and
    max_queue waiting requests, whose request heads must arrive within request_timeout seconds
    (the test harness serves with the same)."""
    return {
        "http": _http_protocol(request_timeout),
        "limit_concurrency": max(MAX_CONNECTIONS, 2 * (n_slots + max_queue)),
        "timeout_keep_alive": KEEP_ALIVE_S,
        # on Ctrl-C or SIGTERM, generations still running get STOP_GRACE_S to end, then a 503 or an
        # error event; what remains 2 s later (nothing, normally) is cancelled
        "timeout_graceful_shutdown": STOP_GRACE_S + 2,
    }


def make_server(config: Any) -> Any:
    """The uvicorn.Server of `pyakvq serve` for `config`: when it begins to stop (Ctrl-C, SIGTERM)
    it first sets the app's `state.stopping` (create_app), so that generations still running are
    answered (a 503, or a stream's error event and `data: [DONE]`) within uvicorn's grace period,
    before it cancels what remains and, on SIGTERM, ends the process at once."""
    import uvicorn  # noqa: PLC0415

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            stopping = getattr(getattr(self.config.app, "state", None), "stopping", None)
            if stopping is not None:
                stopping.set()
            await super().shutdown(sockets)

    return Server(config)


def _seconds_arg(v: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {v!r}") from None
    if not (0 < x < float("inf")):
        raise argparse.ArgumentTypeError(f"{v} is out of range (a finite number of seconds > 0)")
    return x


def _raise_open_files_limit(n: int) -> None:
    """Lets this process hold n more open files if the hard limit allows (each connection is one)."""
    try:
        import resource  # noqa: PLC0415 - POSIX only

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = n + 256  # the model file, the listening socket, threads' files...
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard)
            )
    except (ImportError, OSError, ValueError):
        pass


def _api_key_arg(v: str) -> str:
    if not v.strip():
        raise argparse.ArgumentTypeError("the key is empty (leave --api-key out for no key)")
    return v


def api_key_of(arg: str | None, environ: Any) -> str | None:
    """The API key: --api-key, else AKVQ_API_KEY when set to something (an empty or blank
    AKVQ_API_KEY means no key, as when it is unset)."""
    if arg is not None:
        return arg
    env = environ.get("AKVQ_API_KEY")
    return env if env is not None and env.strip() else None


def _bytes_arg(v: str) -> int:
    try:
        return parse_bytes(v)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(
    p: argparse.ArgumentParser,
    int_in: Callable[..., Callable[[str], int]],
    add_kv_and_threads: Callable[[argparse.ArgumentParser], None],
    max_ctx: int,
) -> None:
    """The flags of `pyakvq serve`. int_in(lo, hi) and add_kv_and_threads(p) are pyakvq.__main__'s
    helpers (the same --kv/--kv-opt/-t flags and range checks as the other commands)."""
    p.add_argument("-m", "--model", default=None, help="GGUF model file (default: the packaged demo model)")
    p.add_argument("--mmproj", default=None, help="llama.cpp's mmproj GGUF (two-file layout)")
    p.add_argument(
        "--model-name",
        default=None,
        metavar="NAME",
        help="the model id clients send and /v1/models lists (default: the file name without .gguf)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument(
        "--port",
        type=int_in(0, 65535),
        default=8000,
        metavar="PORT",
        help="TCP port (default 8000; 0: a free port, printed at start)",
    )
    add_kv_and_threads(p)
    p.add_argument(
        "-c",
        "--ctx-size",
        dest="ctx",
        type=int_in(1, max_ctx),
        default=None,
        metavar="N",
        help=f"context size per sequence in tokens, 1..{max_ctx} (default 4096; a warning when a larger one than "
        "the model was trained with is asked for)",
    )
    p.add_argument(
        "-np",
        "--parallel",
        type=int_in(1, 1024),
        default=4,
        metavar="N",
        help="sequences decoded together at most (default 4; fewer when --kv-memory fits fewer)",
    )
    p.add_argument(
        "--kv-memory",
        type=_bytes_arg,
        default=None,
        metavar="BYTES",
        help="KV cache memory for all sequences, e.g. 512M or 2G (binary units); default: --parallel full contexts",
    )
    p.add_argument(
        "--max-queue",
        type=int_in(0, 1 << 20),
        default=64,
        metavar="N",
        help="requests that may wait for a free sequence; more are answered 503 (default 64)",
    )
    p.add_argument(
        "--api-key",
        type=_api_key_arg,
        default=None,
        metavar="KEY",
        help="require 'Authorization: Bearer KEY' (also AKVQ_API_KEY; empty there: no key)",
    )
    p.add_argument("--allow-remote-images", action="store_true", help="fetch http(s) image URLs (off: only data: URLs)")
    p.add_argument(
        "--allow-local-images", action="store_true", help="read image_url paths and file:// URLs on this machine"
    )
    p.add_argument(
        "--max-body",
        type=_bytes_arg,
        default=32 << 20,
        metavar="BYTES",
        help="largest request body, images included (default 32M); larger: 413",
    )
    p.add_argument(
        "--request-timeout",
        type=_seconds_arg,
        default=60.0,
        metavar="S",
        help="seconds a request's head, then its body, may take to arrive (default 60); slower: "
        "the connection is closed (a late body gets 408 first)",
    )
    p.add_argument(
        "--max-image-pixels",
        type=int_in(1, None),
        default=4096 * 4096,
        metavar="N",
        help="largest image in pixels, checked before decoding (default 16777216 = 4096x4096)",
    )
    p.add_argument(
        "--max-images", type=int_in(0, 1024), default=8, metavar="N", help="images per request at most (default 8)"
    )
    p.add_argument(
        "--max-prompt-tokens",
        type=int_in(1, None),
        default=None,
        metavar="N",
        help="longest prompt in tokens, images included (default: the context size)",
    )
    p.add_argument(
        "-b",
        "--batch-size",
        dest="batch",
        type=int_in(1, 65536),
        default=256,
        metavar="N",
        help="rows per engine step: every decoding sequence's next token, then chunks of new prompts "
        "(default 256; smaller: running streams pause less while a long prompt is read)",
    )
    p.add_argument(
        "--act-bits",
        type=int,
        choices=(8, 16),
        default=16,
        help="activation precision of the quantized matmuls (default 16; 8: faster prompts with Q4_0, Q4_1 and "
        "Q4_K weights on AVX2 and AVX-512 CPUs, slightly different logits, see README)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn's log level (default info)",
    )


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one), sending without delay (a
    response's headers and body are separate writes; Nagle's algorithm would hold the second
    back for the client's delayed ACK)."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(a: argparse.Namespace, parse_kv_opts: Callable[[list[str] | None], dict[str, Any]]) -> int:
    """Loads the model, starts the engine and serves until interrupted. Returns the exit status
    (2: bad input, one line on stderr)."""
    err = sys.stderr
    try:
        import uvicorn  # noqa: PLC0415

        from .app import create_app  # noqa: PLC0415
    except ImportError as e:
        print(f"pyakvq serve: error: {e.name or e} is missing: pip install 'pyakvq[server]'", file=err)
        return 2
    from ..batch import BatchEngine  # noqa: PLC0415
    from ..demo import demo_model_path  # noqa: PLC0415
    from ..model import Model  # noqa: PLC0415

    api_key = api_key_of(a.api_key, os.environ)
    ctx_given = a.ctx is not None
    if not ctx_given:
        a.ctx = 4096
    try:  # the port first: a busy one is reported before the model loads
        sock = _listen(a.host, a.port)
    except OSError as e:
        print(f"pyakvq serve: error: cannot listen on {a.host}:{a.port} ({e.strerror or e})", file=err)
        return 2
    try:
        opts = parse_kv_opts(a.kv_opt)
        if a.model_name is not None and not a.model_name.strip():
            raise ValueError("--model-name is empty: give a name, or leave it out for the file's name")
        if a.max_prompt_tokens is not None and a.max_prompt_tokens > a.ctx:
            raise ValueError(
                f"--max-prompt-tokens {a.max_prompt_tokens} is larger than the context (-c {a.ctx}): "
                "no prompt over the context fits"
            )
        path = a.model if a.model is not None else demo_model_path()
        for what, f in (("-m/--model", path), ("--mmproj", a.mmproj)):
            if f is not None and not os.path.isfile(f):
                raise ValueError(f"{what} {os.fspath(f)!r}: no such file")
        model = Model(
            path,
            n_ctx=a.ctx,
            n_threads=a.threads,
            kv=a.kv,
            kv_options=opts,
            mmproj=a.mmproj,
            n_batch=a.batch,
            act_bits=a.act_bits,
            device=a.device,
        )
        engine = BatchEngine(model, n_parallel=a.parallel, kv_memory=a.kv_memory, max_queue=a.max_queue)
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        sock.close()
        print(f"pyakvq serve: error: {e}", file=err)
        return 2
    name = a.model_name or os.path.basename(os.fspath(path)).removesuffix(".gguf")
    cfg = ServerConfig(
        model_name=name,
        api_key=api_key,
        max_body_bytes=a.max_body,
        request_timeout=a.request_timeout,
        max_image_pixels=a.max_image_pixels,
        max_images=a.max_images,
        max_prompt_tokens=a.max_prompt_tokens,
        allow_local_images=a.allow_local_images,
        allow_remote_images=a.allow_remote_images,
        max_queue=a.max_queue,
    )
    app = create_app(model, engine, cfg)
    n_ctx_train = model.info.get("n_ctx_train") or 0
    if ctx_given and n_ctx_train and a.ctx > n_ctx_train:
        print(
            f"pyakvq serve: warning: the context size {a.ctx} (-c) is larger than the {n_ctx_train} tokens "
            "the model was trained with: answers beyond them may degrade",
            file=err,
        )
    if not _is_loopback(a.host) and api_key is None:
        print(
            f"pyakvq serve: warning: listening on {a.host} without --api-key: anyone who reaches it may use it",
            file=err,
        )
    host, port = sock.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    print(
        f"pyakvq serve: {path} as {name!r}, kv {a.kv}, {engine.n_slots} sequences x {a.ctx} tokens, "
        f"http://{url_host}:{port}/v1",
        file=err,
        flush=True,
    )
    options = uvicorn_options(engine.n_slots, a.max_queue, a.request_timeout)
    _raise_open_files_limit(options["limit_concurrency"])
    config = uvicorn.Config(app, log_level=a.log_level, **options)
    try:
        make_server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
        pass
    finally:
        sock.close()
        engine.close()
        model.close()
    return 0
