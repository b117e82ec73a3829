"""Grounded values: the numbers, clock times and dates a conversation mentions, and the call
grammar that holds number/time/date arguments (and copied fields) to them."""

from __future__ import annotations

import json

import pytest

from conftest import TokenizerStepModel
from fnedge.catalog import load_catalog, parse_catalog
from fnedge.runtime.grounding import (arithmetic_chain, grounded_values, mentioned_dates, mentioned_numbers, mentioned_times,
                                      relative_date_words, zh_numeral_value)


@pytest.mark.parametrize("said, value", [
    ("十五", 15), ("两千五", 2500), ("一百零八", 108), ("六百零二", 602), ("三万", 30000), ("十", 10), ("三五", None),
])
def test_chinese_numerals(said, value):
    assert zh_numeral_value(said) == value


@pytest.mark.parametrize("text, expected", [
    ("住三个晚上", [3]),
    ("budget two hundred and fifty dollars", [250]),
    ("亮度调到百分之四十", [40]),
    ("turn it to 35%", [35]),
    ("convert 12,500 feet", [12500]),
    ("七点二公里是多少英里", [7.2]),
    ("it is minus 12 outside", [-12]),
    ("零下八度", [-8]),
    ("stay for 3 weeks", [21]),
    ("a couple of nights", [2]),
])
def test_numbers_the_user_said(text, expected):
    found = mentioned_numbers([text])
    assert all(value in found for value in expected), found


def test_a_chinese_decimal_is_offered_whole_and_kilo_is_no_thousand():
    # Offering 71 and 5 beside 71.5 let the model drop the decimal; 千 of 千克/千米 is the unit's kilo.
    assert mentioned_numbers(["体重七十一点五公斤是多少磅"]) == [71.5]
    assert 1000 not in mentioned_numbers(["一袋米10千克，合多少磅"]) and 10 in mentioned_numbers(["一袋米10千克"])
    assert mentioned_numbers(["5千米是几英里"]) == [5]
    assert 2000 in mentioned_numbers(["预算两千块"])  # a thousand that is no unit stays
    assert {3, 50} <= set(mentioned_numbers(["三点五十分叫我"]))  # a clock time is no decimal


def test_a_signed_number_is_offered_only_with_its_sign():
    assert mentioned_numbers(["it is -23 degrees fahrenheit, in celsius?"]) == [-23]
    assert mentioned_numbers(["minus 2 °F to C"]) == [-2]
    assert -5 not in mentioned_numbers(["from 3-5 pm"])  # a range's dash is no sign


def test_dates_times_and_ids_are_not_counts():
    found = mentioned_numbers(["2026-03-04 8:15 订 ab-381 两晚"])
    assert found == [2]


@pytest.mark.parametrize("text, expected", [
    ("明早六点四十叫我", ["06:40"]),
    ("晚上九点一刻提醒我", ["21:15"]),
    ("下午两点半开会", ["14:30"]),
    ("凌晨十二点", ["00:00"]),
    ("九点差五分", ["08:55", "20:55"]),
    ("wake me at 6:05am", ["06:05"]),
    ("at twenty past nine in the evening", ["21:20"]),
    ("quarter to six in the morning", ["05:45"]),
    ("nine forty-five pm please", ["21:45"]),
    ("alarm at 1 in the afternoon", ["13:00"]),
    ("one forty-two in the afternoon", ["13:42"]),  # not also the "two in the afternoon" of forty-two
    ("midnight", ["00:00"]),
    ("set it for 1945", ["19:45"]),
    ("remind me at ten", ["10:00", "22:00"]),  # no day part: both readings
    ("同时eight pm 提醒我去 nap", ["20:00"]),  # an hour word with am/pm
    ("seven a.m. tomorrow", ["07:00"]),
])
def test_clock_times_the_user_said(text, expected):
    assert mentioned_times([text]) == expected


def test_dates_with_and_without_a_year():
    assert mentioned_dates(["2026年3月9日出发"]) == (["2026-03-09"], [])
    assert mentioned_dates(["on March 9th, 2026"]) == (["2026-03-09"], [])
    assert mentioned_dates(["3月9号"]) == ([], ["03-09"])
    assert mentioned_dates(["the 9th of March"]) == ([], ["03-09"])


def test_what_a_property_may_take():
    catalog = load_catalog(None)
    date = catalog["get_weather"].properties["date"]
    assert relative_date_words(date) == ["today", "tomorrow", "day_after_tomorrow"]
    assert grounded_values(date, ["2026-01-02 去杭州"]).values == ["today", "tomorrow", "day_after_tomorrow",
                                                                   "2026-01-02"]
    time = catalog["set_alarm"].properties["time"]
    assert grounded_values(time, ["set an alarm"]) is None  # nothing said: the schema alone decides
    brightness = catalog["control_light"].properties["brightness"]
    assert grounded_values(brightness, ["卧室灯调到150和30"]).values == [30]  # 150 is past the maximum
    assert grounded_values(catalog["get_weather"].properties["city"], ["x"]) is None  # not a number/time/date


@pytest.fixture(scope="module")
def guide_factory():
    from fnedge.export.build import default_model_dir
    from fnedge.runtime.guide import GuideFactory
    if not (default_model_dir() / "tokenizer.json").is_file():
        pytest.skip("no built-in model")
    return GuideFactory(default_model_dir())


def _accepts(factory, catalog, sources, name, arguments, copied=None) -> bool:
    from llguidance import LLMatcher

    from fnedge.chat_format import TOOL_CALL_OPEN, format_call
    from fnedge.export.build import default_model_dir
    from fnedge.runtime.call_grammar import call_grammar
    from fnedge.train.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(default_model_dir())
    matcher = LLMatcher(factory.tokenizer, LLMatcher.grammar_from_lark(call_grammar(catalog, sources, factory.close_id,
                                                                                    copied)))
    ids = tokenizer.encode(format_call(name, arguments)[len(TOOL_CALL_OPEN):], add_special_tokens=False)
    return matcher.validate_tokens(ids) == len(ids)


def test_the_grammar_offers_only_the_times_and_numbers_that_were_said(guide_factory):
    catalog = load_catalog(None)
    said = ["明天早上七点半叫我起床"]
    assert _accepts(guide_factory, catalog, said, "set_alarm", {"time": "07:30"})
    assert not _accepts(guide_factory, catalog, said, "set_alarm", {"time": "06:30"})
    assert _accepts(guide_factory, catalog, ["set an alarm"], "set_alarm", {"time": "06:30"})  # none said: free
    said = ["find a hotel in Lisbon for three nights under 200"]
    assert _accepts(guide_factory, catalog, said, "search_hotels", {"city": "Lisbon", "nights": 3, "max_price": 200})
    assert not _accepts(guide_factory, catalog, said, "search_hotels", {"city": "Lisbon", "nights": 4})
    said = ["3月9号上海天气"]  # a month-day without a year: any year, that day
    assert _accepts(guide_factory, catalog, said, "get_weather", {"city": "上海", "date": "2027-03-09"})
    assert not _accepts(guide_factory, catalog, said, "get_weather", {"city": "上海", "date": "2027-03-10"})


def test_fields_the_data_copied_are_held_to_copies_or_the_reference(guide_factory):
    catalog = load_catalog(None)
    said = ["tell Mia the train is late"]
    copied = {"send_message": {"text": True}}
    assert _accepts(guide_factory, catalog, said, "send_message", {"to": "Mia", "text": "the train is late"}, copied)
    assert _accepts(guide_factory, catalog, said, "send_message", {"to": "Mia", "text": "{{text}}"}, copied)
    assert not _accepts(guide_factory, catalog, said, "send_message", {"to": "Mia", "text": "see you"}, copied)
    assert _accepts(guide_factory, catalog, said, "send_message", {"to": "Mia", "text": "see you"})  # not listed


def test_copied_arguments_are_read_from_the_training_data():
    from fnedge.data import generate_dataset
    from fnedge.data.copied_arguments import copied_arguments

    catalog = load_catalog(None)
    copied = copied_arguments(generate_dataset(catalog, n=1500, seed=5), catalog)
    assert copied["get_weather"] == {"city": False}
    assert copied["save_file"]["content"] is True  # dictated, or the {{text}} the model wrote
    assert "calculate" not in copied  # "15减8再乘72" -> "(15-8)*72" is computed, not copied
    assert "time" not in copied.get("set_alarm", {})


def test_a_field_the_data_does_not_always_copy_is_not_listed():
    from fnedge.data.copied_arguments import copied_arguments

    catalog = parse_catalog([{"type": "function", "function": {
        "name": "note", "description": "Take a note",
        "parameters": {"type": "object", "properties": {"body": {"type": "string"}}, "required": ["body"]}}}])

    def record(user: str, body: str) -> dict:
        return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "note", "arguments": {"body": body}}}]}]}
    copies = [record(f"note: buy {n} eggs", f"buy {n} eggs") for n in range(40)]
    assert copied_arguments(copies, catalog) == {"note": {"body": False}}
    assert copied_arguments(copies + [record("note the usual", "buy milk")] * 2, catalog) == {}


def test_a_small_run_keeps_the_base_models_copied_fields_for_unchanged_tools():
    """A LoRA run about one new tool shows the old tools too rarely to judge their fields; they
    keep the base model's answer, unless the tool changed or the new data says otherwise."""
    from fnedge.data.copied_arguments import copied_arguments

    def note_tool(description: str) -> dict:
        return {"type": "function", "function": {"name": "note", "description": description, "parameters": {
            "type": "object", "properties": {"body": {"type": "string"}}, "required": ["body"]}}}
    catalog = parse_catalog([note_tool("Take a note")])
    inherited = {"note": {"body": True}}
    assert copied_arguments([], catalog) == {}
    assert copied_arguments([], catalog, inherited, catalog) == {"note": {"body": True}}
    changed = parse_catalog([note_tool("Take a note, in your own words")])
    assert copied_arguments([], catalog, inherited, changed) == {}

    def record(user: str, body: str) -> dict:
        return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "note", "arguments": {"body": body}}}]}]}
    rewritten = [record(f"note: buy {n} eggs", f"eggs x{n}") for n in range(40)]
    assert copied_arguments(rewritten, catalog, inherited, catalog) == {}  # enough data: its own answer


def test_a_tool_whose_required_value_was_not_said_cannot_be_called(guide_factory):
    from fnedge.runtime.call_grammar import callable_tools

    catalog = load_catalog(None)
    assert "set_alarm" not in callable_tools(catalog, ["帮我设个闹钟"]).names
    assert "set_alarm" in callable_tools(catalog, ["帮我设个六点的闹钟"]).names
    assert "convert_units" not in callable_tools(catalog, ["convert miles to km"]).names
    only_alarm = parse_catalog([catalog["set_alarm"].to_openai()])
    assert guide_factory.guide(only_alarm, ["set an alarm"]).tool_choice == "none"  # it must ask
    assert guide_factory.guide(only_alarm, ["set an alarm"], tool_choice="required").tool_choice == "required"
    # optional values nobody said are left out, never invented
    assert not _accepts(guide_factory, catalog, ["hotels in Oslo"], "search_hotels", {"city": "Oslo", "nights": 2})
    assert _accepts(guide_factory, catalog, ["hotels in Oslo"], "search_hotels", {"city": "Oslo"})


def test_every_training_call_is_to_a_callable_tool():
    from fnedge.data import generate_dataset
    from fnedge.runtime.call_grammar import callable_tools

    catalog = load_catalog(None)
    checked = 0
    for record in generate_dataset(catalog, n=1500, seed=21):
        messages = record["messages"]
        for position, message in enumerate(messages):
            sources = [m["content"] for m in messages[:position] if m["role"] in ("user", "tool")]
            for call in message.get("tool_calls") or []:
                assert call["function"]["name"] in callable_tools(catalog, sources).names, (sources, call)
                checked += 1
    assert checked > 300


def test_a_required_date_is_unsaid_when_no_day_is_named_in_any_form():
    from fnedge.runtime.call_grammar import callable_tools
    from fnedge.runtime.grounding import says_a_day

    named = ["明儿个下午开会", "dinner fri at 7", "下周三之前交", "后儿9 AM", "2025-08-20 15:30", "book club 2moro",
             "team meeting tomrorow night", "lunch this afternon", "周末去爬山", "15号开会", "March 3rd"]
    assert all(says_a_day([text]) for text in named), [t for t in named if not says_a_day([t])]
    assert not any(says_a_day([text]) for text in ["schedule design review", "Schedule weekly sync", "this meeting",
                                                   "sunny and warm", "下午三点开会"])
    catalog = load_catalog(None)
    assert "create_event" not in callable_tools(catalog, ["schedule design review at 3pm"]).names  # which day?
    assert "create_event" in callable_tools(catalog, ["schedule design review tomorrow at 3pm"]).names
    assert "get_weather" in callable_tools(catalog, ["weather in Oslo"]).names  # an optional date: today


class PrefersAlarm(TokenizerStepModel):
    """A stand-in model that always wants set_alarm: it opens a call, names set_alarm, and
    otherwise writes "?" and stops."""

    def __init__(self, tokenizer) -> None:
        from fnedge.chat_format import TOOL_CALL_OPEN
        super().__init__(tokenizer)
        self.open_id = tokenizer.convert_tokens_to_ids(TOOL_CALL_OPEN)
        self.question = tokenizer.encode("?", add_special_tokens=False)[0]
        self.preferred = tokenizer.encode('{"name": "set_alarm"', add_special_tokens=False)

    def next_logits(self):
        import numpy as np
        logits = np.zeros(len(self.tokenizer), dtype=np.float32)
        if not self.reply:
            logits[self.open_id], logits[self.question] = 10, 5
        elif self.reply == [self.question]:
            logits[self.eos_id] = 10
        else:
            for token in self.preferred:
                logits[token] += 3  # whatever the grammar allows, set_alarm's pieces first
        return logits


def test_a_reply_that_would_call_a_tool_without_its_required_value_asks_instead(guide_factory):
    from fnedge.chat_format import parse_assistant
    from fnedge.export.build import default_model_dir
    from fnedge.runtime.generation import timed_generation
    from fnedge.train.tokenizer import load_tokenizer

    catalog = load_catalog(None)
    model = PrefersAlarm(load_tokenizer(default_model_dir()))
    unsaid = timed_generation(model, "x", 64, guide_factory.guide(catalog, ["wake me up tomorrow"]))
    assert parse_assistant(unsaid.text).calls == [] and unsaid.text == "?"
    said = timed_generation(model, "x", 64, guide_factory.guide(catalog, ["wake me up at 6:15 tomorrow"]))
    calls = parse_assistant(said.text).calls
    assert [c["name"] for c in calls] == ["set_alarm"] and calls[0]["arguments"]["time"] in ("06:15", "18:15")


def test_units_and_languages_named_in_words():
    from fnedge.runtime.grounding import mentioned_languages, mentioned_units

    assert mentioned_units(["3千米等于多少英尺"]) == ["km", "ft"]  # 千米 is km, not 米
    assert mentioned_units(["I'm 70 kg, how many pounds"]) == ["kg", "lb"]  # the m of I'm is no unit
    assert mentioned_units(["98.6°F in celsius"]) == ["f", "c"]
    assert mentioned_languages(["请翻成韩语", "and in German?"]) == ["ko", "de"]
    catalog = load_catalog(None)
    target = catalog["translate"].properties["target_lang"]
    assert grounded_values(target, ["“早安”用法语怎么说"]).values == ["fr", "zh"]  # named, and the user's own
    assert grounded_values(target, ["what does 'merci' mean"]).values == ["en"]
    error = '{"error": "missing required argument \'target_lang\'"}'
    assert grounded_values(target, ["“Can I see the menu”是什么意思", error]).values == ["zh"]  # the user's, not the result's
    unit = catalog["convert_units"].properties["from_unit"]
    assert grounded_values(unit, ["5公里是几英里"]).values == ["km", "mi"]
    assert grounded_values(unit, ["5 leagues in furlongs"]) is None  # nothing it knows: free


def test_a_malformed_copied_arguments_entry_is_a_clear_error(tmp_path):
    from fnedge.errors import FnedgeError
    from fnedge.runtime.build import Build

    build = Build(root=tmp_path, manifest={"model": {"copied_arguments": {"send_message": ["text"]}}},
                  catalog=load_catalog(None))
    with pytest.raises(FnedgeError, match=r"manifest.json: model.copied_arguments must map tools"):
        build.copied_arguments


def test_expression_operands_are_the_numbers_said_in_order():
    from fnedge.runtime.grounding import expression_operands

    assert expression_operands(["72减去15，再除以4"]) == ["72", "15", "4"]
    assert expression_operands(["work out 9219x33 and 82-362.77"]) == ["9219", "33", "82", "362.77"]
    assert expression_operands(["六十乘以91", "and 1,250 plus twenty-one"]) == ["60", "91", "1250", "21"]
    # "and" joins two numbers except after hundred or thousand, where it is part of one
    assert expression_operands(["add up fifty-seven and eight"]) == ["57", "8"]
    assert expression_operands(["one hundred and sixty-three and 89"]) == ["163", "89"]
    assert expression_operands(["two thousand and five over two hundred and fifty"]) == ["2005", "250"]


def test_an_expression_may_only_use_the_numbers_said_each_once_in_order(guide_factory):
    catalog = load_catalog(None)
    said = ["what is 250 divided by 8"]
    assert _accepts(guide_factory, catalog, said, "calculate", {"expression": "250/8"})
    assert _accepts(guide_factory, catalog, said, "calculate", {"expression": "8/250"})  # the reverse order
    assert not _accepts(guide_factory, catalog, said, "calculate", {"expression": "26*50%"})  # unsaid numbers
    assert not _accepts(guide_factory, catalog, said, "calculate", {"expression": "250/250"})  # one number twice
    said = ["9减4的差乘以12再加3"]
    assert _accepts(guide_factory, catalog, said, "calculate", {"expression": "(9-4)*12+3"})
    assert _accepts(guide_factory, catalog, said, "calculate", {"expression": "9-4*(12+3)"})  # grouping is the model's
    assert not _accepts(guide_factory, catalog, said, "calculate", {"expression": "9-4*12"})  # one message: every number
    assert not _accepts(guide_factory, catalog, said, "calculate", {"expression": "9-4*12%"})  # no percent said
    assert not _accepts(guide_factory, catalog, said, "calculate", {"expression": "9/4*12+3"})  # no division said
    assert not _accepts(guide_factory, catalog, said, "calculate", {"expression": "9-12*4"})  # out of order
    assert _accepts(guide_factory, catalog, ["1321的10%多少"], "calculate", {"expression": "1321*10%"})
    assert not _accepts(guide_factory, catalog, ["3993 minus eighty-five"], "calculate", {"expression": "3993*85"})
    assert _accepts(guide_factory, catalog, ["calculate something"], "calculate", {"expression": "2+2"})  # none said: free


def test_one_messages_calculation_uses_every_number_of_its_arithmetic_run(guide_factory):
    catalog = load_catalog(None)
    said = ["1850块钱以内的酒店，还有21加上9463减48等于几"]  # the price is another clause
    assert arithmetic_chain(said) == ["21", "9463", "48"]
    assert _accepts(guide_factory, catalog, said, "calculate", {"expression": "21+9463-48"})
    assert not _accepts(guide_factory, catalog, said, "calculate", {"expression": "21+9463"})
    assert not _accepts(guide_factory, catalog, said, "calculate", {"expression": "1850-48"})
    assert arithmetic_chain(["calc一下657除以五千五百九十七乘46"]) == ["657", "5597", "46"]  # not the 一 of 一下
    assert arithmetic_chain(["whats 650541÷469.05 and find somewhere to stay for 2 nights"]) == ["650541", "469.05"]
    assert arithmetic_chain(["1321的10%多少"]) is None  # no operator between: any subset, as before
    # More than one message (an answer to a question, a tool result): any subset, as before.
    conversation = ["算个数", "21加上9463减48"]
    assert arithmetic_chain(conversation) is None
    assert _accepts(guide_factory, catalog, conversation, "calculate", {"expression": "21+9463"})


def test_every_training_expression_fits_the_expression_grammar(guide_factory):
    from fnedge.data import generate_dataset

    catalog = load_catalog(None)
    checked = 0
    for record in generate_dataset(catalog, n=1500, seed=21):
        messages = record["messages"]
        for position, message in enumerate(messages):
            if message.get("weight") == 0:
                continue  # a deliberate mistake the data then corrects
            sources = [m["content"] for m in messages[:position] if m["role"] in ("user", "tool")]
            for call in message.get("tool_calls") or []:
                if call["function"]["name"] == "calculate":
                    arguments = json.loads(call["function"]["arguments"])
                    assert _accepts(guide_factory, catalog, sources, "calculate", arguments), (sources, arguments)
                    checked += 1
    assert checked > 40
