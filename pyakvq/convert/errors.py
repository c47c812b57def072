"""The converter's error types. Every problem with the input checkpoint raises a ConvertError whose
message is one line naming the file, field or tensor; the CLI prints it and exits with status 2."""

from __future__ import annotations


class ConvertError(ValueError):
    """A checkpoint that cannot be converted (base class of the errors below)."""


class UnknownArchitectureError(ConvertError):
    """config.json names an architecture (or sub-model type) no converter module handles."""


class MissingFileError(ConvertError, FileNotFoundError):
    """A file the conversion needs is absent (config.json, a safetensors shard, the tokenizer, ...)."""


class MissingFieldError(ConvertError):
    """A required configuration field is absent (or its transformers default does not fit the weights)."""


class CheckpointError(ConvertError):
    """The files exist but are inconsistent: a tensor is missing or has the wrong shape or dtype, a
    JSON file does not parse, a value is out of range, ..."""
