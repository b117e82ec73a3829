"""The streaming tool-call parser and its JSON parser: examples, then properties against
json.loads and parse_assistant under random chunking, then a linear-time check."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fnedge.chat_format import (IM_END, TOOL_CALL_CLOSE, TOOL_CALL_OPEN, format_call, parse_assistant,
                                resolve_text_reference)
from fnedge.runtime.stream_parser import (ArgumentValue, CallEnd, CallError, CallStart,
                                          IncrementalJSONParser, StreamParseError,
                                          ToolCallStreamParser, TextDelta)

TAGS = (TOOL_CALL_OPEN, TOOL_CALL_CLOSE, IM_END)


# --- helpers ----------------------------------------------------------------------------------

def tagged(value: Any) -> Any:
    """A JSON value in a form that tells True from 1 from 1.0, and -0.0 from 0.0."""
    if isinstance(value, dict):
        return ("dict", [(key, tagged(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("list", [tagged(item) for item in value])
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def json_result(chunks: list[str | bytes]) -> Any:
    """Our parser's verdict; any exception other than StreamParseError fails the test."""
    parser = IncrementalJSONParser()
    try:
        for chunk in chunks:
            parser.feed(chunk)
        return ("ok", tagged(parser.close()))
    except StreamParseError:
        return ("error",)


def reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not RFC 8259 JSON")


def reference_result(text: str) -> Any:
    """json.loads' verdict, with NaN/Infinity rejected as RFC 8259 (and we) do."""
    try:
        return ("ok", tagged(json.loads(text, parse_constant=reject_constant)))
    except ValueError:  # JSONDecodeError, NaN/Infinity, an int too long
        return ("error",)


def stream_events(chunks: list[str | bytes]) -> tuple[ToolCallStreamParser, list[Any]]:
    parser = ToolCallStreamParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)] + parser.close()
    return parser, events


def normalized(events: list[Any]) -> list[tuple[Any, ...]]:
    """Events as comparable tuples, adjacent TextDeltas merged (their cut depends on chunking)."""
    result: list[tuple[Any, ...]] = []
    for event in events:
        if isinstance(event, TextDelta):
            if result and result[-1][0] == "text":
                result[-1] = ("text", result[-1][1] + event.text)
            else:
                result.append(("text", event.text))
        elif isinstance(event, CallStart):
            result.append(("start", event.index, event.name))
        elif isinstance(event, ArgumentValue):
            result.append(("argument", event.index, event.key, tagged(event.value)))
        elif isinstance(event, CallEnd):
            result.append(("end", event.index, tagged(event.call)))
        else:
            assert isinstance(event, CallError)
            result.append(("error", event.index, event.message, event.raw))
    return result


def cut(text: str | bytes, cuts: list[int]) -> list[str | bytes]:
    points = sorted(set(cuts))
    return [text[start:end] for start, end in zip([0] + points, points + [len(text)])]


@st.composite
def chunked(draw: st.DrawFn, text: str, allow_bytes: bool = True) -> list[str | bytes]:
    """`text` cut at random points, as str or as UTF-8 bytes (which cuts inside characters)."""
    data: str | bytes = text
    if allow_bytes and draw(st.booleans()):
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form
            pass
    if draw(st.integers(0, 4)) == 0:
        return [data[i:i + 1] for i in range(len(data))]
    return cut(data, draw(st.lists(st.integers(0, len(data)), max_size=12)))


# --- strategies -------------------------------------------------------------------------------

# Escapes, control chars, lone surrogates, CJK and emoji (astral: surrogate pairs when escaped).
TRICKY_CHARS = '"\\/\b\f\n\r\t\x00\x1f\x7f\u00e9\u2028\ufeff\ud800\udbff\udc00\udfff上海東京😀🎉'
# (Mixing alphabets per string, not per char, keeps generation fast enough for many examples.)
strings = st.text(max_size=10) | st.text(st.sampled_from(TRICKY_CHARS + "ab"), max_size=10)
scalars = (st.none() | st.booleans() | st.integers()
           | st.floats(allow_nan=False, allow_infinity=False) | strings)
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=3)
                           | st.dictionaries(strings, children, max_size=3), max_leaves=6)


@st.composite
def json_documents(draw: st.DrawFn, values: st.SearchStrategy[Any] = json_values) -> str:
    """A value written by json.dumps with random settings, with random outer whitespace."""
    text = json.dumps(draw(values), ensure_ascii=draw(st.booleans()), sort_keys=draw(st.booleans()),
                      indent=draw(st.none() | st.integers(0, 3) | st.just("\t")),
                      separators=draw(st.none() | st.sampled_from([(",", ":"), (", ", ": "),
                                                                   (" ,\n", " :\r\n")])))
    padding = st.text(st.sampled_from(" \t\r\n"), max_size=2)
    return draw(padding) + text + draw(padding)


JSON_ALPHABET = '{}[]:,"\\/-+.eE0123456789 \n\tuabfnrtlsxNI\u00e9\ud83d\ude00'
jsonish_text = st.text(st.sampled_from(JSON_ALPHABET), max_size=30)


@st.composite
def mutated_documents(draw: st.DrawFn) -> str:
    """A valid document with a few characters inserted, deleted or replaced."""
    text = draw(json_documents())
    edits = st.tuples(st.integers(0, len(text)), st.integers(0, 2),
                      st.text(st.sampled_from(JSON_ALPHABET), max_size=2))
    for at, removed, inserted in draw(st.lists(edits, min_size=1, max_size=3)):
        text = text[:at] + inserted + text[at + removed:]
    return text


prose = (st.text(max_size=12) | st.text(st.sampled_from("<>/|_tolcaimend \n{}"), max_size=12)).filter(
    lambda text: not any(tag in text for tag in TAGS))


@st.composite
def tool_call_streams(draw: st.DrawFn) -> tuple[str, list[tuple[Any, ...]], list[dict[str, Any]]]:
    """Prose, 1–3 well-formed calls with prose between, maybe <|im_end|> and junk; with the
    events and calls a correct parser reports for it."""
    text = draw(prose)
    expected: list[tuple[Any, ...]] = [("text", text)] if text else []
    calls = []
    for index in range(draw(st.integers(1, 3))):
        fields = {"name": draw(strings), "arguments": draw(st.dictionaries(strings, json_values,
                                                                            max_size=3))}
        if draw(st.booleans()):
            fields = {"arguments": fields["arguments"], "name": fields["name"]}
        if draw(st.booleans()):
            fields["id"] = f"call_{index}"  # keys other than name/arguments are ignored
        body = draw(json_documents(st.just(fields)).filter(
            lambda body: not any(tag in body for tag in TAGS)))
        loaded = json.loads(body)  # its key order is the order of the events
        call = {"name": loaded["name"], "arguments": loaded["arguments"]}
        calls.append(call)
        expected.append(("start", index, call["name"]))
        expected += [("argument", index, key, tagged(value))
                     for key, value in call["arguments"].items()]
        expected.append(("end", index, tagged(call)))
        after = draw(prose)
        text += TOOL_CALL_OPEN + body + TOOL_CALL_CLOSE + after
        if after:
            expected.append(("text", after))
    if draw(st.booleans()):
        text += IM_END + draw(st.sampled_from(["", "junk", TOOL_CALL_OPEN + "{}", "<|im_start|>"]))
    return text, normalized_texts(expected), calls


def normalized_texts(expected: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    merged: list[tuple[Any, ...]] = []
    for item in expected:
        if item[0] == "text" and merged and merged[-1][0] == "text":
            merged[-1] = ("text", merged[-1][1] + item[1])
        else:
            merged.append(item)
    return merged


STREAM_FRAGMENTS = [TOOL_CALL_OPEN, TOOL_CALL_CLOSE, IM_END, "<", "</tool", "<tool_", "<|im",
                    '{"name": "f"', '"name": "g", ', '"arguments": {', '"a": 1', '"b": [true, null]',
                    '"c": "x</t"', ', ', '}', '{', '"', ':', '[', ']', '1.5e3', '"\\u00e9"',
                    '"\\ud83d', '\\ude00"', "{{text}}", "\n", "hi "]
stream_soup = st.lists(st.sampled_from(STREAM_FRAGMENTS) | st.text(max_size=4), max_size=16).map("".join)


# --- JSON: examples ---------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "-0", "0", "0e0", "1E+2", "-1.5e-3", "12345678901234567890", "1e999", '"\\ud83d"',
    '"\\ud83d\\u0041"', '"\\ud83d\\ud83d\\ude00"', '"\\uDE00\\uD83D"', '"\\/\\b\\f\\n\\r\\t"',
    '{"a": 1, "b": {}, "a": [2]}', " [ ] ", '{"":""}', '"\x7f\u2028"', "[[[[[]]]]]",
])
def test_json_matches_json_loads(text):
    for chunks in ([text], list(text), list(text.encode("utf-8"))):
        chunks = [bytes([c]) if isinstance(c, int) else c for c in chunks]
        assert json_result(chunks) == reference_result(text) != ("error",)


@pytest.mark.parametrize("text", [
    "", "   ", "[1,]", '{"a": 1,}', "01", "-01", "NaN", "Infinity", "-Infinity", "+1", ".5", "1.",
    "1e", "1e+", "-", '"\x00"', '"\n"', '"\\x41"', '"\\u12"', '"\\u12g4"', '"abc', "[1 2]",
    '{"a" 1}', "{'a': 1}", "{a: 1}", "tru", "nul", "truex", "[1]]", "1 2", "\ufeff1", "１",
    "1" * 5000,  # json.loads too refuses ints longer than sys.get_int_max_str_digits()
])
def test_json_rejects_what_rfc_8259_rejects(text):
    assert reference_result(text) == ("error",)
    assert json_result(list(text)) == ("error",)


def test_json_value_is_ready_before_close_except_for_a_bare_number():
    parser = IncrementalJSONParser()
    parser.feed('{"a": [1, "x"]')
    assert not parser.done
    parser.feed("}")
    assert parser.done and parser.value == {"a": [1, "x"]}
    number = IncrementalJSONParser()
    number.feed("12")
    assert not number.done  # "123" may follow
    with pytest.raises(StreamParseError):
        number.value
    assert number.close() == 12


def test_json_error_is_sticky_and_positioned():
    parser = IncrementalJSONParser()
    parser.feed('{"a": ')
    with pytest.raises(StreamParseError, match="got .]. at char 9") as first:
        parser.feed("[1,]")
    with pytest.raises(StreamParseError) as again:
        parser.feed("1}")
    assert again.value is first.value


def test_json_invalid_utf8_bytes_are_a_parse_error():
    parser = IncrementalJSONParser()
    parser.feed(b'"\xe4\xb8')  # half of 上: fine so far
    with pytest.raises(StreamParseError, match="UTF-8"):
        parser.feed(b'\xff"')


def test_json_reports_values_by_path():
    seen = []
    parser = IncrementalJSONParser(lambda path, value: seen.append((path, value)), report_depth=2)
    parser.feed('{"a": {"b": [1, {"c": 2}]}, "d": [true]}')
    assert seen == [(("a", "b"), [1, {"c": 2}]), (("a",), {"b": [1, {"c": 2}]}),
                    (("d", 0), True), (("d",), [True]), ((), parser.value)]


# --- JSON: properties -------------------------------------------------------------------------

@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), json_documents())
def test_json_round_trips_under_any_chunking(data, text):
    assert json_result(data.draw(chunked(text))) == reference_result(text) != ("error",)


@settings(max_examples=1200, deadline=None)
@given(st.data(), mutated_documents())
def test_json_agrees_with_json_loads_on_near_valid_input(data, text):
    assert json_result(data.draw(chunked(text))) == reference_result(text)


@settings(max_examples=2000, deadline=None)
@given(st.data(), st.text() | jsonish_text)
def test_json_on_garbage_text_agrees_with_json_loads(data, text):
    assert json_result(data.draw(chunked(text))) == reference_result(text)


@settings(max_examples=1500, deadline=None)
@given(st.data(), st.binary(max_size=40) | jsonish_text.map(lambda text: text.encode("utf-8",
                                                                                      "surrogatepass")))
def test_json_on_garbage_bytes_raises_only_its_own_error(data, raw):
    try:
        expected = reference_result(raw.decode("utf-8"))
    except UnicodeDecodeError:
        expected = ("error",)
    assert json_result(cut(raw, data.draw(st.lists(st.integers(0, len(raw)), max_size=10)))) == expected


# --- tool-call stream: examples ---------------------------------------------------------------

def test_stream_example_split_everywhere():
    weather = {"city": "上海", "date": "tomorrow"}
    music = {"query": "jazz", "volume": 0.5}
    reply = ("我查一下。\n" + format_call("get_weather", weather) + "\n"
             + format_call("play_music", music) + IM_END + "ignored")
    expected = [("text", "我查一下。\n"),
                ("start", 0, "get_weather"), ("argument", 0, "city", ("str", "上海")),
                ("argument", 0, "date", ("str", "tomorrow")),
                ("end", 0, tagged({"name": "get_weather", "arguments": weather})),
                ("text", "\n"),
                ("start", 1, "play_music"), ("argument", 1, "query", ("str", "jazz")),
                ("argument", 1, "volume", ("float", "0.5")),
                ("end", 1, tagged({"name": "play_music", "arguments": music}))]
    encoded = reply.encode("utf-8")
    for chunks in ([reply], list(reply), [encoded[i:i + 1] for i in range(len(encoded))]):
        parser, events = stream_events(chunks)
        assert normalized(events) == expected
        assert parser.text == "我查一下。\n\n"
        assert [call["name"] for call in parser.calls] == ["get_weather", "play_music"]


def test_prose_holds_back_only_what_may_become_a_tag():
    parser = ToolCallStreamParser()
    assert parser.feed("Hi <b> <tool_") == [TextDelta("Hi <b> ")]
    assert parser.feed("x") == [TextDelta("<tool_x")]
    assert parser.feed("<|im_e") == []
    assert parser.feed("nd|>more") == []
    assert parser.close() == [] and parser.text == "Hi <b> <tool_x"


def test_unicode_escape_split_across_chunks():
    parser = ToolCallStreamParser()
    events = []
    for chunk in ['<tool_call>{"name": "s", "arguments": {"q": "\\ud8', '3d\\u', 'de00"',
                  "}}</tool_", "call>"]:
        events += parser.feed(chunk)
    assert ArgumentValue(0, "q", "😀") in events
    assert parser.calls == [{"name": "s", "arguments": {"q": "😀"}}]


def test_arguments_before_name_wait_for_the_name():
    parser, events = stream_events(['<tool_call>{"arguments": {"a": 1}, "name": "f"}</tool_call>'])
    assert events == [CallStart(0, "f"), ArgumentValue(0, "a", 1),
                      CallEnd(0, {"name": "f", "arguments": {"a": 1}})]


def test_malformed_block_is_reported_and_parsing_goes_on():
    reply = ('<tool_call>{"name": "a", "arguments": {"x": 1}, oops}</tool_call>ok'
             '<tool_call>{"name": 3}</tool_call><tool_call>{"name": "b"}</tool_call>')
    parser, events = stream_events(list(reply))
    errors = [event for event in events if isinstance(event, CallError)]
    assert [(error.index, error.raw) for error in errors] == [
        (0, '{"name": "a", "arguments": {"x": 1}, oops}'), (1, '{"name": 3}')]
    assert '"name" must be a string' in errors[1].message
    assert events[:2] == [CallStart(0, "a"), ArgumentValue(0, "x", 1)]  # before the error was seen
    assert events[-1] == CallEnd(2, {"name": "b", "arguments": {}})
    assert parser.text == "ok"


@pytest.mark.parametrize("body, message", [
    ('{"name": "a", "name": "b"}', 'duplicate "name"'),
    ('{"name": "a", "arguments": {}, "arguments": {"x": 1}}', 'duplicate "arguments"'),
    ('{"name": "a", "arguments": [1]}', '"arguments" must be a JSON object'),
    ('{"arguments": {}}', 'no "name"'),
    ('["a"]', "must be a JSON object"),
    ('-5e1', "must be a JSON object"),  # a bare number is complete only when the block ends
    ('{"name": "a", "arguments": {"x": NaN}}', "expected a value"),
    ('{"name": "a"', "unexpected end"),
    ('', "unexpected end"),
])
def test_malformed_calls(body, message):
    _, events = stream_events([TOOL_CALL_OPEN + body + TOOL_CALL_CLOSE])
    assert isinstance(events[-1], CallError) and message in events[-1].message


def test_unclosed_block_counts_if_complete_like_parse_assistant():
    reply = '<tool_call>{"name": "a", "arguments": {}}' + IM_END
    assert stream_events([reply])[0].calls == parse_assistant(reply).calls == [
        {"name": "a", "arguments": {}}]
    for cut_off, message in [('{"name": "a", "argu', "unexpected end"), ("7", "JSON object")]:
        error = stream_events([TOOL_CALL_OPEN + cut_off])[1][-1]
        assert isinstance(error, CallError) and error.raw == cut_off and message in error.message


def test_close_tag_inside_a_string_closes_the_block_like_parse_assistant():
    reply = '<tool_call>{"name": "a", "arguments": {"x": "</tool_call>"}}</tool_call>'
    parser, events = stream_events(list(reply))
    turn = parse_assistant(reply)
    assert turn.malformed == [e.raw for e in events if isinstance(e, CallError)] == [
        '{"name": "a", "arguments": {"x": "']
    assert parser.text == turn.text == '"}}</tool_call>'  # a stray close tag in prose is prose


def test_bad_bytes_are_dropped_and_nothing_is_fed_after_the_end():
    parser = ToolCallStreamParser()
    events = parser.feed(b"a\xff\xe4\xb8") + parser.feed(b"\xad") + parser.close()
    assert normalized(events) == [("text", "a中")]
    assert parser.feed("more") == [] and parser.close() == []


# --- tool-call stream: properties -------------------------------------------------------------

@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), tool_call_streams())
def test_streams_give_the_same_events_however_cut(data, stream):
    text, expected, calls = stream
    for chunks in ([text], data.draw(chunked(text))):
        parser, events = stream_events(chunks)
        assert normalized(events) == expected
        assert [tagged(call) for call in parser.calls] == [tagged(call) for call in calls]
    turn = parse_assistant(text)
    assert parser.text.strip() == turn.text
    resolved = [{"name": call["name"], "arguments": resolve_text_reference(call["arguments"], turn.text)}
                for call in parser.calls]
    assert [tagged(call) for call in resolved] == [tagged(call) for call in turn.calls]


@settings(max_examples=2500, deadline=None)
@given(st.data(), stream_soup | st.text())
def test_any_stream_is_parsed_without_raising_and_like_parse_assistant(data, text):
    parser, events = stream_events(data.draw(chunked(text)))
    assert normalized(events) == normalized(stream_events([text])[1])
    if "NaN" in text or "Infinity" in text or any("duplicate" in e.message for e in events
                                                  if isinstance(e, CallError)):
        return  # where we differ from json.loads on purpose
    turn = parse_assistant(text)
    assert parser.text.strip() == turn.text
    assert [e.raw for e in events if isinstance(e, CallError)] == turn.malformed
    resolved = [{"name": call["name"], "arguments": resolve_text_reference(call["arguments"], turn.text)}
                for call in parser.calls]
    assert [tagged(call) for call in resolved] == [tagged(call) for call in turn.calls]


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=60), st.lists(st.integers(0, 60), max_size=8))
def test_any_bytes_are_parsed_without_raising(raw, cuts):
    parser, events = stream_events(cut(raw, cuts))
    assert normalized(events) == normalized(stream_events([raw.decode("utf-8", "ignore")])[1])


@settings(max_examples=300, deadline=None)
@given(strings, st.dictionaries(strings, json_values, min_size=1, max_size=4), st.booleans(),
       st.booleans())
def test_each_argument_is_reported_before_the_arguments_close(name, arguments, ascii_only, compact):
    """Early action: fed one char at a time, an argument value comes out as soon as it is
    complete, before its object's closing brace; a number needs the char after it to be sure."""
    arguments_json = json.dumps(arguments, ensure_ascii=ascii_only,
                                separators=(",", ":") if compact else None)
    prefix = TOOL_CALL_OPEN + '{"name": ' + json.dumps(name) + ', "arguments": '
    reply = prefix + arguments_json + "}" + TOOL_CALL_CLOSE
    assume(not any(tag in reply[len(TOOL_CALL_OPEN):-len(TOOL_CALL_CLOSE)] for tag in TAGS))
    closing_brace = len(prefix) + len(arguments_json) - 1
    parser = ToolCallStreamParser()
    emitted_at: list[tuple[int, Any]] = []
    for position, char in enumerate(reply):
        emitted_at += [(position, event) for event in parser.feed(char)]
    kinds = [type(event) for _, event in emitted_at]
    assert kinds == [CallStart] + [ArgumentValue] * len(arguments) + [CallEnd]
    for position, event in emitted_at[1:-1]:
        is_number = type(event.value) in (int, float)
        assert position < closing_brace or (is_number and position == closing_brace)
        assert tagged(event.value) == tagged(json.loads(arguments_json)[event.key])


# --- linear time ------------------------------------------------------------------------------

def per_char_seconds(text: str) -> float:
    """Best of three, per character, feeding one character at a time."""
    best = float("inf")
    for _ in range(3):
        parser = ToolCallStreamParser()
        started = time.perf_counter()
        for char in text:
            parser.feed(char)
        parser.close()
        best = min(best, time.perf_counter() - started)
    return best / len(text)


def test_cost_per_char_does_not_grow_with_the_stream():
    """A loose ratio, not a time limit: re-scanning earlier text would make 100 KB cost ~10× per
    char what 10 KB does. Long tokens and near-miss tags are where re-scanning would hide."""
    long_string = "x" * 2000 + "\\u00e9" + "<" * 50
    long_number = "0." + "1" * 2000
    unit = ("prose <b> <tool_ <|im <" * 20 + format_call("f", {"s": long_string, "n": [1, 2.5, None]})
            + '<tool_call>{"name": "g", "arguments": {"n": ' + long_number + "}}</tool_call>")
    small = (unit * (10_000 // len(unit) + 1))[:10_000]
    large = (unit * (100_000 // len(unit) + 1))[:100_000]
    assert per_char_seconds(large) < 3 * per_char_seconds(small)
