"""The grammar of one tool call, compiled from a catalog: what may follow `<tool_call>`.

A call is `{"name": NAME, "arguments": {…}}</tool_call>` in exactly the layout training wrote
(`chat_format.format_call`): the tool name from the catalog, its arguments in schema order,
required ones present, optional ones optional, every value of its schema type (enums, integer
bounds through llguidance's `%json`). String arguments whose description says the value is
taken *as the user wrote it* are also constrained to a non-empty substring of what the user
said (or, for ids, the tool result they come from), so a tiny model that has found where the value starts cannot misspell the rest.
So are the fields the model's training data always copied (`copied`, from its fnedge.json).
Number, clock-time and date arguments may only take values the conversation mentions
(`fnedge.runtime.grounding`); one it gives no value for is left out, and a tool that requires
such a value is not callable (`callable_tools`), so the model must ask for it. An arithmetic
expression may only combine the numbers the conversation mentions.

The output is llguidance's Lark dialect (https://github.com/guidance-ai/llguidance, docs/syntax.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fnedge.catalog import Catalog, Tool
from fnedge.chat_format import TEXT_REFERENCE
from fnedge.runtime.grounding import (arithmetic_chain, expression_operands, field_kind, grounded_values, mentioned_dates,
                                      relative_date_words, said_operators, said_relative_days, says_a_day)

# Descriptions in the default catalog say "City name exactly as the user wrote it", "What to
# play, as the user said it", "The id from a search_hotels result": the catalog's own words for
# a value that is copied from the conversation.
_COPIED = re.compile(r"\bas (?:the )?user (?:wrote|said|typed|gave) it\b|\bfrom (?:a|the) \w+ result\b"
                     r"|用户原话|原样", re.IGNORECASE)


def is_copied(prop: dict[str, Any]) -> bool:
    """Whether a property's value must be copied from the conversation (the user's words or a tool result)."""
    return prop.get("type") == "string" and "enum" not in prop and bool(_COPIED.search(prop.get("description", "")))


def copied_fields(catalog: Catalog, sources: Sequence[str],
                  copied: Mapping[str, Mapping[str, bool]] | None = None) -> dict[str, set[str]]:
    """{tool: the fields `call_grammar` holds to a copy of `sources`} (none when there are no sources)."""
    if not any(sources):
        return {}
    return {tool.name: {key for key, prop in tool.properties.items()
                        if is_copied(prop) or key in (copied or {}).get(tool.name, {})}
            for tool in catalog.tools}


def overlapping_copies(arguments: Mapping[str, Any], fields: set[str], sources: Sequence[str]) -> bool:
    """Whether two copied values of one call can only be read from the same words of the
    conversation: "帮我发条消息：下午2:55在地铁站见" -> to="下午", text="下午2:55在地铁站见". Two
    arguments are two things the user said, so such a call invents one of them (here the
    recipient nobody named); the reply should ask for it instead."""
    spans = [_occurrences(value, sources) for key, value in arguments.items()
             if key in fields and isinstance(value, str) and value]
    spans = [found for found in spans if found]  # a {{text}} reference, or a value not copied
    for i, first in enumerate(spans):
        for second in spans[i + 1:]:
            if not any(a[0] != b[0] or a[2] <= b[1] or b[2] <= a[1] for a in first for b in second):
                return True
    return False


def _occurrences(value: str, sources: Sequence[str]) -> list[tuple[int, int, int]]:
    """(source index, start, end) of every occurrence of `value`, overlapping ones included."""
    found = []
    for index, source in enumerate(sources):
        start = source.find(value)
        while start >= 0:
            found.append((index, start, start + len(value)))
            start = source.find(value, start + 1)
    return found


def call_grammar(catalog: Catalog, sources: Sequence[str], close_token: int,
                 copied: Mapping[str, Mapping[str, bool]] | None = None) -> str:
    """Lark grammar for one call to any tool in `catalog`, ended by the token `close_token`.

    `sources` are the user's messages and tool results of this conversation: copied arguments
    must be a substring of one of them. `copied` adds the fields the model's training data
    always copied (`fnedge.data.copied_arguments`: {tool: {field: takes the {{text}} reference}})."""
    sources = distinct_sources(sources)
    lines = ["start: (" + " | ".join(f"call_{i}" for i in range(len(catalog.tools))) + f") <[{close_token}]>"]
    if sources:
        alternatives = [f'%regex {{"substring_chunks": {json.dumps(_chunks(s), ensure_ascii=False)}}}' for s in sources]
        # non-empty, and neither starting nor ending with a space ("see you " is never the value)
        lines.append("COPIED: (" + " | ".join(alternatives) + ") & /\\S(.*\\S)?/")
    for index, tool in enumerate(catalog.tools):
        lines += _tool_rules(tool, f"call_{index}", sources, (copied or {}).get(tool.name, {}))
    return "\n".join(lines) + "\n"


def distinct_sources(sources: Sequence[str]) -> list[str]:
    """The non-empty sources, each once, in order: what a copy may be read from."""
    return [text for text in dict.fromkeys(sources) if text]


# A copied value is a run of whole chunks of the source: a Latin word or number (with inner
# - _ . / @ as in "nj-6620", "v1.2"), a run of spaces, or any other single character (each CJK
# character, each punctuation mark). So a value can end after "Berlin" but not after "Ber".
_LATIN = "[0-9A-Za-z\u00C0-\u024F]"
_CHUNK = re.compile(f"{_LATIN}+(?:[-_./@]{_LATIN}+)*|\\s+|.", re.DOTALL)


def _chunks(source: str) -> list[str]:
    """The source split into chunks, each JSON-escaped as it appears inside a JSON string."""
    return [json.dumps(chunk, ensure_ascii=False)[1:-1] for chunk in _CHUNK.findall(source)]


def unsaid_arguments(tool: Tool, sources: Sequence[str]) -> set[str]:
    """Number, time and date arguments the conversation gives no value for: the model may not
    invent one (an optional one is left out; a tool that requires one cannot be called). A
    required date counts as unsaid when no day is named at all, though its keywords stay offered."""
    unsaid = set()
    for key, prop in tool.properties.items():
        kind = field_kind(prop)
        if kind in ("number", "time", "date") and grounded_values(prop, sources) is None:
            unsaid.add(key)
        elif kind == "date" and key in tool.required and not says_a_day(sources):
            unsaid.add(key)
    return unsaid


def said_optional_arguments(tool: Tool, sources: Sequence[str]) -> set[str]:
    """Optional number, clock-time and date arguments the conversation gives a value for
    ("住四个晚上" -> nights; "for tomorrow" -> a date keyword). Free strings are always possible,
    so never said."""
    said = set()
    for key, prop in tool.properties.items():
        kind = field_kind(prop)
        if key in tool.required or kind not in ("number", "time", "date"):
            continue
        if kind == "date":
            if any(mentioned_dates(sources)) or said_relative_days(sources) & set(relative_date_words(prop)):
                said.add(key)
        elif grounded_values(prop, sources):
            said.add(key)
    return said


def callable_tools(catalog: Catalog, sources: Sequence[str]) -> Catalog:
    """The tools whose required arguments the conversation can fill: with "set an alarm" and no
    time said, set_alarm is not callable, and the model asks for the time instead."""
    callable_ = tuple(t for t in catalog.tools if not unsaid_arguments(t, sources) & set(t.required))
    return Catalog(callable_, source=catalog.source)


def _tool_rules(tool: Tool, rule: str, sources: Sequence[str], copied: Mapping[str, bool]) -> list[str]:
    head = _literal('{"name": ' + json.dumps(tool.name) + ', "arguments": ')
    # An unsaid optional argument is left out; an unsaid required one (only when the request
    # demands this tool) keeps its schema type alone.
    unsaid = unsaid_arguments(tool, sources)
    keys = [k for k in tool.properties if k not in unsaid or k in tool.required]
    if not keys:
        return [f'{rule}: {head} "{{}}" "}}"']
    lines: list[str] = []
    members: list[str] = []
    for position, key in enumerate(keys):
        member = f"{rule}_{position}"
        value = f"{member}_value"
        lines.append(f"{member}: {_literal(json.dumps(key, ensure_ascii=False) + ': ')} {value}")
        operands = expression_operands(sources) if field_kind(tool.properties[key]) == "expression" else []
        chain = arithmetic_chain(sources) if operands else None
        if chain:  # one message's calculation uses every number of its arithmetic run
            lines += _expression_rules(value, chain, said_operators(sources), every=True)
        elif operands:
            lines += _expression_rules(value, operands, said_operators(sources))
        else:
            lines.append(f"{value}: {_value(tool.properties[key], sources, copied.get(key))}")
        members.append(member)
    required = set(tool.required)
    # Members in schema order; the first one present carries no separator. Each alternative
    # starts at the first present member k (all before it optional, hence skipped).
    alternatives = []
    for k, key in enumerate(keys):
        if any(keys[j] in required for j in range(k)):
            break
        tail = " ".join(f'(", " {members[j]})' + ("" if keys[j] in required else "?") for j in range(k + 1, len(keys)))
        alternatives.append(f"{members[k]} {tail}".strip())
    body = " | ".join(alternatives)
    arguments = f'"{{" ({body}) "}}"' if required else f'"{{" ({body})? "}}"'
    lines.insert(0, f'{rule}: {head} {arguments} "}}"')
    return lines


def _value(prop: dict[str, Any], sources: Sequence[str], copied_with_reference: bool | None = None) -> str:
    """The value's rule; `copied_with_reference` is None unless the training data copied the
    field, and then says whether it also took the `{{text}}` reference."""
    if sources and (is_copied(prop) or copied_with_reference is not None):
        reference = " | " + _literal(json.dumps(TEXT_REFERENCE)) if copied_with_reference else ""
        return '("\\"" COPIED "\\""' + reference + ")"
    grounded = grounded_values(prop, sources)
    if grounded is not None:
        choices = [_literal(json.dumps(v, ensure_ascii=False)) for v in grounded.values]
        choices += ['/"[0-9]{4}-' + month_day + '"/' for month_day in grounded.month_days]
        return "(" + " | ".join(choices) + ")"
    schema = {k: v for k, v in prop.items() if k not in ("description", "title", "examples", "default")}
    if "type" not in schema and "enum" in schema:
        schema["type"] = "string"
    # The layout json.dumps writes: ", " between items, ": " after keys, no other whitespace.
    schema["x-guidance"] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
    return "%json " + json.dumps(schema, ensure_ascii=False)


_MOST_OPERANDS = 8  # more numbers than this in a conversation: operands from any of them, in any order


def _expression_rules(rule: str, operands: Sequence[str], operators: Sequence[str] = "+-*/%",
                      every: bool = False) -> list[str]:
    """An arithmetic expression string over the numbers the conversation said (`operands`, in
    the order said), in the layout training wrote (no spaces): each number used at most once, in
    the order said or its reverse ("15减8再乘72" -> (15-8)*72; "15% of 80" -> 80*15%), joined by
    + - * / with an optional % after a number and parentheses around a run of them. The model
    still picks the numbers and operators; it can no longer write a number nobody said, or one
    twice, which is what it did with nearly every expression. `operators`: those the conversation
    says (`grounding.said_operators`): "3993 minus eighty-five" allows only -, so not 3993*85.
    `every`: each number exactly once (`grounding.arithmetic_chain`: "843792 minus 7852 minus
    185137" is not 843792-7852)."""
    joining = " | ".join(_literal(op) for op in operators if op != "%")
    percent = ' "%"?' if "%" in operators else ""
    lines = [f'{rule}: "\\"" ({rule}_f | {rule}_b) "\\""', f'{rule}_op: {joining}']
    if len(operands) > _MOST_OPERANDS:
        numbers = " | ".join(_literal(n) for n in dict.fromkeys(operands))
        term = f'{rule}_t: ({numbers}){percent} | "(" {rule}_f ")"'
        return lines + [term, f"{rule}_f: {rule}_t ({rule}_op {rule}_t)*", f"{rule}_b: {rule}_f"]
    for direction, ordered in (("f", list(operands)), ("b", list(reversed(operands)))):
        lines += _ordered_expression(f"{rule}_{direction}", ordered, f"{rule}_op", percent, every)
    return lines


def _ordered_expression(rule: str, operands: Sequence[str], op: str, percent: str, every: bool = False) -> list[str]:
    """`rule`: an expression over a subsequence of `operands` (with `every`, all of them), kept in
    order. {rule}_e{i} starts at operand i; {rule}_g{i}_{k} is a parenthesis' content, from
    operand i to operand k."""
    n = len(operands)
    number = [f'{_literal(said)}{percent}' for said in operands]
    lines = [f"{rule}: " + " | ".join(f"{rule}_e{i}" for i in (range(1) if every else range(n)))]
    for i in range(n):
        for k in range(i, n):
            nexts = [i + 1] if every else range(i + 1, k + 1)
            inner = [number[i]] if k == i else [f"{number[i]} {op} {rule}_g{j}_{k}" for j in nexts]
            lines.append(f"{rule}_g{i}_{k}: " + " | ".join(f"({x})" for x in inner))
    for i in range(n):
        alternatives = []
        for k in range(i, n):
            unit = number[i] if k == i else f'"(" {rule}_g{i}_{k} ")"'
            if not every or k == n - 1:
                alternatives.append(f"({unit})")
            nexts = ([k + 1] if k + 1 < n else []) if every else range(k + 1, n)
            alternatives += [f"({unit} {op} {rule}_e{j})" for j in nexts]
        lines.append(f"{rule}_e{i}: " + " | ".join(alternatives))
    return lines


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
