"""GPU benchmarks (need a GPU; the tools are built by tests/gpu/run.sh, or cmake -DAKVQ_CUDA=ON
-DAKVQ_BUILD_TESTS=ON):

1. Decode attention over the f16 cache vs the packed akvq2 cache (flash-decoding kernels of
   cuda/kv_attend.cu), LLaVA-1.5-7B attention shape (32 heads, head_dim 128, no GQA) at contexts
   4k / 32k / 128k: time per decode step of one layer, bytes read, achieved GB/s and its fraction of
   the card's peak, akvq2's speedup (target at 32k: >= 4x).
2. With --model-tool: a random-weight model of the LLaVA-1.5-7B decoder shape on the GPU, per KV
   mode: prefill and single-sequence decode tokens/s, and the batch that fits a fixed KV memory
   budget at ~1k context with its tokens/s (targets: akvq2 >= 3x the batch, >= 2.5x the throughput).

    python bench/gpu.py --tool build/gpu/tools_gpu_bench [--model-tool build/gpu/tools_gpu_model_bench]
                        [--ctx 4096,32768,131072] [--json out.json]

Prints tables and writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys


def run_tool(tool: str, ctx: str, heads: int, kv_heads: int, head_dim: int, iters: int) -> list[dict]:
    cmd = [tool, "--ctx", ctx, "--heads", str(heads), "--kv-heads", str(kv_heads), "--head-dim", str(head_dim)]
    cmd += ["--iters", str(iters)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise SystemExit(f"bench/gpu.py: {tool} failed ({r.returncode}): {r.stderr.strip()}")
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def table(rows: list[dict]) -> str:
    out = ["| ctx | mode | µs / step | MB read | GB/s | % of peak | akvq2 speedup |", "|---|---|---|---|---|---|---|"]
    f16 = {r["ctx"]: r["us"] for r in rows if r["mode"] == "f16"}
    for r in rows:
        peak = f"{100 * r['gbps'] / r['peak_gbps']:.0f}%" if r["peak_gbps"] > 0 else "n/a"
        speed = f"{f16[r['ctx']] / r['us']:.2f}×" if r["mode"] == "akvq2" and r["ctx"] in f16 else ""
        mb = r["bytes"] / 1e6
        out.append(f"| {r['ctx']} | {r['mode']} | {r['us']:.1f} | {mb:.1f} | {r['gbps']:.0f} | {peak} | {speed} |")
    return "\n".join(out)


def run_model_tool(tool: str, shape: str, wtype: str, budget_gib: float) -> list[dict]:
    cmd = [tool, "--shape", shape, "--type", wtype, "--budget-gib", str(budget_gib)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"bench/gpu.py: {tool} failed ({r.returncode}): {r.stderr.strip()}")
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def model_table(rows: list[dict]) -> str:
    out = [
        "| shape | weights | kv | prefill t/s | decode t/s | KV budget | slots | batch t/s | vs f16 (slots, t/s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    f16 = {(r["shape"], r["type"]): r for r in rows if r["kv"] == "f16"}
    for r in rows:
        base = f16.get((r["shape"], r["type"]))
        rel = ""
        if base and r["kv"] != "f16" and base["slots"] and base["batch_tps"]:
            rel = f"{r['slots'] / base['slots']:.2f}×, {r['batch_tps'] / base['batch_tps']:.2f}×"
        out.append(
            f"| {r['shape']} | {r['type']} | {r['kv']} | {r['prefill_tps']:.0f} | {r['decode_tps']:.1f} | "
            f"{r['budget_gib']:g} GiB @ {r['n_ctx']} | {r['slots']} | {r['batch_tps']:.0f} | {rel} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tool", required=True, help="path of tools_gpu_bench")
    ap.add_argument("--ctx", default="4096,32768,131072", help="comma-separated context lengths")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=32)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--model-tool", help="path of tools_gpu_model_bench (model-level benchmark)")
    ap.add_argument("--shape", default="7b", choices=("7b", "1.1b"))
    ap.add_argument("--types", default="q4_0,f16", help="weight types of the model benchmark")
    ap.add_argument("--budget-gib", type=float, default=8.0, help="KV memory budget of the batch benchmark")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args(argv)
    if not pathlib.Path(a.tool).exists():
        ap.error(f"--tool {a.tool}: no such file (build it with tests/gpu/run.sh)")
    rows = run_tool(a.tool, a.ctx, a.heads, a.kv_heads, a.head_dim, a.iters)
    if rows:
        print(f"device: {rows[0]['device']}; peak {rows[0]['peak_gbps']:.0f} GB/s")
    print(table(rows))
    result = {"attend": rows}
    if a.model_tool:
        mrows = []
        for wtype in a.types.split(","):
            mrows += run_model_tool(a.model_tool, a.shape, wtype, a.budget_gib)
        print()
        print(model_table(mrows))
        result["model"] = mrows
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
