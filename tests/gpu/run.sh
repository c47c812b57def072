#!/usr/bin/env bash
# The one script a machine with an NVIDIA GPU runs first (under 8 minutes; log in $LOG):
# builds the engine with CUDA for the GPU at hand, runs the GPU tests (kernel parity against the
# CPU engine) and the GPU benchmark (bench/gpu.py: table + JSON).
#   tests/gpu/run.sh [LOG_DIR]       (default: ${OUT:-build/gpu-logs})
set -uo pipefail
cd "$(dirname "$0")/../.."
LOG_DIR="${1:-${OUT:-build/gpu-logs}}"
mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/gpu_run.log"
exec > >(tee "$LOG") 2>&1
echo "== $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo no-git)"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv || true
ARCH="${CMAKE_CUDA_ARCHITECTURES:-native}"
BUILD=build/gpu
JOBS=$(nproc)
t0=$SECONDS
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DAKVQ_BUILD_TESTS=ON -DAKVQ_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >/dev/null || { echo "configure failed"; exit 1; }
cmake --build "$BUILD" -j "$JOBS" --target akvq_gpu_tests tools_gpu_bench tools_gpu_model_bench || { echo "build failed"; exit 1; }
echo "== build: $((SECONDS - t0)) s"
rc=0
timeout 300 "$BUILD/akvq_gpu_tests" --gtest_brief=0 || rc=1
echo "== gpu tests: rc=$rc, $((SECONDS - t0)) s"
timeout 300 python3 bench/gpu.py --tool "$BUILD/tools_gpu_bench" --model-tool "$BUILD/tools_gpu_model_bench" \
  --types "${GPU_BENCH_TYPES:-q4_0}" --json "$LOG_DIR/gpu_bench.json" || rc=1
echo "== bench: $((SECONDS - t0)) s, rc=$rc"
exit $rc
