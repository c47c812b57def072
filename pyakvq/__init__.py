"""pyakvq: a native inference engine for vision-language models with a 2-bit AKVQ KV cache."""

from .generation import Token
from .model import Model

__all__ = ["Model", "Token"]
__version__ = "0.1.0"
