"""Which string arguments the training data always copies from the conversation.

A catalog's descriptions say so for some fields ("City name exactly as the user wrote it"), but
not for all that behave that way: a message body, an event title, a file path are written by the
user and copied into the call, yet described only as "Message body". The data knows: a field
whose every value in the training conversations is a piece of what the user (or a tool result)
said is a copied field, and the runtime's call grammar may hold the model to copying it.

A deferred call's `{{text}}` reference (the text the model wrote before the call) counts as a
copy of that text; the runtime then allows the reference for the field too.

A run that adapts a model of ours (LoRA with a new tool) trains on a few thousand conversations,
mostly about the new tool: its data may show an old field too rarely to judge. Such a field keeps
what the base model's own, larger data said (`inherited`), as long as its tool is unchanged.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from fnedge.catalog import Catalog
from fnedge.chat_format import TEXT_REFERENCE

MIN_SEEN = 20          # a field seen fewer times than this says nothing
MIN_COPIED = 0.98      # share of its values that must be copies (or references)


def copied_arguments(records: Iterable[dict[str, Any]], catalog: Catalog,
                     inherited: Mapping[str, Mapping[str, bool]] | None = None,
                     inherited_catalog: Catalog | None = None) -> dict[str, dict[str, bool]]:
    """{tool: {field: whether it also takes the `{{text}}` reference}} for every string field
    (without an enum) whose values are copies of the conversation in the training records.

    `inherited`: the base model's answer (its fnedge.json) for `inherited_catalog`; a field the
    records show fewer than MIN_SEEN times keeps it if its tool is the same in both catalogs."""
    seen: Counter[tuple[str, str]] = Counter()
    copied: Counter[tuple[str, str]] = Counter()
    referenced: Counter[tuple[str, str]] = Counter()
    for record in records:
        messages = record.get("messages", [])
        for position, message in enumerate(messages):
            following = messages[position + 1].get("content") or "" if position + 1 < len(messages) else ""
            if not message.get("tool_calls") or '"error"' in following:
                continue  # no call, or the deliberately wrong call of an error-correction sample
            sources = [m.get("content") or "" for m in messages[:position] if m.get("role") in ("user", "tool")]
            for call in message["tool_calls"]:
                function = call.get("function", call)
                if function.get("name") not in catalog:
                    continue
                properties = catalog[function["name"]].properties
                arguments = function.get("arguments")
                arguments = json.loads(arguments) if isinstance(arguments, str) else arguments or {}
                for name, value in arguments.items():
                    prop = properties.get(name, {})
                    if prop.get("type") != "string" or "enum" in prop or not isinstance(value, str):
                        continue
                    key = (function["name"], name)
                    seen[key] += 1
                    if value == TEXT_REFERENCE:
                        referenced[key] += 1
                    elif value and any(value in source for source in sources):
                        copied[key] += 1
    result: dict[str, dict[str, bool]] = {}
    for (tool, name), count in seen.items():
        if count >= MIN_SEEN and copied[tool, name] and (copied + referenced)[tool, name] >= MIN_COPIED * count:
            result.setdefault(tool, {})[name] = referenced[tool, name] > 0
    for tool, fields in (inherited or {}).items():
        unchanged = inherited_catalog is not None and tool in catalog and tool in inherited_catalog \
            and catalog[tool] == inherited_catalog[tool]
        for name, with_reference in fields.items() if unchanged else ():
            if seen[tool, name] < MIN_SEEN:
                result.setdefault(tool, {})[name] = bool(with_reference)
    return {tool: dict(sorted(fields.items())) for tool, fields in sorted(result.items())}
