"""The CMake switches: AKVQ_CUDA=ON fails at configure time while there is no CUDA backend (no
kernels in cuda/), AUTO and OFF configure the CPU engine with the stub backend."""

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")


def configure(tmp_path, *defs):
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    return subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(tmp_path / "b"), *gen, "-DAKVQ_BUILD_TESTS=OFF", *defs],
        capture_output=True,
        text=True,
        timeout=300,
    )


def has_cuda_backend() -> bool:
    return any((ROOT / "cuda").glob("*.cu"))


def test_cuda_on_without_backend_fails(tmp_path):
    if has_cuda_backend():
        pytest.skip("the CUDA backend exists: AKVQ_CUDA=ON is a valid configuration")
    r = configure(tmp_path, "-DAKVQ_CUDA=ON")
    assert r.returncode != 0
    out = " ".join((r.stdout + r.stderr).split())  # CMake wraps long messages
    assert "AKVQ_CUDA=ON, but this version of pyakvq has no CUDA backend yet" in out, out
    assert "-DAKVQ_CUDA=OFF or AUTO" in out


@pytest.mark.parametrize("mode", ["AUTO", "OFF"])
def test_cuda_auto_and_off_configure(tmp_path, mode):
    r = configure(tmp_path, f"-DAKVQ_CUDA={mode}")
    assert r.returncode == 0, r.stderr
    if not has_cuda_backend():
        assert f"pyakvq: CUDA backend OFF (AKVQ_CUDA={mode})" in r.stdout


def test_cuda_bad_value(tmp_path):
    r = configure(tmp_path, "-DAKVQ_CUDA=maybe")
    assert r.returncode != 0 and "AKVQ_CUDA must be AUTO, ON or OFF" in " ".join(r.stderr.split())
