"""The chat and call format: ChatML turns with Hermes/Qwen `<tool_call>` blocks.

One format serves training, every runtime and other tools:

    <|im_start|>user\n明天上海会下雨吗？<|im_end|>\n
    <|im_start|>assistant\n<tool_call>{"name": "get_weather", "arguments": {"city": "上海", "date": "tomorrow"}}</tool_call><|im_end|>\n
    <|im_start|>tool\n<tool_response>{"temp_c": 21}</tool_response><|im_end|>\n

`render_segments` is the Python renderer training uses (it also says which spans are learned);
`CHAT_TEMPLATE` is the same format as Jinja for `apply_chat_template`, llama.cpp and Ollama.
A test renders generated conversations both ways and requires identical strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_RESPONSE_OPEN = "<tool_response>"
TOOL_RESPONSE_CLOSE = "</tool_response>"
# Each is one token in our tokenizers; END_OF_TEXT doubles as padding.
SPECIAL_TOKENS = [END_OF_TEXT, IM_START, IM_END, TOOL_CALL_OPEN, TOOL_CALL_CLOSE,
                  TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE]

# A deferred call refers to the text written earlier in the same turn instead of copying it;
# the runtime substitutes the text before executing the call and before the client sees it.
TEXT_REFERENCE = "{{text}}"

TOOLS_PREAMBLE = "You can call these tools. Their schemas are inside <tools></tools>:\n<tools>"
TOOLS_POSTAMBLE = ("\n</tools>\nFor each call write <tool_call>{\"name\": <tool name>, "
                   "\"arguments\": <arguments object>}</tool_call>.")

CHAT_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}"
    "{{- '" + TOOLS_PREAMBLE.replace("\n", "\\n") + "' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '" + TOOLS_POSTAMBLE.replace("\n", "\\n").replace('"', '\\"') + "<|im_end|>\\n' }}"
    "{%- elif messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' %}"
    "{{- '<|im_start|>user\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if message.content %}{{- message.content }}{%- endif %}"
    "{%- if message.tool_calls %}{%- for tool_call in message.tool_calls %}"
    "{%- if message.content or not loop.first %}{{- '\\n' }}{%- endif %}"
    "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
    "{{- '<tool_call>{\"name\": \"' + tool_call.name + '\", \"arguments\": ' }}"
    "{%- if tool_call.arguments is string %}{{- tool_call.arguments }}"
    "{%- else %}{{- tool_call.arguments | tojson }}{%- endif %}"
    "{{- '}</tool_call>' }}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{{- '<|im_start|>tool\\n<tool_response>' + message.content + '</tool_response><|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def dump_arguments(arguments: dict[str, Any]) -> str:
    """The canonical argument JSON: key order kept, non-ASCII kept, default separators."""
    return json.dumps(arguments, ensure_ascii=False)


def format_call(name: str, arguments: dict[str, Any] | str) -> str:
    args = arguments if isinstance(arguments, str) else dump_arguments(arguments)
    return f'{TOOL_CALL_OPEN}{{"name": "{name}", "arguments": {args}}}{TOOL_CALL_CLOSE}'


def openai_tool_call(name: str, arguments: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": dump_arguments(arguments)}}


def render_segments(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                    add_generation_prompt: bool = False) -> list[tuple[str, bool]]:
    """Render a conversation as (text, learned) pieces; assistant replies are the learned ones."""
    segments: list[tuple[str, bool]] = []
    if tools:
        system = TOOLS_PREAMBLE
        if messages and messages[0]["role"] == "system":
            system = messages[0]["content"] + "\n\n" + system
        system += "".join("\n" + json.dumps(tool, ensure_ascii=False) for tool in tools)
        segments.append((f"{IM_START}system\n{system}{TOOLS_POSTAMBLE}{IM_END}\n", False))
    elif messages and messages[0]["role"] == "system":
        segments.append((f"{IM_START}system\n{messages[0]['content']}{IM_END}\n", False))
    for message in messages:
        role = message["role"]
        if role == "user":
            segments.append((f"{IM_START}user\n{message['content']}{IM_END}\n", False))
        elif role == "assistant":
            segments.append((f"{IM_START}assistant\n", False))
            # "weight": 0 marks a deliberate mistake kept as context (error-correction data).
            segments.append((assistant_body(message) + IM_END, message.get("weight", 1) != 0))
            segments.append(("\n", False))
        elif role == "tool":
            segments.append((f"{IM_START}tool\n{TOOL_RESPONSE_OPEN}{message['content']}"
                             f"{TOOL_RESPONSE_CLOSE}{IM_END}\n", False))
        elif role != "system":
            raise ValueError(f"unknown message role {role!r}")
    if add_generation_prompt:
        segments.append((f"{IM_START}assistant\n", False))
    return segments


def assistant_body(message: dict[str, Any]) -> str:
    """What the model writes for one assistant message, without the closing <|im_end|>."""
    body = message.get("content") or ""
    for index, tool_call in enumerate(message.get("tool_calls") or []):
        function = tool_call.get("function", tool_call)
        if body or index:
            body += "\n"
        body += format_call(function["name"], function["arguments"])
    return body


def render(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
           add_generation_prompt: bool = False) -> str:
    return "".join(text for text, _ in render_segments(messages, tools, add_generation_prompt))


@dataclass
class AssistantTurn:
    """A parsed assistant reply: its text, its calls, and the call blocks that did not parse."""
    text: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)


def parse_assistant(output: str) -> AssistantTurn:
    """Split generated text into prose and `<tool_call>` JSON blocks; resolve text references."""
    output = output.split(IM_END, 1)[0]
    text_parts: list[str] = []
    calls: list[dict[str, Any]] = []
    malformed: list[str] = []
    rest = output
    while TOOL_CALL_OPEN in rest:
        before, rest = rest.split(TOOL_CALL_OPEN, 1)
        text_parts.append(before)
        body, closed, rest = rest.partition(TOOL_CALL_CLOSE)
        try:
            call = json.loads(body)
        except json.JSONDecodeError:
            malformed.append(body)
            continue
        if not (isinstance(call, dict) and isinstance(call.get("name"), str)
                and isinstance(call.get("arguments", {}), dict)):
            malformed.append(body)
            continue
        calls.append({"name": call["name"], "arguments": call.get("arguments", {})})
        if not closed:
            break
    text_parts.append(rest)
    text = "".join(text_parts).strip()
    for call in calls:
        call["arguments"] = resolve_text_reference(call["arguments"], text)
    return AssistantTurn(text=text, calls=calls, malformed=malformed)


def mentions_text_reference(value: Any) -> bool:
    """Whether a call's arguments (at any depth) hold the `{{text}}` reference."""
    if isinstance(value, str):
        return TEXT_REFERENCE in value
    if isinstance(value, dict):
        return any(mentions_text_reference(v) for v in value.values())
    if isinstance(value, list):
        return any(mentions_text_reference(v) for v in value)
    return False


def resolve_text_reference(value: Any, text: str) -> Any:
    if isinstance(value, str):
        return value.replace(TEXT_REFERENCE, text)
    if isinstance(value, dict):
        return {k: resolve_text_reference(v, text) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_text_reference(v, text) for v in value]
    return value
