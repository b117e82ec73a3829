"""Executing the calls of a turn with the app's own functions, at the right moment.

- **Immediate** calls (`get_weather(city="上海")`) are dispatched the moment `</tool_call>`
  closes in the stream, on a worker thread, while the model goes on writing the turn.
- **Deferred** calls carry the reference `{{text}}` (the model wrote a story and calls
  `save_file` with it); they run when the turn ends, with the reference replaced by the text.

A call that does not validate against the catalog is never executed; a tool with no executor
is reported, not faked. `run_conversation` feeds results back as `tool` messages and lets the
model go on (search_hotels -> book_hotel) until it answers without a call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fnedge.catalog import call_problem
from fnedge.chat_format import mentions_text_reference, openai_tool_call, resolve_text_reference
from fnedge.runtime.stream_parser import CallEnd, CallError, Event, TextDelta

Executor = Callable[[dict[str, Any]], Any]  # arguments -> a JSON-serializable result


@dataclass
class CallOutcome:
    call: dict[str, Any]              # {"name", "arguments"} with references resolved
    timing: str                       # "immediate" or "deferred"
    dispatched_ms: float | None = None  # since the request started; None when not executed
    result: Any = None
    error: str | None = None


@dataclass
class TurnResult:
    text: str
    outcomes: list[CallOutcome] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    total_ms: float = 0.0


def execute_turn(assistant, messages: list[dict[str, Any]], executors: dict[str, Executor],
                 tools: list[dict[str, Any]] | None = None,
                 on_event: Callable[[Event], None] | None = None, tool_choice: str = "auto") -> TurnResult:
    """Generate one assistant turn, executing its calls as they become executable."""
    catalog = assistant.catalog_for(tools)
    started = time.perf_counter()
    text_parts: list[str] = []
    pending: list[tuple[CallOutcome, Future | None]] = []
    deferred: list[CallOutcome] = []
    malformed: list[str] = []

    def dispatch(outcome: CallOutcome, pool: ThreadPoolExecutor) -> Future | None:
        problem = call_problem(outcome.call, catalog)
        if problem:
            outcome.error = f"not executed: {problem}"
            return None
        executor = executors.get(outcome.call["name"])
        if executor is None:
            outcome.error = f"no executor registered for '{outcome.call['name']}'"
            return None
        outcome.dispatched_ms = (time.perf_counter() - started) * 1000
        return pool.submit(executor, outcome.call["arguments"])

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fnedge-tool") as pool:
        for event in assistant.stream(messages, tools, tool_choice):
            if on_event:
                on_event(event)
            if isinstance(event, TextDelta):
                text_parts.append(event.text)
            elif isinstance(event, CallError):
                malformed.append(event.raw)
            elif isinstance(event, CallEnd):
                if mentions_text_reference(event.call["arguments"]):
                    deferred.append(CallOutcome(call=event.call, timing="deferred"))
                else:
                    outcome = CallOutcome(call=event.call, timing="immediate")
                    pending.append((outcome, dispatch(outcome, pool)))
        text = "".join(text_parts).strip()
        for outcome in deferred:
            outcome.call = {**outcome.call, "arguments": resolve_text_reference(outcome.call["arguments"], text)}
            pending.append((outcome, dispatch(outcome, pool)))
        for outcome, future in pending:
            if future is None:
                continue
            try:
                outcome.result = future.result()
            except Exception as exc:  # the app's function failed: the model sees the error
                outcome.error = f"{type(exc).__name__}: {exc}"
    outcomes = [o for o, _ in pending]
    return TurnResult(text=text, outcomes=outcomes, malformed=malformed,
                      total_ms=(time.perf_counter() - started) * 1000)


def run_conversation(assistant, messages: list[dict[str, Any]], executors: dict[str, Executor],
                     tools: list[dict[str, Any]] | None = None, max_turns: int = 4,
                     on_event: Callable[[Event], None] | None = None,
                     max_failed_turns: int = 3) -> tuple[list[dict[str, Any]], list[TurnResult]]:
    """Turns until the model answers without a call (or `max_turns`); returns the grown
    message list (assistant turns and tool results appended) and each turn's result.

    Errors go back to the model as tool results, so it can correct the call; after
    `max_failed_turns` turns in a row whose calls all failed, it must answer in text."""
    messages = list(messages)
    turns: list[TurnResult] = []
    failed_in_a_row = 0
    for turn_index in range(max_turns):
        choice = "none" if failed_in_a_row >= max_failed_turns else "auto"
        turn = execute_turn(assistant, messages, executors, tools, on_event, tool_choice=choice)
        turns.append(turn)
        if not turn.outcomes:
            messages.append({"role": "assistant", "content": turn.text})
            break
        unrunnable = any(o.error and o.error.startswith("no executor") for o in turn.outcomes)
        failed_in_a_row = failed_in_a_row + 1 if all(o.error for o in turn.outcomes) else 0
        ids = [f"call_{turn_index}_{i}" for i in range(len(turn.outcomes))]
        messages.append({"role": "assistant", "content": turn.text,
                         "tool_calls": [openai_tool_call(o.call["name"], o.call["arguments"], call_id)
                                        for o, call_id in zip(turn.outcomes, ids)]})
        for outcome, call_id in zip(turn.outcomes, ids):
            content = {"error": outcome.error} if outcome.error else outcome.result
            messages.append({"role": "tool", "tool_call_id": call_id, "name": outcome.call["name"],
                             "content": json.dumps(content, ensure_ascii=False)})
        if unrunnable:  # the app lacks the tool: no later turn can fix that
            break
    return messages, turns
