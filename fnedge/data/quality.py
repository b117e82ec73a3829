"""Checks on generated data: validity, duplicates, statistics, and a held-out split."""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import unicodedata
from collections import Counter
from typing import Any, Iterable

from fnedge.catalog import Catalog, call_problem
from fnedge.chat_format import TEXT_REFERENCE, render

NORMALIZE_RE = re.compile(r"[\s\W_]+", re.UNICODE)
NORMALIZED_VALUE_RE = re.compile(r"^(today|tomorrow|day_after_tomorrow|\d{4}-\d{2}-\d{2}|\d{2}:\d{2})$")


def learned_calls(record: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    """(name, parsed arguments) of every assistant call a trainer learns (weight 0 excluded)."""
    for message in record["messages"]:
        if message["role"] != "assistant" or message.get("weight", 1) == 0:
            continue
        for call in message.get("tool_calls") or []:
            function = call["function"]
            yield function["name"], json.loads(function["arguments"])


def record_problem(record: dict[str, Any], catalog: Catalog) -> str | None:
    """Why a record must not be trained on, or None."""
    messages = record["messages"]
    if not messages or messages[-1]["role"] != "assistant":
        return "the last message is not an assistant turn"
    for name, arguments in learned_calls(record):
        problem = call_problem({"name": name, "arguments": arguments}, catalog)
        if problem:
            return f"{name}: {problem}"
        order = list(catalog[name].properties)
        positions = [order.index(k) for k in arguments]
        if positions != sorted(positions):
            return f"{name}: arguments are not in schema order"
    for message in messages:
        if message["role"] == "assistant" and not (message.get("content") or message.get("tool_calls")):
            return "an assistant turn is empty"
        if message["role"] == "user" and not message["content"].strip():
            return "a user turn is empty"
    return None


def _conversation_text(record: dict[str, Any]) -> str:
    parts = []
    for message in record["messages"]:
        parts.append(message["role"])
        parts.append(message.get("content") or "")
        for call in message.get("tool_calls") or []:
            parts.append(call["function"]["name"] + call["function"]["arguments"])
    return "\x1f".join(parts)


def exact_key(record: dict[str, Any]) -> str:
    """Identity of the conversation, ignoring random call ids."""
    return hashlib.sha1(_conversation_text(record).encode("utf-8")).hexdigest()


def near_key(record: dict[str, Any]) -> str:
    """Identity after NFKC, case folding and removing spaces and punctuation."""
    text = unicodedata.normalize("NFKC", _conversation_text(record)).casefold()
    return hashlib.sha1(NORMALIZE_RE.sub("", text).encode("utf-8")).hexdigest()


def rendered_length(record: dict[str, Any]) -> int:
    return len(render(record["messages"]))


def stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per kind, tool, language and turn count; rendered length in characters."""
    lengths = sorted(rendered_length(r) for r in records) or [0]
    tools = Counter(t for r in records for t in set(r["tools"]))
    quantile = lambda q: lengths[min(len(lengths) - 1, int(q * len(lengths)))]  # noqa: E731
    return {
        "records": len(records),
        "kind": dict(Counter(r["kind"] for r in records).most_common()),
        "lang": dict(Counter(r["lang"] for r in records).most_common()),
        "tool": dict(tools.most_common()),
        "no_tool": sum(1 for r in records if not r["tools"]),
        "messages": dict(sorted(Counter(len(r["messages"]) for r in records).items())),
        "templates": len({part for r in records for part in r["template"].split("|")}),
        "chars": {"min": lengths[0], "mean": round(statistics.fmean(lengths), 1), "p50": quantile(0.5),
                  "p95": quantile(0.95), "max": lengths[-1]},
        "calls": sum(1 for r in records for _ in learned_calls(r)),
        "text_reference_calls": sum(1 for r in records for _, a in learned_calls(r) if TEXT_REFERENCE in a.values()),
    }


def slot_values(record: dict[str, Any]) -> set[str]:
    """Free-text argument values (cities, names, rooms, ...): not enums, dates, times or numbers."""
    values = set()
    for _, arguments in learned_calls(record):
        for value in arguments.values():
            if isinstance(value, str) and value != TEXT_REFERENCE and not NORMALIZED_VALUE_RE.match(value) \
                    and len(value) > 2:
                values.add(unicodedata.normalize("NFKC", value).casefold())
    return values


def _held_out(item: str, fraction: float, seed: int) -> bool:
    digest = hashlib.sha1(f"{seed}:{item}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < fraction


def split_by_template(records: list[dict[str, Any]], dev_fraction: float = 0.1, seed: int = 0,
                      value_fraction: float | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split so that dev rows use only templates and slot values that no train row uses.

    A row's first template (the user's opening request) is held out with probability
    `dev_fraction`, by stable hashing; that decides which side the row can go to. Every other item
    a row holds -- later templates (answers, follow-ups, picks) and slot values -- goes to the side
    whose rows use it more, so a common value ("off", a popular city) stays in train and a value
    seen only in held-out rows stays in dev. A row that still mixes sides is dropped; that way dev
    measures phrasings and values the model never saw while dropping as few rows as possible.

    value_fraction: hold out slot values by stable hashing with this probability instead (the
    older, independent rule, which drops many more rows).
    """
    opening = {record["template"].split("|")[0] for record in records}
    rows: list[tuple[bool | None, dict[str, Any], set[str]]] = []
    dev_uses: Counter = Counter()
    train_uses: Counter = Counter()
    for record in records:
        templates = record["template"].split("|")
        held = [_held_out("t:" + t, dev_fraction, seed) for t in templates if t in opening]
        free = {"t:" + t for t in templates if t not in opening}  # answers, follow-ups, picks
        if value_fraction is None:
            free |= {"v:" + v for v in slot_values(record)}
        else:
            held += [_held_out("v:" + v, value_fraction, seed) for v in slot_values(record)]
        side = True if all(held) else False if not any(held) else None  # dev, train, or mixed
        (dev_uses if side else train_uses if side is False else Counter()).update(free)
        rows.append((side, record, free))
    held_free = {item for item, count in dev_uses.items() if count > train_uses[item]}
    train, dev = [], []
    for side, record, free in rows:
        if side is True and free <= held_free:
            dev.append(record)
        elif side is False and not free & held_free:
            train.append(record)
    return train, dev
