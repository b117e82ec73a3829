"""Greedy generation on a GGUF through llama-cpp-python, with our own token loop.

We drive `eval` ourselves (the shared loop in `generation.py`) instead of `create_completion`:
with a byte-level vocab the latter can run past `max_tokens` while a UTF-8 character is
incomplete, and our loop stops exactly at `<|im_end|>`, applies the call grammar and batches
the tokens it forces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fnedge.chat_format import IM_END
from fnedge.errors import FnedgeError
from fnedge.runtime.generation import Generation, timed_generation
from fnedge.runtime.guide import CallGuide

GGML_TYPE_F32 = 0


class LlamaBackend:
    def __init__(self, gguf_path: Path, n_threads: int, n_ctx: int) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise FnedgeError("llama-cpp-python is not installed: pip install llama-cpp-python") from None
        # An F32 KV cache (llama.cpp defaults to F16): a few MB for our models, and greedy
        # outputs then follow the torch model instead of flipping on near-ties.
        self.llm = Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_threads=n_threads,
                         n_threads_batch=n_threads, n_batch=min(512, n_ctx), verbose=False, seed=0,
                         type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)
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
