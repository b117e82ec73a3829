"""Run a model over evaluation cases and score every turn (the `fnedge eval` command)."""

from __future__ import annotations

from typing import Any

from rich.progress import Progress

from fnedge.eval.cases import EvalCase
from fnedge.eval.report import summarize
from fnedge.eval.scoring import score_case
from fnedge.runtime.engine import Assistant


def run_eval(cases: list[EvalCase], assistant: Assistant, show_progress: bool = True) -> dict[str, Any]:
    scores, latencies = [], []
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("eval", total=len(cases))
        for case in cases:
            # A generalist reads the schemas from its prompt, so it gets them even for "default"
            # (responders that are not models, such as the bench's router, have no such flag).
            generalist = getattr(assistant, "generalist", False)
            tools = case.tools.to_openai() if case.tools_inline or generalist else None
            reply = assistant.respond(case.messages, tools=tools)
            scores.append(score_case(case, reply.turn))
            latencies.append(reply.latency_ms)
            progress.advance(task)
    return summarize(scores, latencies)
