"""pyakvq: a native inference engine for vision-language models with a 2-bit AKVQ KV cache."""

from ._ext import _akvq

__all__ = ["_akvq"]
__version__ = "0.1.0"
