"""From chat messages to a parsed, validated assistant turn, on any backend."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fnedge.catalog import Catalog, call_problem, model_catalog
from fnedge.chat_format import AssistantTurn, dump_arguments, parse_assistant, render
from fnedge.errors import FnedgeError
from fnedge.runtime.build import Build, load_build
from fnedge.runtime.generation import CALL_OVERRUN, Generation, StepModel, stream_tokens
from fnedge.runtime.guide import CallGuide, GuideFactory
from fnedge.runtime.stream_parser import Event, ToolCallStreamParser


class Backend(StepModel, Protocol):
    def generate(self, prompt: str, max_tokens: int = 256, guide: CallGuide | None = None) -> Generation: ...


@dataclass
class Reply:
    turn: AssistantTurn
    problems: list[str] = field(default_factory=list)  # one per invalid call, in call order
    generation: Generation | None = None

    @property
    def latency_ms(self) -> float:
        return self.generation.total_ms if self.generation else 0.0


class Assistant:
    """A model plus the catalog it was trained for.

    With a `guides` factory (the default from a build or model folder), every call the model
    writes is decoded under the catalog's call grammar; `constrained=False` turns that off."""

    def __init__(self, backend: Backend, catalog: Catalog, generalist: bool = False,
                 max_tokens: int = 256, guides: GuideFactory | None = None,
                 copied_arguments: dict[str, dict[str, bool]] | None = None) -> None:
        self.backend = backend
        self.catalog = catalog
        self.generalist = generalist
        # Fields the model's training data always copied from the conversation (its fnedge.json);
        # the call grammar holds them to copies. Not applied to a generalist's request tools.
        self.copied_arguments = copied_arguments or {}
        self.max_tokens = max_tokens
        self.guides = guides
        self.force_tokens = True  # the guide appends tokens the grammar forces without a decode step
        self.call_overrun = CALL_OVERRUN  # 0 makes max_tokens a hard limit (an API client's max_tokens)

    @classmethod
    def from_build(cls, build_dir: str | Path, artifact: str | None = None,
                   threads: int | None = None, constrained: bool = True) -> "Assistant":
        build = load_build(build_dir)
        chosen = build.artifact(artifact)
        n_threads = threads or default_threads(build)
        if chosen["format"] == "onnx":
            from fnedge.runtime.onnx_backend import OnnxBackend
            backend = OnnxBackend(build.path(chosen["file"]), build.root, n_threads=n_threads,
                                  n_ctx=build.context_length)
        else:
            from fnedge.runtime.llama_backend import LlamaBackend
            backend = LlamaBackend(build.path(chosen["file"]), n_threads=n_threads, n_ctx=build.context_length)
        guides = GuideFactory(build.root) if constrained else None
        assistant = cls(backend, build.catalog, generalist=build.generalist, guides=guides,
                        copied_arguments=build.copied_arguments)
        assistant.warm_up()
        return assistant

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, threads: int | None = None,
                       constrained: bool = True) -> "Assistant":
        from fnedge.runtime.torch_backend import TorchBackend

        model_dir = Path(model_dir)
        meta_path = model_dir / "fnedge.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        backend = TorchBackend(model_dir, n_threads=threads)
        guides = GuideFactory(model_dir) if constrained else None
        return cls(backend, model_catalog(meta, str(meta_path)), generalist=bool(meta.get("generalist", False)), guides=guides,
                   copied_arguments=meta.get("copied_arguments"))

    def warm_up(self) -> None:
        """Prefill the prompt template up to the user's words once, at load: the backends keep a
        shared prefix's KV cache, so no request prefills the template (system turn, tool schemas)."""
        marker = "\x00"
        template = self.prompt([{"role": "user", "content": marker}], self.catalog.to_openai())
        prefix = self.backend.tokenize(template.split(marker, 1)[0])
        if len(prefix) > 1:
            self.backend.prefill(prefix)

    def prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        # Schemas go into the prompt only for a generalist model; the default model knows its
        # catalog by training and would pay thousands of tokens per request for nothing.
        return render(canonical_messages(messages), tools if self.generalist else None,
                      add_generation_prompt=True)

    def respond(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                tool_choice: str | dict[str, Any] = "auto") -> Reply:
        """The whole reply at once, parsed and validated. `tool_choice` as OpenAI's: "auto",
        "none", "required" or {"type": "function", "function": {"name": ...}}."""
        catalog, guide, prompt = self._prepare(messages, tools, tool_choice)
        generation = self.backend.generate(prompt, self.max_tokens, guide)
        turn = parse_assistant(generation.text)
        problems = [p for p in (call_problem(c, catalog) for c in turn.calls) if p]
        problems += [f"malformed call: {m[:60]}" for m in turn.malformed]
        return Reply(turn=turn, problems=problems, generation=generation)

    def stream(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
               tool_choice: str | dict[str, Any] = "auto") -> Iterator[Event]:
        """The reply as events while it is generated: text deltas, and for each call its start,
        each argument as it completes, and its end (`{{text}}` references not yet resolved)."""
        catalog, guide, prompt = self._prepare(messages, tools, tool_choice)
        parser = ToolCallStreamParser()
        for token in stream_tokens(self.backend, self.backend.tokenize(prompt), self.max_tokens, guide):
            yield from parser.feed(self.backend.token_bytes(token))
        yield from parser.close()

    def catalog_for(self, tools: list[dict[str, Any]] | None) -> Catalog:
        """The tools a request may call: its own for a generalist model; else the trained catalog,
        narrowed to the tools the request lists when it lists some the model knows."""
        if tools is None:
            return self.catalog
        if self.generalist:
            return request_catalog(tools)
        names = [(t.get("function") or t).get("name") for t in tools if isinstance(t, dict)]
        known = tuple(self.catalog[n] for n in dict.fromkeys(names) if n in self.catalog)
        return Catalog(known, source=self.catalog.source) if known else self.catalog

    def _prepare(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                 tool_choice: str | dict[str, Any] = "auto"):
        if self.generalist and tools is not None and not tools:
            tools, tool_choice = None, "none"  # a request that offers a generalist no tools gets prose
        catalog = self.catalog_for(tools)
        choice, allowed = _tool_choice(tool_choice, catalog)
        if self.guides is None:
            if choice != "auto":
                raise FnedgeError("tool_choice other than auto needs the call grammar (constrained decoding)")
            return catalog, None, self.prompt(messages, tools)
        copied = None if self.generalist else self.copied_arguments
        guide = self.guides.guide(allowed, _copy_sources(messages), self.force_tokens, choice, copied)
        guide.overrun = self.call_overrun
        return catalog, guide, self.prompt(messages, tools)


def request_catalog(tools: list[dict[str, Any]]) -> Catalog:
    """A generalist's request tools as a catalog. Schemas written for other runtimes (BFCL's
    `optional`, `format`, a default of the wrong type, a property with no type, an object that
    requires keys it does not define) fail the strict check; the prompt still shows them as sent,
    and the call grammar and validation use a copy without the unsupported keywords, such defaults
    and such requirements, and with a string where no type was given (a string is one of the "any"
    values a typeless property accepts), so one loose schema does not refuse the request."""
    from fnedge.catalog import parse_catalog
    try:
        return parse_catalog(tools, source="request tools")
    except FnedgeError:
        return parse_catalog(_supported_schema(tools), source="request tools")


def _supported_schema(value: Any) -> Any:
    """`value` with every property schema reduced to the keywords fnedge.catalog supports."""
    if isinstance(value, list):
        return [_supported_schema(v) for v in value]
    if not isinstance(value, dict):
        return value
    cleaned = {k: _supported_schema(v) if k in ("properties", "items", "parameters", "function") else v
               for k, v in value.items()}
    if "properties" in cleaned and isinstance(cleaned["properties"], dict):
        cleaned["properties"] = {name: _supported_property(prop) for name, prop in cleaned["properties"].items()}
    required = cleaned.get("required")
    if isinstance(required, list):
        defined = cleaned.get("properties") if isinstance(cleaned.get("properties"), dict) else {}
        cleaned["required"] = [r for r in required if r in defined]
    return cleaned


def _supported_property(prop: Any) -> Any:
    from fnedge.catalog import PROPERTY_KEYS, value_problem
    if not isinstance(prop, dict):
        return prop
    prop = {k: v for k, v in _supported_schema(prop).items() if k in PROPERTY_KEYS}
    if "type" not in prop and "enum" not in prop:
        prop["type"] = "string"
    if "items" in prop:
        prop["items"] = _supported_property(prop["items"])
    if "default" in prop and value_problem(prop["default"], prop):
        del prop["default"]
    return prop


def _tool_choice(tool_choice: str | dict[str, Any], catalog: Catalog) -> tuple[str, Catalog]:
    """OpenAI's tool_choice as (auto|none|required, the tools a call may name)."""
    if isinstance(tool_choice, str):
        return tool_choice, catalog
    name = (tool_choice.get("function") or {}).get("name") if isinstance(tool_choice, dict) else None
    if not isinstance(name, str):
        raise FnedgeError('tool_choice must be "auto", "none", "required" or {"type": "function", '
                          '"function": {"name": ...}}')
    if name not in catalog:
        raise FnedgeError(f"tool_choice names '{name}', which is not among the tools ({', '.join(catalog.names)})")
    return "required", Catalog((catalog[name],), source=catalog.source)


def _copy_sources(messages: list[dict[str, Any]]) -> list[str]:
    """What copied arguments may quote: the user's messages and the tool results."""
    return [m["content"] for m in messages if m.get("role") in ("user", "tool") and isinstance(m.get("content"), str)]


def canonical_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Re-serialize earlier calls' arguments the way training wrote them."""
    result = []
    for message in messages:
        if message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = call.get("function", call)
                arguments = function.get("arguments", {})
                if isinstance(arguments, str):
                    try:
                        arguments = json.loads(arguments)
                    except json.JSONDecodeError:
                        raise FnedgeError(f"message tool call {function.get('name')!r} has arguments "
                                          f"that are not JSON") from None
                calls.append({**call, "function": {"name": function["name"],
                                                    "arguments": dump_arguments(arguments)}})
            message = {**message, "tool_calls": calls}
        result.append(message)
    return result


def default_threads(build: Build) -> int:
    """The device's thread count, but never more than this machine's cores: an oversubscribed
    llama.cpp thread pool spins and crawls."""
    return max(1, min(build.threads, len(os.sched_getaffinity(0))))
