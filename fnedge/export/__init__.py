"""Export trained models for on-device runtimes."""

from fnedge.export.gguf_writer import QUANT_TYPES, write_gguf

__all__ = ["QUANT_TYPES", "write_gguf"]
