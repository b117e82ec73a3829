"""The teacher hook: conversations from a larger local model, checked and mixed into generated data.

    teacher, report = load_teacher("teacher.jsonl", catalog)
    records = mix(generated, teacher, weight=0.2, seed=0)

A teacher file uses the generated record format ({"id", "kind", "lang", "tools", "template",
"messages"}); only "messages" is required, the rest is filled in. Bad rows are counted and
skipped rather than fatal, because a teacher model's output is expected to be partly wrong.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fnedge.catalog import Catalog, call_problem
from fnedge.data.config import DataConfig
from fnedge.data.quality import exact_key, record_problem, rendered_length
from fnedge.data.utterance import CJK_RE
from fnedge.errors import FnedgeError

ROLES = ("user", "assistant", "tool")
MAX_EXAMPLES = 20


@dataclass
class TeacherReport:
    """What load_teacher kept and why it dropped the rest."""
    lines: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # malformed_json, malformed, invalid_call, invalid, too_long, duplicate
    examples: list[str] = field(default_factory=list)  # "line N: problem", the first few

    def drop(self, number: int, reason: str, problem: str) -> None:
        self.dropped[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"line {number}: {problem}")


def load_teacher(path: str | Path, catalog: Catalog,
                 max_chars: int | None = None) -> tuple[list[dict[str, Any]], TeacherReport]:
    """Read a teacher JSONL; keep the conversations that are well formed, valid and new."""
    path = Path(path)
    if not path.is_file():
        raise FnedgeError(f"{path}: file not found")
    max_chars = max_chars if max_chars is not None else DataConfig().max_chars
    report = TeacherReport()
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    first_json_error = ""
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            report.lines += 1
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as e:
                first_json_error = first_json_error or f"line {number} is not valid JSON ({e.msg})"
                report.drop(number, "malformed_json", f"not valid JSON ({e.msg})")
                continue
            record, reason, problem = _check(raw, catalog, max_chars)
            if record is None:
                report.drop(number, reason, problem)
                continue
            key = exact_key(record)
            if key in seen:
                report.drop(number, "duplicate", "repeats an earlier conversation")
                continue
            seen.add(key)
            record.setdefault("id", f"teacher-{number:07d}")
            record.setdefault("template", f"teacher.{key[:12]}")  # its own template: the dev split stays clean
            records.append(record)
    if report.lines == 0:
        raise FnedgeError(f"{path}: the file holds no conversations")
    if report.dropped["malformed_json"] == report.lines:
        raise FnedgeError(f"{path}: no line is valid JSON; {first_json_error}")
    report.kept = len(records)
    return records, report


def _check(raw: Any, catalog: Catalog, max_chars: int) -> tuple[dict[str, Any] | None, str, str]:
    """(normalized record, "", "") or (None, reason, problem)."""
    if not isinstance(raw, dict):
        return None, "malformed", "not a JSON object"
    problem = _shape_problem(raw.get("messages"))
    if problem:
        return None, "malformed", problem
    for message in raw["messages"]:
        if message.get("weight", 1) == 0:
            continue  # a deliberate mistake the trainer does not learn (error_correction)
        for call in message.get("tool_calls") or []:
            function = call["function"]
            problem = call_problem({"name": function["name"], "arguments": json.loads(function["arguments"])},
                                   catalog)
            if problem:
                return None, "invalid_call", f"{function['name']}: {problem}"
    record = _normalized(raw, catalog)
    problem = record_problem(record, catalog)
    if problem:
        return None, "invalid", problem
    if rendered_length(record) > max_chars:
        return None, "too_long", f"longer than {max_chars} characters when rendered"
    return record, "", ""


def _shape_problem(messages: Any) -> str | None:
    """Why `messages` is not a conversation in the generated format (OpenAI-style tool calls), or None."""
    if not isinstance(messages, list) or not messages:
        return "'messages' is missing or not a non-empty list"
    call_ids: set[str] = set()
    for index, message in enumerate(messages):
        where = f"message {index + 1}"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"{where}: not an object with a role of {', '.join(ROLES)}"
        content = message.get("content")
        if not (isinstance(content, str) or (content is None and message["role"] == "assistant")):
            return f"{where}: 'content' is not a string"
        if "weight" in message and message["weight"] not in (0, 1):
            return f"{where}: 'weight' must be 0 or 1"
        if message["role"] == "tool":
            if message.get("tool_call_id") not in call_ids:
                return f"{where}: 'tool_call_id' answers no earlier call"
        calls = message.get("tool_calls")
        if calls is None:
            continue
        if message["role"] != "assistant" or not isinstance(calls, list):
            return f"{where}: 'tool_calls' must be a list on an assistant turn"
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str) \
                    or not isinstance(function.get("arguments"), str):
                return f"{where}: a tool call is not {{'type': 'function', 'function': {{'name', 'arguments'}}}}"
            try:
                arguments = json.loads(function["arguments"])
            except json.JSONDecodeError:
                return f"{where}: {function['name']} arguments are not valid JSON"
            if not isinstance(arguments, dict):
                return f"{where}: {function['name']} arguments are not a JSON object"
            if isinstance(call.get("id"), str):
                call_ids.add(call["id"])
    return None


def _normalized(raw: dict[str, Any], catalog: Catalog) -> dict[str, Any]:
    """A copy in the generated format: arguments in schema order, missing fields filled, tagged."""
    messages = []
    called: list[str] = []
    for message in raw["messages"]:
        message = dict(message)
        if message["role"] == "assistant" and message.get("content") is None:
            message["content"] = ""
        if message.get("tool_calls"):
            message["tool_calls"] = [_ordered_call(call, catalog) for call in message["tool_calls"]]
            called += [c["function"]["name"] for c in message["tool_calls"] if c["function"]["name"] not in called]
        messages.append(message)
    record = {**raw, "messages": messages, "source": "teacher"}
    record.setdefault("kind", "teacher")
    record.setdefault("tools", called)
    if "lang" not in record:  # a rough guess, enough for per-language statistics
        user_text = " ".join(m["content"] for m in messages if m["role"] == "user")
        record["lang"] = "zh" if CJK_RE.search(user_text) else "en"
    return record


def _ordered_call(call: dict[str, Any], catalog: Catalog) -> dict[str, Any]:
    """The call re-serialized like generated data: the model learns one argument order, the schema's."""
    function = call["function"]
    if function["name"] not in catalog:
        return call  # only in an unlearned (weight 0) turn
    arguments = json.loads(function["arguments"])
    order = list(catalog[function["name"]].properties)
    arguments = {k: arguments[k] for k in sorted(arguments, key=lambda k: order.index(k) if k in order else len(order))}
    return {**call, "type": "function",
            "function": {**function, "arguments": json.dumps(arguments, ensure_ascii=False)}}


def teacher_count(n_generated: int, weight: float) -> int:
    """How many teacher rows make them `weight` of the mixed data (generated rows are all kept)."""
    return round(weight * n_generated / (1 - weight))


def mix(generated: list[dict[str, Any]], teacher: list[dict[str, Any]], weight: float,
        seed: int = 0) -> list[dict[str, Any]]:
    """All generated records plus teacher records making up `weight` of the result, shuffled.

    Every teacher record is used about equally often (repeats when there are too few), chosen and
    shuffled deterministically by seed. Repeats get ids with a suffix so ids stay unique.
    """
    if not 0 <= weight < 1:
        raise FnedgeError(f"the teacher weight must be at least 0 and below 1, got {weight}")
    wanted = teacher_count(len(generated), weight)
    if wanted and not teacher:
        raise FnedgeError("no teacher conversations to mix in (all were dropped?)")
    rng = random.Random(f"{seed}:teacher-mix")
    rounds, rest = divmod(wanted, len(teacher)) if teacher else (0, 0)
    chosen = [(r, i) for i in range(rounds) for r in teacher] + [(r, rounds) for r in rng.sample(teacher, rest)]
    picked = [r if copy == 0 else {**r, "id": f"{r['id']}-r{copy + 1}"} for r, copy in chosen]
    mixed = list(generated) + picked
    rng.shuffle(mixed)
    return mixed
