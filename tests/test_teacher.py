"""Tests for the teacher hook (fnedge/data/teacher.py): checking a teacher's conversations and mixing them in."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from fnedge.catalog import load_catalog
from fnedge.data import generate_dataset, read_jsonl, split_by_template, write_jsonl
from fnedge.data.quality import record_problem
from fnedge.data.teacher import load_teacher, mix
from fnedge.errors import FnedgeError


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def generated(catalog):
    return generate_dataset(catalog, n=200, seed=5)


def call_record(name: str, arguments: dict, user: str = "weather in Oslo?") -> dict:
    """A teacher row as a larger model would write it: only messages, OpenAI-style calls."""
    return {"messages": [
        {"role": "user", "content": user},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 3}"},
        {"role": "assistant", "content": "It is 3 degrees in Oslo."}]}


def write_lines(path, rows) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")


def test_valid_records_kept_and_tagged(tmp_path, catalog):
    path = tmp_path / "teacher.jsonl"
    good = call_record("get_weather", {"date": "today", "city": "Oslo"})  # out of schema order: fixed, not dropped
    zh = call_record("translate", {"text": "你好", "target_lang": "en"}, user="把你好翻译成英文")
    write_lines(path, [good, zh, {**zh, "kind": "custom", "id": "z1"}])
    records, report = load_teacher(path, catalog)
    assert report.kept == 2 and report.dropped == {"duplicate": 1}
    first, second = records
    assert first["source"] == "teacher" and first["kind"] == "teacher" and first["tools"] == ["get_weather"]
    assert first["lang"] == "en" and second["lang"] == "zh"
    arguments = first["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert list(json.loads(arguments)) == ["city", "date"]
    assert first["messages"][1]["content"] == ""
    assert all(record_problem(r, catalog) is None for r in records)
    assert len({r["id"] for r in records}) == 2 and all(r["template"] for r in records)


def test_invalid_calls_dropped_and_counted(tmp_path, catalog):
    path = tmp_path / "teacher.jsonl"
    write_lines(path, [call_record("get_weather", {"city": "Oslo"}),
                       call_record("launch_rocket", {"city": "Oslo"}),           # unknown tool
                       call_record("translate", {"text": "hello there"}),          # missing target_lang
                       {"messages": [{"role": "wizard", "content": "hi"}]},       # malformed
                       ])
    records, report = load_teacher(path, catalog)
    assert len(records) == 1 and report.kept == 1
    assert report.dropped == {"invalid_call": 2, "malformed": 1}
    text = " ".join(report.examples)
    assert "line 2" in text and "launch_rocket" in text and "target_lang" in text


def test_garbage_line_skipped(tmp_path, catalog):
    path = tmp_path / "teacher.jsonl"
    write_lines(path, [call_record("get_weather", {"city": "Oslo"}), "{not json at all",
                       call_record("get_weather", {"city": "Bergen"}, user="weather in Bergen?")])
    records, report = load_teacher(path, catalog)
    assert report.kept == 2 and report.dropped == {"malformed_json": 1}
    assert report.examples[0].startswith("line 2")


def test_all_garbage_is_an_error(tmp_path, catalog):
    path = tmp_path / "garbage.jsonl"
    path.write_text("nope\n{broken\n", encoding="utf-8")
    with pytest.raises(FnedgeError, match="garbage.jsonl.*line 1"):
        load_teacher(path, catalog)


def test_generated_records_pass_as_teacher_records(tmp_path, catalog, generated):
    # The generated format is the teacher format, weight-0 mistakes (error_correction) included.
    path = tmp_path / "teacher.jsonl"
    write_jsonl(generated, path)
    records, report = load_teacher(path, catalog)
    assert report.kept == len(generated), report.examples
    assert {r["kind"] for r in records} == {r["kind"] for r in generated}


def test_mix_weight_and_determinism(catalog):
    generated = generate_dataset(catalog, n=200, seed=1) * 5  # 1000 rows; content does not matter here
    teacher = [{**call_record("get_weather", {"city": c}), "id": f"t{i}", "source": "teacher", "kind": "teacher"}
               for i, c in enumerate(["Oslo", "Bergen", "Paris"])]
    mixed = mix(generated, teacher, 0.25, seed=3)
    n_teacher = sum(1 for r in mixed if r.get("source") == "teacher")
    assert len(mixed) - n_teacher == 1000
    assert abs(n_teacher / len(mixed) - 0.25) < 0.001
    assert max(Counter(r["id"] for r in mixed if r.get("source") == "teacher").values()) == 1  # unique ids
    assert Counter(r["messages"][0]["content"] for r in mixed if r.get("source") == "teacher").most_common()[-1][1] \
        >= n_teacher // 3  # repeats spread evenly
    assert mix(generated, teacher, 0.25, seed=3) == mixed
    assert mix(generated, teacher, 0.25, seed=4) != mixed
    unmixed = mix(generated, teacher, 0.0, seed=3)
    assert len(unmixed) == 1000 and not any(r.get("source") == "teacher" for r in unmixed)


@pytest.mark.parametrize("weight", [1.5, 1.0, -0.1])
def test_mix_weight_out_of_range(weight):
    with pytest.raises(FnedgeError, match="weight"):
        mix([], [], weight, seed=0)


def test_cli_mix(tmp_path, generated):
    from typer.testing import CliRunner

    from fnedge.data.cli import data_app

    gen_path, teacher_path, out = tmp_path / "gen.jsonl", tmp_path / "teacher.jsonl", tmp_path / "mixed.jsonl"
    write_jsonl(generated, gen_path)
    write_lines(teacher_path, [call_record("get_weather", {"city": "Oslo"}), "garbage",
                               call_record("launch_rocket", {})])
    runner = CliRunner()
    result = runner.invoke(data_app, ["mix", str(gen_path), str(teacher_path), "--weight", "0.2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "kept 1" in output and "malformed_json 1" in output and "invalid_call 1" in output
    assert "200 generated, 50 teacher" in output
    mixed = read_jsonl(out)
    assert len(mixed) == 250 and sum(r.get("source") == "teacher" for r in mixed) == 50
    train, dev = split_by_template(mixed, 0.1, 0)  # what `fnedge train --data` does with it
    assert train
    result = runner.invoke(data_app, ["mix", str(gen_path), str(teacher_path), "--weight", "1.5", "--out", str(out)])
    assert result.exit_code != 0
