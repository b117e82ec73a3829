"""What every backend's greedy generation returns, and the timing loop they share."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass
class Generation:
    text: str
    tokens: list[int]
    prompt_tokens: int
    ttft_ms: float
    total_ms: float


class TokenStreamer(Protocol):
    def tokenize(self, text: str) -> list[int]: ...
    def stream(self, prompt_tokens: list[int], max_tokens: int) -> Iterator[int]: ...
    def decode(self, tokens: list[int]) -> str: ...


def timed_generation(backend: TokenStreamer, prompt: str, max_tokens: int) -> Generation:
    """Run a backend's token stream to the end, timing the first token and the whole reply."""
    started = time.perf_counter()
    prompt_tokens = backend.tokenize(prompt)
    tokens: list[int] = []
    ttft = 0.0
    for token in backend.stream(prompt_tokens, max_tokens):
        if not tokens:
            ttft = (time.perf_counter() - started) * 1000
        tokens.append(token)
    total = (time.perf_counter() - started) * 1000
    return Generation(text=backend.decode(tokens), tokens=tokens, prompt_tokens=len(prompt_tokens),
                      ttft_ms=ttft or total, total_ms=total)
