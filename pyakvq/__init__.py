"""pyakvq: a native inference engine for vision-language models with a 2-bit AKVQ KV cache."""

from .generation import Token, TokenStream
from .model import Model
from .perplexity import perplexity
from .saliency import profile_saliency, write_tsa_layers

__all__ = ["Model", "Token", "TokenStream", "perplexity", "profile_saliency", "write_tsa_layers"]
__version__ = "0.1.0"
