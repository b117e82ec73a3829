"""The floor baseline: a keyword router with naive argument extraction, Chinese and English.

It picks the catalog tool whose keywords the last user message mentions most, fills what a few
regular expressions find, and otherwise answers in text. The keywords come from the tools'
descriptions and everyday phrasing, not from the evaluation set: it is an honest floor, the
score any model must clearly beat to be worth its megabytes. It makes one call at most, never
asks a follow-up question, and does not read earlier turns.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from fnedge.bench.replies import BaselineReply, Timing
from fnedge.catalog import Catalog
from fnedge.chat_format import format_call, parse_assistant

KEYWORDS: dict[str, tuple[str, ...]] = {
    "get_weather": ("weather", "rain", "snow", "sunny", "forecast", "temperature", "umbrella",
                    "天气", "下雨", "下雪", "晴", "气温", "温度", "带伞", "刮风"),
    "search_hotels": ("hotel", "hotels", "accommodation", "place to stay", "酒店", "宾馆", "住宿", "住几晚"),
    "book_hotel": ("book", "reserve", "预订", "预定", "订下"),
    "set_alarm": ("alarm", "wake me", "闹钟", "叫醒", "叫我起床"),
    "send_message": ("message", "text ", "tell ", "send ", "消息", "短信", "告诉", "微信", "发给"),
    "calculate": ("calculate", "compute", "how much is", "what is", "计算", "算一下", "算算", "等于"),
    "translate": ("translate", "translation", "in english", "in french", "in japanese", "翻译", "怎么说"),
    "play_music": ("play", "song", "music", "播放", "放一首", "来一首", "听", "歌"),
    "control_light": ("light", "lights", "lamp", "灯"),
    "convert_units": ("convert", "how many", "in km", "in miles", "换算", "转换", "等于多少", "是多少"),
    "create_event": ("schedule", "meeting", "calendar", "event", "appointment", "日程", "会议", "开会",
                     "安排", "日历", "约"),
    "save_file": ("save", "file", "write it to", "保存", "存到", "存成", "写到", "文件"),
}

DATE_WORDS = {"day after tomorrow": "day_after_tomorrow", "tomorrow": "tomorrow", "today": "today",
              "后天": "day_after_tomorrow", "明天": "tomorrow", "今天": "today"}
CN_DIGITS = {"一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
LANGUAGES = {"english": "en", "英文": "en", "英语": "en", "chinese": "zh", "中文": "zh", "japanese": "ja",
             "日语": "ja", "日文": "ja", "korean": "ko", "韩语": "ko", "french": "fr", "法语": "fr",
             "german": "de", "德语": "de", "spanish": "es", "西班牙语": "es"}
UNITS = {"kilometers": "km", "kilometres": "km", "km": "km", "公里": "km", "miles": "mi", "mile": "mi",
         "mi": "mi", "英里": "mi", "kilograms": "kg", "kg": "kg", "公斤": "kg", "千克": "kg",
         "pounds": "lb", "lbs": "lb", "lb": "lb", "磅": "lb", "celsius": "c", "摄氏度": "c",
         "fahrenheit": "f", "华氏度": "f", "meters": "m", "metres": "m", "米": "m", "feet": "ft",
         "foot": "ft", "ft": "ft", "英尺": "ft"}
ROOMS = ("living room", "bedroom", "kitchen", "bathroom", "study", "office", "hallway", "garage",
         "客厅", "卧室", "主卧", "厨房", "书房", "卫生间", "浴室", "餐厅", "阳台", "走廊")
CJK = "\u4e00-\u9fff"


class KeywordRouter:
    """Answers like an Assistant: `respond(messages, tools)` -> a reply `run_eval` can score."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def respond(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> BaselineReply:
        started = time.perf_counter()
        offered = [t["function"]["name"] if "function" in t else t["name"] for t in tools] if tools else None
        text = route(messages, self.catalog, offered)
        elapsed = (time.perf_counter() - started) * 1000
        return BaselineReply(turn=parse_assistant(text), generation=Timing(text, [], 0, elapsed, elapsed))


def route(messages: list[dict[str, Any]], catalog: Catalog, offered: list[str] | None = None) -> str:
    """The assistant text the router writes: one `<tool_call>` block, or a plain reply."""
    if messages[-1]["role"] == "tool":
        return "Done."
    user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    tool = pick_tool(user, [n for n in catalog.names if offered is None or n in offered])
    if tool is None:
        return "Sorry, I can't help with that."
    properties = catalog[tool].properties
    arguments = {}
    for name in properties:
        value = EXTRACTORS.get(name, lambda _: None)(user)
        if value is not None:
            arguments[name] = value
    return format_call(tool, arguments)


def pick_tool(text: str, names: list[str]) -> str | None:
    lowered = text.lower()
    hits = {name: sum(word in lowered for word in KEYWORDS.get(name, ())) for name in names}
    best = max(hits.values(), default=0)
    # Ties go to the catalog's order: no tie-breaking tuned to any test set.
    return next((name for name in names if hits[name] == best), None) if best else None


def _date(text: str) -> str | None:
    explicit = re.search(r"\d{4}-\d{2}-\d{2}", text)
    if explicit:
        return explicit.group()
    lowered = text.lower()
    return next((value for word, value in DATE_WORDS.items() if word in lowered), None)


def _city(text: str) -> str | None:
    latin = re.search(r"\b(?:in|at|for|to)\s+([A-Z][a-z]+(?:\s[A-Z][a-z]+)?)", text)
    if latin:
        return latin.group(1)
    capitalized = re.search(r"(?<![A-Za-z])([A-Z][a-z]{2,}(?:\s[A-Z][a-z]+)?)", text[1:])
    if capitalized:  # a capitalized word past the sentence start, as in mixed zh/en text
        return capitalized.group(1)
    # Two or three characters right before a date word or 天气/的: 北京明天, 上海天气.
    chinese = re.search(rf"([{CJK}]{{2,3}}?)(?:今天|明天|后天|的|天气|那边)", text)
    if chinese:
        return re.sub(r"^(?:我|去|在|到|查|看)", "", chinese.group(1)) or None
    # Or right after one: 明天上海会下雨吗.
    chinese = re.search(rf"(?:今天|明天|后天)([{CJK}]{{2,3}}?)(?:会|要|天气|下|冷|热|有)", text)
    return chinese.group(1) if chinese else None


def _number(text: str) -> float | int | None:
    match = re.search(r"-?\d+(?:\.\d+)?", text)
    if not match:
        return None
    value = float(match.group())
    return int(value) if value.is_integer() else value


def _nights(text: str) -> int | None:
    match = re.search(rf"(\d+|[{''.join(CN_DIGITS)}])\s*(?:nights?|晚|个晚上)", text)
    if not match:
        return None
    token = match.group(1)
    return int(token) if token.isdigit() else CN_DIGITS[token]


def _time(text: str) -> str | None:
    clock = re.search(r"\b(\d{1,2}):(\d{2})\b", text)
    if clock:
        return f"{int(clock.group(1)):02d}:{clock.group(2)}"
    english = re.search(r"\b(\d{1,2})\s*(am|pm)\b", text.lower())
    if english:
        hour = int(english.group(1)) % 12 + (12 if english.group(2) == "pm" else 0)
        return f"{hour:02d}:00"
    chinese = re.search(rf"(\d{{1,2}}|[{''.join(CN_DIGITS)}]{{1,2}})点(半)?", text)
    if chinese:
        token = chinese.group(1)
        hour = int(token) if token.isdigit() else sum(CN_DIGITS[c] for c in token)
        if any(word in text for word in ("下午", "晚上")) and hour < 12:
            hour += 12
        return f"{hour:02d}:{'30' if chinese.group(2) else '00'}"
    return None


def _recipient(text: str) -> str | None:
    match = re.search(r"\b(?:to|tell|text|message)\s+([A-Z][a-z]+)", text) or \
        re.search(rf"(?:给|告诉)([{CJK}]{{1,3}}?)(?:发|说|：|:|，|,)", text)
    return match.group(1) if match else None


def _message_text(text: str) -> str | None:
    match = re.search(r"(?:saying|that|[:：]|说)\s*(.+)$", text)
    return match.group(1).strip(" \"'“”") if match else None


def _expression(text: str) -> str | None:
    normalized = text.replace("×", "*").replace("÷", "/").replace("乘以", "*").replace("除以", "/") \
        .replace("加", "+").replace("减", "-")
    candidates = re.findall(r"[\d.()+\-*/% ]{3,}", normalized)
    candidates = [c.strip() for c in candidates if re.search(r"\d\s*[+\-*/%]\s*[\d(]", c)]
    return max(candidates, key=len) if candidates else None


def _target_lang(text: str) -> str | None:
    lowered = text.lower()
    return next((code for word, code in LANGUAGES.items() if word in lowered), None)


def _quoted(text: str) -> str | None:
    match = re.search(r"[\"“「'](.+?)[\"”」']", text)
    return match.group(1) if match else None


def _play_query(text: str) -> str | None:
    match = re.search(r"(?:play|播放|放一首|来一首|听)\s*(.+?)[。.!！?？]*$", text, re.IGNORECASE)
    return match.group(1).strip() if match else None


def _room(text: str) -> str | None:
    lowered = text.lower()
    return next((room for room in ROOMS if room in lowered), None)


def _action(text: str) -> str | None:
    lowered = text.lower()
    if "off" in lowered or "关" in text:
        return "off"
    if " on" in lowered or "开" in text:
        return "on"
    return None


def _brightness(text: str) -> int | None:
    match = re.search(r"(\d{1,3})\s*%", text) or re.search(r"亮度\D{0,3}(\d{1,3})", text)
    return int(match.group(1)) if match else None


def _units(text: str) -> list[str]:
    lowered = text.lower()
    found = [(match.start(), unit) for word, unit in UNITS.items()
             for match in re.finditer(rf"(?<![a-z]){re.escape(word)}(?![a-z])", lowered)]
    ordered: list[str] = []
    for _, unit in sorted(found):
        if not ordered or ordered[-1] != unit:
            ordered.append(unit)
    return ordered


def _path(text: str) -> str | None:
    match = re.search(r"[\w./-]+\.(?:txt|md|json|csv|py|log)\b", text)
    return match.group() if match else None


def _title(text: str) -> str | None:
    quoted = _quoted(text)
    if quoted:
        return quoted
    for word in ("meeting", "会议", "开会", "appointment", "dinner", "晚饭", "聚餐"):
        if word in text.lower():
            return word
    return None


def _hotel_id(text: str) -> str | None:
    match = re.search(r"\b([A-Za-z]{1,4}[-_]?\d{2,})\b", text)
    return match.group(1) if match else None


EXTRACTORS: dict[str, Callable[[str], Any]] = {
    "city": _city, "date": _date, "check_in": _date, "nights": _nights, "time": _time,
    "to": _recipient, "text": lambda t: _quoted(t) or _message_text(t), "content": _message_text,
    "expression": _expression, "target_lang": _target_lang, "query": _play_query, "room": _room,
    "action": _action, "brightness": _brightness, "value": _number,
    "from_unit": lambda t: (_units(t) + [None])[0], "to_unit": lambda t: (_units(t)[1:] + [None])[0],
    "path": _path, "title": _title, "hotel_id": _hotel_id,
}


def describe() -> str:
    """The router's rules in one line each, for the report."""
    return "\n".join(f"- `{tool}`: {json.dumps(list(words), ensure_ascii=False)}" for tool, words in KEYWORDS.items())
