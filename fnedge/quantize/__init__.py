"""Quantizers that work on written GGUF files (gguf-py's own quantizers live in the GGUF writer)."""

from fnedge.quantize.llama_quantizer import LLAMA_QUANTS, quantize_gguf, quantizer_info

__all__ = ["LLAMA_QUANTS", "quantize_gguf", "quantizer_info"]
