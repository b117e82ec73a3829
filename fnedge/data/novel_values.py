"""Argument perturbation with never-seen values, so the model learns to copy, not to recall.

A tiny model trained on value pools of a few hundred cities or rooms learns the pool as a prior
and answers "playroom" for any room. Replacing a share of copied values with random names it
cannot have seen (random CJK characters, random Latin syllables) makes copying from the user's
words the only way to lower the loss. The replacement is made in the user's message and in the
call together, so every sample stays consistent and schema-valid.
"""

from __future__ import annotations

import json
import random
import re
from functools import lru_cache
from typing import Any

from fnedge.catalog import Catalog
from fnedge.data.hints import load_hints

_COPYABLE = re.compile(r"^[\w\u4e00-\u9fff ]{2,24}$")
_LATIN = re.compile(r"^[A-Za-z][A-Za-z ]{2,}$")  # 3+ letters: 2-letter values are symbols (km, oz)
_CJK = re.compile(r"^[\u4e00-\u9fff]+$")
_ONSETS = "b c d f g h j k l m n p r s t v w z br ch dr gr kr sh st th tr".split()
_VOWELS = "a e i o u ai au ea ie oa ou".split()


@lru_cache(maxsize=1)
def _cjk_characters() -> tuple[str, ...]:
    """The CJK characters of the built-in hint files: common ones, in realistic proportions."""
    text = json.dumps(load_hints().__dict__, ensure_ascii=False, default=str)
    return tuple(sorted(set(re.findall(r"[\u4e00-\u9fff]", text))))


def novel_like(value: str, rng: random.Random) -> str | None:
    """A random string of the same script and about the same size, or None if not copyable."""
    if _CJK.match(value):
        return "".join(rng.choice(_cjk_characters()) for _ in range(len(value)))
    if _LATIN.match(value):
        words = []
        for word in value.split():
            syllables = max(1, round(len(word) / 3))
            made = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
            words.append(made.capitalize() if word[0].isupper() else made)
        return " ".join(words)
    return None


def _free_string(prop: dict[str, Any], value: str) -> bool:
    """A free string argument: no enum, and not one of the fixed words its description lists
    (`today`, `tomorrow` for dates): those are normalized values, not copied ones."""
    return (prop.get("type") == "string" and "enum" not in prop
            and value.lower() not in prop.get("description", "").lower())


def with_novel_values(record: dict[str, Any], catalog: Catalog, rng: random.Random) -> dict[str, Any]:
    """Replace copied free-string arguments of a one-turn call sample with novel values."""
    messages = record["messages"]
    if len(messages) != 2 or not messages[1].get("tool_calls"):
        return record
    text, written = messages[0]["content"], messages[1].get("content") or ""
    new_calls = []
    replaced: dict[str, str] = {}  # a value shared by two calls ("… in French and German") changes in both
    for call in messages[1]["tool_calls"]:
        arguments = json.loads(call["function"]["arguments"])
        properties = catalog[call["function"]["name"]].properties
        for key, value in arguments.items():
            if isinstance(value, str) and value in replaced:
                arguments[key] = replaced[value]
                continue
            if not (isinstance(value, str) and _COPYABLE.match(value) and text.count(value) == 1
                    and _free_string(properties.get(key, {}), value)):
                continue
            replacement = novel_like(value, rng)
            if replacement and replacement not in text:
                text = text.replace(value, replacement)
                written = written.replace(value, replacement)  # a deferred text may name it too
                arguments[key] = replacement
                replaced[value] = replacement
        new_calls.append({**call, "function": {**call["function"],
                                                "arguments": json.dumps(arguments, ensure_ascii=False)}})
    user = {**messages[0], "content": text}
    reply = {**messages[1], "content": written, "tool_calls": new_calls}
    return {**record, "messages": [user, reply],
            "template": record["template"] + "|novel"}
