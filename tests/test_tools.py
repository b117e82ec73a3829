"""Call execution: immediate calls run while the turn goes on, deferred ones get the written text."""

from __future__ import annotations

import threading

import pytest

from fnedge.catalog import load_catalog
from fnedge.chat_format import resolve_text_reference
from fnedge.runtime.builtin_tools import builtin_executors, calculate, convert_units
from fnedge.runtime.stream_parser import CallEnd, TextDelta
from fnedge.runtime.tools import execute_turn, run_conversation


class ScriptedAssistant:
    """Streams fixed events; `pause_after` blocks the stream until the test lets it go on."""

    def __init__(self, turns: list[list], pause_after: int | None = None) -> None:
        self.turns = turns
        self.catalog = load_catalog(None)
        self.pause_after = pause_after
        self.resume = threading.Event()
        self.seen_messages: list[list] = []
        self.choices: list[str] = []

    def catalog_for(self, tools):
        return self.catalog

    def stream(self, messages, tools=None, tool_choice="auto"):
        self.seen_messages.append(list(messages))
        self.choices.append(tool_choice)
        for position, event in enumerate(self.turns[len(self.seen_messages) - 1]):
            yield event
            if position == self.pause_after:
                assert self.resume.wait(5), "the immediate call was not dispatched while the turn went on"


def test_immediate_call_runs_before_the_turn_ends_and_deferred_gets_the_text():
    weather = CallEnd(0, {"name": "get_weather", "arguments": {"city": "上海", "date": "tomorrow"}})
    save = CallEnd(1, {"name": "save_file", "arguments": {"path": "a.txt", "content": "{{text}}"}})
    assistant = ScriptedAssistant([[weather, TextDelta("A short poem."), save]], pause_after=0)
    seen = {}

    def get_weather(args):
        seen["weather"] = args
        assistant.resume.set()  # only an immediate dispatch can release the paused stream
        return {"forecast": "rain"}

    turn = execute_turn(assistant, [{"role": "user", "content": "x"}],
                        {"get_weather": get_weather, "save_file": lambda args: dict(args)})
    first, second = turn.outcomes
    assert (first.timing, first.result) == ("immediate", {"forecast": "rain"})
    assert second.timing == "deferred"
    assert second.result == {"path": "a.txt", "content": "A short poem."}
    assert first.dispatched_ms <= second.dispatched_ms


def test_invalid_calls_and_missing_executors_are_reported_not_run():
    calls = [CallEnd(0, {"name": "get_weather", "arguments": {"date": "tomorrow"}}),       # city missing
             CallEnd(1, {"name": "play_music", "arguments": {"query": "jazz"}}),            # no executor
             CallEnd(2, {"name": "calculate", "arguments": {"expression": "1/0"}})]         # executor raises
    ran = []
    turn = execute_turn(ScriptedAssistant([calls]), [{"role": "user", "content": "x"}],
                        {"get_weather": ran.append, "calculate": lambda a: calculate(a["expression"])})
    errors = [o.error for o in turn.outcomes]
    assert ran == []
    assert "missing required argument 'city'" in errors[0]
    assert errors[1] == "no executor registered for 'play_music'"
    assert errors[2].startswith("ZeroDivisionError")


def test_results_go_back_to_the_model_until_it_answers():
    search = CallEnd(0, {"name": "search_hotels", "arguments": {"city": "Sofia"}})
    book = CallEnd(0, {"name": "book_hotel", "arguments": {"hotel_id": "kgr-4922"}})
    assistant = ScriptedAssistant([[search], [book], [TextDelta("Booked.")]])
    messages, turns = run_conversation(assistant, [{"role": "user", "content": "hotel in Sofia"}], {
        "search_hotels": lambda a: [{"id": "kgr-4922"}], "book_hotel": lambda a: {"ok": True}})
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert messages[2]["content"] == '[{"id": "kgr-4922"}]'
    assert messages[-1]["content"] == "Booked."
    assert len(turns) == 3


def test_after_three_failed_turns_the_model_must_answer_in_text():
    bad = [CallEnd(0, {"name": "calculate", "arguments": {"expression": "1/0"}})]
    assistant = ScriptedAssistant([bad, bad, bad, [TextDelta("I cannot compute that.")]])
    messages, turns = run_conversation(assistant, [{"role": "user", "content": "1/0"}],
                                       {"calculate": lambda a: calculate(a["expression"])}, max_turns=6)
    assert assistant.choices == ["auto", "auto", "auto", "none"]
    assert messages[-1] == {"role": "assistant", "content": "I cannot compute that."}
    assert '"error": "ZeroDivisionError' in messages[2]["content"]  # the error went back to the model


def test_builtin_executors(tmp_path):
    executors = builtin_executors(tmp_path)
    assert executors["save_file"]({"path": "poems/a.txt", "content": "秋天"}) == {"saved": "poems/a.txt", "chars": 2}
    assert (tmp_path / "poems" / "a.txt").read_text(encoding="utf-8") == "秋天"
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (tmp_path / "link").symlink_to(outside, target_is_directory=True)
    for path in ("../escape.txt", "/tmp/escape.txt", "link/escape.txt"):
        with pytest.raises(ValueError, match="leaves the workspace"):
            executors["save_file"]({"path": path, "content": "x"})
    assert not (outside / "escape.txt").exists()
    assert calculate("(15-8)*72") == 504
    with pytest.raises(ValueError):
        calculate("__import__('os').getcwd()")
    assert convert_units(100, "c", "f") == 212
    assert convert_units(5, "km", "mi") == pytest.approx(3.106856, rel=1e-6)
    with pytest.raises(ValueError, match="cannot convert"):
        convert_units(1, "kg", "km")


@pytest.mark.parametrize("text", ["明天上海会下雨吗？", "写一首关于秋天的短诗，然后存到 poems/autumn.txt", "你好"])
def test_streamed_events_add_up_to_the_whole_reply(default_assistant, text):
    messages = [{"role": "user", "content": text}]
    reply = default_assistant.respond(messages)
    events = list(default_assistant.stream(messages))
    streamed_text = "".join(e.text for e in events if isinstance(e, TextDelta)).strip()
    ends = [e.call for e in events if isinstance(e, CallEnd)]
    assert streamed_text == reply.turn.text
    assert [{**c, "arguments": resolve_text_reference(c["arguments"], streamed_text)} for c in ends] == reply.turn.calls


@pytest.fixture(scope="module")
def default_assistant():
    from fnedge.export.build import default_model_dir
    from fnedge.runtime.engine import Assistant

    if not (default_model_dir() / "model.safetensors").is_file():
        pytest.skip("no built-in model")
    return Assistant.from_model_dir(default_model_dir())


def test_tool_choice_none_required_and_named(default_assistant):
    from fnedge.errors import FnedgeError

    weather = [{"role": "user", "content": "明天上海会下雨吗？"}]
    assert default_assistant.respond(weather, tool_choice="none").turn.calls == []
    hello = [{"role": "user", "content": "你好"}]
    assert default_assistant.respond(hello, tool_choice="required").turn.calls
    named = default_assistant.respond(weather, tool_choice={"type": "function", "function": {"name": "search_hotels"}})
    assert [c["name"] for c in named.turn.calls] == ["search_hotels"] and not named.problems
    with pytest.raises(FnedgeError, match="not among the tools"):
        default_assistant.respond(weather, tool_choice={"type": "function", "function": {"name": "fly"}})


def test_a_request_listing_some_tools_can_call_only_those(default_assistant):
    catalog = default_assistant.catalog
    only_hotels = [catalog["search_hotels"].to_openai()]
    reply = default_assistant.respond([{"role": "user", "content": "明天上海会下雨吗？"}], tools=only_hotels)
    assert all(c["name"] == "search_hotels" for c in reply.turn.calls)
    assert default_assistant.catalog_for(None) is catalog


class ScriptedModel:
    """A step model that writes a fixed reply (whatever the grammar forces is the same text)."""

    def __init__(self, reply: str) -> None:
        from fnedge.runtime.vocab import RuntimeVocab
        from fnedge.export.build import default_model_dir

        self.vocab = RuntimeVocab(default_model_dir())
        self.script = self.vocab.encode(reply) + [self.vocab.eos_id]
        self.eos_id, self.n_ctx, self.position = self.vocab.eos_id, 8192, 0

    def tokenize(self, text):
        return self.vocab.encode(text)

    def decode(self, tokens):
        return self.vocab.decode(tokens)

    def token_bytes(self, token):
        return self.vocab.token_bytes(token)

    def prefill(self, tokens):
        self.position = 0
        return self._logits()

    def extend(self, tokens):
        self.position += len(tokens)
        return self._logits()

    def _logits(self):
        import numpy as np

        logits = np.zeros(self.vocab.size, dtype=np.float32)
        logits[self.script[min(self.position, len(self.script) - 1)]] = 10.0
        return logits

    def generate(self, prompt, max_tokens=256, guide=None):
        from fnedge.runtime.generation import timed_generation

        return timed_generation(self, prompt, max_tokens, guide)


@pytest.mark.parametrize("words", [30, 300])
def test_a_deferred_story_is_saved_exactly_and_its_call_does_not_grow(tmp_path, words):
    from fnedge.export.build import default_model_dir
    from fnedge.runtime.engine import Assistant
    from fnedge.runtime.guide import GuideFactory

    story = " ".join(f"word{i % 17}" for i in range(words)) + "."
    call = '<tool_call>{"name": "save_file", "arguments": {"path": "stories/x.txt", "content": "{{text}}"}}</tool_call>'
    model = ScriptedModel(story + "\n" + call)
    assistant = Assistant(model, load_catalog(None), max_tokens=4096, guides=GuideFactory(default_model_dir()))
    ends = []
    turn = execute_turn(assistant, [{"role": "user", "content": "write a story and save it to stories/x.txt"}],
                        builtin_executors(tmp_path), on_event=lambda e: ends.append(e) if isinstance(e, CallEnd) else None)
    assert (tmp_path / "stories" / "x.txt").read_text(encoding="utf-8") == story
    assert turn.outcomes[0].timing == "deferred" and turn.outcomes[0].error is None
    # What the model generated for the call is the reference, whatever the story's length.
    assert ends[0].call["arguments"]["content"] == "{{text}}"


def test_a_call_open_when_the_token_limit_comes_is_finished():
    from fnedge.export.build import default_model_dir
    from fnedge.runtime.engine import Assistant
    from fnedge.runtime.guide import GuideFactory

    story = " ".join(f"word{i}" for i in range(40)) + "."
    call = '<tool_call>{"name": "save_file", "arguments": {"path": "stories/x.txt", "content": "{{text}}"}}</tool_call>'
    model = ScriptedModel(story + "\n" + call)
    limit = len(model.vocab.encode(story + "\n")) + 5  # runs out five tokens into the call
    guided = Assistant(model, load_catalog(None), max_tokens=limit, guides=GuideFactory(default_model_dir()))
    reply = guided.respond([{"role": "user", "content": "write a story and save it"}])
    assert [c["name"] for c in reply.turn.calls] == ["save_file"] and not reply.problems
    unguided = Assistant(model, load_catalog(None), max_tokens=limit)
    assert unguided.respond([{"role": "user", "content": "write a story and save it"}]).turn.malformed
