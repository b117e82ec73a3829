"""The call grammar and the decoding guide: every call a guided model writes parses and validates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import TokenizerStepModel
from fnedge.catalog import call_problem, load_catalog, parse_catalog
from fnedge.chat_format import TOOL_CALL_OPEN, format_call, parse_assistant
from fnedge.data import generate_dataset
from fnedge.export.build import default_model_dir
from fnedge.runtime.call_grammar import call_grammar, is_copied
from fnedge.runtime.generation import timed_generation
from fnedge.runtime.guide import GuideFactory
from fnedge.train.tokenizer import load_tokenizer

pytestmark = pytest.mark.skipif(not (default_model_dir() / "tokenizer.json").is_file(), reason="no built-in model")


@pytest.fixture(scope="module")
def factory() -> GuideFactory:
    return GuideFactory(default_model_dir())


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(default_model_dir())


def _accepts(factory: GuideFactory, tokenizer, catalog, sources: list[str], name: str, arguments: dict) -> bool:
    from llguidance import LLMatcher

    grammar = LLMatcher.grammar_from_lark(call_grammar(catalog, sources, factory.close_id))
    matcher = LLMatcher(factory.tokenizer, grammar)
    ids = tokenizer.encode(format_call(name, arguments)[len(TOOL_CALL_OPEN):], add_special_tokens=False)
    return matcher.validate_tokens(ids) == len(ids)


def test_every_generated_training_call_is_in_the_grammar(factory, tokenizer):
    catalog = load_catalog(None)
    records = generate_dataset(catalog, n=300, seed=3)
    checked = 0
    for record in records:
        messages = record["messages"]
        for position, message in enumerate(messages):
            following = messages[position + 1]["content"] if position + 1 < len(messages) else ""
            if message.get("tool_calls") and '"error"' in following:
                continue  # the deliberately wrong first call of an error-correction sample
            sources = [m["content"] for m in messages[:position] if m["role"] in ("user", "tool")]
            for call in message.get("tool_calls") or []:
                function = call["function"]
                arguments = json.loads(function["arguments"])
                assert not call_problem({"name": function["name"], "arguments": arguments}, catalog)
                assert _accepts(factory, tokenizer, catalog, sources, function["name"], arguments), (sources, function)
                checked += 1
    assert checked > 150


@pytest.mark.parametrize("name, arguments", [
    ("get_weather", {"date": "tomorrow"}),                      # required city missing
    ("get_weather", {"city": "广州", "date": "tomorrow"}),       # not what the user wrote
    ("get_weather", {"city": "", "date": "tomorrow"}),           # empty copy
    ("get_weather", {"date": "tomorrow", "city": "上海"}),       # not in schema order
    ("search_hotels", {"city": "上海", "nights": 2.5}),          # integer expected
    ("search_hotels", {"city": "上海", "nights": 0}),            # below the minimum of 1
    ("translate", {"text": "上海", "target_lang": "xx"}),        # not in the enum
    ("get_weather", {"city": "上海", "when": "now"}),            # unknown argument
    ("get_forecast", {"city": "上海"}),                          # unknown tool
])
def test_invalid_calls_are_outside_the_grammar(factory, tokenizer, name, arguments):
    catalog = load_catalog(None)
    assert not _accepts(factory, tokenizer, catalog, ["明天上海会下雨吗？"], name, arguments)
    assert _accepts(factory, tokenizer, catalog, ["明天上海会下雨吗？"], "get_weather", {"city": "上海", "date": "tomorrow"})


@pytest.mark.parametrize("city, accepted", [
    ("Berlin", True), ("Ber", False),            # a copied value ends at a word's end, not inside it
    ("明天Berlin", True), ("天B", False),
    ("Berlin ", False), (" Berlin", False),      # nor with a space at either end
])
def test_copied_values_are_runs_of_whole_words(factory, tokenizer, city, accepted):
    catalog = load_catalog(None)
    assert _accepts(factory, tokenizer, catalog, ["明天Berlin 会下雨吗？"], "get_weather", {"city": city}) is accepted


def test_copied_fields_come_from_the_catalogs_descriptions():
    catalog = load_catalog(None)
    copied = {(t.name, key) for t in catalog.tools for key, prop in t.properties.items() if is_copied(prop)}
    assert ("get_weather", "city") in copied and ("send_message", "to") in copied
    assert ("book_hotel", "hotel_id") in copied  # "The id from a search_hotels result"
    assert ("save_file", "content") not in copied and ("get_weather", "date") not in copied


class RandomLogits(TokenizerStepModel):
    """A stand-in for any model, however bad: random logits, with the call marker pushed first."""

    def __init__(self, tokenizer, seed: int) -> None:
        super().__init__(tokenizer)
        self.rng = np.random.default_rng(seed)
        self.open_id = tokenizer.convert_tokens_to_ids(TOOL_CALL_OPEN)

    def next_logits(self):
        logits = self.rng.normal(0, 3, len(self.tokenizer)).astype(np.float32)
        if not self.reply:
            logits[self.open_id] = 100.0
        return logits


@pytest.mark.parametrize("seed", range(12))
def test_a_random_model_under_the_guide_writes_only_valid_calls(factory, tokenizer, seed):
    tools = [{"type": "function", "function": {"name": "set_lamp", "parameters": {
        "type": "object", "required": ["room", "level"],
        "properties": {"room": {"type": "string", "description": "Room as the user wrote it"},
                       "level": {"type": "integer", "minimum": 0, "maximum": 100},
                       "color": {"type": "string", "enum": ["warm", "cold"]},
                       "tags": {"type": "array", "items": {"type": "boolean"}}}}}}]
    catalog = parse_catalog(tools)
    guide = factory.guide(catalog, ["把书房的灯调到30"])
    generation = timed_generation(RandomLogits(tokenizer, seed), "hi", max_tokens=200, guide=guide)
    turn = parse_assistant(generation.text)
    assert turn.calls, generation.text
    call = turn.calls[0]
    assert call_problem(call, catalog) is None
    assert call["arguments"]["room"] in "把书房的灯调到30"
    assert generation.forced_tokens > 0  # the scaffolding after the name was not sampled


class Scripted(TokenizerStepModel):
    """A model that writes `script` (its logits point at the next token of what is left of it)."""

    def __init__(self, tokenizer, script: str) -> None:
        super().__init__(tokenizer)
        self.script = script

    def next_logits(self):
        rest = self.script[len(self.decode(self.reply)):]
        logits = np.zeros(len(self.tokenizer), dtype=np.float32)
        logits[self.tokenize(rest)[0] if rest else self.eos_id] = 10.0
        return logits


def test_an_identical_second_call_is_dropped_and_ends_the_reply(factory, tokenizer):
    catalog = load_catalog(None)
    light = format_call("control_light", {"room": "玄关", "action": "on"})
    message = format_call("send_message", {"to": "Mia", "text": "I'm home"})
    sources = ["开下玄关的灯 and text Mia 'I'm home'"]

    looping = Scripted(tokenizer, light + light + message)
    turn = parse_assistant(timed_generation(looping, "hi", 200, factory.guide(catalog, sources)).text)
    assert [c["name"] for c in turn.calls] == ["control_light"]

    two_calls = Scripted(tokenizer, light + message)
    turn = parse_assistant(timed_generation(two_calls, "hi", 200, factory.guide(catalog, sources)).text)
    assert [c["name"] for c in turn.calls] == ["control_light", "send_message"]


class CallsOrAsks(Scripted):
    """Opens its reply with `script` (a call); where a call cannot open the reply, writes "?"."""

    def next_logits(self):
        logits = super().next_logits()
        if not self.reply:
            logits[self.tokenize("?")[0]] = 5.0
        elif self.decode(self.reply) == "?":
            logits[self.eos_id] = 20.0
        return logits


def test_a_call_whose_two_copied_values_are_the_same_words_is_dropped_and_the_reply_asks(factory, tokenizer):
    catalog = load_catalog(None)
    invented = format_call("send_message", {"to": "下午", "text": "下午2:55在地铁站见"})  # nobody named a recipient
    copied = {"send_message": {"to": False, "text": True}}  # as the built-in model's fnedge.json records
    model = CallsOrAsks(tokenizer, invented)
    generation = timed_generation(model, "hi", 200,
                                  factory.guide(catalog, ["帮我发条消息：下午2:55在地铁站见"], copied=copied))
    assert generation.text == "?"

    named = format_call("send_message", {"to": "小王", "text": "下午2:55在地铁站见"})
    generation = timed_generation(CallsOrAsks(tokenizer, named), "hi", 200,
                                  factory.guide(catalog, ["发给小王：下午2:55在地铁站见"], copied=copied))
    assert parse_assistant(generation.text).calls == [json.loads(named[len(TOOL_CALL_OPEN):-len("</tool_call>")])]


def test_overlapping_copies_needs_every_reading_of_the_two_values_to_share_words():
    from fnedge.runtime.call_grammar import overlapping_copies

    fields = {"path", "content", "to", "text"}
    assert overlapping_copies({"path": "menu", "content": "menu"}, fields, ["save this: menu"])
    assert overlapping_copies({"to": "下午", "text": "下午2:55见"}, fields, ["发消息：下午2:55见"])
    assert not overlapping_copies({"to": "Mom", "text": "Mom is late"}, fields, ["tell Mom that Mom is late"])
    assert not overlapping_copies({"to": "Mia", "text": "Mia"}, fields, ["text Mia", "Mia"])  # two messages
    assert not overlapping_copies({"to": "下午", "text": "下午2:55见"}, {"text"}, ["发消息：下午2:55见"])  # one copy
    assert not overlapping_copies({"path": "a.txt", "content": "{{text}}"}, fields, ["save it to a.txt"])


def _guide_at(factory, tokenizer, catalog, sources, call_text, copied=None):
    """A guide that has followed `<tool_call>` and then `call_text`."""
    guide = factory.guide(catalog, sources, copied=copied)
    guide.observe(factory.open_id)
    for token in tokenizer.encode(call_text, add_special_tokens=False):
        guide.observe(token)
    assert guide.active
    return guide


def test_ending_a_copied_value_is_weighed_against_but_other_values_are_left_alone(factory, tokenizer):
    catalog = load_catalog(None)
    sources = ["send Harold a text: the car is ready for pickup"]
    logits = np.zeros(factory.vocab_size, dtype=np.float32)

    def quote_logits(guide):
        masked = guide.mask(logits)
        quotes = masked[factory.quote_tokens]
        allowed = quotes[np.isfinite(quotes)]
        assert allowed.size and np.isfinite(masked).sum() > allowed.size  # closing and going on both allowed
        return set(allowed.tolist())

    in_name = _guide_at(factory, tokenizer, catalog, sources, '{"name": "send_message", "arguments": {"to": "Harold')
    in_name.omit_penalty = 0
    assert quote_logits(in_name) == {-in_name.close_penalty} and in_name.close_penalty > 0
    in_name.close_penalty = 0
    assert quote_logits(in_name) == {0.0}
    # "Message body" is no copy by its description; it is one where the model's training data copied it.
    body = '{"name": "send_message", "arguments": {"to": "Harold", "text": "the car'
    assert quote_logits(_guide_at(factory, tokenizer, catalog, sources, body)) == {0.0}
    copied = {"send_message": {"text": False}}
    guide = _guide_at(factory, tokenizer, catalog, sources, body, copied=copied)
    assert quote_logits(guide) == {-guide.close_penalty}


def _allowed(guide, tokens, logits):
    masked = guide.mask(logits)[tokens]
    return set(masked[np.isfinite(masked)].tolist())


def test_ending_the_arguments_is_weighed_against_where_another_one_may_follow(factory, tokenizer):
    catalog = load_catalog(None)
    logits = np.zeros(factory.vocab_size, dtype=np.float32)
    ends, nexts = factory.end_tokens, factory.next_tokens
    sources = ["hotels in Nanjing for 4 nights"]  # nights is said; check_in and max_price are not
    after_city = _guide_at(factory, tokenizer, catalog, sources, '{"name": "search_hotels", "arguments": {"city": "Nanjing')
    after_city.close_penalty = 0
    penalty = after_city.omit_penalty
    assert penalty > 0
    assert _allowed(after_city, ends[True], logits) == {-penalty} and _allowed(after_city, nexts[True], logits) == {0.0}
    # After a number: '}' ends, ',' goes on (max_price may still take the 4 said).
    after_nights = _guide_at(factory, tokenizer, catalog, sources,
                             '{"name": "search_hotels", "arguments": {"city": "Nanjing", "nights": 4')
    assert _allowed(after_nights, ends[False], logits) == {-penalty}
    assert _allowed(after_nights, nexts[False], logits) == {0.0}
    # A label may always follow (a free string), but the user gave none: ending is not weighed against.
    alarm = _guide_at(factory, tokenizer, catalog, ["wake me at 7:30 am"], '{"name": "set_alarm", "arguments": {"time": "07:30')
    assert _allowed(alarm, nexts[True], logits) == {0.0} and _allowed(alarm, ends[True], logits) == {0.0}
    # No brightness said: nothing may follow the action, and ending is not weighed against.
    alone = _guide_at(factory, tokenizer, catalog, ["turn off the light in the den"],
                      '{"name": "control_light", "arguments": {"room": "den", "action": "off')
    assert _allowed(alone, nexts[True], logits) == set() and _allowed(alone, ends[True], logits) == {0.0}


def test_a_date_keyword_said_in_words_weighs_against_ending_before_the_date(factory, tokenizer):
    # "tmrw", "明早": the date keyword is said, so a weather call that stops after the city leaves out
    # a value the user gave; with no day said, ending there is not weighed against.
    catalog = load_catalog(None)
    logits = np.zeros(factory.vocab_size, dtype=np.float32)
    ends = factory.end_tokens[True]
    for said, weighed in ((["weather in Oslo tmrw"], True), (["明早Oslo冷吗"], True), (["weather in Oslo"], False)):
        guide = _guide_at(factory, tokenizer, catalog, said, '{"name": "get_weather", "arguments": {"city": "Oslo')
        guide.close_penalty = 0
        assert _allowed(guide, ends, logits) == ({-guide.omit_penalty} if weighed else {0.0}), said


def test_opening_the_reply_with_a_call_is_weighed_against_only_at_the_first_token(factory, tokenizer):
    catalog = load_catalog(None)
    logits = np.zeros(factory.vocab_size, dtype=np.float32)
    guide = factory.guide(catalog, ["地球到月球有多远？"])
    assert guide.open_penalty > 0
    assert guide.mask(logits)[factory.open_id] == -guide.open_penalty
    guide.observe(tokenizer.encode("好", add_special_tokens=False)[0])
    assert guide.mask(logits)[factory.open_id] == 0.0  # a call after some text (a deferred save) is not
    required = factory.guide(catalog, ["地球到月球有多远？"], tool_choice="required")
    assert required.mask(logits)[factory.open_id] == 0.0
