"""The OpenAI chat-completions wire format: check a request, shape replies and stream chunks.

No HTTP and no model here (server.py moves the bytes, engine.py writes the reply), so every
rule of the format can be read, and tested, on its own.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fnedge.catalog import Catalog, call_problem, is_number
from fnedge.chat_format import mentions_text_reference, openai_tool_call, resolve_text_reference
from fnedge.runtime.engine import Reply
from fnedge.runtime.stream_parser import CallEnd, CallError, Event, TextDelta

ROLES = ("system", "user", "assistant", "tool")
TOOL_CHOICES = ("auto", "none", "required")
TOOL_CHOICE_SHAPE = '"auto", "none", "required" or {"type": "function", "function": {"name": ...}}'


_KINDS: dict[str, Callable[[Any], bool]] = {
    "a string": lambda v: isinstance(v, str),
    "a number": is_number,
    "an integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "true or false": lambda v: isinstance(v, bool),
    "an object": lambda v: isinstance(v, dict),
    "a list": lambda v: isinstance(v, list),
    "a string or a list": lambda v: isinstance(v, (str, list)),
}
# Fields of OpenAI's request that the runtime reads no further than their type: it decodes
# greedily, under the call grammar, one choice. A field neither here nor in READ_FIELDS is
# refused, so a misspelt option is an error rather than an option silently doing nothing.
IGNORED_FIELDS: dict[str, str] = {
    "model": "a string", "temperature": "a number", "top_p": "a number", "n": "an integer",
    "stop": "a string or a list", "presence_penalty": "a number", "frequency_penalty": "a number",
    "logit_bias": "an object", "logprobs": "true or false", "top_logprobs": "an integer", "user": "a string",
    "seed": "an integer", "response_format": "an object", "parallel_tool_calls": "true or false",
    "stream_options": "an object", "metadata": "an object", "store": "true or false", "service_tier": "a string",
    "modalities": "a list", "reasoning_effort": "a string", "prompt_cache_key": "a string",
    "safety_identifier": "a string", "verbosity": "a string",
}
READ_FIELDS = ("messages", "tools", "tool_choice", "stream", "max_tokens", "max_completion_tokens")


class BadRequest(Exception):
    """A request the API refuses; `message` names what is wrong and is shown to the client."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind


@dataclass
class ChatRequest:
    messages: list[dict[str, Any]]  # clean: only the keys the chat format reads
    tools: list[dict[str, Any]] | None
    stream: bool
    max_tokens: int | None
    tool_choice: str | dict[str, Any] = "auto"  # checked for shape; the engine checks the name


def error_body(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def parse_chat_request(body: bytes) -> ChatRequest:
    data = _json_object(body)
    unknown = [k for k in data if k not in READ_FIELDS and k not in IGNORED_FIELDS]
    if unknown:
        raise BadRequest(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(repr(k) for k in unknown)}: "
                         f"not a chat-completions request field this server accepts")
    for key, kind in IGNORED_FIELDS.items():
        if data.get(key) is not None and not _KINDS[kind](data[key]):  # null: as if not sent
            raise BadRequest(f"'{key}' must be {kind}")
    if data.get("n") not in (None, 1):
        raise BadRequest("'n' must be 1: the server writes one choice")
    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise BadRequest("'messages' must be a non-empty list of messages")
    messages = [_message(m, f"messages[{i}]", first=i == 0) for i, m in enumerate(raw_messages)]
    tools = _tools(data.get("tools"))
    tool_choice = _tool_choice(data.get("tool_choice"), tools)
    if tools == []:  # nothing offered: nothing may be called
        if tool_choice not in ("auto", "none"):
            raise BadRequest("'tool_choice' asks for a call, but 'tools' is empty")
        tools, tool_choice = None, "none"
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false")
    return ChatRequest(messages=messages, tools=tools, stream=stream, max_tokens=_max_tokens(data),
                       tool_choice=tool_choice)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        raise BadRequest(f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except UnicodeDecodeError:  # bytes that are not UTF-8/16/32
        raise BadRequest("request body is not valid JSON: it is not UTF-8 text") from None
    except ValueError as e:  # an integer over Python's digit limit
        raise BadRequest(f"request body is not valid JSON: {e}") from None
    except RecursionError:
        raise BadRequest("request body is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    try:  # a \ud800-style escape decodes to half a character, which no reply could echo
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("request body holds an unpaired UTF-16 surrogate (\\ud800-\\udfff)") from None
    return data


def _max_tokens(data: dict[str, Any]) -> int | None:
    # newer clients send max_completion_tokens, older ones max_tokens
    for key in ("max_completion_tokens", "max_tokens"):
        value = data.get(key)
        if value is None:
            continue
        if not _KINDS["an integer"](value) or value < 1:
            raise BadRequest(f"'{key}' must be a positive integer")
        return value
    return None


def _tools(raw: Any) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise BadRequest("'tools' must be a list of tool objects")
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise BadRequest(f'tools[{i}] must be {{"type": "function", "function": {{"name": ..., ...}}}}')
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise BadRequest(f"tools[{i}].function.name must be a non-empty string")
    return raw


def _tool_choice(raw: Any, tools: list[dict[str, Any]] | None) -> str | dict[str, Any]:
    if raw is None:
        return "auto"
    if isinstance(raw, str) and raw in TOOL_CHOICES:
        return raw
    function = raw.get("function") if isinstance(raw, dict) else None
    if not (isinstance(raw, dict) and raw.get("type") == "function" and isinstance(function, dict)
            and isinstance(function.get("name"), str)):
        raise BadRequest(f"'tool_choice' must be {TOOL_CHOICE_SHAPE}")
    name = function["name"]
    if tools is not None and name not in [t["function"]["name"] for t in tools]:
        raise BadRequest(f"'tool_choice' names '{name}', which is not in 'tools'")
    return {"type": "function", "function": {"name": name}}


def require_trained_tools(tools: list[dict[str, Any]] | None, catalog: Catalog) -> None:
    """A build that is not a generalist never reads tool schemas from the request: it calls the
    tools it was trained for. A tool outside that catalog could never be called correctly, so it
    is refused; a subset of the catalog is fine."""
    for i, tool in enumerate(tools or []):
        name = tool["function"]["name"]
        if name not in catalog:
            raise BadRequest(f"tools[{i}]: '{name}' is not a tool this build was trained for. It knows only "
                             f"its catalog ({', '.join(catalog.names)}) and does not read tool schemas from "
                             f"the request (a generalist build does)")


def _message(raw: Any, where: str, first: bool) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BadRequest(f"{where} must be an object with 'role' and 'content'")
    role = raw.get("role")
    if role not in ROLES:
        raise BadRequest(f"{where}.role must be one of {', '.join(ROLES)} (got {role!r})")
    if role == "system" and not first:
        # the chat format has room for one system prompt, in front
        raise BadRequest(f"{where}: a system message may only be the first message")
    message: dict[str, Any] = {"role": role}
    if role == "assistant" and raw.get("tool_calls"):
        calls = raw["tool_calls"]
        if not isinstance(calls, list):
            raise BadRequest(f"{where}.tool_calls must be a list")
        message["tool_calls"] = [_tool_call(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(calls)]
        message["content"] = _content(raw.get("content"), f"{where}.content", optional=True)
    else:
        message["content"] = _content(raw.get("content"), f"{where}.content", optional=False)
    return message


def _content(raw: Any, where: str, optional: bool) -> str:
    if raw is None and optional:
        return ""
    if isinstance(raw, str):
        return raw
    # content parts: text is all a tiny text model can read
    if isinstance(raw, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                     and isinstance(p.get("text"), str) for p in raw):
        return "".join(p["text"] for p in raw)
    raise BadRequest(f"{where} must be a string (or a list of text parts)")


def _tool_call(raw: Any, where: str) -> dict[str, Any]:
    function = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise BadRequest(f"{where} must be {{\"type\": \"function\", \"function\": {{\"name\": ..., "
                         f"\"arguments\": ...}}}}")
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except (ValueError, RecursionError):  # not JSON, or JSON that Python will not read
            arguments = None
    if not isinstance(arguments, dict):
        raise BadRequest(f"{where}.function.arguments must be a JSON object (or a string holding one)")
    return {"type": "function", "function": {"name": function["name"], "arguments": arguments}}


def completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def tool_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def completion(reply: Reply, model: str) -> dict[str, Any]:
    """A `chat.completion` object for a whole reply."""
    turn = reply.turn
    message: dict[str, Any] = {"role": "assistant", "content": turn.text or (None if turn.calls else "")}
    if turn.calls:
        message["tool_calls"] = [openai_tool_call(c["name"], c["arguments"], tool_call_id()) for c in turn.calls]
    if reply.problems:
        message["fnedge_problems"] = reply.problems  # not OpenAI's: which calls failed validation
    generation = reply.generation
    prompt_tokens = generation.prompt_tokens if generation else 0
    completion_tokens = len(generation.tokens) if generation else 0
    return {
        "id": completion_id(), "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": "tool_calls" if turn.calls else "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def completion_chunks(events: Iterable[Event], model: str, catalog: Catalog) -> Iterator[dict[str, Any]]:
    """`chat.completion.chunk` objects for a reply streamed as engine events.

    Text goes out as it comes. A call goes out whole when its block ends, unless its arguments
    refer to the turn's text (`{{text}}`): that one waits for the end, when the text is known.
    Each call's `index` is its place among the turn's calls, as in the non-streamed reply, so a
    client that orders by index gets the same list even when a waiting call goes out last."""
    chunk_id, created = completion_id(), int(time.time())
    text = _TrimmedText()
    waiting: list[tuple[int, dict[str, Any]]] = []  # (index, call) of calls that need the text
    call_problems: list[str] = []
    malformed: list[str] = []
    calls = 0

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}

    def call_chunk(index: int, call: dict[str, Any]) -> dict[str, Any]:
        call_problems.extend(p for p in [call_problem(call, catalog)] if p)
        wire = openai_tool_call(call["name"], call["arguments"], tool_call_id())
        return chunk({"tool_calls": [{"index": index, **wire}]})

    yield chunk({"role": "assistant"})
    for event in events:
        if isinstance(event, TextDelta):
            piece = text.add(event.text)
            if piece:
                yield chunk({"content": piece})
        elif isinstance(event, CallEnd):
            if mentions_text_reference(event.call["arguments"]):
                waiting.append((calls, event.call))
            else:
                yield call_chunk(calls, event.call)
            calls += 1
        elif isinstance(event, CallError):
            malformed.append(f"malformed call: {event.raw[:60]}")  # worded as Assistant.respond words it
    for index, call in waiting:
        resolved = {"name": call["name"], "arguments": resolve_text_reference(call["arguments"], text.full)}
        yield call_chunk(index, resolved)
    problems = call_problems + malformed
    yield chunk({"fnedge_problems": problems} if problems else {}, "tool_calls" if calls else "stop")


class _TrimmedText:
    """Text deltas with the turn's leading and trailing whitespace held back, so the streamed
    content adds up to exactly the stripped text a non-streamed reply has."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._held = ""  # whitespace that is trailing so far
        self._started = False

    def add(self, delta: str) -> str:
        self._parts.append(delta)
        pending = self._held + delta
        if not self._started:
            pending = pending.lstrip()
        body = pending.rstrip()
        self._held = pending[len(body):]
        self._started = self._started or bool(body)
        return body

    @property
    def full(self) -> str:
        return "".join(self._parts).strip()
