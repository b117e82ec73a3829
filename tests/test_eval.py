"""The evaluator: case loading, the FORMAT.md scoring rules, the summary. Every rule has a case
that passes and one that fails, so breaking the rule in either direction fails a test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import fnedge.eval.cases as cases_module
from fnedge.chat_format import AssistantTurn, parse_assistant
from fnedge.errors import FnedgeError
from fnedge.eval import CaseScore, EvalCase, format_report, load_cases, score_case, summarize
from fnedge.eval.cases import default_catalog

SHARED_EVAL = Path(__file__).resolve().parents[1].parent / "shared" / "eval"


def _tool(name: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": name, "parameters": {
        "type": "object", "properties": properties, "required": required}}}


TOOLS = [
    _tool("get_weather", {"city": {"type": "string"},
                          "date": {"type": "string", "default": "today"},
                          "units": {"type": "string", "enum": ["c", "f"], "default": "c"},
                          "note": {"type": "string"}}, ["city"]),
    _tool("set_timer", {"minutes": {"type": "integer"}, "label": {"type": "string"}}, ["minutes"]),
    _tool("lookup_code", {"code": {"type": "string"}}, ["code"]),
    _tool("toggle", {"on": {"type": "boolean"}, "level": {"type": "integer"}}, ["on"]),
    _tool("save_file", {"path": {"type": "string"}, "content": {"type": "string"}}, ["path", "content"]),
    _tool("order", {"items": {"type": "array", "items": {"type": "object", "properties": {
                        "item": {"type": "string"}, "quantity": {"type": "integer"}}}},
                    "options": {"type": "object", "properties": {
                        "size": {"type": "string"}, "iced": {"type": "boolean", "default": False}}}},
          ["items"]),
]


def write_cases(tmp_path: Path, *records: dict[str, Any] | str, name: str = "cases.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)
                              for r in records) + "\n", encoding="utf-8")
    return path


def record(expect: dict[str, Any], tools: Any = None, case_id: str = "c1", lang: str = "en") -> dict[str, Any]:
    return {"id": case_id, "lang": lang, "tools": TOOLS if tools is None else tools,
            "messages": [{"role": "user", "content": "hi"}], "expect": expect}


@pytest.fixture
def make_case(tmp_path: Path):
    """Build a case through the real loader: make_case("call", [("get_weather", {...})])."""
    counter = iter(range(10_000))

    def make(expect_type: str, calls: list[tuple[str, dict[str, list[Any]]]] | None = None,
             lang: str = "en") -> EvalCase:
        expect: dict[str, Any] = {"type": expect_type}
        if calls is not None:
            expect["calls"] = [{"name": n, "arguments": a} for n, a in calls]
        number = next(counter)
        path = write_cases(tmp_path, record(expect, case_id=f"case{number}", lang=lang),
                           name=f"case{number}.jsonl")
        return load_cases(path)[0]
    return make


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def turn(*calls: dict[str, Any], text: str = "", malformed: list[str] | None = None) -> AssistantTurn:
    return AssistantTurn(text=text, calls=list(calls), malformed=malformed or [])


def arguments_ok(case: EvalCase, *calls: dict[str, Any], text: str = "") -> bool:
    score = score_case(case, turn(*calls, text=text))
    assert score.function_match, score.reason
    return bool(score.argument_match)


# --- loading ---------------------------------------------------------------------------------

def test_load_cases_reads_default_and_inline_tools(tmp_path: Path) -> None:
    path = write_cases(
        tmp_path,
        {"id": "a", "lang": "zh", "tools": "default", "messages": [{"role": "user", "content": "明天上海会下雨吗？"}],
         "expect": {"type": "call", "calls": [{"name": "get_weather",
                                               "arguments": {"city": ["上海"], "date": ["tomorrow"]}}]}},
        "",  # blank lines are skipped
        record({"type": "ask", "missing": ["city"]}, case_id="b"),
    )
    first, second = load_cases(path)
    assert (first.id, first.lang, first.tools_inline) == ("a", "zh", False)
    assert first.tools is default_catalog() and "get_weather" in first.tools
    assert first.expect.type == "call"
    assert first.expect.calls[0].name == "get_weather"
    assert first.expect.calls[0].arguments == {"city": ["上海"], "date": ["tomorrow"]}
    assert first.messages == [{"role": "user", "content": "明天上海会下雨吗？"}]
    assert second.tools_inline and second.tools.names[0] == "get_weather"
    assert second.tools_schema_problem is None
    assert (second.expect.type, second.expect.missing, second.expect.calls) == ("ask", ["city"], [])


def test_default_catalog_is_loaded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[int] = []
    real_load = cases_module.load_catalog

    def counting_load(*args: Any) -> Any:
        loads.append(1)
        return real_load(*args)

    default_catalog.cache_clear()
    monkeypatch.setattr(cases_module, "load_catalog", counting_load)
    try:
        text_case = {"tools": "default", "messages": [{"role": "user", "content": "hi"}],
                     "expect": {"type": "text"}}
        path = write_cases(tmp_path, {**text_case, "id": "x"}, {**text_case, "id": "y"})
        cases = load_cases(path) + load_cases(path)
        assert len(loads) == 1
        assert all(c.tools is cases[0].tools for c in cases)
    finally:
        default_catalog.cache_clear()


MALFORMED_LINES = {
    "bad JSON": ('{"id": "x", "tools": "default"', "not valid JSON"),
    "not an object": ('[1, 2]', "JSON object"),
    "missing messages": (json.dumps({"tools": "default", "expect": {"type": "text"}}), "missing 'messages'"),
    "missing expect": (json.dumps({"tools": "default", "messages": [{"role": "user", "content": "x"}]}),
                       "missing 'expect'"),
    "unknown expect.type": (json.dumps(record({"type": "maybe_call"})), "unknown expect.type 'maybe_call'"),
    "tools not a list": (json.dumps(record({"type": "text"}, tools="all")), "'tools' must be"),
    "tool without name": (json.dumps(record({"type": "text"}, tools=[{"description": "x"}])), "'name'"),
    "bad parameters": (json.dumps(record({"type": "text"}, tools=[
        {"name": "f", "parameters": {"type": "object", "properties": {"a": "string"}}}])), "schema must be"),
    "call without calls": (json.dumps(record({"type": "call"})), "non-empty expect.calls"),
    "unknown expected tool": (json.dumps(record({"type": "call", "calls": [
        {"name": "fly", "arguments": {}}]})), "'fly' is not among"),
    "acceptable not a list": (json.dumps(record({"type": "call", "calls": [
        {"name": "get_weather", "arguments": {"city": "Paris"}}]})), "list of acceptable"),
    "bad role": (json.dumps({**record({"type": "text"}), "messages": [{"role": "bot", "content": "x"}]}),
                 "unknown role"),
}


@pytest.mark.parametrize("line, problem", MALFORMED_LINES.values(), ids=MALFORMED_LINES.keys())
def test_malformed_line_names_file_line_and_problem(tmp_path: Path, line: str, problem: str) -> None:
    path = write_cases(tmp_path, record({"type": "text"}, case_id="ok"), line)
    with pytest.raises(FnedgeError) as error:
        load_cases(path)
    message = str(error.value)
    assert message.startswith(f"{path}:2: "), message
    assert problem in message
    assert "\n" not in message


def test_empty_file_and_duplicate_ids_are_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(FnedgeError, match="empty"):
        load_cases(empty)
    with pytest.raises(FnedgeError, match="not found"):
        load_cases(tmp_path / "absent.jsonl")
    duplicated = write_cases(tmp_path, record({"type": "text"}), record({"type": "text"}))
    with pytest.raises(FnedgeError, match=r":2: duplicate id 'c1' \(first on line 1\)"):
        load_cases(duplicated)


def test_inline_tools_outside_the_strict_subset_load_leniently(tmp_path: Path) -> None:
    # As in BFCL: a `default: null` on a string and an unknown keyword; and no tools at all.
    bfcl_tool = _tool("find", {"q": {"type": "string"}, "date": {"type": "string", "default": None},
                               "fast": {"type": "boolean", "optional": True}}, ["q"])
    path = write_cases(tmp_path, record({"type": "call", "calls": [{"name": "find", "arguments": {"q": ["x"]}}]},
                                        tools=[bfcl_tool]),
                       record({"type": "text"}, tools=[], case_id="c2"))
    lenient, no_tools = load_cases(path)
    assert lenient.tools.names == ["find"] and lenient.tools_schema_problem
    assert no_tools.tools.names == [] and no_tools.tools_inline
    assert score_case(lenient, turn(call("find", q="X"))).argument_match
    assert score_case(lenient, turn(call("find", q="x", date=None))).argument_match  # restates default


SHARED_FILES = sorted(SHARED_EVAL.glob("*.jsonl")) + sorted(SHARED_EVAL.glob("bfcl/*.jsonl"))


@pytest.mark.skipif(not SHARED_FILES, reason="no shared/ checkout next to the repository")
@pytest.mark.parametrize("path", SHARED_FILES, ids=lambda p: p.name)
def test_every_shared_case_file_loads(path: Path) -> None:
    cases = load_cases(path)
    assert cases and all(c.expect.type in ("call", "text_then_call", "ask", "text") for c in cases)


# --- function match --------------------------------------------------------------------------

def test_function_match_compares_called_names(make_case) -> None:
    case = make_case("call", [("get_weather", {"city": ["Paris"]})])
    assert score_case(case, turn(call("get_weather", city="Paris"))).function_match
    wrong = score_case(case, turn(call("set_timer", minutes=3)))
    assert not wrong.function_match and wrong.argument_match is False
    assert wrong.reason == "expected get_weather, got set_timer"
    none = score_case(case, turn(text="It is sunny."))
    assert not none.function_match and none.reason == "expected get_weather, got no call"


def test_function_match_counts_repeated_calls(make_case) -> None:
    case = make_case("call", [("get_weather", {"city": ["Paris"]}), ("get_weather", {"city": ["Rome"]})])
    paris, rome = call("get_weather", city="Paris"), call("get_weather", city="Rome")
    assert score_case(case, turn(paris, rome)).function_match
    assert not score_case(case, turn(paris)).function_match
    assert not score_case(case, turn(paris, rome, rome)).function_match


def test_a_malformed_block_breaks_function_match_and_counts_as_invalid(make_case) -> None:
    case = make_case("call", [("get_weather", {"city": ["Paris"]})])
    score = score_case(case, turn(call("get_weather", city="Paris"), malformed=['{"name": "get_weather"']))
    assert not score.function_match and "malformed" in (score.reason or "")
    assert (score.valid_calls, score.emitted_calls) == (1, 2)


def test_text_then_call_needs_text(make_case) -> None:
    case = make_case("text_then_call", [("save_file", {"path": ["a.txt"], "content": ["$text"]})])
    poem = "Rain on the roof."
    assert score_case(case, turn(call("save_file", path="a.txt", content=poem), text=poem)).argument_match
    silent = score_case(case, turn(call("save_file", path="a.txt", content="")))
    assert not silent.function_match and "text" in (silent.reason or "")


@pytest.mark.parametrize("expect_type", ["ask", "text"])
def test_ask_and_text_need_no_call(make_case, expect_type: str) -> None:
    case = make_case(expect_type)
    clean = score_case(case, turn(text="Which city?"))
    assert clean.function_match and clean.argument_match is None and clean.passed
    called = score_case(case, turn(call("get_weather", city="Paris")))
    assert not called.function_match and called.reason == "expected no call, got get_weather"
    assert not score_case(case, turn(malformed=["{oops"])).function_match


def test_ask_records_whether_the_turn_asked(make_case) -> None:
    case = make_case("ask")
    assert score_case(case, turn(text="Which city do you mean?")).asked_question is True
    assert score_case(case, turn(text="请问你在哪个城市")).asked_question is True
    assert score_case(case, turn(text="OK, done.")).asked_question is False
    assert score_case(case, turn(call("get_weather", city="X"), text="Where?")).asked_question is False
    assert score_case(make_case("text"), turn(text="Why?")).asked_question is None


# --- argument match --------------------------------------------------------------------------

def test_strings_match_after_trim_nfkc_and_casefold(make_case) -> None:
    case = make_case("call", [("get_weather", {"city": ["Straße", "上海"]})])
    for city in (" 上海 ", "STRASSE", "straße", "\u3000上海"):
        assert arguments_ok(case, call("get_weather", city=city)), city
    fullwidth = make_case("call", [("get_weather", {"city": ["Berlin"]})])
    assert arguments_ok(fullwidth, call("get_weather", city="ＢＥＲＬＩＮ"))
    assert not arguments_ok(case, call("get_weather", city="北京"))
    assert not arguments_ok(case, call("get_weather", city="Strase"))


def test_numbers_match_numerically_not_as_strings(make_case) -> None:
    case = make_case("call", [("set_timer", {"minutes": [4]})])
    assert arguments_ok(case, call("set_timer", minutes=4))
    assert arguments_ok(case, call("set_timer", minutes=4.0))
    assert not arguments_ok(case, call("set_timer", minutes=5))
    assert not arguments_ok(case, call("set_timer", minutes="4"))  # integer schema
    as_float = make_case("call", [("set_timer", {"minutes": [2.5]})])
    assert not arguments_ok(as_float, call("set_timer", minutes=2))


def test_a_number_matches_its_string_form_where_the_schema_says_string(make_case) -> None:
    case = make_case("call", [("lookup_code", {"code": [3]})])
    assert arguments_ok(case, call("lookup_code", code="3"))
    assert arguments_ok(case, call("lookup_code", code=" 3.0 "))
    assert not arguments_ok(case, call("lookup_code", code="4"))
    string_listed = make_case("call", [("lookup_code", {"code": ["7"]})])
    assert arguments_ok(string_listed, call("lookup_code", code=7))


def test_booleans_are_not_numbers(make_case) -> None:
    case = make_case("call", [("toggle", {"on": [True]})])
    assert arguments_ok(case, call("toggle", on=True))
    assert not arguments_ok(case, call("toggle", on=1))
    assert not arguments_ok(case, call("toggle", on=False))
    assert not arguments_ok(case, call("toggle", on="true"))  # boolean schema
    level = make_case("call", [("toggle", {"on": [False], "level": [1]})])
    assert arguments_ok(level, call("toggle", on=False, level=1))
    assert not arguments_ok(level, call("toggle", on=False, level=True))
    assert not arguments_ok(level, call("toggle", on=0, level=1))


def test_empty_acceptable_value_means_may_be_left_out(make_case) -> None:
    both = make_case("call", [("set_timer", {"minutes": [5], "label": ["", "tea"]})])
    assert arguments_ok(both, call("set_timer", minutes=5))
    assert arguments_ok(both, call("set_timer", minutes=5, label="Tea"))
    assert arguments_ok(both, call("set_timer", minutes=5, label=" "))  # a blank string is left out
    assert not arguments_ok(both, call("set_timer", minutes=5, label="coffee"))  # "" accepts no value
    required_value = make_case("call", [("set_timer", {"minutes": [5], "label": ["tea"]})])
    assert not arguments_ok(required_value, call("set_timer", minutes=5))
    optional_number = make_case("call", [("set_timer", {"minutes": ["", 5]})])
    assert arguments_ok(optional_number, call("set_timer"))
    assert not arguments_ok(optional_number, call("set_timer", minutes=""))  # integer, not left out
    assert not arguments_ok(optional_number, call("set_timer", minutes=6))


def test_added_arguments_must_be_optional_and_equal_the_default(make_case) -> None:
    case = make_case("call", [("get_weather", {"city": ["Paris"]})])
    assert arguments_ok(case, call("get_weather", city="Paris", date="today"))
    assert arguments_ok(case, call("get_weather", city="Paris", units="C"))
    assert not arguments_ok(case, call("get_weather", city="Paris", date="tomorrow"))
    assert not arguments_ok(case, call("get_weather", city="Paris", note="x"))  # no default
    assert not arguments_ok(case, call("get_weather", city="Paris", wind=True))  # unknown
    nested_default = make_case("call", [("order", {"items": [[]], "options": [{"size": ["L"]}]})])
    assert arguments_ok(nested_default, call("order", items=[], options={"size": "l", "iced": False}))
    assert not arguments_ok(nested_default, call("order", items=[], options={"size": "l", "iced": True}))


def test_text_placeholder_means_the_turns_text(make_case) -> None:
    case = make_case("text_then_call", [("save_file", {"path": ["a.txt"], "content": ["$text"]})])
    story = "Once upon a time.\nThe end."
    assert arguments_ok(case, call("save_file", path="a.txt", content=f"  {story.upper()} "), text=story)
    assert not arguments_ok(case, call("save_file", path="a.txt", content="Once upon a time."), text=story)
    assert not arguments_ok(case, call("save_file", path="a.txt", content="$text"), text=story)
    # The runtime's {{text}} reference, resolved by parse_assistant, counts as the text.
    parsed = parse_assistant(f'{story}\n<tool_call>{{"name": "save_file", "arguments": '
                             '{"path": "a.txt", "content": "{{text}}"}}</tool_call>')
    assert score_case(case, parsed).argument_match


def test_two_calls_match_in_any_order_one_to_one(make_case) -> None:
    case = make_case("call", [("get_weather", {"city": ["Paris"]}), ("get_weather", {"city": ["Rome"]})])
    paris, rome = call("get_weather", city="Paris"), call("get_weather", city="Rome")
    assert arguments_ok(case, rome, paris)
    assert not arguments_ok(case, paris, paris)
    # The first expected call fits both emitted calls: a greedy pairing would take Paris for it
    # and leave nothing for the second; a one-to-one assignment gives it Rome.
    either = make_case("call", [("get_weather", {"city": ["Paris", "Rome"]}), ("get_weather", {"city": ["Paris"]})])
    assert arguments_ok(either, paris, rome)
    assert not arguments_ok(either, rome, rome)
    mixed = make_case("call", [("set_timer", {"minutes": [5]}), ("get_weather", {"city": ["Rome"]})])
    assert arguments_ok(mixed, rome, call("set_timer", minutes=5))
    assert not arguments_ok(mixed, rome, call("set_timer", minutes=6))


def test_nested_objects_and_lists(make_case) -> None:
    case = make_case("call", [("order", {"items": [[{"item": ["tea"], "quantity": [2]}, {"item": ["cake"]}]],
                                         "options": ["", {"size": ["L", "large"]}]})])
    items = [{"item": "Tea", "quantity": 2}, {"item": "cake"}]
    assert arguments_ok(case, call("order", items=items))
    assert arguments_ok(case, call("order", items=items, options={"size": "Large"}))
    assert not arguments_ok(case, call("order", items=items, options={"size": "S"}))
    assert not arguments_ok(case, call("order", items=items[::-1]))  # list order matters
    assert not arguments_ok(case, call("order", items=items[:1]))
    assert not arguments_ok(case, call("order", items=[{"item": "tea", "quantity": 3}, {"item": "cake"}]))


def test_argument_failure_reason_names_the_argument(make_case) -> None:
    case = make_case("call", [("get_weather", {"city": ["Paris"]})])
    score = score_case(case, turn(call("get_weather", city="Lyon")))
    assert score.function_match and not score.argument_match and not score.passed
    assert score.reason == 'get_weather: city="Lyon", expected one of ["Paris"]'


# --- completeness and validity ---------------------------------------------------------------

def test_required_completeness_counts_filled_required_arguments_of_known_tools(make_case) -> None:
    case = make_case("call", [("save_file", {"path": ["a"], "content": ["b"]})])
    half = score_case(case, turn(call("save_file", path="a")))
    assert (half.required_filled, half.required_total, half.required_completeness) == (1, 2, 0.5)
    blank = score_case(case, turn(call("save_file", path="a", content=" "), call("fly", to="Mars")))
    assert (blank.required_filled, blank.required_total) == (1, 2)  # "fly" is unknown: not counted
    assert score_case(case, turn()).required_completeness is None


def test_valid_calls_validate_against_the_schema(make_case) -> None:
    case = make_case("call", [("set_timer", {"minutes": [5]})])
    score = score_case(case, turn(call("set_timer", minutes=5), call("set_timer", minutes="5"),
                                  call("fly"), malformed=["{bad"]))
    assert (score.valid_calls, score.emitted_calls) == (1, 4)
    assert len(score.call_problems) == 3
    assert score_case(case, turn(call("set_timer", minutes=5))).valid_call_rate == 1.0
    assert score_case(case, turn()).valid_call_rate is None


# --- summary ---------------------------------------------------------------------------------

def _scores(make_case) -> list[CaseScore]:
    weather = make_case("call", [("get_weather", {"city": ["Paris"]})], lang="en")
    save = make_case("text_then_call", [("save_file", {"path": ["a"], "content": ["$text"]})], lang="zh")
    return [
        score_case(weather, turn(call("get_weather", city="Paris"))),  # passes
        score_case(weather, turn(call("get_weather", city="Lyon"))),  # function ok, arguments not
        score_case(weather, turn()),  # no call
        score_case(save, turn(call("save_file", path="a", content="诗"), text="诗")),  # passes
        score_case(make_case("ask", lang="zh"), turn(text="哪个城市？")),  # passes
        score_case(make_case("text", lang="en"), turn(call("save_file", path="a"))),  # call, 1/2 required
    ]


def test_summarize_metrics_groups_and_failures(make_case) -> None:
    summary = summarize(_scores(make_case), [10, 20, 30, 40, 50, 60])
    assert list(summary) == ["n", "function_match", "argument_match", "required_completeness",
                             "valid_calls", "no_call_rate", "latency_p50_ms", "latency_p95_ms",
                             "by_type", "by_lang", "failures"]
    assert summary["n"] == 6
    assert summary["function_match"] == pytest.approx(4 / 6)
    assert summary["argument_match"] == pytest.approx(2 / 4)  # call and text_then_call cases only
    assert summary["required_completeness"] == pytest.approx(5 / 6)  # 1+1+2+1 of 1+1+2+2
    assert summary["valid_calls"] == pytest.approx(3 / 4)  # the text case's call lacks `content`
    assert summary["no_call_rate"] == pytest.approx(1 / 2)
    assert summary["latency_p50_ms"] == pytest.approx(35.0)
    assert summary["latency_p95_ms"] == pytest.approx(57.5)
    assert set(summary["by_type"]) == {"call", "text_then_call", "ask", "text"}
    assert summary["by_type"]["call"]["function_match"] == pytest.approx(2 / 3)
    assert summary["by_type"]["call"]["no_call_rate"] is None
    assert summary["by_type"]["ask"]["argument_match"] is None
    assert summary["by_type"]["ask"]["valid_calls"] is None
    assert summary["by_lang"]["zh"]["n"] == 2 and summary["by_lang"]["zh"]["function_match"] == 1.0
    assert summary["by_lang"]["en"]["latency_p50_ms"] == pytest.approx(25.0)
    assert summary["failures"] == [
        {"id": "case0", "reason": 'get_weather: city="Lyon", expected one of ["Paris"]'},
        {"id": "case0", "reason": "expected get_weather, got no call"},
        {"id": "case3", "reason": "expected no call, got save_file"},
    ]
    json.dumps(summary)  # the runner writes it as JSON


def test_summarize_edge_cases(make_case) -> None:
    empty = summarize([], [])
    assert empty["n"] == 0 and empty["function_match"] is None and empty["latency_p95_ms"] is None
    assert empty["by_type"] == {} and empty["failures"] == []
    with pytest.raises(ValueError):
        summarize(_scores(make_case), [1.0])


def test_format_report_renders_a_table(make_case) -> None:
    report = format_report(summarize(_scores(make_case), [10, 20, 30, 40, 50, 60]), max_failures=2)
    lines = report.splitlines()
    assert lines[0].split() == ["all", "ask", "call", "text", "text_then_call", "lang:en", "lang:zh"]
    assert lines[2].split()[:2] == ["function_match", "66.7%"]
    assert "-" in lines[3].split()  # argument match does not apply to ask/text
    assert "latency_p50_ms" in report and "35.0" in report
    assert "failures: 3" in report and "... and 1 more" in report
