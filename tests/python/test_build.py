"""The CMake switches: AKVQ_CUDA=AUTO builds the CUDA backend when nvcc is found and the CPU engine
with the stub backend otherwise; ON without nvcc fails at configure time naming the fix; OFF never
uses CUDA; anything else is refused."""

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CMAKE = shutil.which("cmake")
NINJA = shutil.which("ninja")

pytestmark = pytest.mark.skipif(CMAKE is None, reason="cmake is not installed")


def configure(tmp_path, *defs, env=None):
    gen = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={NINJA}"] if NINJA else []
    return subprocess.run(
        [CMAKE, "-S", str(ROOT), "-B", str(tmp_path / "b"), *gen, "-DAKVQ_BUILD_TESTS=OFF", *defs],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def env_without_nvcc():
    """The environment with every PATH entry that holds nvcc removed and CUDACXX unset."""
    env = dict(os.environ)
    env.pop("CUDACXX", None)
    env.pop("CUDA_PATH", None)
    env["PATH"] = os.pathsep.join(
        d for d in env.get("PATH", "").split(os.pathsep) if d and not (pathlib.Path(d) / "nvcc").exists()
    )
    return env


def test_cuda_on_without_nvcc_fails_naming_the_fix(tmp_path):
    r = configure(tmp_path, "-DAKVQ_CUDA=ON", env=env_without_nvcc())
    out = " ".join((r.stdout + r.stderr).split())
    if r.returncode == 0 and "CUDA backend ON" in out:
        pytest.skip("CMake found nvcc outside PATH: cannot hide the CUDA compiler here")
    assert r.returncode != 0
    assert "AKVQ_CUDA=ON but no CUDA compiler (nvcc) was found" in out, out
    assert "-DAKVQ_CUDA=OFF" in out


def test_cuda_auto_without_nvcc_builds_the_cpu_engine(tmp_path):
    r = configure(tmp_path, "-DAKVQ_CUDA=AUTO", env=env_without_nvcc())
    assert r.returncode == 0, r.stderr
    if "CUDA backend ON" in r.stdout:
        pytest.skip("CMake found nvcc outside PATH: cannot hide the CUDA compiler here")
    assert "pyakvq: CUDA backend OFF (AKVQ_CUDA=AUTO)" in r.stdout


@pytest.mark.parametrize("mode", ["AUTO", "OFF"])
def test_cuda_auto_and_off_configure(tmp_path, mode):
    r = configure(tmp_path, f"-DAKVQ_CUDA={mode}", "-DCMAKE_CUDA_ARCHITECTURES=90")
    assert r.returncode == 0, r.stderr
    on = mode == "AUTO" and shutil.which("nvcc") is not None
    assert f"pyakvq: CUDA backend {'ON' if on else 'OFF'} (AKVQ_CUDA={mode})" in r.stdout


def test_cuda_bad_value(tmp_path):
    r = configure(tmp_path, "-DAKVQ_CUDA=maybe")
    assert r.returncode != 0 and "AKVQ_CUDA must be AUTO, ON or OFF" in " ".join(r.stderr.split())
