"""CUDA in the Python API and the build: pyakvq.cuda_available() is a bool and never raises, with
cuda_status() saying why; with nvcc at hand the CUDA kernels, the engine glue and the GPU tests
build for one architecture (sm_90) and the GPU tests pass, or skip with the reason when no GPU is
present (tests/gpu/run.sh runs the same binary on a GPU machine)."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import pyakvq

ROOT = pathlib.Path(__file__).resolve().parents[2]
CUDA_BUILD = ROOT / "build" / "cuda-sm90"


def test_cuda_available_is_a_bool_and_status_says_why():
    ok = pyakvq.cuda_available()
    status = pyakvq.cuda_status()
    assert isinstance(ok, bool)
    assert isinstance(status, str) and status and "\n" not in status
    if ok:
        assert status.startswith("GPU 0: ")
    else:
        assert ("no CUDA backend" in status) or ("CUDA" in status and "device" in status) or ("cannot run" in status)


def test_cuda_available_without_visible_devices_is_false():
    # the child imports the pyakvq under test: run from its package's parent, absolute paths
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    for var in ("PYTHONPATH", "AKVQ_EXT_DIR"):
        if env.get(var):
            env[var] = os.pathsep.join(str(pathlib.Path(p).resolve()) for p in env[var].split(os.pathsep))
    r = subprocess.run(
        [sys.executable, "-c", "import pyakvq; print(pyakvq.cuda_available()); print(pyakvq.cuda_status())"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=pathlib.Path(pyakvq.__file__).resolve().parent.parent,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "False", r.stdout
    assert lines[1]


def test_cuda_build_and_gpu_tests():
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not installed: the CUDA backend cannot be built here")
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    if not (CUDA_BUILD / "CMakeCache.txt").exists():
        r = subprocess.run(
            [
                "cmake",
                "-S",
                str(ROOT),
                "-B",
                str(CUDA_BUILD),
                *gen,
                "-DCMAKE_BUILD_TYPE=Release",
                "-DAKVQ_BUILD_TESTS=ON",
                "-DAKVQ_CUDA=ON",
                "-DCMAKE_CUDA_ARCHITECTURES=90",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, f"configure failed:\n{r.stdout}\n{r.stderr}"
    jobs = str(max(1, min(os.cpu_count() or 1, 4)))
    r = subprocess.run(
        ["cmake", "--build", str(CUDA_BUILD), "-j", jobs, "--target", "akvq_gpu_tests", "tools_gpu_bench"],
        capture_output=True,
        text=True,
        timeout=2400,
    )
    assert r.returncode == 0, f"CUDA build failed:\n{r.stdout[-20000:]}\n{r.stderr[-20000:]}"
    r = subprocess.run([str(CUDA_BUILD / "akvq_gpu_tests")], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-20000:] + r.stderr[-5000:]
    assert "[  PASSED  ]" in r.stdout
    if "[  SKIPPED ]" in r.stdout:  # no GPU: every skip says why
        assert "no usable CUDA device" in r.stdout or "no CUDA device" in r.stdout, r.stdout[-5000:]
    # the benchmark tool refuses cleanly without a GPU, and rejects unknown options
    tool = str(CUDA_BUILD / "tools_gpu_bench")
    b = subprocess.run([tool, "--bogus", "1"], capture_output=True, text=True, timeout=60)
    assert b.returncode == 2 and "unknown option --bogus" in b.stderr


def test_model_device_option():
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'auto'"):
        pyakvq.Model(device="gpu")
    with pyakvq.Model(device="auto") as m:
        assert m.info["device"] == ("cuda" if pyakvq.cuda_available() else "cpu")
        if not pyakvq.cuda_available():  # the CPU, and why not the GPU (it was empty without a device)
            assert m.info["device_note"] == pyakvq.cuda_status() and m.info["device_note"]
    if not pyakvq.cuda_available():
        with pytest.raises(RuntimeError, match=r"\[cuda\]"):
            pyakvq.Model(device="cuda")
