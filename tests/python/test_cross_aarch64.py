"""Cross-builds the C++ unit tests for 64-bit ARM (NEON kernels, cmake/aarch64-linux-gnu.cmake) and
runs the op / KV-quantization (NEON KV cache kernels included) / f16 attention (NEON fp16
conversion) / WHT subset under qemu-user. Skips when the cross toolchain, qemu or the GTest
sources (libgtest-dev) are missing. The build goes to
build/aarch64 and is reused."""

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
AARCH64_BUILD = ROOT / "build" / "aarch64"
TRIPLE = "aarch64-linux-gnu"
SYSROOT = pathlib.Path("/usr") / TRIPLE
GTEST_SOURCES = pathlib.Path("/usr/src/googletest")
GTEST_FILTER = "Ops*:KvQuant*:KvF16*:KvTile*:Wht*"


@pytest.fixture(scope="module")
def aarch64_build() -> pathlib.Path:
    """Configures (once) and builds akvq_tests for aarch64 into build/aarch64; returns the directory."""
    missing = [t for t in (f"{TRIPLE}-g++", "qemu-aarch64", "cmake") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"aarch64 cross test needs {', '.join(missing)} (apt: g++-{TRIPLE} qemu-user cmake)")
    if not (GTEST_SOURCES / "CMakeLists.txt").exists():
        pytest.skip(f"aarch64 cross test needs the GTest sources in {GTEST_SOURCES} (apt: libgtest-dev)")
    if not (AARCH64_BUILD / "CMakeCache.txt").exists():
        r = subprocess.run(
            [
                "cmake",
                "-S",
                str(ROOT),
                "-B",
                str(AARCH64_BUILD),
                *(["-G", "Ninja"] if shutil.which("ninja") else []),
                f"-DCMAKE_TOOLCHAIN_FILE={ROOT / 'cmake' / 'aarch64-linux-gnu.cmake'}",
                "-DCMAKE_BUILD_TYPE=Release",
                "-DAKVQ_NATIVE=OFF",
                "-DAKVQ_CUDA=OFF",
                "-DAKVQ_BUILD_TESTS=ON",
                f"-DAKVQ_GTEST_SOURCE_DIR={GTEST_SOURCES}",
            ],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, f"aarch64 cmake configure failed:\n{r.stdout}\n{r.stderr}"
    jobs = str(max(1, min(os.cpu_count() or 1, 4)))
    r = subprocess.run(
        ["cmake", "--build", str(AARCH64_BUILD), "--target", "akvq_tests", "-j", jobs], capture_output=True, text=True
    )
    assert r.returncode == 0, f"aarch64 test build failed:\n{r.stdout[-20000:]}\n{r.stderr[-20000:]}"
    return AARCH64_BUILD


def test_aarch64_neon_ops_under_qemu(aarch64_build):
    exe = aarch64_build / "akvq_tests"
    r = subprocess.run(
        ["qemu-aarch64", "-L", str(SYSROOT), str(exe), f"--gtest_filter={GTEST_FILTER}"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    out = r.stdout[-20000:] + r.stderr[-20000:]
    assert r.returncode == 0, out
    assert "[  PASSED  ]" in r.stdout, out
    # the NEON tiles were compiled in and selected (not the scalar fallback), and the parity tests ran
    assert "[       OK ] OpsSimd.EveryTypeHasTileKernelsWhenSimdIsCompiledIn" in r.stdout, out
    assert "[       OK ] OpsMatmul.EveryTileShapeAndChunking" in r.stdout, out
    # the NEON KV cache kernels (engine/kv/quant_neon.cpp) serve 2 and 4 bits and match the references
    assert "[       OK ] KvQuantSimd.NeonServesTwoAndFourBits" in r.stdout, out
    assert "[       OK ] KvQuantSimd.OddGroupSizesAndTailsMatchDequantizedAttention" in r.stdout, out
