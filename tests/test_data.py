"""Tests for the training-data generator (fnedge/data)."""

from __future__ import annotations

import json
import random
import re
import warnings
from collections import Counter

import pytest

from fnedge.catalog import call_problem, load_catalog, parse_catalog
from fnedge.chat_format import TEXT_REFERENCE, render
from fnedge.data import (DataConfig, DataWarning, GenerationReport, generate_dataset, load_hints,
                         read_jsonl, record_problem, split_by_template, stats, write_jsonl)
from fnedge.data.config import DEFAULT_RATIOS
from fnedge.export.build import default_model_dir
from fnedge.data.generate import quotas
from fnedge.data.hints import HINTS_DIR
from fnedge.data.quality import learned_calls, slot_values
from fnedge.data import fillers as fl
from fnedge.data import surface as sf
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
    wanted = quotas(3000, DataConfig().normalized_ratios())  # shares need not sum to 1
    for kind in DEFAULT_RATIOS:
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


def test_weighted_chat_categories_are_drawn_more_often(default_records):
    """Open-ended chat (weight 4 in chat.json: requests for advice, explanations, small talk) is
    drawn about four times as often as each fixed list of lines (weight 1)."""
    chat = load_hints(None).chat["no_call"]
    weights = {group["id"]: group.get("weight", 1) for group in chat}
    drawn = Counter(r["template"].split(".")[1] for r in default_records
                    if r["kind"] == "no_call" and r["template"].split(".")[1] in weights)
    heavy = [drawn[i] for i, w in weights.items() if w > 1]
    light = [drawn[i] for i, w in weights.items() if w == 1]
    assert heavy and light
    assert sum(heavy) / len(heavy) > 2 * sum(light) / len(light), drawn


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
    with pytest.raises(FnedgeError, match=r"no_call\[0\]: 'weight' must be a positive number, not -1"):
        load_hints({"no_call": [{"id": "chess", "weight": -1, "en": ["let's play chess"]}]})


def test_user_hints_extend_the_builtin_ones():
    hints = {"tools": {"get_weather": {"templates": [{"en": ["yo what's up with the sky over {city}"]}]}}}
    config = DataConfig(ratios={"single_call": 1.0})
    weather_only = parse_catalog(load_catalog().to_openai()[:1], source="weather.json")
    records = generate_dataset(weather_only, n=1500, seed=2, hints=hints, config=config)
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


# ---- how people say values: a reference reader, written independently of the generator -------

ZH_DIGIT = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
ZH_UNIT = {"十": 10, "百": 100, "千": 1000}
EN_SMALL = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                       "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
EN_SMALL.update({"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
                 "ninety": 90, "a": 1})
MONTHS = {m.lower(): i for i, m in enumerate(sf.MONTHS_EN, 1)} | {m[:3].lower(): i for i, m in enumerate(sf.MONTHS_EN, 1)}


def read_zh_int(text):
    """三百五 = 350, 一千二 = 1200, 一万五 = 15000, 一百零五 = 105, 十五 = 15, 两千 = 2000, 1,200 = 1200."""
    text = text.replace(",", "")
    if text.isdigit():
        return int(text)
    total = section = digit = 0
    last_unit, zero = 1, False
    for ch in text:
        if ch in "零〇":
            zero = True
        elif ch in ZH_DIGIT:
            digit = ZH_DIGIT[ch]
        elif ch in ZH_UNIT:
            section += (digit or 1) * ZH_UNIT[ch]
            last_unit, digit, zero = ZH_UNIT[ch], 0, False
        elif ch == "万":
            total += (section + digit) * 10000
            section, digit, last_unit, zero = 0, 0, 10000, False
        else:
            raise ValueError(text)
    # a digit right after 百/千/万 with no 零 is one unit lower: 三百五 = 350
    return total + section + digit * (last_unit // 10 if last_unit >= 100 and not zero else 1)


def read_en_int(text):
    text = text.strip().lower().replace(",", "")
    if text.isdigit():
        return int(text)
    total = current = 0
    for word in re.split(r"[\s-]+", text):
        if word == "and":
            continue
        if word == "hundred":
            current *= 100
        elif word == "thousand":
            total, current = total + current * 1000, 0
        else:
            current += EN_SMALL[word]
    return total + current


def read_amount(text, lang):
    text = text.strip()
    if lang == "zh":
        text = re.sub(r"^[¥￥]|(元|块钱|块|人民币)$", "", text)
    else:
        text = re.sub(r"^[$€£]|\s(dollars|bucks|euros|USD|pounds)$", "", text)
    if text.endswith("k"):
        return round(float(text[:-1]) * 1000)
    return read_zh_int(text) if lang == "zh" else read_en_int(text)


ZH_PERIOD = "(凌晨|半夜|午夜|早上|早晨|清晨|上午|早|中午|下午|傍晚|晚上|夜里|今晚|明早)?"
ZH_NUM = "[0-9零〇一二两三四五六七八九十]+"


def _zh_hour(period, h):
    if period in ("凌晨", "半夜", "午夜"):
        return 0 if h == 12 else h
    if period == "中午":
        return h if h >= 11 else h + 12
    if period in ("下午", "傍晚"):
        return h + 12 if h < 12 else h
    if period in ("晚上", "夜里", "今晚"):
        return 0 if h == 12 else (h + 12 if h < 12 else h)
    return h  # morning words, or none: 1..12 as said, 13..23 and 0 on a 24-hour clock


def read_zh_time(text, context=None):
    """(hour, minute) of 晚上十点一刻, 下午3:30, 凌晨两点, 八点差一刻, 半夜12点半, 19点30 ..."""
    t = text.translate(str.maketrans("０１２３４５６７８９", "0123456789"))
    m = re.fullmatch(ZH_PERIOD + r"(\d{1,2}):(\d{2})", t)
    if m:
        h = int(m.group(2))
        return (_zh_hour(m.group(1) or context, h) if h <= 12 else h, int(m.group(3)))
    m = re.fullmatch(ZH_PERIOD + f"(?:({ZH_NUM})点差(一刻|{ZH_NUM}分)|差(一刻|{ZH_NUM}分)({ZH_NUM})点)", t)
    if m:
        hour, gap = (m.group(2), m.group(3)) if m.group(2) else (m.group(5), m.group(4))
        h = _zh_hour(m.group(1) or context, read_zh_int(hour))
        return ((h - 1) % 24, 60 - (15 if gap == "一刻" else read_zh_int(gap[:-1])))
    m = re.fullmatch(ZH_PERIOD + f"({ZH_NUM})点(.*)", t)
    assert m, text
    h, rest = read_zh_int(m.group(2)), m.group(3)
    minute = {"": 0, "整": 0, "钟": 0, "半": 30, "一刻": 15, "三刻": 45}.get(rest)
    if minute is None:
        minute = read_zh_int(rest.rstrip("分").lstrip("0零") or "0")
    return (h if h > 12 or h == 0 else _zh_hour(m.group(1) or context, h), minute)


def _en_hour(h, part):
    if part in ("am", "a.m.", "in the morning"):
        return 0 if h == 12 else h
    if part in ("pm", "p.m.", "in the afternoon", "in the evening"):
        return h if h == 12 else h + 12
    if part == "at night":
        return 0 if h == 12 else (h + 12 if h >= 6 else h)
    return h


def read_en_time(text, context=None):
    """(hour, minute) of half past seven, 7 in the evening, noon, midnight, 0730, 7.30am, quarter to 8 ..."""
    t = text.strip().lower()
    if t in ("noon", "12 noon", "midday"):
        return (12, 0)
    if t in ("midnight", "12 midnight"):
        return (0, 0)
    if re.fullmatch(r"\d{4}", t):
        return (int(t[:2]), int(t[2:]))
    m = re.fullmatch(r"(.+?)\s*(am|a\.m\.|pm|p\.m\.|in the morning|in the afternoon|in the evening|at night)", t)
    part, core = (m.group(2), m.group(1)) if m else (context, t)
    m = re.fullmatch(r"(\d{1,2})(?:[:.](\d{2}))?", core)
    if m:
        h = int(m.group(1))
        return (h if h > 12 or h == 0 else _en_hour(h, part), int(m.group(2) or 0))
    m = re.fullmatch(r"(half|(?:a )?quarter|[a-z-]+) (past|to) ([a-z0-9]+)", core)
    if m:
        amount = {"half": 30, "quarter": 15, "a quarter": 15}.get(m.group(1)) or read_en_int(m.group(1))
        h = _en_hour(read_en_int(m.group(3)), part)
        return (h, amount) if m.group(2) == "past" else ((h - 1) % 24, 60 - amount)
    m = re.fullmatch(r"half ([a-z0-9]+)", core)
    if m:
        return (_en_hour(read_en_int(m.group(1)), part), 30)
    m = re.fullmatch(r"([a-z0-9]+)(?: o'clock)?", core)
    if m:
        return (_en_hour(read_en_int(m.group(1)), part), 0)
    m = re.fullmatch(r"([a-z]+) (oh [a-z]+|[a-z-]+)", core)
    assert m, text
    return (_en_hour(read_en_int(m.group(1)), part), read_en_int(m.group(2).replace("oh ", "")))


def read_date(text, lang):
    """YYYY-MM-DD of 2025年6月18日, 6月18号, 六月十八号, June 18th, 18 June, the 18th of June ... (year 2025 when unsaid)."""
    t = re.sub(r"^on ", "", text.strip())
    m = re.fullmatch(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})", t)
    if m:
        return f"{int(m.group(1)):04d}-{int(m.group(2)):02d}-{int(m.group(3)):02d}"
    if lang == "zh":
        m = re.fullmatch(rf"(?:(\d{{4}})年)?({ZH_NUM})月({ZH_NUM})[日号]?", t)
        assert m, text
        year, month, day = int(m.group(1) or 2025), read_zh_int(m.group(2)), read_zh_int(m.group(3))
    else:
        t = t.lower().replace(",", "")
        m = (re.fullmatch(r"([a-z]+) (\d+)(?:st|nd|rd|th)?(?: (\d{4}))?", t)
             or re.fullmatch(r"(?:the )?(\d+)(?:st|nd|rd|th)? (?:of )?([a-z]+)(?: (\d{4}))?", t))
        assert m, text
        first, second, year = m.group(1), m.group(2), int(m.group(3) or 2025)
        month, day = (MONTHS[first], int(second)) if first.isalpha() else (MONTHS[second], int(first))
    return f"{year:04d}-{month:02d}-{day:02d}"


POOLS = load_hints().pools


def _fill_ctx(rng, lang, schema=None, variant=None):
    return fl.FillContext(rng, lang, lang, POOLS, {}, "x", schema or {}, variant)


def test_every_clock_time_reads_back():
    import random
    rng = random.Random(5)
    for hour in range(24):
        for minute in range(60):
            for _ in range(3):
                assert read_zh_time(say_time(hour, minute, "zh", rng)) == (hour, minute)
                assert read_en_time(say_time(hour, minute, "en", rng)) == (hour, minute)


def test_times_after_a_day_part_word_read_back_in_that_context():
    """明早{time:am} / 今晚{time:pm} / tonight at {time:pm}: said without a day-part word."""
    import random
    rng = random.Random(6)
    contexts = {"am": ("明早", "am"), "afternoon": ("下午", "pm"), "pm": ("今晚", "pm")}
    for variant, (zh_word, en_word) in contexts.items():
        for _ in range(300):
            zh = fl.fill_time(_fill_ctx(rng, "zh", variant=variant))
            en = fl.fill_time(_fill_ctx(rng, "en", variant=variant))
            for filled, reader, word in ((zh, read_zh_time, zh_word), (en, read_en_time, en_word)):
                assert not re.search(r"早上|上午|下午|晚上|凌晨|morning|afternoon|evening|night", filled.surface)
                assert "%02d:%02d" % reader(filled.surface, word) == filled.value, filled


def test_time_forms_people_use():
    import random
    rng = random.Random(7)
    wanted = [((22, 15, "zh"), "晚上十点一刻"), ((15, 30, "zh"), "下午三点半"), ((2, 0, "zh"), "凌晨两点"),
              ((0, 0, "zh"), "半夜十二点"), ((19, 45, "zh"), "晚上八点差一刻"), ((13, 0, "zh"), "中午1点"),
              ((7, 30, "en"), "half past seven"), ((19, 0, "en"), "7 in the evening"), ((12, 0, "en"), "noon"),
              ((0, 0, "en"), "midnight"), ((7, 30, "en"), "0730"), ((19, 45, "en"), "quarter to eight in the evening")]
    for (hour, minute, lang), text in wanted:
        said = {say_time(hour, minute, lang, rng) for _ in range(600)}
        assert text in said, (text, sorted(said))
    assert "7.30am" in {say_time(7, 30, "en", rng) for _ in range(2000)}
    reads = {"晚上十点一刻": (22, 15), "下午三点半": (15, 30), "凌晨两点": (2, 0), "半夜12点半": (0, 30),
             "早8点": (8, 0), "差五分八点": (7, 55)}
    for text, value in reads.items():
        assert read_zh_time(text) == value
    for text, value in {"half past seven": (7, 30), "7 in the evening": (19, 0), "noon": (12, 0), "midnight": (0, 0),
                        "0730": (7, 30), "7.30am": (7, 30), "twenty to nine pm": (20, 40)}.items():
        assert read_en_time(text) == value


def test_explicit_dates_read_back_with_the_implied_year():
    import datetime as dt
    import random
    rng = random.Random(8)
    for _ in range(600):
        day = sf.random_date(rng)
        for lang in ("zh", "en"):
            said = sf.say_explicit_date(day, lang, rng)
            assert read_date(said, lang) == day.isoformat(), said
            if day.year != sf.IMPLIED_YEAR:
                assert str(day.year) in said  # a year other than the implied one is always said
    june18 = dt.date(2025, 6, 18)
    zh = {sf.say_explicit_date(june18, "zh", rng) for _ in range(400)}
    en = {sf.say_explicit_date(june18, "en", rng, bare=True) for _ in range(400)}
    assert {"2025年6月18日", "6月18号", "六月十八号", "6月18"} <= zh
    assert {"June 18th", "18 June", "the 18th of June", "Jun 18"} <= en
    assert read_date("6月18号", "zh") == read_date("June 18th", "en") == read_date("18 June", "en") == "2025-06-18"


def test_relative_dates_cover_colloquial_words():
    words = {w: key for key, by_lang in sf.RELATIVE_DATES.items() for lang in by_lang for w in by_lang[lang]}
    for said, value in {"明儿": "tomorrow", "后儿": "day_after_tomorrow", "今儿": "today", "tmrw": "tomorrow",
                        "the day after tomorrow": "day_after_tomorrow", "明天": "tomorrow"}.items():
        assert words[said] == value


def test_chinese_and_english_numbers():
    assert [sf.zh_short_number(n) for n in (350, 1200, 2500, 15000, 150)] == ["三百五", "一千二", "两千五", "一万五", "一百五"]
    assert [sf.zh_short_number(n) for n in (300, 305, 1250, 99)] == [None, None, None, None]
    assert sf.en_hundreds(1200) == "twelve hundred" and sf.en_hundreds(2000) is None
    for n in [*range(0, 130), *range(130, 100000, 97), 350, 1200, 2500, 15000, 10500, 20000]:
        assert read_zh_int(zh_number(n)) == n and read_zh_int(zh_number(n, liang=True)) == n
        assert read_en_int(en_number(n)) == n
        if sf.zh_short_number(n):
            assert read_zh_int(sf.zh_short_number(n)) == n


def test_amounts_nights_and_percents_read_back():
    import random
    rng = random.Random(9)
    seen = {"zh": set(), "en": set()}
    for _ in range(1500):
        for lang in ("zh", "en"):
            price = fl.fill_price(_fill_ctx(rng, lang))
            assert read_amount(price.surface, lang) == price.value, price
            seen[lang].add(price.surface)
    assert {"三百五", "一千二"} & seen["zh"] and any(s.endswith("bucks") for s in seen["en"])
    assert read_amount("三百五", "zh") == 350 and read_amount("一千二", "zh") == 1200
    assert read_amount("300 bucks", "en") == 300 and read_amount("1.2k", "en") == 1200

    def read_nights(text, lang):
        fixed = {"一周": 7, "一个星期": 7, "一星期": 7, "一晚上": 1, "a couple of nights": 2, "a couple nights": 2,
                 "a week": 7, "one week": 7, "a whole week": 7, "two weeks": 14, "2 weeks": 14, "a fortnight": 14,
                 "a night": 1, "a single night": 1, "just one night": 1}
        if text in fixed:
            return fixed[text]
        if lang == "zh":
            return read_zh_int(re.sub(r"(个晚上|晚|夜|宿)$", "", text))
        return read_en_int(re.sub(r" (nights?|nites)$", "", text))

    for n in (1, 2, 3, 7, 10, 14):
        for lang in ("zh", "en"):
            forms = {fl.say_nights(n, lang, rng) for _ in range(300)}
            assert all(read_nights(f, lang) == n for f in forms), forms
    assert {"三晚", "两个晚上"} <= {fl.say_nights(n, "zh", rng) for n in (2, 3) for _ in range(400)}
    assert {"two nights", "a couple of nights"} <= {fl.say_nights(2, "en", rng) for _ in range(400)}

    def read_percent(text, lang):
        if text in ("一半", "half"):
            return 50
        if text.endswith("成"):
            return read_zh_int(text[:-1]) * 10
        text = re.sub(r"^百分之|[%％]$| percent$| per cent$", "", text)
        return read_zh_int(text) if lang == "zh" else read_en_int(text)

    schema = {"type": "integer", "minimum": 0, "maximum": 100}
    said = set()
    for _ in range(1500):
        for lang in ("zh", "en"):
            filled = fl.fill_percent(_fill_ctx(rng, lang, schema))
            assert read_percent(filled.surface, lang) == filled.value, filled
            said.add(filled.surface)
    assert "百分之三十" in said and "thirty percent" in said


UNIT_WORDS = {"公里": "km", "千米": "km", "km": "km", "kilometers": "km", "kilometres": "km", "英里": "mi", "mi": "mi",
              "mile": "mi", "miles": "mi", "公斤": "kg", "千克": "kg", "kg": "kg", "kilos": "kg", "kilograms": "kg",
              "磅": "lb", "lb": "lb", "lbs": "lb", "pounds": "lb", "摄氏度": "c", "℃": "c", "°C": "c", "celsius": "c",
              "华氏度": "f", "℉": "f", "°F": "f", "fahrenheit": "f", "米": "m", "meters": "m", "metres": "m", "英尺": "ft",
              "feet": "ft", "foot": "ft", "ft": "ft"}


def test_unit_words_map_to_the_schema_symbols():
    units = POOLS["units"]
    said_as = {}
    for dimension in units.values():
        for symbol, by_lang in dimension.items():
            for word in by_lang["zh"] + by_lang["en"]:
                assert said_as.setdefault(word, symbol) == symbol, word  # one word, one unit
    for word, symbol in UNIT_WORDS.items():
        assert said_as.get(word) == symbol, word
    for symbol, words in fl.UNIT_SINGULAR_EN.items():
        assert all(said_as.get(w, symbol) == symbol for w in words)


def test_generated_values_keep_their_context(default_records):
    """Units of one dimension, a target language other than the text's, times that fit 今晚/明早/tonight."""
    dimension = {u: d for d, units in POOLS["units"].items() for u in units}
    for record in default_records:
        text = " ".join(m["content"] for m in record["messages"] if m["role"] == "user")
        for name, arguments in learned_calls(record):
            if name == "convert_units":
                assert dimension[arguments["from_unit"]] == dimension[arguments["to_unit"]] != None, record  # noqa: E711
                assert arguments["from_unit"] != arguments["to_unit"]
            if name == "translate" and arguments["text"] != TEXT_REFERENCE:
                source = "zh" if re.search(r"[\u4e00-\u9fff]", arguments["text"]) else "en"
                assert arguments["target_lang"] != source, record
            if name in ("set_alarm", "create_event") and "time" in arguments and record["kind"] == "single_call":
                hour = int(arguments["time"][:2])
                if re.search(r"今晚|明晚|tonight", text):
                    assert hour >= 18 or hour == 0, record
                if re.search(r"明早|tomorrow morning", text):
                    assert 4 <= hour < 12, record


def test_chinese_particles_fit_the_sentence(default_records):
    for record in default_records:
        for message in record["messages"]:
            if message["role"] == "user":
                assert not re.search(r"吗[吧呗哈嘛呀啊哦呢]$", message["content"]), message["content"]


def test_split_drops_few_rows():
    records = generate_dataset(n=4000, seed=5)
    train, dev = split_by_template(records, dev_fraction=0.03, seed=1)
    assert dev and len(train) + len(dev) >= 0.97 * len(records)
    assert not {t for r in train for t in r["template"].split("|")} & {t for r in dev for t in r["template"].split("|")}
    assert not set().union(*(slot_values(r) for r in train)) & set().union(*(slot_values(r) for r in dev))
    old_train, old_dev = split_by_template(records, dev_fraction=0.03, seed=1, value_fraction=0.03)
    assert len(old_train) + len(old_dev) < len(train) + len(dev)


def test_held_out_conversations_become_cases_their_own_replies_pass(tmp_path):
    """`fnedge data cases`: every case loads in the evaluator, and the data's own first reply
    scores a function and argument match on it (so a model's score on them is the data's)."""
    from typer.testing import CliRunner

    from fnedge.chat_format import parse_assistant, render_segments
    from fnedge.data.cli import data_app
    from fnedge.eval.cases import load_cases
    from fnedge.eval.scoring import score_case

    catalog = load_catalog(None)
    records = generate_dataset(catalog, n=400, seed=3)
    data = tmp_path / "dev.jsonl"
    write_jsonl(records, data)
    out = tmp_path / "cases.jsonl"
    result = CliRunner().invoke(data_app, ["cases", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    cases = {case.id: case for case in load_cases(out)}
    kinds = Counter(case.expect.type for case in cases.values())
    assert set(kinds) == {"call", "text_then_call", "ask", "text"}, kinds
    wrong_first = [r["id"] for r in records
                   if next(m for m in r["messages"] if m["role"] == "assistant").get("weight") == 0]
    assert wrong_first and not set(wrong_first) & set(cases)  # the deliberate mistake is no case
    for record in records:
        if record["id"] not in cases:
            continue
        first = next(i for i, m in enumerate(record["messages"]) if m["role"] == "assistant")
        reply = [text for text, learned in render_segments(record["messages"][: first + 1]) if learned][-1]
        score = score_case(cases[record["id"]], parse_assistant(reply))
        assert score.function_match and score.argument_match is not False, (record["id"], score)

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = CliRunner().invoke(data_app, ["cases", str(empty), "--out", str(out)])
    assert result.exit_code != 0 and "no conversation makes a case" in str(result.exception or result.output)

    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"id": "r1", "kind": "single_call", "messages": [
        {"role": "user", "content": "lights off"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "control_light", "arguments": "{room: kitchen"}}]}]}) + "\n")
    result = CliRunner().invoke(data_app, ["cases", str(broken), "--out", str(out)])
    assert result.exit_code != 0 and "r1: the arguments of its control_light call are not JSON" in str(result.exception)


def test_tool_weights_give_a_tool_more_of_the_samples_that_pick_one_tool():
    def weather_share(config: DataConfig) -> float:
        records = generate_dataset(n=600, seed=3, config=config)
        return sum(r["tools"] == ["get_weather"] for r in records) / len(records)

    uniform = weather_share(DataConfig(ratios={"single_call": 1.0}))
    weighted = weather_share(DataConfig(ratios={"single_call": 1.0}, tool_weights={"get_weather": 4.0}))
    assert uniform < 0.15 and weighted > 2 * uniform  # 1/12 against 4/15 of the picks
    with pytest.raises(FnedgeError, match=r"unknown tool\(s\) \['get_wether'\]"):
        generate_dataset(n=10, config=DataConfig(tool_weights={"get_wether": 2}))
    with pytest.raises(FnedgeError, match="weight of 'get_weather' must be a positive number, not 0"):
        generate_dataset(n=10, config=DataConfig(tool_weights={"get_weather": 0}))


def test_longer_text_share_makes_free_texts_say_more_than_one_pool_item():
    def message_texts(share: float) -> list[str]:
        config = DataConfig(ratios={"single_call": 1.0}, longer_text_share=share)
        records = generate_dataset(n=800, seed=4, config=config)
        return [json.loads(c["function"]["arguments"])["text"] for r in records
                for c in r["messages"][-1].get("tool_calls") or [] if c["function"]["name"] == "send_message"]

    pool = set(load_hints().pools["message_texts_en"]) | set(load_hints().pools["message_texts_zh"])
    plain, longer = message_texts(0.0), message_texts(1.0)
    assert plain and longer
    # Without the share a pool text is said whole or not at all; with it, a pool text starts or
    # ends a longer one (joined with another, or with a head or a tail).
    assert not any(t not in pool and any(t.startswith(p) or t.endswith(p) for p in pool) for t in plain)
    extended = [t for t in longer if t not in pool and any(t.startswith(p) or t.endswith(p) for p in pool)]
    assert len(extended) > len(longer) / 3


# sha256 of train.jsonl and dev.jsonl that `fnedge train --preset fc-micro --compile --seed 1` (112,000 conversations)
# writes into RUN/data: the conversations the built-in model was trained and held out on (the run's
# own files).
COMMITTED_MODEL_DATA = {"train.jsonl": "78c86b29f760bb24cb6dbc26c7a957aef570c53c17ebbeb0ccaf9cdd9b85f733",
                        "dev.jsonl": "20d697802c6e830cde067bdfed4a48525f0c5c1e1d9bb3368e9e0b6787bed316"}


def test_the_default_data_is_still_the_built_in_models(tmp_path):
    """The built-in model is reproducible only while the default generator writes the same
    conversations. A change to pools, templates or the order of random draws changes them, and
    with them the held-out split the README's figures are scored on: retrain the built-in model
    (or make the change opt-in) and record the new hashes here."""
    import hashlib

    from fnedge.train.config import TrainConfig
    from fnedge.train.trainer import prepare_data

    recorded = json.loads((default_model_dir() / "fnedge.json").read_text())["train_config"]
    config = TrainConfig(n_samples=recorded["n_samples"], data_seed=recorded["data_seed"],
                         dev_fraction=recorded["dev_fraction"])
    prepare_data(config, tmp_path)
    for name, expected in COMMITTED_MODEL_DATA.items():
        assert hashlib.sha256((tmp_path / "data" / name).read_bytes()).hexdigest() == expected, name


def test_dictated_messages_keep_their_days_times_and_numbers_inside_the_copied_text():
    """A message whose text holds a day, a time or a number is copied whole: the call's text is
    the user's words from the first of those to the end, not cut where the day or number starts."""
    records = generate_dataset(n=1500, seed=5, config=DataConfig(ratios={"single_call": 1.0}))
    texts = [(r["messages"][0]["content"], json.loads(c["function"]["arguments"])["text"]) for r in records
             for c in r["messages"][-1].get("tool_calls") or [] if c["function"]["name"] == "send_message"]
    day_or_number = re.compile(r"\d|周[一二三四五六日]|明天|后天|今晚|tomorrow|tonight|Monday|Friday|Sunday")
    inside = [(said, text) for said, text in texts if day_or_number.search(text)]
    assert len(inside) > len(texts) / 3  # 43 of 113 here; the previous generator made 25 of 103
    for said, text in inside:
        assert text in said or text.lower() in said.lower(), (said, text)
    # some of them open with the day and some say a second clause after a comma
    assert any(re.match(r"(周[一二三四五六日]|明天|后天|今晚|tomorrow|tonight)", text) for _, text in inside)
    assert any(re.search(r"[，,；]", text) for _, text in inside)


def test_deferred_requests_come_in_many_frames_and_the_same_frames_also_ask_for_text_only(default_records):
    """People ask for a text to save or send in many frames ("could you put together a haiku …,
    keep it in P", "text Mia a reminder, you write it"), not mostly "write …": under a third of the
    English deferred requests open with "write" (the previous generator: 44% of 813). The frames a
    deferred request opens with also open no-call requests for the text alone, so the frame alone
    never means a call: only the save or send clause does."""
    def opening(record, words):
        return " ".join(re.sub(r"[^a-z' ]", "", record["messages"][0]["content"].lower()).split()[:words])

    deferred = [r for r in default_records if r["kind"] == "deferred" and r["lang"] == "en"]
    assert sum(opening(r, 1) == "write" for r in deferred) < len(deferred) / 3
    # 3000 rows hold only ~30 English compose lines: draw chat alone to see their openings.
    chat = generate_dataset(load_catalog(), n=1500, seed=7, config=DataConfig(ratios={"no_call": 1.0}))
    compose_openings = {opening(r, 2) for r in chat if r["template"].startswith("no_call.compose.")}
    for frame in ("could you", "can you", "i want"):
        assert any(opening(r, 2) == frame for r in deferred) and frame in compose_openings, frame


def test_english_clauses_never_say_on_today():
    from fnedge.data.free_texts import dictated_text
    from fnedge.data.hints import load_hints

    rng, pools = random.Random(3), load_hints().pools
    texts = [dictated_text(rng, "en", pools) for _ in range(3000)]
    assert not [t for t in texts if re.search(r"\bon (today|tomorrow)\b", t)]
    assert any(re.search(r"\bon (Monday|Friday|Sunday|the 15th)\b", t) for t in texts)

