"""Per-tool generation plans: which templates and fillers a tool uses, built from schema + hints.

Building the plans is where catalog and hints meet, so every mismatch is reported here, once, in
one line naming the file, the tool and the problem. A tool whose required argument cannot be
filled is skipped with a warning; a catalog where no tool is left is an error.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from fnedge.catalog import Catalog, Tool, value_problem
from fnedge.data import fillers as fl
from fnedge.data import generic
from fnedge.data.hints import HintSet
from fnedge.data.templates import Template, compile_template
from fnedge.errors import FnedgeError

NON_PARAM_SLOTS = {"topic"}  # slots a deferred template may use besides parameters


class DataWarning(UserWarning):
    """A tool or argument the generator had to leave out; the message says which and why."""


@dataclass
class ToolPlan:
    tool: Tool
    fillers: dict[str, Any]
    labels: dict[str, dict[str, str]]
    complete: dict[str, list[Template]] = field(default_factory=dict)  # lang -> all required said
    partial: dict[str, list[Template]] = field(default_factory=dict)  # lang -> some required missing
    generic_complete: dict[str, list[Template]] = field(default_factory=dict)
    generic_partial: dict[str, list[Template]] = field(default_factory=dict)
    parallel: dict[str, list[Template]] = field(default_factory=dict)
    followups: dict[str, list[Template]] = field(default_factory=dict)
    deferred_param: str | None = None
    deferred: dict[str, list[Template]] = field(default_factory=dict)
    ask: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    answers: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    vague: list[dict[str, Any]] = field(default_factory=list)
    near_miss: list[dict[str, Any]] = field(default_factory=list)
    generic_mixed: bool = False  # generic zh phrasings had to use the English tool name

    @property
    def name(self) -> str:
        return self.tool.name

    def missing(self, template: Template) -> list[str]:
        """Required parameters a template neither says nor fixes, in schema order."""
        said = template.slot_names | set(template.fixed)
        return [p for p in self.tool.required if p not in said]


def build_plans(catalog: Catalog, hints: HintSet) -> dict[str, ToolPlan]:
    plans: dict[str, ToolPlan] = {}
    for name in sorted(hints.user_tools - set(catalog.names)):
        warnings.warn(f"{hints.tool_sources.get(name, '<hints>')}: tool '{name}' has hints but is not in "
                      f"catalog {catalog.source}; its hints are ignored", DataWarning, stacklevel=3)
    for tool in catalog.tools:
        tool_hints = hints.tools.get(tool.name, {})
        where = f"{hints.tool_sources.get(tool.name, '<hints>')}: tool '{tool.name}'"
        try:
            plan = _build_plan(tool, tool_hints, where)
        except FnedgeError as e:
            if tool.name in hints.user_tools:
                raise
            # Built-in hints written for a different schema of a same-named tool: fall back.
            warnings.warn(f"{e}; built-in hints do not fit catalog {catalog.source}, using generic "
                          f"phrasings for '{tool.name}'", DataWarning, stacklevel=3)
            plan = _build_plan(tool, {}, f"{catalog.source}: tool '{tool.name}'")
        if plan is not None:
            plans[tool.name] = plan
    if not plans:
        raise FnedgeError(f"{catalog.source}: no tool can be filled with generated values "
                          "(see the warnings above); add value pools for them in a hints file")
    return plans


def _build_plan(tool: Tool, tool_hints: dict[str, Any], where: str) -> ToolPlan | None:
    params = tool.properties
    slot_specs = tool_hints.get("slots", {})
    for param in slot_specs:
        if param not in params:
            raise FnedgeError(f"{where}: hints give a filler for unknown argument '{param}'")
    fillers: dict[str, Any] = {}
    for param, schema in params.items():
        filler, why = _filler(param, schema, slot_specs.get(param), where)
        if filler is None:
            message = f"{where}: argument '{param}' {why} and no hint gives values for it"
            if param in tool.required:
                warnings.warn(f"{message}; skipping the tool", DataWarning, stacklevel=4)
                return None
            warnings.warn(f"{message}; it will never be filled", DataWarning, stacklevel=4)
            continue
        fillers[param] = filler
    labels = {p: {lang: generic.label(tool, p, lang, tool_hints.get("labels", {})) for lang in ("zh", "en")}
              for p in params}
    plan = ToolPlan(tool=tool, fillers=fillers, labels=labels,
                    ask=tool_hints.get("ask", {}), answers=tool_hints.get("answers", {}),
                    vague=tool_hints.get("vague", []), near_miss=tool_hints.get("near_miss", []))
    _add_hint_templates(plan, tool_hints, where)
    _add_generic_templates(plan)
    _add_deferred(plan, tool_hints.get("deferred"), where)
    return plan


def _filler(param: str, schema: dict[str, Any], spec: Any, where: str) -> tuple[Any | None, str]:
    if spec is None:
        return generic.filler_for(param, schema)
    if isinstance(spec, str):
        if spec not in fl.FILLERS:
            raise FnedgeError(f"{where}: argument '{param}': unknown filler '{spec}' "
                              f"(known: {', '.join(sorted(fl.FILLERS))})")
        return fl.FILLERS[spec], ""
    if isinstance(spec, dict) and "pool" in spec:
        pool = spec["pool"]
        items = [i for group in pool.values() for i in group] if isinstance(pool, dict) else pool
        if not isinstance(items, list) or not items:
            raise FnedgeError(f"{where}: argument '{param}': 'pool' must be a non-empty list "
                              "(or {\"zh\": [...], \"en\": [...]})")
        for item in items:
            value = item[1] if isinstance(item, list) and len(item) == 2 else item
            problem = value_problem(value, schema)
            if problem:
                raise FnedgeError(f"{where}: argument '{param}': pool value {value!r} {problem}")
        return fl.PoolFiller(pool), ""
    if isinstance(spec, dict) and spec.get("filler") in fl.FILLERS:
        return fl.FILLERS[spec["filler"]], ""
    raise FnedgeError(f"{where}: argument '{param}': a slot hint must be a filler name or {{\"pool\": [...]}}")


def _compile_group(plan: ToolPlan, group: dict[str, Any], prefix: str, where: str,
                   allow_second: bool = False, extra_slots: set[str] = frozenset()) -> list[Template]:
    args = group.get("args", {})
    for key, value in args.items():
        if key not in plan.tool.properties:
            raise FnedgeError(f"{where}: fixed argument '{key}' is not a parameter")
        problem = value_problem(value, plan.tool.properties[key])
        if problem:
            raise FnedgeError(f"{where}: fixed argument '{key}' = {value!r} {problem}")
    templates = []
    for lang in ("zh", "en", "mix"):
        for index, text in enumerate(group.get(lang, [])):
            template = compile_template(text, f"{prefix}.{lang}.{index}", lang, args,
                                        extra={k: v for k, v in group.items() if k not in ("zh", "en", "mix", "args")})
            for key in template.always | template.maybe:
                name = key.split("#")[0]
                if key.endswith("#2") and not allow_second:
                    raise FnedgeError(f"{where}: template {text!r}: {{{key}}} is only allowed in 'parallel'")
                if name in extra_slots:
                    continue
                if name not in plan.tool.properties:
                    raise FnedgeError(f"{where}: template {text!r} uses {{{name}}}, which is not an argument")
                if name not in plan.fillers:
                    raise FnedgeError(f"{where}: template {text!r} uses {{{name}}}, which cannot be filled")
            templates.append(template)
    return templates


def _add_hint_templates(plan: ToolPlan, tool_hints: dict[str, Any], where: str) -> None:
    for index, group in enumerate(tool_hints.get("templates", [])):
        for template in _compile_group(plan, group, f"{plan.name}.g{index}", where):
            bucket = plan.partial if plan.missing(template) else plan.complete
            bucket.setdefault(template.lang, []).append(template)
    if "parallel" in tool_hints:
        for template in _compile_group(plan, tool_hints["parallel"], f"{plan.name}.parallel", where, allow_second=True):
            if not plan.missing(template):
                plan.parallel.setdefault(template.lang, []).append(template)
    if "followups" in tool_hints:
        for template in _compile_group(plan, tool_hints["followups"], f"{plan.name}.followup", where):
            plan.followups.setdefault(template.lang, []).append(template)


def _add_generic_templates(plan: ToolPlan) -> None:
    tool = plan.tool
    fillable = [p for p in tool.properties if p in plan.fillers]
    required = [p for p in tool.required if p in plan.fillers]
    optional = [p for p in fillable if p not in required]
    complete, partial = generic.slot_subsets(required, optional)
    for lang in ("zh", "en"):
        for kind, subsets, bucket in (("c", complete, plan.generic_complete), ("p", partial, plan.generic_partial)):
            for s_index, subset in enumerate(subsets):
                texts, mixed = generic.generic_template_texts(tool, subset, plan.labels, lang)
                plan.generic_mixed |= mixed
                for t_index, text in enumerate(texts):
                    template = compile_template(text, f"{plan.name}.generic.{lang}.{kind}{s_index}.{t_index}",
                                                "mix" if (mixed and lang == "zh") else lang)
                    bucket.setdefault(lang, []).append(template)


DEFERRED_PARAM_NAMES = ("content", "text", "body", "message", "note")
DEFERRED_TOOL_WORDS = ("save", "write", "send", "note", "post", "message", "email", "file", "publish")


def _add_deferred(plan: ToolPlan, spec: dict[str, Any] | None, where: str) -> None:
    if spec is not None:
        param = spec["param"]
        if param not in plan.tool.properties or plan.tool.properties[param].get("type", "string") != "string":
            raise FnedgeError(f"{where}: deferred param '{param}' must be a string argument")
        plan.deferred_param = param
        for index, group in enumerate(spec.get("templates", [])):
            for template in _compile_group(plan, group, f"{plan.name}.deferred{index}", where,
                                           extra_slots=NON_PARAM_SLOTS):
                if param in template.slot_names:
                    raise FnedgeError(f"{where}: deferred template {template.text!r} must not say {{{param}}}")
                if [p for p in plan.missing(template) if p != param]:
                    continue
                plan.deferred.setdefault(template.lang, []).append(template)
        return
    # No hint: a text-like argument of a save/send-like tool can take deferred text.
    tool = plan.tool
    haystack = (tool.name + " " + tool.description).lower()
    param = next((p for p in DEFERRED_PARAM_NAMES if p in tool.properties
                  and tool.properties[p].get("type") == "string" and "enum" not in tool.properties[p]), None)
    if param is None or not any(word in haystack for word in DEFERRED_TOOL_WORDS):
        return
    others = [p for p in tool.required if p != param]
    if any(p not in plan.fillers for p in others):
        return
    plan.deferred_param = param
    for lang in ("zh", "en"):
        pairs_texts, mixed = generic.generic_template_texts(tool, others, plan.labels, lang)
        for genre in ("poem", "story", "note"):
            for index, tail in enumerate(pairs_texts[:3]):
                if lang == "zh":
                    head = {"poem": "写一首关于{topic}的诗", "story": "写一个关于{topic}的小故事", "note": "写一份备忘"}[genre]
                    text = f"{head}，然后{tail}"
                else:
                    head = {"poem": "write a poem about {topic}", "story": "write a short story about {topic}",
                            "note": "write a quick memo"}[genre]
                    text = f"{head}, then {tail[0].lower() + tail[1:]}"
                template = compile_template(text, f"{plan.name}.deferred.generic.{genre}.{lang}.{index}",
                                            "mix" if (mixed and lang == "zh") else lang, extra={"genre": genre})
                plan.deferred.setdefault(lang, []).append(template)
