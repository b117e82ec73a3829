"""What the generator knows about a tool with no hints: only its schema.

Two jobs: pick a filler for each parameter from its name and type, and write plain phrasings
("please set thermostat with temperature {temperature}") from the tool name, its description and
the parameter names, so any catalog yields usable data; hints then add the human variety.
"""

from __future__ import annotations

import re
from typing import Any

from fnedge.catalog import Tool
from fnedge.data import fillers as fl

CJK_RE = re.compile(r"[\u3400-\u9fff][\u3400-\u9fff\uff0c\u3001A-Za-z0-9 ]*[\u3400-\u9fff]|[\u3400-\u9fff]")
WORD_SPLIT_RE = re.compile(r"[_\-.\s]+|(?<=[a-z0-9])(?=[A-Z])")
UNSAFE_RE = re.compile(r"[\[\]{}|]")

# Parameter-name words -> filler, checked in order (the first rule whose word appears wins).
STRING_RULES: list[tuple[set[str], str]] = [
    ({"unit"}, "unit"),
    ({"path", "file", "filename", "folder", "filepath"}, "path"),
    ({"city", "town", "location", "destination", "place", "origin", "address"}, "city"),
    ({"date", "day", "checkin", "checkout", "deadline"}, "date"),
    ({"time", "clock"}, "time"),
    ({"room", "area", "zone"}, "room"),
    ({"song", "music", "track", "artist", "playlist", "album"}, "music"),
    ({"content", "body"}, "short_text"),
    ({"message", "text", "msg", "note", "sms"}, "message_text"),
    ({"title", "subject", "event", "summary"}, "event_title"),
    ({"lang", "language", "locale"}, "language"),
    ({"expression", "formula", "equation"}, "expression"),
    ({"label", "tag"}, "alarm_label"),
    ({"phone", "mobile", "tel"}, "phone"),
    ({"contact", "recipient", "to", "person", "friend", "name", "user", "receiver", "who"}, "contact"),
    ({"id", "code", "ref", "reference", "sku"}, "hotel_id"),
]
NUMBER_RULES: list[tuple[set[str], str]] = [
    ({"price", "budget", "cost", "amount", "fare"}, "price"),
    ({"nights"}, "nights"),
]


def words_of(name: str) -> list[str]:
    return [w.lower() for w in WORD_SPLIT_RE.split(name) if w]


def filler_for(name: str, schema: dict[str, Any]) -> tuple[Any | None, str]:
    """A filler for a parameter with no hint, or (None, why not)."""
    kind = schema.get("type", "string" if "enum" in schema else None)
    words = set(words_of(name))
    if name.lower() in ("check_in", "check_out", "start", "end") and kind == "string":
        words.add("date")
    if "enum" in schema:
        return fl.EnumFiller(list(schema["enum"])), ""
    if kind == "boolean":
        return fl.BooleanFiller(), ""
    if kind == "string":
        for rule_words, filler_name in STRING_RULES:
            if words & rule_words:
                return fl.FILLERS[filler_name], ""
        return fl.FILLERS["word"], ""
    if kind in ("integer", "number"):
        bounded = "minimum" in schema or "maximum" in schema
        if not bounded:
            for rule_words, filler_name in NUMBER_RULES:
                if words & rule_words:
                    return fl.FILLERS[filler_name], ""
        if schema.get("maximum") == 100 and words & {"brightness", "percent", "percentage", "volume", "level"}:
            return fl.FILLERS["percent"], ""
        return fl.FILLERS["integer" if kind == "integer" else "number"], ""
    if kind == "array":
        items = schema.get("items")
        if not isinstance(items, dict) or not items:
            return None, "is an array with no 'items' schema"
        item, why = filler_for(name, items)
        if item is None:
            return None, f"is an array whose items {why}"
        return fl.ArrayFiller(item), ""
    if kind == "object":
        properties = schema.get("properties", {})
        if not properties:
            return None, "is a free-form object"
        fields = {}
        for sub_name, sub_schema in properties.items():
            sub, why = filler_for(sub_name, sub_schema)
            if sub is None and sub_name in schema.get("required", []):
                return None, f"has a field '{sub_name}' that {why}"
            if sub is not None:
                fields[sub_name] = sub
        return fl.ObjectFiller(fields, list(schema.get("required", []))), ""
    return None, f"has unsupported type {kind!r}"


def english_phrase(tool: Tool) -> str:
    """'set_thermostat' -> 'set thermostat'."""
    return " ".join(words_of(tool.name))


def chinese_phrase(tool: Tool) -> str | None:
    """The Chinese part of a bilingual description ('Set an alarm. 设置闹钟。' -> '设置闹钟')."""
    match = CJK_RE.search(tool.description)
    return match.group(0).strip() if match else None


def label(tool: Tool, param: str, lang: str, hint_labels: dict[str, Any]) -> str:
    hinted = hint_labels.get(param)
    if isinstance(hinted, dict) and hinted.get(lang):
        return hinted[lang]
    if isinstance(hinted, str):
        return hinted
    if lang == "zh":
        description = tool.properties.get(param, {}).get("description", "")
        match = CJK_RE.search(description)
        if match and len(match.group(0)) <= 8:
            return match.group(0)
    return " ".join(words_of(param))


def _safe(text: str) -> str:
    return UNSAFE_RE.sub("", text)


def generic_template_texts(tool: Tool, slots: list[str], labels: dict[str, dict[str, str]],
                           lang: str) -> tuple[list[str], bool]:
    """Plain phrasings naming the tool's action and each given slot by its label.

    Returns (template strings, code_mixed): code_mixed is True when a Chinese sentence had to use
    the English tool name because the catalog gives no Chinese wording.
    """
    if lang == "zh":
        verb = chinese_phrase(tool)
        mixed = verb is None
        verb = _safe(verb or english_phrase(tool))
        pairs = [f"{_safe(labels[p]['zh'])}[是|为|用|：|]{{{p}}}" for p in slots]
        joined = "，".join(pairs)
        if not slots:
            return [f"[帮我|请|麻烦|]{verb}", f"我要{verb}", f"{verb}一下", f"能不能{verb}"], mixed
        texts = [f"[帮我|请|麻烦|]{verb}，{joined}", f"{verb}：{joined}", f"我想{verb}，{joined}",
                 f"{joined}，[帮我|请|]{verb}", f"{verb}，{'，'.join(reversed(pairs))}"]
        return texts, mixed
    verb = _safe(english_phrase(tool))
    pairs = [f"{_safe(labels[p]['en'])}[ is| =|:| of|] {{{p}}}" for p in slots]
    if not slots:
        return [f"[please |can you |]{verb}", f"I want to {verb}", f"{verb} now", f"could you {verb}?"], False
    and_joined = ", ".join(pairs[:-1]) + (" and " if len(pairs) > 1 else "") + pairs[-1]
    texts = [f"[please |can you |could you |]{verb} with {and_joined}", f"{verb}: {', '.join(pairs)}",
             f"I want to {verb}, {and_joined}", f"[hey, |]{verb}, {', '.join(reversed(pairs))}",
             f"{verb} ({', '.join(_safe(labels[p]['en']) + ': {' + p + '}' for p in slots)})"]
    if len(slots) == 1:
        texts.append(f"{verb} {{{slots[0]}}}")
    return texts, False


def slot_subsets(required: list[str], optional: list[str]) -> tuple[list[list[str]], list[list[str]]]:
    """(complete subsets, partial subsets) of slots, in schema order, for generic phrasings."""
    complete = [list(required)]
    for extra in optional[:4]:
        complete.append(required + [extra])
    if len(optional) >= 2:
        complete.append(required + optional[:2])
    partial: list[list[str]] = []
    for missing in required:
        partial.append([p for p in required if p != missing])
    if len(required) >= 2:
        partial.append([])
    return complete, partial
