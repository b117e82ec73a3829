"""Hint files: optional per-tool phrasings and value pools that make generated data sound human.

A hint file is JSON or YAML:

    {"tools": {"<tool name>": {
        "slots":     {"<param>": "<filler name>" | {"pool": [...]} | {"pool": {"zh": [...], "en": [...]}}},
        "labels":    {"<param>": {"zh": "城市", "en": "city"}},        # used in generic questions
        "templates": [{"args": {...fixed arguments...}, "zh": [...], "en": [...], "mix": [...]}],
        "parallel":  {"args": {...}, "zh": [...], "en": [...]},        # {param#2} = second call
        "ask":       {"<param>": {"zh": [...], "en": [...]}},          # questions for a missing param
        "answers":   {"<param>": {"zh": [...], "en": [...]}},          # how users answer them
        "followups": {"zh": [...], "en": [...]},                       # next turn after a result
        "vague":     [{"zh": [...], "en": [...], "reply_zh": [...], "reply_en": [...]}],
        "near_miss": [{"zh": [...], "en": [...], "reply_zh": [...], "reply_en": [...]}],
        "deferred":  {"param": "<text param>", "templates": [{"genre": "poem", "zh": [...], "en": [...]}]}}},
     "pools": {"<pool name>": [...]},
     "no_call": [...], "ambiguous": [...], "compose": [...]}

Template syntax is in templates.py. Pool items are strings (said and passed as is) or
[said, value] pairs. Filler names are those in fillers.FILLERS. User hints extend the built-in
ones: lists are appended, per-parameter maps are merged (the user's entry wins).
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fnedge.errors import FnedgeError

HINTS_DIR = Path(__file__).parent / "hints"
BUILTIN_FILES = ("pools.json", "chat.json", "texts.json", "default.json")
LANGS = ("zh", "en", "mix")
TOOL_KEYS = {"slots", "labels", "templates", "parallel", "ask", "answers", "followups", "vague",
             "near_miss", "deferred", "_about"}
TOP_KEYS = {"tools", "pools", "no_call", "ambiguous", "compose", "prefixes", "suffixes", "replies",
            "_about"}
PARAM_MAPS = ("slots", "labels", "ask", "answers")
LISTS = ("templates", "vague", "near_miss")


@dataclass
class HintSet:
    """Everything the generator reads besides the catalog."""
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)
    pools: dict[str, Any] = field(default_factory=dict)
    chat: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, Any] = field(default_factory=dict)
    tool_sources: dict[str, str] = field(default_factory=dict)  # tool -> file its hints came from
    user_tools: set[str] = field(default_factory=set)  # tools that the user's hints mention


def load_hints(source: str | Path | dict | None = None, builtin: bool = True) -> HintSet:
    """The built-in hints, extended by `source` (a JSON/YAML path or an already-parsed dict)."""
    hints = copy.deepcopy(_builtin_hints()) if builtin else HintSet()
    if source is None:
        return hints
    if isinstance(source, dict):
        data, where = source, "<hints>"
    else:
        data, where = read_hint_file(Path(source)), str(source)
    check_hint_data(data, where)
    merge_hints(hints, data, where)
    hints.user_tools |= set(data.get("tools", {}))
    return hints


@functools.lru_cache(maxsize=1)
def _builtin_hints() -> HintSet:
    hints = HintSet()
    for name in BUILTIN_FILES:
        path = HINTS_DIR / name
        data = read_hint_file(path)
        if name == "texts.json":
            hints.texts = {k: v for k, v in data.items() if not k.startswith("_")}
            continue
        if name == "pools.json":
            data = {"pools": {k: v for k, v in data.items() if not k.startswith("_")}}
        check_hint_data(data, str(path))
        merge_hints(hints, data, f"built-in {name}")
    return hints


def read_hint_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FnedgeError(f"{path}: hints file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml  # only needed for YAML hint files
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except json.JSONDecodeError as e:
        raise FnedgeError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except Exception as e:  # yaml.YAMLError and friends
        raise FnedgeError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise FnedgeError(f"{path}: a hints file must hold an object with a 'tools' field")
    return data


def check_hint_data(data: dict[str, Any], where: str) -> None:
    """Shape checks that need no catalog; catalog checks happen when plans are built."""
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise FnedgeError(f"{where}: unknown top-level key(s) {sorted(unknown)} (known: {sorted(TOP_KEYS)})")
    tools = data.get("tools", {})
    if not isinstance(tools, dict):
        raise FnedgeError(f"{where}: 'tools' must map tool names to hint objects")
    for name, entry in tools.items():
        at = f"{where}: tool '{name}'"
        if not isinstance(entry, dict):
            raise FnedgeError(f"{at}: hints must be an object")
        bad = set(entry) - TOOL_KEYS
        if bad:
            raise FnedgeError(f"{at}: unknown key(s) {sorted(bad)} (known: {sorted(TOOL_KEYS - {'_about'})})")
        for key in PARAM_MAPS:
            if not isinstance(entry.get(key, {}), dict):
                raise FnedgeError(f"{at}: '{key}' must map parameter names to values")
        groups = entry.get("templates", [])
        if isinstance(groups, dict):
            groups = [groups]
            entry["templates"] = groups
        if not isinstance(groups, list):
            raise FnedgeError(f"{at}: 'templates' must be a list of groups like {{\"en\": [...], \"zh\": [...]}}")
        for index, group in enumerate(groups):
            _check_group(group, f"{at}: templates[{index}]")
        for key in ("parallel", "followups"):
            if key in entry:
                _check_group(entry[key], f"{at}: {key}")
        for key in ("vague", "near_miss"):
            for index, item in enumerate(entry.get(key, [])):
                _check_group(item, f"{at}: {key}[{index}]", replies=True)
        deferred = entry.get("deferred")
        if deferred is not None:
            if not isinstance(deferred, dict) or not isinstance(deferred.get("param"), str):
                raise FnedgeError(f"{at}: 'deferred' needs a 'param' (the text argument) and 'templates'")
            for index, group in enumerate(deferred.get("templates", [])):
                _check_group(group, f"{at}: deferred.templates[{index}]")
    pools = data.get("pools", {})
    if not isinstance(pools, dict):
        raise FnedgeError(f"{where}: 'pools' must map pool names to lists")
    categories = data.get("no_call", [])
    if not isinstance(categories, list):
        raise FnedgeError(f"{where}: 'no_call' must be a list of categories")
    for index, group in enumerate(categories):
        at = f"{where}: no_call[{index}]"
        _check_group(group, at, replies=True)
        weight = group.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise FnedgeError(f"{at}: 'weight' must be a positive number, not {weight!r}")


def _check_group(group: Any, at: str, replies: bool = False) -> None:
    if not isinstance(group, dict):
        raise FnedgeError(f"{at}: expected an object with 'zh'/'en'/'mix' lists")
    for lang in LANGS + (("reply_zh", "reply_en") if replies else ()):
        items = group.get(lang, [])
        if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
            raise FnedgeError(f"{at}: '{lang}' must be a list of strings")
    if "args" in group and not isinstance(group["args"], dict):
        raise FnedgeError(f"{at}: 'args' must be an object of fixed arguments")


def merge_hints(hints: HintSet, data: dict[str, Any], where: str) -> None:
    for name, entry in data.get("tools", {}).items():
        target = hints.tools.setdefault(name, {})
        hints.tool_sources[name] = where
        for key, value in entry.items():
            if key in PARAM_MAPS:
                merged = target.setdefault(key, {})
                merged.update(copy.deepcopy(value))
            elif key in LISTS:
                target.setdefault(key, []).extend(copy.deepcopy(value))
            else:
                target[key] = copy.deepcopy(value)
    hints.pools.update(copy.deepcopy(data.get("pools", {})))
    for key in ("no_call", "ambiguous", "compose"):
        if key in data:
            hints.chat.setdefault(key, []).extend(copy.deepcopy(data[key]))
    for key in ("prefixes", "suffixes", "replies"):
        if key in data:
            hints.chat[key] = copy.deepcopy(data[key])
