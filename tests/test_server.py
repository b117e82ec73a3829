"""The OpenAI-compatible server over real HTTP, with a real build of the built-in model."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

from fnedge.catalog import load_catalog
from fnedge.chat_format import TEXT_REFERENCE
from fnedge.export.build import export_build
from fnedge.runtime.engine import Assistant
from fnedge.runtime.openai_chat import completion_chunks
from fnedge.runtime.server import make_server
from fnedge.runtime.stream_parser import CallEnd, CallError, TextDelta

WEATHER = [{"role": "user", "content": "明天上海会下雨吗？"}]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    build = export_build("rpi4", model_dir=None, quants="q8_0", out_dir=tmp_path_factory.mktemp("b") / "rpi4")
    assistant = Assistant.from_build(build, threads=1)  # one thread: the test machine is shared
    server = make_server(assistant, "rpi4/model-q8_0.gguf", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def http(url: str, body: bytes | None = None, method: str | None = None) -> tuple[int, str, str]:
    """(status, content type, body text), error statuses included."""
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers["Content-Type"], response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode("utf-8")


def chat(base_url: str, **body: Any) -> tuple[int, dict[str, Any]]:
    status, _, text = http(base_url + "/v1/chat/completions", json.dumps(body).encode("utf-8"))
    return status, json.loads(text)


def stream(base_url: str, **body: Any) -> tuple[list[dict[str, Any]], str]:
    """The chunks of a streamed reply, and the raw event stream."""
    status, content_type, text = http(base_url + "/v1/chat/completions",
                                      json.dumps({**body, "stream": True}).encode("utf-8"))
    assert status == 200 and content_type.startswith("text/event-stream"), text
    events = [e for e in text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events), text
    assert events[-1] == "data: [DONE]"
    return [json.loads(e[len("data: "):]) for e in events[:-1]], text


def reassemble(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """What a client rebuilds from chunks: content, calls ordered by index, finish reason."""
    content, calls, finish = "", {}, None
    for chunk in chunks:
        choice = chunk["choices"][0]
        content += choice["delta"].get("content") or ""
        for call in choice["delta"].get("tool_calls", []):
            assert call["index"] not in calls, "a call's chunk came twice"
            calls[call["index"]] = call
        finish = choice["finish_reason"] or finish
    return {"content": content, "calls": [calls[i] for i in sorted(calls)], "finish_reason": finish}


def functions(calls: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]


def test_health_and_models(base_url):
    status, _, text = http(base_url + "/health")
    assert status == 200 and json.loads(text)["status"] == "ok"
    status, _, text = http(base_url + "/v1/models")
    assert status == 200
    assert [m["id"] for m in json.loads(text)["data"]] == ["rpi4/model-q8_0.gguf"]


def test_weather_question_returns_a_tool_call(base_url):
    status, body = chat(base_url, messages=WEATHER)
    assert status == 200, body
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"])["city"] == "上海"
    assert "fnedge_problems" not in choice["message"]
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.parametrize("text", ["明天上海会下雨吗？",
                                  "给妈妈发短信说我晚点到，然后告诉我明天北京天气",
                                  "写一首关于秋天的短诗，存到文件里",
                                  "hi"])
def test_stream_adds_up_to_the_whole_reply(base_url, text):
    messages = [{"role": "user", "content": text}]
    _, whole = chat(base_url, messages=messages)
    chunks, _ = stream(base_url, messages=messages)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    streamed = reassemble(chunks)
    message = whole["choices"][0]["message"]
    assert streamed["content"] == (message["content"] or "")
    assert functions(streamed["calls"]) == functions(message.get("tool_calls", []))
    assert all(c["id"].startswith("call_") for c in streamed["calls"])
    assert streamed["finish_reason"] == whole["choices"][0]["finish_reason"]


def test_text_references_are_resolved_before_the_client_sees_them(base_url):
    messages = [{"role": "user", "content": "写一首关于秋天的短诗，存到文件里"}]
    _, whole = chat(base_url, messages=messages)
    message = whole["choices"][0]["message"]
    [(name, arguments)] = functions(message["tool_calls"])
    assert name == "save_file"
    assert arguments["content"] == message["content"] != ""
    _, raw = stream(base_url, messages=messages)
    assert TEXT_REFERENCE not in raw and TEXT_REFERENCE not in json.dumps(whole)


def test_a_conversation_with_a_tool_result(base_url):
    messages = WEATHER + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "上海", "date": "tomorrow"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"condition": "rain", "temp_c": 18}'},
    ]
    status, body = chat(base_url, messages=messages, model="anything", temperature=0.2)
    assert status == 200, body
    assert body["usage"]["prompt_tokens"] > 40  # the earlier call and its result are in the prompt


def test_max_tokens_limits_one_request_only(base_url):
    status, body = chat(base_url, messages=WEATHER, max_tokens=3)
    assert status == 200 and body["usage"]["completion_tokens"] <= 3
    assert body["choices"][0]["message"]["fnedge_problems"]  # the call was cut off: reported, not hidden
    _, body = chat(base_url, messages=WEATHER)
    assert body["choices"][0]["message"]["tool_calls"]


def test_concurrent_requests_take_turns_on_the_model(base_url):
    results: list[Any] = [None] * 3

    def ask(i: int) -> None:
        results[i] = chat(base_url, messages=WEATHER) if i % 2 else stream(base_url, messages=WEATHER)[0]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    calls = [functions(r[1]["choices"][0]["message"]["tool_calls"]) if i % 2 else functions(reassemble(r)["calls"])
             for i, r in enumerate(results)]
    assert calls[0] == calls[1] == calls[2] and calls[0][0][0] == "get_weather"


def test_bad_json_is_a_400_with_a_message(base_url):
    status, content_type, text = http(base_url + "/v1/chat/completions", b'{"messages": [')
    assert status == 400 and content_type.startswith("application/json")
    error = json.loads(text)["error"]
    assert "not valid JSON" in error["message"] and error["type"] == "invalid_request_error"


@pytest.mark.parametrize("body, named", [
    ({}, "'messages'"),
    ({"messages": []}, "'messages'"),
    ({"messages": "hi"}, "'messages'"),
    ({"messages": [{"role": "bot", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]}, "messages[1]"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": "{oops"}}]}]},
     "messages[1].tool_calls[0].function.arguments"),
    ({"messages": WEATHER, "stream": "yes"}, "'stream'"),
    ({"messages": WEATHER, "max_tokens": 0}, "'max_tokens'"),
    ({"messages": WEATHER, "tools": {"name": "x"}}, "'tools'"),
    ([WEATHER], "JSON object"),
])
def test_wrong_requests_name_what_is_wrong(base_url, body, named):
    status, _, text = http(base_url + "/v1/chat/completions", json.dumps(body).encode("utf-8"))
    assert status == 400
    assert named in json.loads(text)["error"]["message"]


@pytest.mark.parametrize("streamed", [False, True])
def test_engine_errors_are_a_400_without_a_traceback(base_url, streamed):
    messages = [{"role": "user", "content": "天气" * 2000}]  # far over the 512-token context
    status, _, text = http(base_url + "/v1/chat/completions",
                           json.dumps({"messages": messages, "stream": streamed}).encode("utf-8"))
    assert status == 400
    message = json.loads(text)["error"]["message"]
    assert "context" in message and "Traceback" not in text


def test_unknown_paths_and_methods(base_url):
    status, _, text = http(base_url + "/v1/completions", b"{}")
    assert status == 404 and "/v1/completions" in json.loads(text)["error"]["message"]
    status, _, text = http(base_url + "/nope")
    assert status == 404 and "error" in json.loads(text)
    status, _, _ = http(base_url + "/v1/chat/completions")
    assert status == 405


def _events_to_chunks(events) -> dict[str, Any]:
    chunks = list(completion_chunks(events, "m", load_catalog(None)))
    return {**reassemble(chunks), "order": [c["choices"][0]["delta"]["tool_calls"][0]["index"]
                                            for c in chunks if "tool_calls" in c["choices"][0]["delta"]],
            "last": chunks[-1]["choices"][0]}


def test_a_call_that_needs_the_text_goes_out_last_with_its_own_index():
    send = {"name": "send_message", "arguments": {"to": "妈妈", "text": TEXT_REFERENCE}}
    weather = {"name": "get_weather", "arguments": {"city": "上海", "date": "tomorrow"}}
    result = _events_to_chunks([TextDelta("\n 晚点"), TextDelta("到 \n"), CallEnd(0, send),
                                TextDelta("\n"), CallEnd(1, weather), TextDelta("  ")])
    assert result["order"] == [1, 0]  # the immediate call did not wait for the turn to end
    assert result["content"] == "晚点到"  # the turn's text, stripped as the whole reply strips it
    assert functions(result["calls"]) == [("send_message", {"to": "妈妈", "text": "晚点到"}),
                                          ("get_weather", weather["arguments"])]
    assert result["last"]["finish_reason"] == "tool_calls"


def test_problems_are_reported_in_the_last_chunk():
    result = _events_to_chunks([CallEnd(0, {"name": "no_such_tool", "arguments": {}}),
                                CallError(1, "bad JSON", '{"name": "get_wea')])
    assert result["last"]["delta"]["fnedge_problems"] == ["unknown tool 'no_such_tool'",
                                                          'malformed call: {"name": "get_wea']
    assert _events_to_chunks([TextDelta("你好")])["last"] == {
        "index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
