"""The one greedy decoding loop every backend shares, and what it returns.

A backend only knows how to run tokens through its model (`prefill` a prompt, `extend` it by
some tokens) and returns the logits of the last position; choosing tokens, the grammar guide,
forced tokens, the stop token and the timing live here, once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from fnedge.errors import FnedgeError

if TYPE_CHECKING:
    from fnedge.runtime.guide import CallGuide


CALL_OVERRUN = 64  # tokens a call open at `max_tokens` may still take to close


@dataclass
class Generation:
    text: str
    tokens: list[int]
    prompt_tokens: int
    ttft_ms: float
    total_ms: float
    forced_tokens: int = 0  # tokens the call grammar appended without a decode step of their own


class StepModel(Protocol):
    eos_id: int
    n_ctx: int

    def tokenize(self, text: str) -> list[int]: ...
    def decode(self, tokens: list[int]) -> str: ...
    def token_bytes(self, token: int) -> bytes: ...
    def prefill(self, tokens: list[int]) -> np.ndarray: ...  # fresh state; last position's logits
    def extend(self, tokens: list[int]) -> np.ndarray: ...   # append to the state; last logits


def stream_tokens(model: StepModel, prompt_tokens: list[int], max_tokens: int,
                  guide: CallGuide | None = None) -> Iterator[int]:
    """Yield greedily chosen tokens until the stop token or the budget.

    With a guide, tokens inside a call follow the call grammar, and the tokens it forces are
    evaluated together in one `extend` (a batched step instead of one step per token). A call's
    tokens come out when it closes: a call identical to an earlier one of the same reply is a
    tiny model's loop, not a request to act twice (a second message, a second booking), so it is
    dropped and the reply ends there."""
    tokens = _guided_tokens(model, prompt_tokens, max_tokens, guide)
    if guide is None:
        yield from tokens
        return
    held: list[int] = []
    for token in tokens:
        if not (guide.active or held):
            yield token
            continue
        held.append(token)
        if not guide.active:  # this token closed the call
            if guide.invented:  # dropped: the reply starts over, in prose
                held.clear()
                continue
            if guide.repeated:
                return
            yield from held
            held.clear()
    yield from held  # a call still open at the end: the parser decides what it is worth


def _guided_tokens(model: StepModel, prompt_tokens: list[int], max_tokens: int,
                   guide: CallGuide | None) -> Iterator[int]:
    if not prompt_tokens:
        raise FnedgeError("empty prompt: the model needs at least one token to continue")
    room = model.n_ctx - len(prompt_tokens)
    if room <= 0:
        raise FnedgeError(f"prompt of {len(prompt_tokens)} tokens does not fit the context of {model.n_ctx}")
    # A call still open when `max_tokens` runs out may finish (up to CALL_OVERRUN more tokens):
    # half a call is worth nothing, and the limit is there to stop runaway prose.
    budget = min(max_tokens, room)
    hard_limit = min(max_tokens + (guide.overrun if guide else 0), room)
    logits = model.prefill(prompt_tokens)
    produced = 0
    while produced < budget or (guide is not None and guide.active and produced < hard_limit):
        limit = hard_limit if guide is not None and guide.active else budget
        forced = guide.forced()[: limit - produced] if guide else []
        step = forced or [_choose(logits, guide)]
        if step[0] == model.eos_id:
            return
        if produced == 0 and guide is not None and guide.every_tool_grammar is not None \
                and step == [guide.factory.open_id]:
            opened = _open_or_ask(model, step, guide, room=limit - produced)
            if opened is None:  # withdrawn: the reply starts over, in prose
                logits = model.prefill(prompt_tokens)
                continue
            step, logits = opened
            yield from step
            produced += len(step)
            continue
        for token in step:
            if guide:
                guide.observe(token)
            yield token
        produced += len(step)
        if guide is not None and guide.invented:  # a call that invents a value: ask instead
            guide.invented = False
            guide.withdraw_call()
            logits, produced = model.prefill(prompt_tokens), 0
            continue
        if produced < hard_limit:  # the last token's logits would never be read
            logits = model.extend(step)


def _open_or_ask(model: StepModel, opening: list[int], guide: CallGuide,
                 room: int) -> tuple[list[int], np.ndarray] | None:
    """The reply opens a call: run it up to the tool name. If the model's tool is one it cannot
    call (a required value the user did not say), withdraw the call (None), so that the reply
    asks for the value; else return the opening tokens (observed and evaluated) and the logits
    at the name, so that going on costs nothing extra. `room`: tokens the budget still allows."""
    for token in opening:
        guide.observe(token)
    head = guide.forced()
    if len(opening) + len(head) > room:  # the name is past the budget: no call will close anyway
        guide.forced_count -= len(head)
        return opening, model.extend(opening)
    for token in head:
        guide.observe(token)
    name_logits = model.extend(opening + head)
    if guide.prefers_uncallable(name_logits, head):
        guide.withdraw_call()
        return None
    return opening + head, name_logits


def _choose(logits: np.ndarray, guide: CallGuide | None) -> int:
    return int(np.argmax(guide.mask(logits) if guide else logits))


def timed_generation(model: StepModel, prompt: str, max_tokens: int,
                     guide: CallGuide | None = None) -> Generation:
    """Run the loop to the end, timing the first token and the whole reply."""
    started = time.perf_counter()
    prompt_tokens = model.tokenize(prompt)
    tokens: list[int] = []
    ttft = 0.0
    for token in stream_tokens(model, prompt_tokens, max_tokens, guide):
        if not tokens:
            ttft = (time.perf_counter() - started) * 1000
        tokens.append(token)
    total = (time.perf_counter() - started) * 1000
    return Generation(text=model.decode(tokens), tokens=tokens, prompt_tokens=len(prompt_tokens),
                      ttft_ms=ttft or total, total_ms=total,
                      forced_tokens=guide.forced_count if guide else 0)
