"""Prompt and generation speed of llama.cpp and pyakvq side by side on the same GGUF files.

    python bench/compare_llamacpp.py --model M.gguf [--model M2.gguf] [--pp 512] [--tg 64]
        [--threads 2] [--reps 2] [--llama-python /path/to/python | --llama-bench /path/to/llama-bench]
        [--act-bits 16[,8]] [--json OUT]

llama.cpp runs either through a llama-bench binary (--llama-bench: one `-r 1 -o json` run per
measurement, its own warm-up) or through the llama-cpp-python package, possibly installed in
another interpreter (--llama-python; default: this interpreter if it can import llama_cpp).
Every measurement is a fresh process, and the engines alternate (llama.cpp, pyakvq, llama.cpp,
pyakvq, ... for --reps rounds) so that drift in the machine's speed hits both alike.
Workloads, the same for both engines: pp N = evaluate N prompt tokens from an empty cache;
tg N = N single-token steps (greedy: the argmax is fed back, nothing is sampled) after a short
prompt, both after one untimed warm-up evaluation of 32 tokens. pyakvq is measured with
bench/speed.py's functions. Prints tokens/s (median over reps) and ratio = pyakvq / llama.cpp,
with llama.cpp's version and system info and the CPU model. --act-bits 16,8 also measures pyakvq
with 8-bit activations (Model(act_bits=8), the precision llama.cpp uses), as engine "pyakvq-a8"
with its own ratio column.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import time

# Only the standard library at module level: the llama.cpp worker runs this file in an
# interpreter that may have llama_cpp but not pyakvq (or numpy) on its path.

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROSE = ROOT / "tests" / "fixtures" / "text" / "prose_en.txt"
GEN_PROMPT = "Once upon a time"
WARMUP_TOKENS = 32
ENGINES = ("llama.cpp", "pyakvq")


def n_ctx_for(pp: int, tg: int) -> int:
    """Context size both engines get: room for the prompt and the generation, at least 1024."""
    return max(pp + tg + 16, 1024)


def repeat_to(ids: list[int], n: int) -> list[int]:
    """The first n ids of `ids` repeated as often as needed. Raises ValueError if ids is empty."""
    if not ids:
        raise ValueError("cannot build a prompt from an empty token list")
    out = list(ids)
    while len(out) < n:
        out += ids
    return out[:n]


# ---- workers: one measurement each, printed as one JSON line ----


def worker_llama(model: str, workload: str, n: int, threads: int, n_ctx: int) -> dict:
    """Tokens/s of one llama-cpp-python measurement (see the module docstring)."""
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=model,
        n_ctx=n_ctx,
        n_batch=512,
        n_ubatch=512,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    ids = repeat_to(llm.tokenize(PROSE.read_text(encoding="utf-8").encode("utf-8"), add_bos=True), max(n, 64))
    llm.reset()
    llm.eval(ids[:WARMUP_TOKENS])  # untimed warm-up: pages the weights in
    llm.reset()
    if workload == "pp":
        t0 = time.perf_counter()
        llm.eval(ids[:n])
        sec = time.perf_counter() - t0
    else:
        import numpy as np  # llama-cpp-python depends on numpy

        n_vocab = llm.n_vocab()
        llm.eval(llm.tokenize(GEN_PROMPT.encode("utf-8"), add_bos=True))
        t0 = time.perf_counter()
        for _ in range(n):
            # Llama.scores is not filled without logits_all: read the last token's logits directly
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
            llm.eval([int(logits.argmax())])
        sec = time.perf_counter() - t0
    return {"tps": n / sec}


def worker_pyakvq(model: str, workload: str, n: int, threads: int, n_ctx: int, act_bits: int = 16) -> dict:
    """Tokens/s of one pyakvq measurement, with bench/speed.py's functions."""
    sys.path.insert(0, str(ROOT / "bench"))
    import speed

    import pyakvq

    with pyakvq.Model(model, n_ctx=n_ctx, n_threads=threads, act_bits=act_bits) as m:
        ids = speed.prompt_ids(m, max(n, WARMUP_TOKENS))
        speed.bench_prompt(m, ids[:WARMUP_TOKENS])  # untimed warm-up
        tps = speed.bench_prompt(m, ids[:n]) if workload == "pp" else speed.bench_gen(m, n)
    return {"tps": tps}


def worker_llama_info() -> dict:
    """llama-cpp-python's version and llama.cpp's system info string."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    return {
        "llama_cpp_python": getattr(llama_cpp, "__version__", "?"),
        "system_info": info.decode("utf-8", "replace").strip() if isinstance(info, bytes) else str(info).strip(),
    }


# ---- llama-bench ----


def llama_bench_cmd(binary: str, model: str, workload: str, n: int, threads: int) -> list[str]:
    """Command line of one llama-bench measurement (pp: -p N -n 0; tg: -p 0 -n N), JSON output."""
    p, g = (n, 0) if workload == "pp" else (0, n)
    cmd = [binary, "-m", model, "-p", str(p), "-n", str(g), "-t", str(threads)]
    return cmd + ["-b", "512", "-ub", "512", "-r", "1", "-o", "json"]


def parse_llama_bench(text: str, workload: str, n: int) -> dict:
    """The result of `llama-bench -o json` (a JSON array of tests with n_prompt, n_gen, avg_ts,
    build_commit, build_number, cpu_info, ...) for the test pp N or tg N: {"tps", "build_commit",
    "build_number", "cpu_info"}. Raises ValueError when the text is not such an array or holds no
    matching test."""
    try:
        tests = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"llama-bench output is not JSON: {e}") from None
    if not isinstance(tests, list):
        raise ValueError("llama-bench JSON output is not an array of tests")
    want = (n, 0) if workload == "pp" else (0, n)
    for t in tests:
        if isinstance(t, dict) and (t.get("n_prompt"), t.get("n_gen")) == want and "avg_ts" in t:
            return {
                "tps": float(t["avg_ts"]),
                "build_commit": str(t.get("build_commit", "?")),
                "build_number": t.get("build_number", "?"),
                "cpu_info": str(t.get("cpu_info", "")),
            }
    raise ValueError(f"llama-bench output has no {workload}{n} test (n_prompt, n_gen = {want})")


# ---- driver ----


def pyakvq_env() -> dict[str, str]:
    """The environment for a pyakvq worker: this one, with the directory pyakvq is imported from
    first on PYTHONPATH and AKVQ_EXT_DIR made absolute, so the worker finds the same build."""
    env = dict(os.environ)
    spec = importlib.util.find_spec("pyakvq")
    if spec is not None and spec.origin:
        src = str(pathlib.Path(spec.origin).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    if env.get("AKVQ_EXT_DIR"):
        env["AKVQ_EXT_DIR"] = str(pathlib.Path(env["AKVQ_EXT_DIR"]).resolve())
    return env


def run_json(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    """stdout of cmd; raises RuntimeError (with stderr's tail) if it fails or times out."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{' '.join(cmd)}: no result within {timeout:.0f} s") from None
    if r.returncode == -signal.SIGILL:
        raise RuntimeError(
            f"{' '.join(cmd)}: illegal instruction: the build uses instructions this CPU or VM does not allow "
            "(llama.cpp built with GGML_NATIVE enables AMX where the CPU reports it; rebuild with "
            f"-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)\n{r.stderr[-2000:]}"
        )
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit status {r.returncode}\n{r.stderr[-2000:]}")
    return r.stdout


def last_json_line(out: str) -> dict:
    """The last line of `out` that parses as a JSON object. Raises ValueError if none does."""
    for line in reversed(out.strip().splitlines()):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    raise ValueError(f"no JSON result line in worker output: {out[-500:]!r}")


def measure(a: argparse.Namespace, engine: str, model: str, workload: str, n: int) -> dict:
    """One fresh-process measurement of `engine`: {"tps", ...}."""
    n_ctx = n_ctx_for(a.pp, a.tg)
    if engine == "llama.cpp" and a.llama_bench:
        return parse_llama_bench(
            run_json(llama_bench_cmd(a.llama_bench, model, workload, n, a.threads), a.timeout), workload, n
        )
    python = a.llama_python if engine == "llama.cpp" else sys.executable
    worker = "llama" if engine == "llama.cpp" else "pyakvq"
    cmd = [python, str(pathlib.Path(__file__).resolve()), "--worker", worker, "--model", model]
    cmd += ["--workload", workload, "--n", str(n), "--threads", str(a.threads), "--n-ctx", str(n_ctx)]
    if worker == "pyakvq":
        cmd += ["--act-bits", engine.removeprefix("pyakvq-a") if engine != "pyakvq" else "16"]
    return last_json_line(run_json(cmd, a.timeout, pyakvq_env() if worker == "pyakvq" else None))


def can_import_llama_cpp(python: str) -> bool:
    """Whether `python` can import llama_cpp (checked in a subprocess)."""
    try:
        r = subprocess.run([python, "-c", "import llama_cpp"], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def cpu_model() -> str:
    """The CPU's model name from lscpu (or /proc/cpuinfo), "unknown" if neither says."""
    if shutil.which("lscpu"):
        r = subprocess.run(["lscpu"], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def summarize(samples: dict[tuple[str, str], dict[str, list[float]]]) -> list[dict]:
    """Rows {model, workload, per engine samples and medians, ratio = pyakvq / llama.cpp (and
    ratio_<engine> for further pyakvq variants such as pyakvq-a8)}."""
    rows = []
    for (model, workload), by_engine in samples.items():
        row: dict = {"model": model, "workload": workload}
        for e, v in by_engine.items():
            row[f"{e}_tps"] = v
            row[f"{e}_median"] = statistics.median(v) if v else None
        lo = row["llama.cpp_median"]
        for e in by_engine:
            if e == "llama.cpp":
                continue
            py = row[f"{e}_median"]
            row["ratio" if e == "pyakvq" else f"ratio_{e}"] = py / lo if lo and py else None
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown table: model | workload | llama.cpp t/s | pyakvq t/s | ratio."""

    def f(v: float | None, fmt: str) -> str:
        return "—" if v is None else format(v, fmt)

    extra = sorted({k[len("ratio_") :] for r in rows for k in r if k.startswith("ratio_")})
    head = "| model | workload | llama.cpp t/s | pyakvq t/s | ratio |"
    head += "".join(f" {e} t/s | ratio {e} |" for e in extra)
    lines = [head, "|---|---|---|---|---|" + "---|---|" * len(extra)]
    for r in rows:
        line = (
            f"| {pathlib.Path(r['model']).name} | {r['workload']} | {f(r['llama.cpp_median'], '.1f')} | "
            f"{f(r.get('pyakvq_median'), '.1f')} | {f(r.get('ratio'), '.2f')} |"
        )
        line += "".join(f" {f(r.get(f'{e}_median'), '.1f')} | {f(r.get(f'ratio_{e}'), '.2f')} |" for e in extra)
        lines.append(line)
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="GGUF file (repeat for several)")
    ap.add_argument("--pp", type=int, default=512, help="prompt tokens (0: no pp test)")
    ap.add_argument("--tg", type=int, default=64, help="generated tokens (0: no tg test)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2, help="rounds of llama.cpp then pyakvq")
    ap.add_argument("--llama-bench", help="llama-bench binary (instead of llama-cpp-python)")
    ap.add_argument("--llama-python", help="interpreter with llama_cpp (default: this one if it has it)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per measurement")
    ap.add_argument("--act-bits", default="16", help="pyakvq activation precisions, e.g. 16,8")
    ap.add_argument("--json", help="also write the results to this file")
    # internal: one measurement in this process
    ap.add_argument("--worker", choices=("llama", "pyakvq", "llama-info"), help=argparse.SUPPRESS)
    ap.add_argument("--workload", choices=("pp", "tg"), help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--n-ctx", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    for name in ("pp", "tg", "threads", "reps"):
        if getattr(a, name) < (1 if name in ("threads", "reps") else 0):
            ap.error(f"--{name} must be >= {1 if name in ('threads', 'reps') else 0}")
    try:
        a.act_bits = [int(b) for b in str(a.act_bits).split(",")]
    except ValueError:
        ap.error(f"--act-bits {a.act_bits!r}: expected a comma list of 16 and/or 8")
    if not a.act_bits or any(b not in (8, 16) for b in a.act_bits) or len(set(a.act_bits)) != len(a.act_bits):
        ap.error(f"--act-bits {a.act_bits!r}: expected a comma list of 16 and/or 8")
    if a.pp == 0 and a.tg == 0:
        ap.error("nothing to measure: --pp and --tg are both 0")
    if a.llama_bench and a.llama_python:
        ap.error("give --llama-bench or --llama-python, not both")
    if a.llama_bench and not os.access(a.llama_bench, os.X_OK):
        ap.error(f"--llama-bench {a.llama_bench!r} is not an executable file")
    if a.worker is None:
        for m in a.model:
            if not pathlib.Path(m).is_file():
                ap.error(f"--model {m!r} is not a file")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.worker == "llama-info":
        print(json.dumps(worker_llama_info()))
        return 0
    if a.worker:
        if a.worker == "llama":
            print(json.dumps(worker_llama(a.model[0], a.workload, a.n, a.threads, a.n_ctx)))
        else:
            print(json.dumps(worker_pyakvq(a.model[0], a.workload, a.n, a.threads, a.n_ctx, a.act_bits[0])))
        return 0

    llama_info: dict = {}
    if a.llama_bench:
        llama_info["llama_bench"] = a.llama_bench
    else:
        if a.llama_python is None:
            if not can_import_llama_cpp(sys.executable):
                print(
                    "error: this interpreter cannot import llama_cpp; give --llama-python or --llama-bench",
                    file=sys.stderr,
                )
                return 2
            a.llama_python = sys.executable
        cmd = [a.llama_python, str(pathlib.Path(__file__).resolve()), "--worker", "llama-info", "--model", "-"]
        llama_info |= last_json_line(run_json(cmd, 300))
    engines = ["llama.cpp"] + ["pyakvq" if b == 16 else f"pyakvq-a{b}" for b in a.act_bits]
    load_start = os.getloadavg()[0]
    workloads = [(w, n) for w, n in (("pp", a.pp), ("tg", a.tg)) if n > 0]
    samples: dict[tuple[str, str], dict[str, list[float]]] = {}
    for model in a.model:
        for w, n in workloads:
            samples[(model, f"{w}{n}")] = {e: [] for e in engines}
    for rep in range(a.reps):
        for model in a.model:
            for w, n in workloads:
                for e in engines:
                    r = measure(a, e, model, w, n)
                    samples[(model, f"{w}{n}")][e].append(r["tps"])
                    if e == "llama.cpp" and "build_commit" in r:
                        llama_info.update({k: r[k] for k in ("build_commit", "build_number", "cpu_info")})
                    print(
                        f"rep {rep + 1}/{a.reps} {pathlib.Path(model).name} {w}{n} {e}: {r['tps']:.1f} t/s", flush=True
                    )

    rows = summarize(samples)
    cpu = cpu_model()
    load = (load_start, os.getloadavg()[0])
    print(f"\nCPU: {cpu}; threads {a.threads}; reps {a.reps} (median); ratio = pyakvq / llama.cpp")
    print(f"load average (1 min) at start / end: {load[0]:.1f} / {load[1]:.1f} on {os.cpu_count()} CPUs")
    for k, v in llama_info.items():
        print(f"llama.cpp {k}: {v}")
    print(format_table(rows))
    if a.json:
        res = {"cpu": cpu, "threads": a.threads, "reps": a.reps, "load_avg": load, "llama_cpp": llama_info}
        res["rows"] = rows
        pathlib.Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
