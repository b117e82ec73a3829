"""Generalist data and mode: synthesized catalogs, tools in the system turn, the generalist flag."""

import json
import random
import re
from types import SimpleNamespace

import pytest

from conftest import TINY
from fnedge.catalog import call_problem, parse_catalog
from fnedge.chat_format import TOOLS_PREAMBLE, render
from fnedge.data.generalist import (CONCEPTS, NAME_STYLES, carries_tools, generate_generalist, synthesize_catalog,
                                    synthesize_tool)
from fnedge.train.config import TrainConfig


@pytest.fixture(scope="module")
def records():
    return generate_generalist(120, seed=3)


def test_every_synthesized_catalog_validates_in_every_name_style():
    rng = random.Random(0)
    for concept in CONCEPTS:
        for style in NAME_STYLES:
            tool = synthesize_tool(concept, style, rng)
            catalog = parse_catalog([tool.schema])
            name = catalog.names[0]
            expected = {"dotted": r"^[a-z]+\.[a-z_]+$", "camel": r"^[a-z]+[A-Z][A-Za-z]*$", "snake": r"^[a-z]+(_[a-z]+)+$"}
            assert re.match(expected[style], name), (style, name)
    for size in range(1, 6):
        tools = synthesize_catalog(rng, size)
        assert len(parse_catalog([t.schema for t in tools]).names) == size


def test_the_concepts_cover_every_parameter_type():
    kinds = set()
    for concept in CONCEPTS:
        for param in concept.params:
            schema = param.schema
            kinds.add("enum" if "enum" in schema else
                      f"array:{schema['items']['type']}" if schema["type"] == "array" else schema["type"])
    assert {"string", "integer", "number", "boolean", "enum", "array:string", "array:number"} <= kinds


def test_every_reference_call_validates_against_its_own_tools(records):
    assert len(records) == 120 and carries_tools(records)
    kinds = {r["kind"] for r in records}
    assert {"single_call", "irrelevant"} <= kinds
    several = 0
    for record in records:
        catalog = parse_catalog(record["tool_schemas"])
        reply = record["messages"][-1]
        calls = reply.get("tool_calls") or []
        if record["kind"] == "single_call":
            assert len(calls) == 1
            several += len(catalog.names) > 1
        else:
            assert not calls and reply["content"]
        for call in calls:
            function = call["function"]
            assert call_problem({"name": function["name"], "arguments": json.loads(function["arguments"])},
                                catalog) is None
    assert several > 10  # "multiple": one tool picked among several
    assert any(r["lang"] == "zh" for r in records)


def test_an_irrelevant_request_can_be_drawn_from_a_catalog_tools_domain():
    """A near miss (another tool idea of a catalog tool's domain) is what tempts a wrong call."""
    rng = random.Random(0)
    for concept in CONCEPTS:
        (outsider,) = synthesize_catalog(rng, 1, exclude=frozenset({concept.noun}), domains=frozenset({concept.domain}))
        siblings = [c for c in CONCEPTS if c.domain == concept.domain and c.noun != concept.noun]
        assert outsider.concept in siblings if siblings else outsider.concept.noun != concept.noun


def test_records_render_with_their_tools_in_the_system_turn(records):
    for record in records[:20]:
        text = render(record["messages"], record["tool_schemas"])
        system = text.split("<|im_end|>", 1)[0]
        assert system.startswith("<|im_start|>system\n") and TOOLS_PREAMBLE in system
        for tool in record["tool_schemas"]:
            assert json.dumps(tool, ensure_ascii=False) in system


def test_generation_is_deterministic_by_seed():
    assert generate_generalist(10, seed=5) == generate_generalist(10, seed=5)
    assert generate_generalist(10, seed=5) != generate_generalist(10, seed=6)


def test_the_generalist_flag_reaches_fnedge_json_and_the_runtime_prompt(tiny_model, tmp_path):
    """A LoRA run on data that carries tool schemas records generalist: true, and the runtime
    then puts each request's tools into the prompt (a catalog-trained model does not)."""
    from fnedge.data.generate import write_jsonl
    from fnedge.runtime.engine import Assistant
    from fnedge.train.lora import train_lora

    # One one-parameter tool per record keeps the prompts short for the tiny model's tokenizer.
    tool = {"type": "function", "function": {"name": "geo.local_time", "description": "Local time.",
                                             "parameters": {"type": "object", "properties": {
                                                 "city": {"type": "string"}}, "required": ["city"]}}}
    data = [{"id": f"g{i}", "kind": "single_call", "lang": "en", "tools": ["geo.local_time"], "template": f"t{i}",
             "tool_schemas": [tool],
             "messages": [{"role": "user", "content": f"time in {city}"},
                          {"role": "assistant", "content": "", "tool_calls": [
                              {"id": "c", "type": "function", "function": {
                                  "name": "geo.local_time", "arguments": json.dumps({"city": city})}}]}]}
            for i, city in enumerate(["Oslo", "Lima", "Cairo", "Perth", "Quito", "Seoul"])]
    path = tmp_path / "generalist.jsonl"
    write_jsonl(data, path)
    config = TrainConfig.from_dict({**TINY, "data": str(path), "base": str(tiny_model), "max_tokens": 512,
                                    "epochs": 1.0, "dev_fraction": 0.0, "save_dtype": "float32",
                                    "lora": {"rank": 2, "alpha": 4, "target_modules": ["q_proj"]}})
    model_dir = train_lora(config, tmp_path / "run")
    record = json.loads((model_dir / "fnedge.json").read_text())
    assert record["generalist"] is True and record["copied_arguments"] == {}

    assistant = Assistant.from_model_dir(model_dir)
    assert assistant.generalist
    request = [{"role": "user", "content": "what time is it in Oslo"}]
    prompt = assistant.prompt(request, [tool])
    assert TOOLS_PREAMBLE in prompt and '"geo.local_time"' in prompt
    assert assistant.catalog_for([tool]).names == ["geo.local_time"]
    reply = assistant.respond(request, [])  # a request that offers no tools: prose, never a call
    assert not reply.turn.calls and not reply.turn.malformed

    catalog_model = Assistant.from_model_dir(tiny_model)
    assert not catalog_model.generalist and TOOLS_PREAMBLE not in catalog_model.prompt(request, [tool])


def test_a_generalist_config_generates_generalist_data(tmp_path):
    from fnedge.train.trainer import prepare_data, training_record, RunState

    config = TrainConfig.from_dict({**TINY, "generalist": True, "n_samples": 30, "dev_fraction": 0.1})
    train_records, dev_records = prepare_data(config, tmp_path)
    assert carries_tools(train_records + dev_records) and len(train_records) + len(dev_records) <= 30
    assert training_record(config, RunState(), "test")["generalist"] is True


def test_a_generalist_reads_schemas_other_runtimes_accept():
    """BFCL-style schemas (`optional`, `format`, a default of the wrong type, a property with no
    type, an object requiring keys it does not define) still make a request catalog; the prompt
    keeps them as sent."""
    from fnedge.runtime.engine import request_catalog

    tools = [{"type": "function", "function": {"name": "db.backup", "description": "Back up.", "parameters": {
        "type": "object", "properties": {
            "when": {"type": "string", "format": "date-time", "optional": True},
            "full": {"type": "boolean", "default": "False"},
            "data": {"description": "Anything."},
            "owner": {"type": "object", "required": ["name"]}}, "required": ["when", "data"]}}}]
    catalog = request_catalog(tools)
    assert catalog.names == ["db.backup"]
    call = {"name": "db.backup", "arguments": {"when": "now", "full": True, "data": "my_data", "owner": {}}}
    assert call_problem(call, catalog) is None
    assert call_problem({"name": "db.backup", "arguments": {"when": "now"}}, catalog)  # `data` is still required


def test_eval_gives_a_generalist_the_default_tools_too():
    from fnedge.eval.cases import load_cases
    from fnedge.eval.runner import run_eval
    from conftest import SHARED

    seen = []

    class Recorder:
        generalist = True

        def respond(self, messages, tools=None):
            seen.append(tools)
            from fnedge.chat_format import parse_assistant
            return SimpleNamespace(turn=parse_assistant("ok"), latency_ms=1.0)

    cases = load_cases(SHARED / "eval" / "dev.jsonl")[:2]
    run_eval(cases, Recorder(), show_progress=False)
    assert all(tools and isinstance(tools, list) for tools in seen)


def test_generalist_conversations_become_cases_with_their_own_tools(records):
    """`fnedge data cases` on generalist data: each case asks with its record's tools, and an
    irrelevant request is a `text` case (the model must decline it)."""
    from fnedge.data.eval_cases import eval_cases

    cases = {case["id"]: case for case in eval_cases(records, "default")}
    for record in records:
        case = cases[record["id"]]
        assert case["tools"] == record["tool_schemas"]
        assert case["expect"]["type"] == ("call" if record["kind"] == "single_call" else "text")
