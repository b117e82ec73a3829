"""Tests for the training-data generator (fnedge/data)."""

from __future__ import annotations

import json
import re
import warnings

import pytest

from fnedge.catalog import call_problem, load_catalog, parse_catalog
from fnedge.chat_format import TEXT_REFERENCE, render
from fnedge.data import (DataConfig, DataWarning, GenerationReport, generate_dataset, load_hints,
                         read_jsonl, record_problem, split_by_template, stats, write_jsonl)
from fnedge.data.config import DEFAULT_RATIOS
from fnedge.data.generate import quotas
from fnedge.data.hints import HINTS_DIR
from fnedge.data.quality import learned_calls, slot_values
from fnedge.data.surface import en_number, say_time, zh_number
from fnedge.errors import FnedgeError

SMART_HOME = HINTS_DIR / "smart_home.catalog.json"
SMART_HOME_HINTS = HINTS_DIR / "smart_home.hints.json"


@pytest.fixture(scope="module")
def default_records():
    return generate_dataset(load_catalog(), n=3000, seed=7)


def args_of(message):
    return [json.loads(c["function"]["arguments"]) for c in message.get("tool_calls") or []]


def test_deterministic_by_seed():
    a = generate_dataset(n=400, seed=3)
    b = generate_dataset(n=400, seed=3)
    c = generate_dataset(n=400, seed=4)
    assert a == b
    assert a != c
    assert len({r["id"] for r in a}) == 400


def test_record_shape(default_records):
    for record in default_records:
        assert set(record) == {"id", "kind", "lang", "tools", "template", "messages"}
        assert record["lang"] in ("zh", "en", "mix")
        assert record["messages"][-1]["role"] == "assistant"
        assert all(m["role"] != "system" for m in record["messages"])
        render(record["messages"])  # renders without error


def test_every_learned_call_validates(default_records):
    catalog = load_catalog()
    for record in default_records:
        assert record_problem(record, catalog) is None, record
        for name, arguments in learned_calls(record):
            assert call_problem({"name": name, "arguments": arguments}, catalog) is None
            assert list(arguments) == [p for p in catalog[name].properties if p in arguments]  # schema order


def test_kinds_follow_ratios(default_records):
    counts = stats(default_records)["kind"]
    wanted = quotas(3000, DEFAULT_RATIOS)
    for kind, share in DEFAULT_RATIOS.items():
        assert abs(counts.get(kind, 0) - wanted[kind]) <= 0.01 * 3000, (kind, counts)


def test_languages_are_mixed(default_records):
    langs = stats(default_records)["lang"]
    assert langs["zh"] > 800 and langs["en"] > 800 and langs["mix"] > 150


def test_deferred_uses_text_reference(default_records):
    deferred = [r for r in default_records if r["kind"] == "deferred"]
    assert deferred
    for record in deferred:
        last = record["messages"][-1]
        assert len(last["content"]) >= 20
        (arguments,) = args_of(last)
        assert TEXT_REFERENCE in arguments.values()
        assert TEXT_REFERENCE not in last["content"]


def test_ask_and_ambiguous_make_no_call(default_records):
    for record in default_records:
        if record["kind"] in ("ask", "ambiguous", "no_call"):
            last = record["messages"][-1]
            assert not last.get("tool_calls") and last["content"].strip()
        if record["kind"] in ("ask", "ambiguous"):
            assert re.search(r"[?？]", record["messages"][-1]["content"]), record


def test_ask_then_call_merges_both_turns(default_records):
    samples = [r for r in default_records if r["kind"] == "ask_then_call"]
    assert samples
    for record in samples:
        roles = [m["role"] for m in record["messages"]]
        assert roles == ["user", "assistant", "user", "assistant"]
        assert not record["messages"][1].get("tool_calls") and record["messages"][3]["tool_calls"]


def test_multi_turn_booking_uses_an_id_from_the_search_result(default_records):
    bookings = 0
    for record in default_records:
        messages = record["messages"]
        for i, message in enumerate(messages):
            if message["role"] != "assistant" or not message.get("tool_calls"):
                continue
            if message["tool_calls"][0]["function"]["name"] != "book_hotel" or record["kind"] != "multi_turn":
                continue
            results = [json.loads(m["content"]) for m in messages[:i] if m["role"] == "tool"]
            hotels = [h for result in results if isinstance(result, list) for h in result]
            if not hotels:
                continue  # a booking that the user asked for directly, by id
            bookings += 1
            (arguments,) = args_of(message)
            assert arguments["hotel_id"] in {h["id"] for h in hotels}
    assert bookings > 20


def test_verbatim_values_are_copied_from_the_user(default_records):
    verbatim = {"get_weather": ["city"], "send_message": ["to"], "control_light": ["room"],
                "play_music": ["query"], "search_hotels": ["city"], "translate": ["text"], "save_file": ["path"]}
    for record in default_records:
        if record["kind"] != "single_call":
            continue
        (name,) = record["tools"]
        (arguments,) = args_of(record["messages"][-1])
        for param in verbatim.get(name, []):
            if param in arguments:
                assert arguments[param] in record["messages"][0]["content"], record


def test_normalized_times_and_dates(default_records):
    for record in default_records:
        for name, arguments in learned_calls(record):
            if "time" in arguments:
                assert re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", arguments["time"])
            for key in ("date", "check_in"):
                if key in arguments:
                    assert re.fullmatch(r"today|tomorrow|day_after_tomorrow|\d{4}-\d{2}-\d{2}", arguments[key])
            if name in ("search_hotels", "book_hotel") and "check_in" in arguments:
                assert arguments["check_in"] != "day_after_tomorrow"  # not allowed by that schema


def test_error_correction_marks_the_mistake_unlearned(default_records):
    catalog = load_catalog()
    fixes = [r for r in default_records if r["kind"] == "error_correction" and r["messages"][-1].get("tool_calls")]
    assert fixes
    for record in fixes:
        bad = record["messages"][1]
        assert bad.get("weight") == 0
        (arguments,) = args_of(bad)
        error = json.loads(record["messages"][2]["content"])["error"]
        assert error
        name = bad["tool_calls"][0]["function"]["name"]
        assert arguments != args_of(record["messages"][-1])[0]
        assert call_problem({"name": name, "arguments": arguments}, catalog) or "expected" in error


def test_surface_forms():
    assert zh_number(15) == "十五" and zh_number(105) == "一百零五" and zh_number(2000, liang=True) == "两千"
    assert en_number(42) == "forty-two"
    import random
    rng = random.Random(0)
    for _ in range(200):
        text = say_time(7, 30, "zh", rng)
        assert any(k in text for k in ("7", "七")), text
        assert not any(k in text for k in ("下午", "晚上")), text
        text = say_time(19, 0, "en", rng)
        assert "am" not in text.lower() and "morning" not in text, text


def test_second_catalog_with_enums_bounds_and_booleans():
    catalog = load_catalog(SMART_HOME)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        plain = generate_dataset(catalog, n=600, seed=1)
        hinted = generate_dataset(catalog, n=600, seed=1, hints=SMART_HOME_HINTS)
    for records in (plain, hinted):
        assert len(records) == 600
        assert "deferred" not in stats(records)["kind"]  # no text tool: its share went elsewhere
        names = set()
        for record in records:
            assert record_problem(record, catalog) is None
            names |= {name for name, _ in learned_calls(record)}
        assert names == set(catalog.names)
    booleans = [a["locked"] for r in hinted for n, a in learned_calls(r) if n == "lock_door"]
    assert True in booleans and False in booleans
    assert any(r["template"].startswith("set_thermostat.g") for r in hinted)


def test_unfillable_tool_is_skipped_with_a_clear_warning():
    catalog = parse_catalog([
        {"name": "post_json", "description": "Post a payload.", "parameters": {"type": "object", "properties": {
            "payload": {"type": "object"}}, "required": ["payload"]}},
        {"name": "set_volume", "description": "Set volume.", "parameters": {"type": "object", "properties": {
            "level": {"type": "integer", "minimum": 0, "maximum": 10}}, "required": ["level"]}},
    ], source="odd.json")
    with pytest.warns(DataWarning, match=r"tool 'post_json'.*argument 'payload' is a free-form object"):
        records = generate_dataset(catalog, n=100, seed=0)
    assert records and all("post_json" not in r["tools"] for r in records)
    only_bad = parse_catalog(catalog.to_openai()[:1], source="odd.json")
    with pytest.raises(FnedgeError, match="no tool can be filled"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        generate_dataset(only_bad, n=10, seed=0)


def test_bad_hints_name_the_tool_and_template():
    hints = {"tools": {"get_weather": {"templates": [{"en": ["weather in {town}"]}]}}}
    with pytest.raises(FnedgeError, match=r"tool 'get_weather'.*\{town\}"):
        generate_dataset(n=10, hints=hints)
    with pytest.raises(FnedgeError, match="unknown key"):
        load_hints({"tools": {"get_weather": {"tempaltes": []}}})


def test_user_hints_extend_the_builtin_ones():
    hints = {"tools": {"get_weather": {"templates": [{"en": ["yo what's up with the sky over {city}"]}]}}}
    config = DataConfig(ratios={"single_call": 1.0})
    records = generate_dataset(n=1500, seed=2, hints=hints, config=config)
    assert any("sky over" in r["messages"][0]["content"] for r in records)
    assert any("weather" in r["messages"][0]["content"].lower() for r in records)


def test_split_shares_no_template_or_value():
    records = generate_dataset(n=4000, seed=5)
    train, dev = split_by_template(records, dev_fraction=0.2, seed=0)
    assert train and dev
    train_templates = {t for r in train for t in r["template"].split("|")}
    dev_templates = {t for r in dev for t in r["template"].split("|")}
    assert not train_templates & dev_templates
    train_values = set().union(*(slot_values(r) for r in train))
    dev_values = set().union(*(slot_values(r) for r in dev))
    assert not train_values & dev_values


def test_write_and_read_jsonl_roundtrip(tmp_path):
    records = generate_dataset(n=50, seed=0)
    path = tmp_path / "sub" / "data.jsonl"
    write_jsonl(records, path)
    assert read_jsonl(path) == records
    assert not [p for p in path.parent.iterdir() if p.name != "data.jsonl"]  # no temp file left


def test_report_counts_drops():
    report = GenerationReport()
    generate_dataset(n=500, seed=0, report=report)
    assert sum(report.produced.values()) == 500
    assert report.dropped.get("invalid", 0) == 0, report.invalid_examples


def test_yaml_hints_and_cli(tmp_path):
    from typer.testing import CliRunner

    from fnedge.data.cli import data_app

    hints = tmp_path / "hints.yaml"
    hints.write_text("tools:\n  play_radio:\n    slots:\n      station: {pool: [Jazz FM, BBC Radio 1]}\n"
                     "    templates:\n      - en: ['tune in to {station}', 'put on {station} radio']\n", encoding="utf-8")
    out = tmp_path / "data.jsonl"
    runner = CliRunner()
    result = runner.invoke(data_app, ["generate", "--catalog", str(SMART_HOME), "--hints", str(hints),
                                      "--n", "300", "--seed", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = read_jsonl(out)
    assert len(records) == 300
    stations = {a["station"] for r in records for n, a in learned_calls(r) if n == "play_radio"}
    assert stations & {"Jazz FM", "BBC Radio 1"}
    result = runner.invoke(data_app, ["stats", str(out), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["records"] == 300
    result = runner.invoke(data_app, ["generate", "--catalog", str(tmp_path / "missing.json"), "--out", str(out)])
    assert result.exit_code == 1
