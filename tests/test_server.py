"""The OpenAI-compatible server over real HTTP, with a real build of the built-in model."""

from __future__ import annotations

import json
import random
import socket
import threading
import urllib.error
import urllib.request
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest

from fnedge.catalog import load_catalog
from fnedge.chat_format import TEXT_REFERENCE
from fnedge.export.build import export_build
from fnedge.runtime.openai_chat import BadRequest, ChatRequest, completion_chunks
from fnedge.runtime.server import DEFAULT_PORT, ChatService, open_server
from fnedge.runtime.stream_parser import CallEnd, CallError, TextDelta

# A city the default model copies whole under the grammar (it writes "海" for 上海: see the
# README's status); these tests are about the server, not the model's accuracy.
WEATHER = [{"role": "user", "content": "明天杭州会下雨吗？"}]
CATALOG = load_catalog(None)  # what the built-in model was trained for
WEATHER_TOOL = CATALOG["get_weather"].to_openai()
FOREIGN_TOOL = {"type": "function", "function": {"name": "book_flight", "description": "Book a flight.",
                                                 "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    build = export_build("rpi4", model_dir=None, quants="q8_0", out_dir=tmp_path_factory.mktemp("b") / "rpi4")
    server = open_server(build, port=0, threads=1)  # one thread: the test machine is shared
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
    assert [m["id"] for m in json.loads(text)["data"]] == ["rpi4"]  # the build's name
    assert DEFAULT_PORT == 8000


def test_weather_question_returns_a_tool_call(base_url):
    status, body = chat(base_url, messages=WEATHER)
    assert status == 200, body
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"])["city"] in WEATHER[0]["content"]  # a copy; its accuracy is the eval's
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
    messages = [{"role": "user", "content": "写一首关于秋天的短诗，存到 poems/autumn.txt"}]
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
    ({"messages": WEATHER, "tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
    ({"messages": WEATHER, "tools": [{"name": "get_weather"}]}, "tools[0]"),
    ([WEATHER], "JSON object"),
    ({"messages": WEATHER, "max_token": 5}, "'max_token'"),  # a misspelt option is not ignored
    ({"messages": WEATHER, "temperature": "hot"}, "'temperature'"),
    ({"messages": WEATHER, "n": 2}, "'n'"),
    ({"messages": WEATHER, "max_tokens": 10**9}, "'max_tokens'"),
    ({"messages": [{"role": "user", "content": "\ud800"}]}, "surrogate"),
    ({"messages": WEATHER, "tool_choice": "always"}, "'tool_choice'"),
    ({"messages": WEATHER, "tools": [], "tool_choice": "required"}, "'tools' is empty"),
    ({"messages": WEATHER, "tool_choice": 1}, "'tool_choice'"),
    ({"messages": WEATHER, "tool_choice": {"type": "function"}}, "'tool_choice'"),
    ({"messages": WEATHER, "tool_choice": {"type": "function", "function": {"name": 7}}}, "'tool_choice'"),
    ({"messages": WEATHER, "tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {
        "name": "save_file"}}}, "'save_file', which is not in 'tools'"),
    ({"messages": WEATHER, "tool_choice": {"type": "function", "function": {"name": "book_flight"}}},
     "tool_choice names 'book_flight'"),  # no tools sent: checked against the build's catalog
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


# --- tool_choice and the request's tools -------------------------------------------------------

@pytest.mark.parametrize("streamed", [False, True])
def test_tool_choice_none_answers_in_text(base_url, streamed):
    body = {"messages": WEATHER, "tool_choice": "none"}
    if streamed:
        reply = reassemble(stream(base_url, **body)[0])
        calls, finish = reply["calls"], reply["finish_reason"]
    else:
        status, whole = chat(base_url, **body)
        assert status == 200, whole
        calls, finish = whole["choices"][0]["message"].get("tool_calls", []), whole["choices"][0]["finish_reason"]
    assert calls == [] and finish == "stop"


def test_a_named_tool_choice_forces_that_call(base_url):
    status, body = chat(base_url, messages=[{"role": "user", "content": "明天北京天气怎么样"}],
                        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert status == 200, body
    assert [name for name, _ in functions(body["choices"][0]["message"]["tool_calls"])] == ["get_weather"]


def test_an_empty_tools_list_means_nothing_to_call(base_url):
    status, body = chat(base_url, messages=WEATHER, tools=[])
    assert status == 200 and "tool_calls" not in body["choices"][0]["message"]


def test_tools_from_the_catalog_may_be_a_subset(base_url):
    status, body = chat(base_url, messages=WEATHER, tools=[WEATHER_TOOL])
    assert status == 200, body
    assert functions(body["choices"][0]["message"]["tool_calls"])[0][0] == "get_weather"


@pytest.mark.parametrize("streamed", [False, True])
def test_a_tool_the_build_was_not_trained_for_is_refused(base_url, streamed):
    status, _, text = http(base_url + "/v1/chat/completions", json.dumps(
        {"messages": WEATHER, "tools": [WEATHER_TOOL, FOREIGN_TOOL], "stream": streamed}).encode("utf-8"))
    assert status == 400, text
    message = json.loads(text)["error"]["message"]
    assert "tools[1]" in message and "'book_flight'" in message and "catalog" in message
    assert "get_weather" in message  # what it does know


def test_a_generalist_build_takes_any_tool():
    def check(generalist: bool) -> None:
        assistant = SimpleNamespace(generalist=generalist, catalog=CATALOG, backend=SimpleNamespace(n_ctx=512))
        ChatService(assistant, "m")._check(ChatRequest(messages=WEATHER, tools=[FOREIGN_TOOL], stream=False,
                                                       max_tokens=None))

    check(generalist=True)  # it reads the schemas from the prompt
    with pytest.raises(BadRequest, match="book_flight"):
        check(generalist=False)


# --- the official openai client -----------------------------------------------------------------

@pytest.fixture(scope="module")
def client(base_url):
    openai = pytest.importorskip("openai", reason="the openai package is not installed (pip install -e .[test])")
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_openai_client_lists_the_build(client):
    assert [m.id for m in client.models.list()] == ["rpi4"]


def test_openai_client_gets_a_tool_call(client):
    response = client.chat.completions.create(model="rpi4", messages=WEATHER, tools=[WEATHER_TOOL])
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] in WEATHER[0]["content"]
    assert response.model == "rpi4" and response.usage.completion_tokens > 0


def test_openai_client_reassembles_a_streamed_call(client):
    whole = client.chat.completions.create(model="rpi4", messages=WEATHER, tools=[WEATHER_TOOL])
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client.chat.completions.create(model="rpi4", messages=WEATHER, tools=[WEATHER_TOOL],
                                                stream=True):
        choice = chunk.choices[0]
        for delta in choice.delta.tool_calls or []:  # a client appends argument pieces by index
            call = calls.setdefault(delta.index, {"name": "", "arguments": ""})
            call["name"] += delta.function.name or ""
            call["arguments"] += delta.function.arguments or ""
        finish = choice.finish_reason or finish
    expected = [(c.function.name, json.loads(c.function.arguments)) for c in whole.choices[0].message.tool_calls]
    assert [(c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())] == expected
    assert expected[0][0] == "get_weather" and finish == "tool_calls"


def test_openai_client_tool_choice_none_gets_no_call(client):
    response = client.chat.completions.create(model="rpi4", messages=WEATHER, tools=[WEATHER_TOOL],
                                              tool_choice="none")
    assert not response.choices[0].message.tool_calls
    assert response.choices[0].finish_reason == "stop"


def test_openai_client_sees_a_refusal_as_a_bad_request(client):
    import openai

    with pytest.raises(openai.BadRequestError, match="book_flight"):
        client.chat.completions.create(model="rpi4", messages=WEATHER, tools=[FOREIGN_TOOL])


# --- robustness ---------------------------------------------------------------------------------

def raw_exchange(base_url: str, data: bytes) -> tuple[int, bytes]:
    """Send bytes as they are, read the answer to the end: (status, body). A connection the
    server drops without an answer fails here."""
    port = urlsplit(base_url).port
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # all sent: a body shorter than its Content-Length ends here
        response = b""
        while piece := sock.recv(1 << 16):
            response += piece
    head, _, body = response.partition(b"\r\n\r\n")
    words = head.split(b"\r\n", 1)[0].split()
    assert len(words) >= 2 and words[0].startswith(b"HTTP/"), f"no HTTP answer: {response[:200]!r}"
    return int(words[1]), body


def http_bytes(body: bytes | str, method: str = "POST", path: str = "/v1/chat/completions",
               **headers: str | None) -> bytes:
    """An HTTP request; a header given as None is left out (names use _ for -)."""
    body = body.encode("utf-8") if isinstance(body, str) else body
    fields = {"Host": "localhost", "Content-Type": "application/json", "Content-Length": str(len(body)),
              **{k.replace("_", "-"): v for k, v in headers.items()}}
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in fields.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


GOOD = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
WRONG_VALUES = {  # none of these is a valid value for its field
    "messages": [None, 1, "hi", {}, [], [1], [{"role": "user"}], [{"content": "hi"}]],
    "stream": [1, "true", [], {}], "max_tokens": [0, -1, 1.5, "4", True, [4]],
    "tools": [1, "get_weather", {}, [1], [{"type": "function"}], [{"type": "x", "function": {"name": "a"}}]],
    "tool_choice": [1, "always", [], {}, {"type": "function", "function": {"name": None}}],
    "temperature": ["hot", True, []], "model": [1, [], {}], "n": [0, 2, "1"], "stop": [1, {}],
}


def _malformed(rng: random.Random) -> list[tuple[str, bytes]]:
    """One malformed request of each kind, its details drawn from rng."""
    good = json.dumps(GOOD)
    field = rng.choice(sorted(WRONG_VALUES))
    deep = rng.randint(2000, 60000)
    return [
        ("random bytes", http_bytes(rng.randbytes(rng.randint(1, 3000)))),
        ("truncated JSON", http_bytes(good[:rng.randint(1, len(good) - 1)])),
        (f"wrong type for {field}", http_bytes(json.dumps({**GOOD, field: rng.choice(WRONG_VALUES[field])}))),
        ("huge number", http_bytes(rng.choice([
            '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1' + "0" * 5000 + "}",
            '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e999}',
            json.dumps({**GOOD, "max_tokens": rng.randint(10**6, 10**40)}),
            json.dumps({**GOOD, "max_tokens": -rng.randint(1, 10**40)}),
            json.dumps({**GOOD, "n": rng.randint(2, 10**30)}),
            json.dumps({"messages": [{"role": "user", "content": rng.randint(0, 10**30)}]})]))),
        ("unknown field", http_bytes(json.dumps({**GOOD, "x" + rng.randbytes(4).hex(): rng.random()}))),
        ("wrong content type", http_bytes(good, Content_Type=rng.choice(
            [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
             "application/jsonx", "json"]))),
        ("bad Content-Length", http_bytes(good, Content_Length=rng.choice([None, "abc", "-5", "1e3", "", "0x10"]))),
        ("body shorter than its Content-Length", http_bytes(good, Content_Length=str(len(good) + rng.randint(1, 99)))),
        ("body over the limit", http_bytes(good, Content_Length=str(rng.randint(2 << 20, 10**12)))),
        ("chunked body", http_bytes(f"{len(good):x}\r\n{good}\r\n0\r\n\r\n", Content_Length=None,
                                    Transfer_Encoding="chunked")),
        ("wrong method or path", http_bytes(good, method=rng.choice(["GET", "PUT", "DELETE", "PATCH", "FOO"]),
                                            path=rng.choice(["/v1/chat/completions", "/v1/embeddings", "/x"]))),
        ("deeply nested JSON", http_bytes(rng.choice(["[", '{"a":']) * deep)),
        ("garbled request line", rng.choice([b"\x00\xff\xfe garbage\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                                             b"POST /v1/chat/completions HTTP/2.0\r\n\r\n",
                                             b"POST /v1/chat/completions FTP/1.0\r\n\r\n"])),
        ("unpaired surrogate", http_bytes('{"messages": [{"role": "user", "content": "\\udc00' + "x" * rng.randint(0, 9)
                                          + '"}]}')),
        ("a tool the build does not know", http_bytes(json.dumps({**GOOD, "tools": [FOREIGN_TOOL]}))),
        ("prompt over the context", http_bytes(json.dumps({**GOOD, "messages": [
            {"role": "user", "content": "天气" * rng.randint(600, 3000)}], "stream": rng.random() < 0.5}))),
        ("a call with unreadable arguments", http_bytes(json.dumps({**GOOD, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"type": "function", "function": {
                "name": "get_weather",
                "arguments": rng.choice(["{", "[" * deep, '{"a": 1' + "0" * 5000 + "}"])}}]}]}))),
    ]


def test_malformed_requests_get_a_4xx_never_a_5xx_or_a_dropped_connection(base_url):
    rng = random.Random(20240611)
    cases: list[tuple[str, bytes]] = []
    while len(cases) < 200:
        cases += _malformed(rng)
    failures = []
    for label, data in cases[:200]:
        status, body = raw_exchange(base_url, data)
        if not 400 <= status < 500 or b'"error"' not in body:
            failures.append(f"{label}: {status} {body[:120]!r}")
    assert not failures, "\n".join(failures)
    assert http(base_url + "/health")[0] == 200


def test_fifty_concurrent_requests_all_get_a_completion(base_url):
    texts = ["hi", "明天上海会下雨吗？", "把客厅的灯关了", "3乘以7等于几"]
    results: list[Any] = [None] * 50

    def ask(i: int) -> None:  # every fifth request streamed; a failed assertion leaves None
        body = {"messages": [{"role": "user", "content": texts[i % len(texts)]}], "max_tokens": 8}
        results[i] = stream(base_url, **body)[0] if i % 5 == 0 else chat(base_url, **body)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for i, result in enumerate(results):
        assert result is not None, f"request {i} got no answer"
        if i % 5 == 0:
            assert reassemble(result)["finish_reason"] in ("stop", "tool_calls")
            continue
        status, body = result
        assert status == 200, body
        choice = body["choices"][0]
        assert body["object"] == "chat.completion" and choice["finish_reason"] in ("stop", "tool_calls")
        assert choice["message"]["role"] == "assistant" and 0 < body["usage"]["completion_tokens"] <= 8
    assert http(base_url + "/health")[0] == 200
