"""Evaluation cases: load and check JSONL files in the shared case format (shared/eval/FORMAT.md).

Every problem in a file is reported as a FnedgeError naming the file, the line and the problem,
so a hand-written set fails loudly at load time instead of scoring silently wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from fnedge.catalog import Catalog, Tool, load_catalog, parse_catalog
from fnedge.errors import FnedgeError

EXPECT_TYPES = ("call", "text_then_call", "ask", "text")
CALL_TYPES = ("call", "text_then_call")  # the types whose expect lists calls
MESSAGE_ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class ExpectedCall:
    name: str
    # argument name -> acceptable values; "" means "may be left out", "$text" means "the turn's text"
    arguments: dict[str, list[Any]]


@dataclass(frozen=True)
class Expectation:
    type: str  # one of EXPECT_TYPES
    calls: list[ExpectedCall] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # for `ask`: what the turn should ask for


@dataclass(frozen=True)
class EvalCase:
    id: str
    lang: str
    tools: Catalog
    tools_inline: bool
    messages: list[dict[str, Any]]
    expect: Expectation
    # Why inline tools failed the strict catalog check, or None. Such tools (BFCL schemas with
    # `default: null`, unknown keywords, ...) are kept with a lenient structural check, because
    # the evaluator must score any file in the format; the grammar may not handle them.
    tools_schema_problem: str | None = None


class _LineError(Exception):
    """A problem on the current line; load_cases adds the file and line number."""


def load_cases(path: str | Path) -> list[EvalCase]:
    """Read a JSONL case file; raise FnedgeError naming the file, line and problem on any defect."""
    path = Path(path)
    if not path.is_file():
        raise FnedgeError(f"{path}: case file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise FnedgeError(f"{path}: not UTF-8 text") from None
    cases: list[EvalCase] = []
    seen_ids: dict[str, int] = {}
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline, spacing) are not cases
        try:
            case = _parse_case(line, default_id=f"{path.stem}-{line_number}")
        except _LineError as e:
            raise FnedgeError(f"{path}:{line_number}: {e}") from None
        if case.id in seen_ids:
            # Failures are reported by id, so ids must tell cases apart.
            raise FnedgeError(f"{path}:{line_number}: duplicate id {case.id!r} "
                              f"(first on line {seen_ids[case.id]})")
        seen_ids[case.id] = line_number
        cases.append(case)
    if not cases:
        raise FnedgeError(f"{path}: no cases (the file is empty)")
    return cases


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The built-in catalog that `"tools": "default"` names; loaded once for all cases."""
    return load_catalog()


def _parse_case(line: str, default_id: str) -> EvalCase:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as e:
        raise _LineError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, dict):
        raise _LineError("a case must be a JSON object")
    for key in ("tools", "messages", "expect"):
        if key not in data:
            raise _LineError(f"missing '{key}'")
    case_id = data.get("id", default_id)
    if not isinstance(case_id, str) or not case_id:
        raise _LineError(f"'id' must be a non-empty string, got {case_id!r}")
    lang = data.get("lang", "unknown")
    if not isinstance(lang, str) or not lang:
        raise _LineError(f"'lang' must be a non-empty string, got {lang!r}")
    tools, inline, schema_problem = _parse_tools(data["tools"])
    messages = _check_messages(data["messages"])
    expect = _parse_expect(data["expect"], tools)
    return EvalCase(id=case_id, lang=lang, tools=tools, tools_inline=inline, messages=messages,
                    expect=expect, tools_schema_problem=schema_problem)


def _parse_tools(tools: Any) -> tuple[Catalog, bool, str | None]:
    if tools == "default":
        return default_catalog(), False, None
    if not isinstance(tools, list):
        raise _LineError(f"'tools' must be \"default\" or a list of tools, got {_short(tools)}")
    try:
        return parse_catalog(tools, source="inline tools"), True, None
    except FnedgeError as strict_problem:
        return _parse_tools_leniently(tools), True, str(strict_problem)


def _parse_tools_leniently(tools: list[Any]) -> Catalog:
    """Accept any structurally sound tool list (even empty), so the catalog's validator and the
    scorer can walk it without crashing; reject what is not a tool list at all."""
    parsed: list[Tool] = []
    for index, entry in enumerate(tools):
        where = f"tools[{index}]"
        if isinstance(entry, dict) and entry.get("type") == "function" and "function" in entry:
            entry = entry["function"]
        if not isinstance(entry, dict):
            raise _LineError(f"{where}: expected a tool object, got {_short(entry)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise _LineError(f"{where}: 'name' must be a non-empty string, got {name!r}")
        if any(tool.name == name for tool in parsed):
            raise _LineError(f"{where}: duplicate tool name {name!r}")
        description = entry.get("description", "")
        if not isinstance(description, str):
            raise _LineError(f"{where} ({name}): 'description' must be a string")
        parameters = entry.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
            raise _LineError(f"{where} ({name}): 'parameters' must be a schema of type 'object'")
        _check_schema_structure(parameters, f"{where} ({name}) parameters")
        parsed.append(Tool(name=name, description=description, parameters=parameters))
    return Catalog(tuple(parsed), source="inline tools")


def _check_schema_structure(schema: dict[str, Any], where: str) -> None:
    """The shapes fnedge.catalog.value_problem relies on; anything else would raise there."""
    kind = schema.get("type")
    if kind is not None and not isinstance(kind, str):
        raise _LineError(f"{where}: 'type' must be a string, got {_short(kind)}")
    if "enum" in schema and not isinstance(schema["enum"], list):
        raise _LineError(f"{where}: 'enum' must be a list")
    for bound in ("minimum", "maximum"):
        value = schema.get(bound)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise _LineError(f"{where}: '{bound}' must be a number")
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise _LineError(f"{where}: 'properties' must be an object")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise _LineError(f"{where}: 'required' must be a list of names")
    for name, prop in properties.items():
        if not isinstance(prop, dict):
            raise _LineError(f"{where}.{name}: schema must be an object")
        _check_schema_structure(prop, f"{where}.{name}")
    if "items" in schema:
        if not isinstance(schema["items"], dict):
            raise _LineError(f"{where}: 'items' must be a schema object")
        _check_schema_structure(schema["items"], f"{where}[]")


def _check_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _LineError("'messages' must be a non-empty list")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _LineError(f"{where}: must be an object")
        role = message.get("role")
        if role not in MESSAGE_ROLES:
            raise _LineError(f"{where}: unknown role {role!r} (expected one of {list(MESSAGE_ROLES)})")
        content = message.get("content")
        # An assistant turn that only calls tools may have null content; every other needs text.
        if not (isinstance(content, str) or (role == "assistant" and content is None)):
            raise _LineError(f"{where}: 'content' must be a string")
        tool_calls = message.get("tool_calls")
        if tool_calls is not None:
            if role != "assistant" or not isinstance(tool_calls, list):
                raise _LineError(f"{where}: 'tool_calls' must be a list on an assistant message")
            for call_index, tool_call in enumerate(tool_calls):
                function = tool_call.get("function") if isinstance(tool_call, dict) else None
                if not (isinstance(function, dict) and isinstance(function.get("name"), str)
                        and isinstance(function.get("arguments"), (str, dict))):
                    raise _LineError(f"{where}.tool_calls[{call_index}]: expected "
                                     "{\"function\": {\"name\", \"arguments\"}}")
    return messages


def _parse_expect(expect: Any, tools: Catalog) -> Expectation:
    if not isinstance(expect, dict):
        raise _LineError("'expect' must be an object")
    kind = expect.get("type")
    if kind not in EXPECT_TYPES:
        raise _LineError(f"unknown expect.type {kind!r} (expected one of {list(EXPECT_TYPES)})")
    missing = expect.get("missing", [])
    if not isinstance(missing, list) or not all(isinstance(m, str) for m in missing):
        raise _LineError("expect.missing must be a list of argument names")
    if kind not in CALL_TYPES:
        if expect.get("calls"):
            raise _LineError(f"expect.type {kind!r} means no call, but expect.calls is not empty")
        return Expectation(type=kind, missing=missing)
    raw_calls = expect.get("calls")
    if not isinstance(raw_calls, list) or not raw_calls:
        raise _LineError(f"expect.type {kind!r} needs a non-empty expect.calls list")
    calls = [_parse_expected_call(raw, f"expect.calls[{i}]", tools) for i, raw in enumerate(raw_calls)]
    return Expectation(type=kind, calls=calls, missing=missing)


def _parse_expected_call(raw: Any, where: str, tools: Catalog) -> ExpectedCall:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise _LineError(f"{where}: expected {{\"name\", \"arguments\"}}")
    name = raw["name"]
    if name not in tools:
        # A call no offered tool can make is a typo in the case, not a model error.
        raise _LineError(f"{where}: tool {name!r} is not among the case's tools")
    arguments = raw.get("arguments", {})
    if not isinstance(arguments, dict):
        raise _LineError(f"{where}: 'arguments' must be an object")
    for arg_name, acceptable in arguments.items():
        # An empty list is allowed (BFCL live_simple has two): no value is acceptable then.
        if not isinstance(acceptable, list):
            raise _LineError(f"{where}: argument {arg_name!r} must map to a list of acceptable "
                             f"values, got {_short(acceptable)}")
    return ExpectedCall(name=name, arguments=arguments)


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."
