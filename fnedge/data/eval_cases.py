"""Held-out conversations as evaluation cases (shared/eval/FORMAT.md), so `fnedge eval` can score them.

A training run's `data/dev.jsonl` is split off by phrasing template and value
(`quality.split_by_template`): no template or value of it was trained on. Scored as cases, it is
a measure of generalization a few times larger than the hand-written dev set, for any catalog,
and it says whether the model learned the data (high here, low on people's text: a data
problem) or did not learn it at all (low on both: a training-budget or capacity problem).

One case per conversation, asking for its first assistant turn:
- a call turn -> `call` (or `text_then_call` when the turn writes text first; a `{{text}}`
  reference in it -> `"$text"`), each argument exactly as the data wrote it;
- no call, in an `ask`, `ask_then_call` or `ambiguous` conversation -> `ask`; in a `no_call`
  or `irrelevant` one -> `text`.
A generalist conversation (one that brings its own `tool_schemas`) is asked with those tools.
A first turn the data marks as a mistake (`"weight": 0`, error-correction samples) makes no case.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from fnedge.chat_format import TEXT_REFERENCE
from fnedge.errors import FnedgeError

_ASKING_KINDS = ("ask", "ask_then_call", "ambiguous")


def eval_cases(records: Iterable[dict[str, Any]], tools: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cases of `records` (generated conversations); `tools` as the format's field: "default"
    or the catalog's schemas, for records without their own `tool_schemas`."""
    cases = []
    for record in records:
        messages = record.get("messages") or []
        turn = next((i for i, m in enumerate(messages) if m.get("role") == "assistant"), None)
        if turn is None or messages[turn].get("weight") == 0:
            continue
        case_id = record.get("id", f"case-{len(cases)}")
        expect = _expectation(messages[turn], record.get("kind", ""), case_id)
        if expect is None:
            continue
        cases.append({"id": case_id, "lang": record.get("lang", ""),
                      "tools": record.get("tool_schemas") or tools, "messages": messages[:turn], "expect": expect})
    return cases


def _expectation(reply: dict[str, Any], kind: str, case_id: str) -> dict[str, Any] | None:
    calls = reply.get("tool_calls") or []
    if not calls:
        if kind in _ASKING_KINDS:
            return {"type": "ask"}
        return {"type": "text"} if kind in ("no_call", "irrelevant") else None
    expected = []
    for call in calls:
        function = call.get("function", call)
        arguments = function.get("arguments") or {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError as e:
                raise FnedgeError(f"{case_id}: the arguments of its {function.get('name')} call are not JSON "
                                  f"({e.msg} at character {e.pos})") from None
        if not isinstance(arguments, dict):
            raise FnedgeError(f"{case_id}: the arguments of its {function.get('name')} call are not a JSON object")
        expected.append({"name": function["name"],
                         "arguments": {k: ["$text" if v == TEXT_REFERENCE else v] for k, v in arguments.items()}})
    return {"type": "text_then_call" if (reply.get("content") or "").strip() else "call", "calls": expected}
