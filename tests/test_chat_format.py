import pytest

from fnedge.catalog import load_catalog
from fnedge.chat_format import (SPECIAL_TOKENS, TEXT_REFERENCE, format_call, openai_tool_call,
                                parse_assistant, render, render_segments)
from fnedge.train.tokenizer import train_tokenizer

CONVERSATIONS = [
    [{"role": "user", "content": "明天上海会下雨吗？"},
     {"role": "assistant", "content": "", "tool_calls": [openai_tool_call("get_weather", {"city": "上海", "date": "tomorrow"}, "c1")]}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
     {"role": "assistant", "content": "Hello!"}],
    [{"role": "user", "content": "lights off in the den and play jazz"},
     {"role": "assistant", "content": "", "tool_calls": [
         openai_tool_call("control_light", {"room": "den", "action": "off"}, "c1"),
         openai_tool_call("play_music", {"query": "jazz"}, "c2")]},
     {"role": "tool", "tool_call_id": "c1", "content": '{"ok": true}'},
     {"role": "tool", "tool_call_id": "c2", "content": '{"status": "playing"}'},
     {"role": "assistant", "content": "Done."}],
    [{"role": "user", "content": "write a haiku and save it to poems/a.txt"},
     {"role": "assistant", "content": "Quiet pond\nA frog jumps", "tool_calls": [
         openai_tool_call("save_file", {"path": "poems/a.txt", "content": TEXT_REFERENCE}, "c1")]}],
]


@pytest.fixture(scope="module")
def tokenizer():
    corpus = [render(c) for c in CONVERSATIONS] * 20
    return train_tokenizer(corpus, vocab_size=500)


@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("with_tools", [False, True])
def test_jinja_template_renders_what_training_renders(tokenizer, index, with_tools):
    messages = CONVERSATIONS[index]
    tools = load_catalog().to_openai()[:3] if with_tools else None
    ours = render(messages, tools)
    theirs = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
    assert ours == theirs
    prompt = render(messages[:1], tools, add_generation_prompt=True)
    assert prompt == tokenizer.apply_chat_template(messages[:1], tools=tools, tokenize=False,
                                                   add_generation_prompt=True)


def test_only_assistant_replies_are_learned():
    segments = render_segments(CONVERSATIONS[2])
    learned = [text for text, is_learned in segments if is_learned]
    assert learned[0].startswith("<tool_call>") and learned[0].endswith("<|im_end|>")
    assert learned[1] == "Done.<|im_end|>"
    assert all("<tool_response>" not in text for text in learned)


def test_special_tokens_are_single_tokens(tokenizer):
    for token in SPECIAL_TOKENS:
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1


def test_parse_calls_text_and_reference():
    story = "Once upon a time."
    output = story + "\n" + format_call("save_file", {"path": "s.txt", "content": TEXT_REFERENCE}) + "<|im_end|>"
    turn = parse_assistant(output)
    assert turn.text == story
    assert turn.calls == [{"name": "save_file", "arguments": {"path": "s.txt", "content": story}}]


def test_parse_parallel_and_malformed():
    output = format_call("a", {"x": 1}) + "\n" + format_call("b", {}) + "\n<tool_call>{broken</tool_call>"
    turn = parse_assistant(output)
    assert [c["name"] for c in turn.calls] == ["a", "b"]
    assert turn.malformed == ["{broken"]
    assert turn.text == ""


def test_weight_zero_assistant_turn_is_context_only():
    bad = {"role": "assistant", "content": "", "weight": 0,
           "tool_calls": [openai_tool_call("set_alarm", {"time": "7"}, "c1")]}
    good = {"role": "assistant", "content": "", "tool_calls": [openai_tool_call("set_alarm", {"time": "07:00"}, "c2")]}
    messages = [{"role": "user", "content": "alarm 7am"}, bad,
                {"role": "tool", "tool_call_id": "c1", "content": '{"error": "expected HH:MM"}'}, good]
    learned = [text for text, is_learned in render_segments(messages) if is_learned]
    assert len(learned) == 1 and "07:00" in learned[0]


def test_merges_never_cross_cjk_characters_or_word_spaces(tokenizer):
    from fnedge.train.tokenizer import merge_learning_pre_tokenizer

    model = tokenizer.backend_tokenizer.model
    finer = merge_learning_pre_tokenizer()
    texts = [render(c) for c in CONVERSATIONS] + ["宁波后天会不会下雪 in Wellington 350 km？", "  spaced  out\n\nlines "]
    for text in texts:
        pieces = [p for p, _ in finer.pre_tokenize_str(text)]
        finer_ids = [t.id for piece in pieces for t in model.tokenize(piece)] if "<|" not in text else None
        runtime_ids = tokenizer.encode(text, add_special_tokens=False)
        if finer_ids is not None:
            assert runtime_ids == finer_ids
    city_in_sentence = tokenizer.encode("明天上海会下雨吗", add_special_tokens=False)
    city_alone = tokenizer.encode("上海", add_special_tokens=False)
    assert any(city_in_sentence[i:i + len(city_alone)] == city_alone for i in range(len(city_in_sentence)))


def test_a_word_too_rare_to_learn_stays_in_common_pieces():
    from itertools import product

    from fnedge.train.tokenizer import train_tokenizer

    words = ["".join(w) for w in product(["ba", "ko", "de", "ra", "mi", "tu"], repeat=3)]  # 216 common words
    common = [" ".join(words[i:i + 12]) + " in Wellsford and Lexington" for i in range(0, 216, 12)] * 300
    texts = common + ["weather in Wellington"] * 150  # a city the model would see 150 times
    texts += [f"room {n}" for n in range(100, 1000, 7)]  # rare merges, the first the rounding to 64 drops
    assert train_tokenizer(texts, vocab_size=2000).tokenize(" Wellington")[-1] == "Wellington"
    tokenizer = train_tokenizer(texts, vocab_size=2000, min_frequency=200)
    assert len(tokenizer) % 64 == 0  # the output layer's fast widths
    pieces = tokenizer.tokenize(" Wellington")
    assert "Wellington" not in pieces and len(pieces) > 2
    assert "".join(pieces).replace("Ġ", " ") == " Wellington"


def test_cutting_a_trained_tokenizer_to_a_size_equals_training_it_to_that_size():
    import json

    from fnedge.data.generate import generate_dataset
    from fnedge.train.tokenizer import _train_bpe, first_tokens

    texts = [render(r["messages"]) for r in generate_dataset(n=300, seed=5)]
    larger = _train_bpe(texts, vocab_size=1000, min_frequency=2)
    size = 896
    assert larger.get_vocab_size() > size  # the cut removes merges
    cut = json.loads(first_tokens(larger, size).to_str())["model"]
    trained = json.loads(_train_bpe(texts, vocab_size=size, min_frequency=2).to_str())["model"]
    assert cut["vocab"] == trained["vocab"]
    assert cut["merges"] == trained["merges"]
