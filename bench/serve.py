"""Serving throughput and latency: `pyakvq serve` under concurrent OpenAI clients, per KV mode.

    python bench/serve.py [--model M.gguf] [--image IMG] [--kv f16,akvq2] [--clients 1,4,16]
        [--requests 3] [--max-tokens 48] [--ctx-size 4096] [--kv-memory 256M] [--parallel 64]
        [--threads 2] [--act-bits 16] [--reps 1] [--json OUT]

One server per KV mode (`python -m pyakvq serve`, same model, --ctx-size, --kv-memory and
--parallel), started side by side and measured in turns (mode after mode for each client count,
--reps rounds) so that machine noise hits every mode alike. Each of C client threads sends
--requests chat completions one after the other with the official `openai` package (a text
question, or with --image a question about that image as a data: URL; sampled at temperature
0.8 with a per-request seed, so the modes do the same work up to their own end-of-generation
tokens). Per mode and client count: generated tokens/s over the wall time (usage counts),
latency p50/p95 per request, and the slots the server holds (sequences decoded together, the
most --kv-memory fits at --ctx-size: the 2-bit cache fits more). Without --model: the demo VLM,
asking about examples/red_circle.png.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import pathlib
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
QUESTIONS = [
    "Write a short story about a lighthouse keeper.",
    "Describe a walk through a forest in autumn.",
    "Explain how a bicycle works.",
    "Tell me about the history of the printing press.",
]
IMAGE_QUESTIONS = ["Describe the image.", "What color is the shape?", "What shape is it?", "Where is the shape?"]


def child_setup() -> tuple[dict[str, str], pathlib.Path]:
    """Environment and working directory for a `python -m pyakvq` child that runs the pyakvq this
    process imported: PYTHONPATH and AKVQ_EXT_DIR made absolute, and the directory holding that
    package as the cwd (from a source checkout's root, its uncompiled pyakvq/ would shadow an
    installed one)."""
    import pyakvq  # noqa: PLC0415

    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p)
    if env.get("AKVQ_EXT_DIR"):
        env["AKVQ_EXT_DIR"] = os.path.abspath(env["AKVQ_EXT_DIR"])
    return env, pathlib.Path(pyakvq.__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `pyakvq serve` subprocess on a free loopback port."""

    def __init__(self, a: argparse.Namespace, kv: str):
        self.kv = kv
        self.port = free_port()
        cmd = [sys.executable, "-m", "pyakvq", "serve", "--port", str(self.port), "--kv", kv]
        cmd += ["--ctx-size", str(a.ctx_size), "--kv-memory", a.kv_memory, "--parallel", str(a.parallel)]
        cmd += ["-t", str(a.threads), "--max-queue", "1024", "--act-bits", str(a.act_bits)]
        if a.model:
            cmd += ["-m", os.path.abspath(a.model)]
        env, cwd = child_setup()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server ({kv}) exited: {self.proc.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server ({kv}) did not answer /health within 120 s")
            time.sleep(0.2)
        with urllib.request.urlopen(self.base + "/v1/models", timeout=10) as r:
            self.model_id = json.loads(r.read())["data"][0]["id"]

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(self.base + "/metrics", timeout=10) as r:
            text = r.read().decode()
        m = re.search(rf"^pyakvq_{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
        if not m:
            raise RuntimeError(f"/metrics has no pyakvq_{name}")
        return float(m.group(1))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def messages(a: argparse.Namespace, k: int) -> list[dict]:
    if a.image_url:
        q = IMAGE_QUESTIONS[k % len(IMAGE_QUESTIONS)]
        parts = [{"type": "image_url", "image_url": {"url": a.image_url}}, {"type": "text", "text": q}]
        return [{"role": "user", "content": parts}]
    return [{"role": "user", "content": QUESTIONS[k % len(QUESTIONS)]}]


def run_clients(a: argparse.Namespace, srv: Server, n_clients: int, round_: int) -> dict:
    import openai  # noqa: PLC0415

    lat: list[float] = []
    tokens = [0]
    errors: list[str] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        cl = openai.OpenAI(base_url=srv.base + "/v1", api_key="none", timeout=600, max_retries=0)
        for r in range(a.requests):
            k = (round_ * 1000 + c) * a.requests + r
            t0 = time.perf_counter()
            try:
                out = cl.chat.completions.create(
                    model=srv.model_id, messages=messages(a, k), max_tokens=a.max_tokens, temperature=0.8, seed=k
                )
            except Exception as e:  # noqa: BLE001 - report, do not hide
                with lock:
                    errors.append(repr(e))
                return
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                tokens[0] += out.usage.completion_tokens

    threads = [threading.Thread(target=client, args=(c,)) for c in range(n_clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    lat.sort()
    return {
        "tokens": tokens[0],
        "wall_s": wall,
        "tok_s": tokens[0] / wall,
        "p50_s": statistics.median(lat),
        "p95_s": lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="GGUF model (default: the demo VLM)")
    ap.add_argument("--image", default=None, help="ask about this image (default with the demo: a red circle)")
    ap.add_argument("--kv", default="f16,akvq2")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=3, help="requests per client, one after the other")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--ctx-size", type=int, default=4096)
    ap.add_argument("--kv-memory", default="256M", help="KV cache bytes of each server (suffixes K, M, G)")
    ap.add_argument("--parallel", type=int, default=64, help="slots at most (the memory budget may allow fewer)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--act-bits", type=int, default=16, choices=(8, 16), help="the servers' --act-bits")
    ap.add_argument("--reps", type=int, default=1, help="rounds over every mode and client count")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    image = a.image or (None if a.model else str(ROOT / "examples" / "red_circle.png"))
    a.image_url = None
    if image:
        data = pathlib.Path(image).read_bytes()
        a.image_url = "data:image/png;base64," + base64.b64encode(data).decode()
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    modes = [m for m in a.kv.split(",") if m]
    clients = [int(c) for c in a.clients.split(",") if c]
    servers = {kv: Server(a, kv) for kv in modes}
    results: dict[tuple[str, int], list[dict]] = {}
    try:
        slots = {kv: int(s.metric("slots")) for kv, s in servers.items()}
        for s in servers.values():  # warm-up: first requests load pages, grow buffers
            run_clients(a, s, 2, round_=99)
        for rep in range(a.reps):
            for c in clients:
                for kv in modes:
                    r = run_clients(a, servers[kv], c, rep)
                    results.setdefault((kv, c), []).append(r)
                    print(
                        f"[{rep}] {kv:6s} clients {c:3d}: {r['tok_s']:8.1f} tok/s  p50 {r['p50_s']:.3f} s  "
                        f"p95 {r['p95_s']:.3f} s",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        for s in servers.values():
            s.close()
    model = a.model or "demo VLM"
    print(
        f"model {model}, --ctx-size {a.ctx_size}, --kv-memory {a.kv_memory}, --parallel {a.parallel}, "
        f"--act-bits {a.act_bits}, {a.threads} threads, {a.requests} requests per client, max_tokens {a.max_tokens}"
        f"{', with an image' if a.image_url else ''}"
    )
    print("| kv | slots | clients | tok/s | vs 1 client | p50 latency s | p95 latency s |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for kv in modes:
        base = None
        for c in clients:
            rs = results[(kv, c)]
            tok_s = statistics.median(r["tok_s"] for r in rs)
            p50 = statistics.median(r["p50_s"] for r in rs)
            p95 = statistics.median(r["p95_s"] for r in rs)
            base = base or tok_s
            rows.append({"kv": kv, "slots": slots[kv], "clients": c, "tok_s": tok_s, "p50_s": p50, "p95_s": p95})
            print(f"| {kv} | {slots[kv]} | {c} | {tok_s:.1f} | {tok_s / base:.2f}x | {p50:.3f} | {p95:.3f} |")
    if a.json:
        pathlib.Path(a.json).write_text(
            json.dumps({"args": {k: v for k, v in vars(a).items() if k != "image_url"}, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
