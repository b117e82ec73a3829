"""K-quants through llama.cpp's own quantizer (the one `llama-quantize` runs).

gguf-py can write the legacy block types (Q8_0, Q4_0, ...) but not K-quants, so
`quantize_gguf(source, out_path, quant)` hands an F16/F32 GGUF written by our GGUF writer to
`llama_model_quantize` in llama-cpp-python's bundled llama.cpp:

* `q4_k_m`, `q5_k_m`, `q6_k` use llama.cpp's recipes: the _M mixtures give some tensors more
  bits (attn_v / ffn_down in some layers, Q6_K for the output head -- with tied embeddings
  that is token_embd).
* K-quants pack rows in super-blocks of 256 values. llama.cpp quietly stores a tensor whose rows
  are not a multiple of 256 in a legacy type instead (Q4_K -> Q5_0, Q5_K -> Q5_1,
  Q6_K -> Q8_0); fc-nano (hidden 128) gets that for every matrix. The returned record reads the
  types back from the written file, so it states what was stored, not what was asked for.
* The source must hold only F32/F16/BF16 tensors: llama.cpp would otherwise copy already
  quantized tensors through unchanged and still report success.
* llama.cpp's log (hundreds of lines per file) is captured while it runs; on failure its last
  error line goes into the FnedgeError.
* The output is written to a temporary file in the target folder, synced, then renamed.
  llama.cpp's quantization is a pure function of the input bytes, so same input -> same output.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from fnedge.errors import FnedgeError

# our quant name -> llama_cpp's ftype constant (and GGUF general.file_type)
LLAMA_FTYPES: dict[str, str] = {
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
}
LLAMA_QUANTS = tuple(LLAMA_FTYPES)
K_SUPER_BLOCK = 256
_K_TYPES = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"}
_SOURCE_TYPES = {"F32", "F16", "BF16"}
_GGUF_MAGIC = b"GGUF"


def quantizer_info() -> dict[str, Any]:
    """Which quantizer wrote the K-quant artifacts, for the build manifest."""
    return {"name": "llama.cpp", "package": "llama-cpp-python", "version": _llama_cpp_version()}


def quantize_gguf(source: Path, out_path: Path, quant: str, threads: int | None = None) -> dict[str, Any]:
    """Quantize the F16/F32 GGUF `source` to `quant`, written atomically to `out_path`.

    Returns {"quant", "path", "file_type", "tensors": {name: stored type},
    "fallbacks": {name: reason}, "quantizer": quantizer_info()}.
    """
    source, out_path = Path(source), Path(out_path)
    quant = quant.lower()
    if quant not in LLAMA_FTYPES:
        raise FnedgeError(f"unknown llama.cpp quant type '{quant}' (choose from {', '.join(LLAMA_QUANTS)})")
    _check_source(source)
    llama_cpp = _import_llama_cpp()

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, LLAMA_FTYPES[quant])
    params.nthread = threads or 0  # 0: all cores; rows are quantized independently, so the bytes do not depend on it

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.parent / f".{out_path.name}.{secrets.token_hex(4)}.tmp"
    try:
        with _captured_llama_log(llama_cpp) as log:
            status = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
        if status != 0 or not tmp.is_file():
            raise FnedgeError(f"{source}: llama.cpp could not quantize it to {quant} ({_last_error(log)})")
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    tensors, fallbacks = stored_tensor_types(out_path)
    return {"quant": quant, "path": str(out_path), "file_type": LLAMA_FTYPES[quant].removeprefix("LLAMA_FTYPE_"),
            "tensors": tensors, "fallbacks": fallbacks, "quantizer": quantizer_info()}


def stored_tensor_types(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Every tensor's stored type, and the matrices that could not take a K-quant, with why.

    A matrix is a fallback when its rows do not split into 256-value super-blocks and it was
    therefore stored in a legacy type; the _M recipes' Q6_K choices are not fallbacks.
    """
    reader = _read_gguf(path)
    types: dict[str, str] = {}
    fallbacks: dict[str, str] = {}
    for tensor in reader.tensors:
        kind = tensor.tensor_type.name
        types[tensor.name] = kind
        row = int(tensor.shape[0])  # GGUF lists dimensions innermost first: shape[0] is the row length
        if len(tensor.shape) > 1 and row % K_SUPER_BLOCK and kind not in _K_TYPES:
            fallbacks[tensor.name] = (f"row length {row} is not a multiple of the K-quant super-block "
                                      f"{K_SUPER_BLOCK} -> {kind}")
    return types, fallbacks


def _check_source(source: Path) -> None:
    """A readable GGUF whose tensors are all float (the only input llama.cpp re-quantizes)."""
    if not source.is_file():
        raise FnedgeError(f"{source}: GGUF file not found")
    with open(source, "rb") as handle:
        if handle.read(len(_GGUF_MAGIC)) != _GGUF_MAGIC:
            raise FnedgeError(f"{source}: not a GGUF file (no GGUF magic at the start)")
    reader = _read_gguf(source)
    quantized = sorted({t.tensor_type.name for t in reader.tensors} - _SOURCE_TYPES)
    if quantized:
        raise FnedgeError(f"{source}: holds {', '.join(quantized)} tensors; quantize from an F16 or F32 GGUF")
    if not reader.tensors:
        raise FnedgeError(f"{source}: the GGUF holds no tensors")


def _read_gguf(path: Path) -> Any:
    import gguf

    try:
        return gguf.GGUFReader(path)
    except Exception as exc:  # gguf-py raises ValueError, struct/numpy errors on damaged files
        raise FnedgeError(f"{path}: damaged GGUF file ({exc})") from None


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise FnedgeError("llama-cpp-python is not installed (needed for K-quants): "
                          "pip install llama-cpp-python") from None
    return llama_cpp


@contextlib.contextmanager
def _captured_llama_log(llama_cpp: Any) -> Iterator[list[str]]:
    """Collect llama.cpp's log while quantizing, then give logging back to llama-cpp-python."""
    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        lines.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        _restore_llama_log(llama_cpp)


def _restore_llama_log(llama_cpp: Any) -> None:
    try:
        from llama_cpp._logger import llama_log_callback
    except ImportError:  # a release without it: stay quiet rather than point at a dead callback
        llama_log_callback = _SILENT_LOG.setdefault("callback", llama_cpp.llama_log_callback(lambda *_: None))
    llama_cpp.llama_log_set(llama_log_callback, ctypes.c_void_p(0))


_SILENT_LOG: dict[str, Any] = {}  # keeps the fallback callback alive for as long as llama.cpp may call it


def _last_error(log: list[str]) -> str:
    text = "".join(log)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    failures = [line for line in lines if "fail" in line.lower() or "error" in line.lower()]
    return (failures or lines or ["no message from llama.cpp"])[-1]


def _llama_cpp_version() -> str | None:
    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return None
