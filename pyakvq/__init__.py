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


__all__ = [
    "Model",
    "Token",
    "TokenStream",
    "cpu_info",
    "demo_model_path",
    "perplexity",
    "profile_saliency",
    "write_tsa_layers",
]
__version__ = "0.1.0"
