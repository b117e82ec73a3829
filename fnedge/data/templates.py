"""Phrasing templates: parse once, render many times.

Syntax (kept tiny so hint files stay readable):
    {city}          a slot, filled by the parameter's filler
    {query:song}    a slot with a variant the filler understands
    {city#2}        the second call's value in a parallel template
    [a|b|]          pick one option at random (an empty option makes the group optional)
Groups nest and may hold slots. Literal text is everything else.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from fnedge.errors import FnedgeError

SLOT_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.\-]*)(#2)?(?::([A-Za-z_]+))?\}")


@dataclass(frozen=True)
class Slot:
    name: str
    variant: str | None = None
    second: bool = False  # {name#2}: the second call's value

    @property
    def key(self) -> str:
        return self.name + ("#2" if self.second else "")


@dataclass(frozen=True)
class Choice:
    options: tuple[tuple["Part", ...], ...]


Part = Union[str, Slot, Choice]


@dataclass(frozen=True)
class Template:
    """One phrasing. `args` are arguments the wording itself fixes ("turn ON the light")."""
    id: str
    text: str
    lang: str
    parts: tuple[Part, ...]
    args: tuple[tuple[str, Any], ...] = ()
    always: frozenset[str] = frozenset()  # slot keys present in every rendering
    maybe: frozenset[str] = frozenset()  # slot keys present in some renderings
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def fixed(self) -> dict[str, Any]:
        return dict(self.args)

    @property
    def slot_names(self) -> set[str]:
        return {key.split("#")[0] for key in self.always | self.maybe}

    def variant_of(self, key: str) -> str | None:
        for slot in _walk_slots(self.parts):
            if slot.key == key and slot.variant:
                return slot.variant
        return None


def compile_template(text: str, template_id: str, lang: str, args: dict[str, Any] | None = None,
                     extra: dict[str, Any] | None = None) -> Template:
    try:
        parts, rest = _parse(text, 0, top=True)
    except ValueError as e:
        raise FnedgeError(f"template {template_id} {text!r}: {e}") from None
    always, maybe = _slot_presence(parts)
    return Template(id=template_id, text=text, lang=lang, parts=tuple(parts),
                    args=tuple((args or {}).items()), always=frozenset(always),
                    maybe=frozenset(maybe - always), extra=dict(extra or {}))


def _parse(text: str, pos: int, top: bool) -> tuple[list[Part], int]:
    """Parse until ']' or '|' (inside a group) or the end; returns parts and the stop position."""
    parts: list[Part] = []
    literal = ""
    while pos < len(text):
        ch = text[pos]
        if ch == "{":
            match = SLOT_RE.match(text, pos)
            if not match:
                raise ValueError(f"bad slot at column {pos}")
            if literal:
                parts.append(literal)
                literal = ""
            parts.append(Slot(match.group(1), match.group(3), bool(match.group(2))))
            pos = match.end()
        elif ch == "[":
            if literal:
                parts.append(literal)
                literal = ""
            options: list[tuple[Part, ...]] = []
            pos += 1
            while True:
                option, pos = _parse(text, pos, top=False)
                options.append(tuple(option))
                if pos >= len(text):
                    raise ValueError("unclosed '['")
                if text[pos] == "]":
                    pos += 1
                    break
                pos += 1  # '|'
            parts.append(Choice(tuple(options)))
        elif ch in "]|" and not top:
            break
        elif ch == "]":
            raise ValueError(f"unmatched ']' at column {pos}")
        else:
            literal += ch
            pos += 1
    if literal:
        parts.append(literal)
    return parts, pos


def _slot_presence(parts: list[Part] | tuple[Part, ...]) -> tuple[set[str], set[str]]:
    always: set[str] = set()
    maybe: set[str] = set()
    for part in parts:
        if isinstance(part, Slot):
            always.add(part.key)
        elif isinstance(part, Choice):
            per_option = [_slot_presence(option) for option in part.options]
            common = set.intersection(*(a for a, _ in per_option)) if per_option else set()
            always |= common
            for a, m in per_option:
                maybe |= a | m
    return always, maybe | always


def _walk_slots(parts):
    for part in parts:
        if isinstance(part, Slot):
            yield part
        elif isinstance(part, Choice):
            for option in part.options:
                yield from _walk_slots(option)


# A rendered utterance is a list of segments: (text, slot key or None for literal text).
Segment = tuple[str, Union[str, None]]


def render(template: Template, rng: random.Random, surface: Callable[[Slot], list[Segment]]) -> list[Segment]:
    """Walk the template, picking options; `surface(slot)` gives the segments for a slot."""
    out: list[Segment] = []
    _render_parts(template.parts, rng, surface, out)
    return out


def _render_parts(parts, rng, surface, out) -> None:
    for part in parts:
        if isinstance(part, str):
            out.append((part, None))
        elif isinstance(part, Slot):
            out.extend(surface(part))
        else:
            _render_parts(rng.choice(part.options), rng, surface, out)


def render_plain(text: str, rng: random.Random, values: dict[str, str]) -> str:
    """Render a template string whose slots are plain strings (replies, questions)."""
    if "[" not in text and "{" not in text:
        return text
    template = _compile_inline(text)

    def surface(slot: Slot) -> list[Segment]:
        if slot.key not in values and slot.name not in values:
            raise FnedgeError(f"template {text!r}: no value for {{{slot.key}}}")
        return [(str(values.get(slot.key, values.get(slot.name))), None)]

    return "".join(piece for piece, _ in render(template, rng, surface))


@functools.lru_cache(maxsize=4096)
def _compile_inline(text: str) -> Template:
    return compile_template(text, "<inline>", "")
