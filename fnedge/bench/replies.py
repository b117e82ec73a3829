"""The reply shape the benchmark needs from anything it measures.

`fnedge.eval.runner.run_eval` reads `reply.turn` and `reply.latency_ms`; the benchmark also
reads `reply.generation` for token counts and time to first token. The runtime's Reply has all
three; baselines return this one, so they do not depend on the runtime's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from fnedge.chat_format import AssistantTurn


@dataclass
class Timing:
    """The fields of the runtime's Generation that the benchmark reads."""
    text: str
    tokens: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    ttft_ms: float = 0.0
    total_ms: float = 0.0


@dataclass
class BaselineReply:
    turn: AssistantTurn
    generation: Timing

    @property
    def latency_ms(self) -> float:
        return self.generation.total_ms


class Responder(Protocol):
    """An Assistant, or a baseline that answers like one."""
    def respond(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> Any: ...
