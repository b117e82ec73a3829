"""Greedy generation on a GGUF through llama-cpp-python, with our own token loop.

We drive `eval` ourselves (the shared loop in `generation.py`) instead of `create_completion`:
with a byte-level vocab the latter can run past `max_tokens` while a UTF-8 character is
incomplete, and our loop stops exactly at `<|im_end|>`, applies the call grammar and batches
the tokens it forces.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from fnedge.chat_format import IM_END
from fnedge.errors import FnedgeError
from fnedge.runtime.generation import Generation, timed_generation
from fnedge.runtime.guide import CallGuide

GGML_TYPE_F32 = 0


def open_llama(gguf_path: str | Path, **settings: Any) -> Any:
    """A `llama_cpp.Llama` for `gguf_path`, not verbose; every caller in fnedge opens GGUF files here.

    On a CPU with Intel AMX, llama.cpp's AMX matrix kernels (an "extra buffer type") crash the
    process on the first batch of two or more tokens (llama-cpp-python 0.3.36, seen on this
    machine: a segmentation fault in ggml_backend_amx_mul_mat), so there the weights stay in plain
    CPU buffers. Elsewhere (a Raspberry Pi's ARM repacking of Q4_0 among them) nothing changes."""
    try:
        import llama_cpp
        import llama_cpp.llama as llama_module
    except ImportError:
        raise FnedgeError("llama-cpp-python is not installed: pip install llama-cpp-python") from None
    if not Path(gguf_path).is_file():
        raise FnedgeError(f"{gguf_path}: GGUF file not found")
    # Llama() takes no argument for it: its model defaults are swapped for this one call.
    defaults = llama_module.llama_cpp.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = defaults()
        params.use_extra_bufts = False
        return params

    if _cpu_has_amx():
        llama_module.llama_cpp.llama_model_default_params = without_extra_buffers
    try:
        return llama_cpp.Llama(model_path=str(gguf_path), verbose=False, **settings)
    finally:
        llama_module.llama_cpp.llama_model_default_params = defaults


@functools.cache
def _cpu_has_amx() -> bool:
    try:
        return " amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


class LlamaBackend:
    def __init__(self, gguf_path: Path, n_threads: int, n_ctx: int) -> None:
        # An F32 KV cache (llama.cpp defaults to F16): a few MB for our models, and greedy
        # outputs then follow the torch model instead of flipping on near-ties.
        self.llm = open_llama(gguf_path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                              n_batch=min(512, n_ctx), seed=0, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)
        self.n_ctx = n_ctx
        self.eos_id = self.tokenize(IM_END)[0]
        self.n_vocab = self.llm.n_vocab()
        self.reuse_prefix = True  # off only to measure what keeping the shared prefix saves

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def token_bytes(self, token: int) -> bytes:
        return self.llm.detokenize([token], special=True)

    def detokenize(self, tokens: list[int]) -> bytes:
        return self.llm.detokenize(tokens, special=True)

    def prefill(self, tokens: list[int]) -> np.ndarray:
        """Start a new sequence. The KV cache of the prefix it shares with the previous one (the
        template before the user's words: system turn and tool schemas when there are any, or
        an earlier turn of the same conversation) is kept, and only the rest is evaluated."""
        cached = list(self.llm.input_ids[: self.llm.n_tokens])
        keep = 0
        if self.reuse_prefix:
            for a, b in zip(cached, tokens[:-1]):  # at least one token is evaluated, for fresh logits
                if a != b:
                    break
                keep += 1
        if keep and self.llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            self.llm.n_tokens = keep
        else:
            keep = 0
            self.llm.reset()
        return self.extend(tokens[keep:])

    def extend(self, tokens: list[int]) -> np.ndarray:
        self.llm.eval(tokens)
        return self._last_logits().copy()

    def prompt_logits(self, prompt_tokens: list[int]) -> np.ndarray:
        """Next-token logits after the prompt (for parity checks against torch)."""
        return self.prefill(prompt_tokens)

    def _last_logits(self) -> np.ndarray:
        # Read llama.cpp's logits of the last evaluated token directly: without logits_all,
        # llama-cpp-python no longer copies them into `scores` (and logits_all would compute
        # the output head for every prompt token).
        import llama_cpp
        pointer = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def decode(self, tokens: list[int]) -> str:
        # An incomplete UTF-8 tail (cut by the token limit) is dropped, never a crash.
        return self.detokenize(tokens).decode("utf-8", errors="ignore")

    def generate(self, prompt: str, max_tokens: int = 256, guide: CallGuide | None = None) -> Generation:
        return timed_generation(self, prompt, max_tokens, guide)
