"""Run a model over evaluation cases and score every turn (the `fnedge eval` command)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.progress import Progress

from fnedge.eval.cases import load_cases
from fnedge.eval.report import summarize
from fnedge.eval.scoring import score_case
from fnedge.runtime.engine import Assistant


def run_eval(cases_path: Path, assistant: Assistant, show_progress: bool = True) -> dict[str, Any]:
    cases = load_cases(cases_path)
    scores, latencies = [], []
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task(f"eval {Path(cases_path).name}", total=len(cases))
        for case in cases:
            tools = case.tools.to_openai() if case.tools_inline else None
            reply = assistant.respond(case.messages, tools=tools)
            scores.append(score_case(case, reply.turn))
            latencies.append(reply.latency_ms)
            progress.advance(task)
    return summarize(scores, latencies)
