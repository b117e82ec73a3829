"""Score one assistant turn against one case, by the rules of shared/eval/FORMAT.md.

- function match: the multiset of called names equals the expected one (`call`, and
  `text_then_call`, which also needs non-empty text); no call at all for `ask` and `text`.
  A malformed `<tool_call>` block is an attempted call: it breaks both.
- argument match (`call`, `text_then_call` only): function match, and the expected calls can be
  paired one-to-one with emitted calls (order-free) so that every argument is acceptable.
- required-argument completeness: required arguments filled, over emitted calls of known tools.
- valid calls: emitted calls that validate with `call_problem`; malformed blocks are invalid.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fnedge.catalog import call_problem, is_number
from fnedge.chat_format import AssistantTurn
from fnedge.eval.cases import CALL_TYPES, EvalCase, ExpectedCall

MAY_BE_OMITTED = ""  # an acceptable value meaning "the argument may be left out"
TURN_TEXT = "$text"  # an acceptable value meaning "equal to the text written in this turn"
# Informational only: does an `ask` turn read like a question? Chinese often asks without "？".
QUESTION_MARKERS = ("?", "？", "吗", "呢", "哪", "什么", "几", "多少", "请问", "请提供", "请告诉",
                    "please provide", "please tell", "let me know", "could you", "can you")


@dataclass(frozen=True)
class CaseScore:
    case_id: str
    expect_type: str
    lang: str
    function_match: bool
    argument_match: bool | None  # None where it does not apply (`ask`, `text`)
    required_filled: int  # required arguments present in emitted calls of known tools
    required_total: int  # required arguments of those calls
    valid_calls: int  # emitted calls that validate against their tool's schema
    emitted_calls: int  # parsed calls plus malformed blocks
    asked_question: bool | None  # `ask` only: no call and the text reads like a question
    reason: str | None  # why the case failed (function or argument match); None when it passed
    call_problems: list[str] = field(default_factory=list)  # why each invalid call is invalid

    @property
    def passed(self) -> bool:
        return self.function_match and self.argument_match is not False

    @property
    def made_call(self) -> bool:
        return self.emitted_calls > 0

    @property
    def required_completeness(self) -> float | None:
        return self.required_filled / self.required_total if self.required_total else None

    @property
    def valid_call_rate(self) -> float | None:
        return self.valid_calls / self.emitted_calls if self.emitted_calls else None


def score_case(case: EvalCase, turn: AssistantTurn) -> CaseScore:
    expect = case.expect
    emitted_calls = len(turn.calls) + len(turn.malformed)
    call_problems = [f"malformed call block: {_short(block)}" for block in turn.malformed]
    for call in turn.calls:
        problem = call_problem(call, case.tools)
        if problem:
            call_problems.append(f"{call['name']}: {problem}")
    required_filled, required_total = _required_counts(case, turn)

    argument_match: bool | None = None
    asked_question: bool | None = None
    if expect.type in CALL_TYPES:
        reason = _function_mismatch(expect.calls, turn, needs_text=expect.type == "text_then_call")
        function_match = reason is None
        if function_match:
            reason = _argument_mismatch(case, expect.calls, turn)
        argument_match = function_match and reason is None
    else:
        function_match = emitted_calls == 0
        reason = None if function_match else f"expected no call, got {_describe_calls(turn)}"
        if expect.type == "ask":
            asked_question = function_match and _reads_like_question(turn.text)

    return CaseScore(
        case_id=case.id, expect_type=expect.type, lang=case.lang,
        function_match=function_match, argument_match=argument_match,
        required_filled=required_filled, required_total=required_total,
        valid_calls=emitted_calls - len(call_problems), emitted_calls=emitted_calls,
        asked_question=asked_question, reason=reason, call_problems=call_problems)


# --- function match --------------------------------------------------------------------------

def _function_mismatch(expected: list[ExpectedCall], turn: AssistantTurn, needs_text: bool) -> str | None:
    expected_names = Counter(call.name for call in expected)
    emitted_names = Counter(call["name"] for call in turn.calls)
    if expected_names != emitted_names or turn.malformed:
        return f"expected {_join_names(expected_names)}, got {_describe_calls(turn)}"
    if needs_text and not turn.text.strip():
        return f"expected text before {_join_names(expected_names)}, got no text"
    return None


def _describe_calls(turn: AssistantTurn) -> str:
    parts = []
    if turn.calls:
        parts.append(_join_names(Counter(call["name"] for call in turn.calls)))
    if turn.malformed:
        parts.append(f"{len(turn.malformed)} malformed call block(s)")
    return " + ".join(parts) if parts else "no call"


def _join_names(names: Counter[str]) -> str:
    return ", ".join(name if count == 1 else f"{name} x{count}" for name, count in sorted(names.items()))


# --- argument match --------------------------------------------------------------------------

def _argument_mismatch(case: EvalCase, expected: list[ExpectedCall], turn: AssistantTurn) -> str | None:
    """None when the expected calls pair one-to-one with acceptable emitted calls, else why not."""
    def mismatch(want: ExpectedCall, got: dict[str, Any]) -> str | None:
        if want.name != got["name"]:
            return f"{want.name}: not this call"
        schema = case.tools[want.name].parameters
        problem = _arguments_mismatch(want.arguments, got["arguments"], schema, turn.text)
        return f"{want.name}: {problem}" if problem else None

    candidates: list[list[int]] = []
    for want in expected:
        fitting = [j for j, got in enumerate(turn.calls) if mismatch(want, got) is None]
        if not fitting:
            # Report the first same-name call's problem: with one call that is exactly the reason.
            same_name = next(got for got in turn.calls if got["name"] == want.name)
            return mismatch(want, same_name)
        candidates.append(fitting)
    if not _has_perfect_matching(candidates, len(turn.calls)):
        return "the calls cannot be paired one-to-one with the expected calls"
    return None


def _has_perfect_matching(candidates: list[list[int]], n_emitted: int) -> bool:
    """Kuhn's augmenting paths: can every expected call i take a distinct emitted call?"""
    owner: list[int | None] = [None] * n_emitted

    def assign(i: int, visited: set[int]) -> bool:
        for j in candidates[i]:
            if j in visited:
                continue
            visited.add(j)
            current = owner[j]
            if current is None or assign(current, visited):
                owner[j] = i
                return True
        return False

    return all(assign(i, set()) for i in range(len(candidates)))


def _arguments_mismatch(expected: dict[str, list[Any]], emitted: Any, schema: dict[str, Any],
                        text: str | None) -> str | None:
    """Why `emitted` arguments are not acceptable for `expected` under an object schema, or None.

    Used for the top-level arguments and, recursively, for object values (BFCL writes nested
    acceptable values as {"key": [acceptable values]}).
    """
    if not isinstance(emitted, dict):
        return f"expected an object, got {_short(emitted)}"
    properties = _properties(schema)
    for name, acceptable in expected.items():
        prop = properties.get(name, {})
        if name not in emitted:
            if MAY_BE_OMITTED in acceptable:
                continue
            return f"missing {name}"
        # An empty string stands for "left out"; only a string argument can also be written "".
        values = [a for a in acceptable if a != MAY_BE_OMITTED or _is_string_schema(prop)]
        if not any(_value_matches(emitted[name], a, prop, text) for a in values):
            return f"{name}={_short(emitted[name])}, expected one of {_short(acceptable)}"
    required = set(schema.get("required", []))
    for name, value in emitted.items():
        if name in expected:
            continue
        prop = properties.get(name)
        if prop is None:
            return f"unknown argument {name}"
        if name in required or "default" not in prop:
            return f"unexpected argument {name}={_short(value)}"
        # An added optional argument is harmless only if it just restates the default.
        if not _value_matches(value, prop["default"], prop, text=None, literal=True):
            return f"unexpected argument {name}={_short(value)} (default {_short(prop['default'])})"
    return None


def _value_matches(value: Any, acceptable: Any, prop: dict[str, Any], text: str | None,
                   literal: bool = False) -> bool:
    """Does an emitted value match one acceptable value? `literal` compares objects as plain
    values (schema defaults) instead of as {"key": [acceptable values]} (case files)."""
    if acceptable == TURN_TEXT and text is not None and not literal:
        return isinstance(value, str) and bool(text.strip()) and normalize(value) == normalize(text)
    if acceptable is None or value is None:
        return acceptable is None and value is None
    if isinstance(acceptable, str) and isinstance(value, str):
        return normalize(value) == normalize(acceptable)
    if isinstance(acceptable, str) or isinstance(value, str):
        # "3" vs 3, "true" vs true: equal only where the schema says the argument is a string.
        string, other = (value, acceptable) if isinstance(value, str) else (acceptable, value)
        return _is_string_schema(prop) and _string_equals_scalar(string, other)
    if isinstance(acceptable, bool) or isinstance(value, bool):
        return acceptable is value  # True is not 1
    if is_number(acceptable) or is_number(value):
        return is_number(acceptable) and is_number(value) and value == acceptable  # 4 == 4.0
    if isinstance(acceptable, list):
        item_schema = prop.get("items", {}) if isinstance(prop.get("items"), dict) else {}
        return (isinstance(value, list) and len(value) == len(acceptable)
                and all(_value_matches(v, a, item_schema, text, literal) for v, a in zip(value, acceptable)))
    if isinstance(acceptable, dict):
        if literal:
            return (isinstance(value, dict) and value.keys() == acceptable.keys()
                    and all(_value_matches(value[k], acceptable[k], _properties(prop).get(k, {}), None, True)
                            for k in acceptable))
        spec = {k: v if isinstance(v, list) else [v] for k, v in acceptable.items()}
        return _arguments_mismatch(spec, value, prop, text) is None
    return False


def _string_equals_scalar(string: str, scalar: Any) -> bool:
    if isinstance(scalar, (dict, list)):
        return False
    if normalize(string) == normalize(json.dumps(scalar)):
        return True
    if is_number(scalar):
        try:
            return float(normalize(string)) == scalar
        except ValueError:
            return False
    return False


def normalize(text: str) -> str:
    """The FORMAT.md string comparison: NFKC, case folding, trimming (NFKC first so that
    full-width spaces are trimmed too)."""
    return unicodedata.normalize("NFKC", text).casefold().strip()


def _is_string_schema(prop: dict[str, Any]) -> bool:
    return prop.get("type", "string" if "enum" in prop else None) == "string"


def _properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    properties = schema.get("properties")
    return properties if isinstance(properties, dict) else {}


# --- completeness, questions -----------------------------------------------------------------

def _required_counts(case: EvalCase, turn: AssistantTurn) -> tuple[int, int]:
    filled = total = 0
    for call in turn.calls:
        if call["name"] not in case.tools:
            continue  # an unknown tool has no required arguments to count
        arguments = call["arguments"] if isinstance(call["arguments"], dict) else {}
        for name in case.tools[call["name"]].required:
            total += 1
            filled += _is_filled(arguments.get(name))
    return filled, total


def _is_filled(value: Any) -> bool:
    """null or a blank string does not fill a required argument."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def _reads_like_question(text: str) -> bool:
    lowered = text.casefold()
    return any(marker in lowered for marker in QUESTION_MARKERS)


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."

