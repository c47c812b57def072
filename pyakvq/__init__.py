"""pyakvq: a native inference engine for vision-language models with a 2-bit AKVQ KV cache."""

from .demo import demo_model_path
from .generation import Token, TokenStream
from .model import Model
from .perplexity import perplexity
from .saliency import profile_saliency, write_tsa_layers


def cpu_info() -> dict:
    """The CPU features this process detected and the matmul kernel set in use:
    {'isa': 'avx512' | 'avx2' | 'neon' | 'scalar', 'avx2': bool, 'avx512': bool (F/BW/VL/DQ),
    'avx512_vnni': bool, 'avx512_bf16': bool, 'avx512_kernels_compiled': bool}. The AVX-512
    kernels run when the CPU has AVX-512 F/BW/VL/DQ + VNNI + BF16; the environment variable
    AKVQ_ISA=avx2 (or scalar), read once per process, caps the choice."""
    from ._ext import _akvq

    return dict(_akvq.cpu_info())


def cuda_available() -> bool:
    """True when this build of pyakvq has the CUDA backend (built with nvcc, ``AKVQ_CUDA=AUTO`` or
    ``ON``), an NVIDIA GPU and driver are present, and the build's kernels run on GPU 0 (its
    architecture is among ``CMAKE_CUDA_ARCHITECTURES``). Never raises: False otherwise, and
    :func:`cuda_status` says why."""
    from ._ext import _akvq

    return bool(_akvq.cuda_available())


def cuda_status() -> str:
    """One line about CUDA in this process: ``'GPU 0: <name> (sm_XY, N GiB)'`` when available,
    else the reason (no CUDA backend in this build, no driver or device, a GPU older than the
    build's architectures). Never raises."""
    from ._ext import _akvq

    return str(_akvq.cuda_status())


__all__ = [
    "Model",
    "Token",
    "TokenStream",
    "cpu_info",
    "cuda_available",
    "cuda_status",
    "demo_model_path",
    "perplexity",
    "profile_saliency",
    "write_tsa_layers",
]
__version__ = "0.1.0"
