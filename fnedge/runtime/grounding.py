"""Values a conversation mentions: numbers, clock times and dates, read from what the user said.

A tiny model reliably learns *which* argument a request needs and roughly *where* its value is,
but not to reproduce "早上七点半" as `07:30` or "四个晚上" as `4`: it writes a plausible value from
its training distribution instead. The call grammar therefore offers, for number, time and date
arguments, only the values the conversation mentions (`grounded_values`), and the model chooses
among them. When nothing of the kind is found, the argument stays free (its schema type only), so
a phrasing this reader does not know costs the constraint, not the call.

The readers are deliberately small and generic (zh and en): Arabic, Chinese and English numbers;
digital, Chinese and English clock times with their day parts; ISO, Chinese and English dates.
Where a reading is ambiguous ("7点", "seven thirty"), every reading is offered.
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

def _per_conversation(reader):
    """Read each conversation once: the grammar asks every number, time and date field of every
    tool about the same texts. Callers get their own copy of the cached answer."""
    cached = functools.lru_cache(maxsize=64)(lambda texts: reader(texts))

    @functools.wraps(reader)
    def read(texts: Sequence[str]):
        return copy.deepcopy(cached(tuple(texts)))
    return read


# ---- numbers ---------------------------------------------------------------------------------

_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000, "萬": 10000}
_ZH_NUMERAL = re.compile("[零〇一二两兩三四五六七八九十百千万萬]+")

_EN_SMALL = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_EN_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_EN_WORD = "|".join(sorted([*_EN_SMALL, *_EN_TENS, "hundred", "thousand"], key=len, reverse=True))
_EN_NUMERAL = re.compile(rf"\b(?:{_EN_WORD})(?:[\s-]+(?:and\s+)?(?:{_EN_WORD}))*\b")

# Counts said without a numeral: "a couple of nights", "一周", "a single night".
_IMPLIED_COUNTS = [(re.compile(r"\ba\s+couple\b"), 2), (re.compile(r"\ba\s+dozen\b"), 12),
                   (re.compile(r"\bfortnight\b"), 14), (re.compile(r"\b(?:a|one|1)\s+(?:whole\s+)?week\b"), 7),
                   (re.compile(r"一(?:个)?(?:周|星期|礼拜)"), 7),
                   (re.compile(r"\b(?:a|an|single)\s+(?:single\s+)?(?:night|nite|day|hour|minute|room|time)\b"), 1),
                   (re.compile(r"\bhalf\b|一半"), 50)]

_KILO_UNITS = "米克瓦"  # 千米, 千克, 千瓦: the 千 is the unit's kilo
_ZH_DECIMAL = re.compile("([零〇一二两三四五六七八九十百千]+|\\d+)点([零〇一二三四五六七八九]+|\\d+)")
_WEEKS = re.compile(r"(\d+|[a-z]+|[一二两三四五六七八九十]+)\s*(?:weeks?\b|个?(?:周|星期|礼拜))")
_NEGATIVE = re.compile(r"\bminus\s*|零下\s*|负\s*")
# Arabic numbers; one that continues a Latin word or an id ("xm-739", "v2") is part of a name.
_ARABIC = re.compile(r"(?<![A-Za-z0-9_.\-/])(-?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(k\b)?")


_CJK_LATIN_SEAM = re.compile(r"(?<=[\u3000-\u9fff])(?=[a-z])|(?<=[a-z])(?=[\u3000-\u9fff])")


def normalized(text: str) -> str:
    """Full-width digits and punctuation to ASCII (NFKC), lower case, and a space where Chinese
    meets a Latin word ("再eight fifteen"), so English words have their word boundaries."""
    return _CJK_LATIN_SEAM.sub(" ", unicodedata.normalize("NFKC", text).lower())


def zh_numeral_value(text: str) -> int | None:
    """'十五' -> 15, '两千五' -> 2500, '六百零二' -> 602, '三五' -> None (not one number)."""
    total, section, digit, last_unit, zero_after_unit = 0, 0, None, 1, False
    for char in text:
        if char in _ZH_DIGITS:
            if digit is not None and _ZH_DIGITS[char] and digit:
                return None  # two digits in a row ("三五"): a range or a list, not one number
            zero_after_unit |= _ZH_DIGITS[char] == 0
            digit = _ZH_DIGITS[char]
        else:
            unit = _ZH_UNITS[char]
            if unit == 10000:
                section = (section + (digit or 0)) * unit
                total, section = total + section, 0
            else:
                section += (1 if digit is None else digit) * unit
            digit, last_unit, zero_after_unit = None, unit, False
    if digit:  # "两千五": a trailing digit counts in the unit below the last one, unless after 零
        section += digit * (last_unit // 10 if last_unit >= 100 and not zero_after_unit else 1)
    return total + section


_LIST_AND = re.compile(r"(?<!hundred)(?<!thousand)[\s-]+and[\s-]+")  # "fifty-seven and eight": two numbers


def en_numeral_parts(text: str) -> list[tuple[int, int, int | None]]:
    """(start, end, value) of each number an English numeral run says. "and" belongs to a number
    only after hundred or thousand ("two hundred and fifty"); elsewhere it joins two ("add
    fifty-seven and eight"), which as one run read as no number at all."""
    value = en_numeral_value(text)
    if value is not None or not _LIST_AND.search(text):
        return [(0, len(text), value)]
    parts, start = [], 0
    for match in _LIST_AND.finditer(text):
        parts.append((start, match.start(), en_numeral_value(text[start:match.start()])))
        start = match.end()
    return parts + [(start, len(text), en_numeral_value(text[start:]))]


def en_numeral_value(text: str) -> int | None:
    """'twenty-five' -> 25, 'two hundred and fifty' -> 250; None for runs that are not one number."""
    total, current, previous_small = 0, 0, False
    for word in re.split(r"[\s-]+", text):
        if word == "and":
            continue
        if word in _EN_SMALL or word in _EN_TENS:
            value = _EN_SMALL.get(word, _EN_TENS.get(word))
            if previous_small and (current % 10 or value >= 10):
                return None  # "seven thirty": a time or a list, handled elsewhere
            current += value
            previous_small = True
        elif word == "hundred":
            current = (current or 1) * 100
            previous_small = False
        else:  # thousand
            total, current, previous_small = total + (current or 1) * 1000, 0, False
    return total + current


@_per_conversation
def mentioned_numbers(texts: Sequence[str]) -> list[int | float]:
    """Every number the texts mention, in order of appearance, without repeats."""
    found: list[int | float] = []
    for raw in texts:
        # Dates and clock times are not counts; "百分之十五" is 15, not 100 and 15.
        text = _ISO.sub(" ", _DIGITAL.sub(" ", normalized(raw))).replace("百分之", " ")
        text = _NEGATIVE.sub(" -", text)
        for match in _ARABIC.finditer(text):
            sign, whole, fraction, thousands = match.groups()
            value: float = float(whole.replace(",", "") + (fraction or ""))
            value *= 1000 if thousands else 1
            # A minus sign right before the digits, with no word or number before it, is the number's
            # sign ("minus 2", "零下5", "-23 degrees"): offering 2 as well let the model drop it.
            found.append(-value if sign else value)
        zh_decimals = list(_ZH_DECIMAL.finditer(text))
        decimal_spans = [m.span() for m in zh_decimals if _is_zh_decimal(m, text)]
        for match in _ZH_NUMERAL.finditer(text):
            if any(start <= match.start() and match.end() <= end for start, end in decimal_spans):
                continue  # a part of "七十一点五": offering 71 as well let the model drop the .5
            run = match.group()
            if run == "千" and text[match.end():match.end() + 1] in _KILO_UNITS:
                continue  # the kilo of "10千克", no thousand
            value = zh_numeral_value(run)
            if value is not None:
                found += [value, -value] if text[:match.start()].endswith("-") else [value]
            found += [_ZH_DIGITS[c] for c in run if c in _ZH_DIGITS and value is None]
            if text[match.end():match.end() + 1] == "成" and value is not None and value < 10:
                found.append(value * 10)  # 三成 = 30%
        for match in _EN_NUMERAL.finditer(text):
            for start, end, value in en_numeral_parts(match.group()):
                words = re.split(r"[\s-]+", match.group()[start:end])
                found += [value] if value is not None else [en_numeral_value(w) for w in words if w != "and"]
        for match in zh_decimals:  # 九十八点六 = 98.6
            whole = _number_word(match.group(1))
            decimals = "".join(str(_ZH_DIGITS.get(c, c)) for c in match.group(2))
            if whole is not None and decimals.isdigit():
                found.append(float(f"{whole}.{decimals}"))
        for match in _WEEKS.finditer(text):  # "2 weeks", "两周": days
            weeks = _number_word(match.group(1))
            if weeks:
                found.append(weeks * 7)
        for match in re.finditer(f"([零〇一二两三四五六七八九十百]+)千(?=[{_KILO_UNITS}])", text):  # 一千米 = 1 km
            value = zh_numeral_value(match.group(1))
            if value:
                found.append(value)
        for pattern, count in _IMPLIED_COUNTS:
            if pattern.search(text):
                found.append(count)
    return _unique(int(v) if float(v).is_integer() else v for v in found if v is not None)


def _is_zh_decimal(match: re.Match, text: str) -> bool:
    """Whether a `_ZH_DECIMAL` match is a decimal said in Chinese numerals ("七十一点五"), not a
    clock time ("三点五十分") nor digits ("3点5")."""
    return bool(_ZH_NUMERAL.fullmatch(match.group(1)) and _ZH_NUMERAL.fullmatch(match.group(2))
                and not re.match("[十百千万分刻]", text[match.end():match.end() + 1]))


_OPERAND = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")


@_per_conversation
def expression_operands(texts: Sequence[str]) -> list[str]:
    """The numbers an arithmetic expression may use, in the order the texts say them, as it
    writes them: every run of digits (letters or operators around it do not matter: "9219x33",
    "82-362.77") and every number said in Chinese or English words ("六十" -> 60)."""
    return [said for raw in texts for _, _, said in _operand_spans(normalized(raw))]


@functools.lru_cache(maxsize=64)
def _operand_spans(text: str) -> tuple[tuple[int, int, str], ...]:
    """(start, end, number as an expression writes it) of every operand in a normalized text.
    Cached: `expression_operands` and `arithmetic_chain` read the same message for one grammar."""
    found = [(m.start(), m.end(), m.group().replace(",", "")) for m in _OPERAND.finditer(text)]
    readings = [(m.start(), m.end(), zh_numeral_value(m.group())) for m in _ZH_NUMERAL.finditer(text)]
    readings += [(m.start() + start, m.start() + end, value) for m in _EN_NUMERAL.finditer(text)
                 for start, end, value in en_numeral_parts(m.group())]
    found += [(start, end, str(value)) for start, end, value in readings if value is not None]
    return tuple(sorted(found))


# How people say each operator. "-" counts only between digits or spaces ("twenty-one" is one
# number), "x" only as a word or between digits; a percentage is taken of something, so it
# allows "*" too.
_OPERATOR_WORDS = {
    "+": re.compile(r"\+|\bplus\b|\badd|\band\b|\bsum\b|\btotal|加|和"),
    "-": re.compile(r"(?<=[\d\s)])-(?=[\s\d(])|−|\bminus\b|\btake away|\bsubtract|\bless\b|\bdifference|减|差"),
    "*": re.compile(r"\*|×|(?<=\d)x(?=\d)|\bx\b|\btimes\b|\bmultipl|\bproduct|乘"),
    "/": re.compile(r"/|÷|\bdivided|\bover\b|\bdivide|除"),
    "%": re.compile(r"%|\bpercent|百分之"),
}


def said_operators(texts: Sequence[str]) -> list[str]:
    """The operators (+ - * / %) the texts say in symbols or words, in that order; all of them
    when none is said ("3 and 4 together"), so the grammar never forbids what nobody excluded."""
    text = " ".join(normalized(t) for t in texts)
    said = {op for op, pattern in _OPERATOR_WORDS.items() if pattern.search(text)}
    if "%" in said:
        said.add("*")
    return [op for op in _OPERATOR_WORDS if op in said] or list(_OPERATOR_WORDS)


def arithmetic_chain(texts: Sequence[str]) -> list[str] | None:
    """The numbers of the one calculation a single message asks for: the longest run of operands
    joined only by words or symbols of an operator ("21加上9463减48" in "1850块钱以内，还有21加上
    9463减48等于几"; "calc一下657除以..." leaves out the 1 of "一下"). None when the texts are not
    one message, or when no run of two or more stands out."""
    if len(texts) != 1:
        return None
    text = normalized(texts[0])
    spans = _operand_spans(text)
    operators = [m.span() for pattern in _OPERATOR_WORDS.values() for m in pattern.finditer(text)]
    chains: list[list[tuple[int, int, str]]] = []
    for span in spans:
        if chains and _joined_by_an_operator(text, chains[-1][-1][1], span[0], operators):
            chains[-1].append(span)
        else:
            chains.append([span])
    longest = max((len(c) for c in chains), default=0)
    best = [c for c in chains if len(c) == longest]
    return [said for _, _, said in best[0]] if longest >= 2 and len(best) == 1 else None


_CHAIN_BREAK = re.compile(r"[，。,.;；!！?？:：=\n]")  # a new clause: "82-362.77=多少，然后记到 诗-3.txt"
_LONGEST_JOIN = 16  # characters between two operands of one calculation (" multiplied by ", "的差再乘以")


def _joined_by_an_operator(text: str, gap_start: int, gap_end: int, operators: list[tuple[int, int]]) -> bool:
    gap = text[gap_start:gap_end]
    return (len(gap) <= _LONGEST_JOIN and not _CHAIN_BREAK.search(gap)
            and any(gap_start <= a and b <= gap_end for a, b in operators))


# ---- clock times -------------------------------------------------------------------------------

_HOUR = r"(\d{1,2}|[零〇一二两兩三四五六七八九十]{1,3})"
_MINUTE = r"(\d{1,2}|[零〇一二三四五六七八九十]{1,3})"
_ZH_PM = ("下午", "晚上", "傍晚", "夜里", "今晚", "明晚", "晚", "夜")
_ZH_AM = ("早上", "上午", "早晨", "清晨", "明早", "凌晨", "半夜", "午夜", "早")
_ZH_TIME = re.compile(rf"{_HOUR}\s*[点點时時](?:整|钟|鐘)?(半|一刻|三刻|{_MINUTE}分?)?")
_ZH_BEFORE = re.compile(rf"(?:{_HOUR}[点點]差(一刻|{_MINUTE}分?)|差(一刻|{_MINUTE}分?){_HOUR}[点點])")
_DIGITAL = re.compile(r"(?<![\d.])(\d{1,2})[:.](\d{2})(?!\d)\s*(a\.?m\.?|p\.?m\.?)?")
_COMPACT = re.compile(r"(?<![\d:.\-/])([01]\d|2[0-3])([0-5]\d)(?![\d:.\-/年])")
_AM_PM = re.compile(r"(?<![\d.:])(\d{1,2})\s*(a\.?m\.?|p\.?m\.?)(?![a-z])")
_EN_HOUR_WORD = "|".join(sorted([w for w, v in _EN_SMALL.items() if 1 <= v <= 12], key=len, reverse=True))
_EN_HOUR = rf"(\d{{1,2}}|{_EN_HOUR_WORD})"
_AM_PM_WORD = re.compile(rf"\b({_EN_HOUR_WORD})\s*(a\.?m\.?|p\.?m\.?)(?![a-z])")  # "eight pm"
_EN_MINUTE_WORD = ("(?:(?:twenty|thirty|forty|fifty)(?:[\\s-](?:one|two|three|four|five|six|seven|eight|nine))?|"
                   + "|".join(sorted((w for w, v in _EN_SMALL.items() if v), key=len, reverse=True)) + ")")
_EN_PAST = re.compile(rf"\b(half|(?:a\s+)?quarter|{_EN_MINUTE_WORD}|\d{{1,2}})\s+(?:minutes?\s+)?"
                      rf"(past|to|after|before)\s+{_EN_HOUR}\b")
_EN_OCLOCK = re.compile(rf"\b{_EN_HOUR}\s*o'?clock\b")
_EN_HALF_BRITISH = re.compile(rf"\bhalf\s+{_EN_HOUR}\b")
_EN_SPOKEN = re.compile(rf"\b({_EN_HOUR_WORD})[\s-]+(oh[\s-]+{_EN_MINUTE_WORD}|{_EN_MINUTE_WORD})\b")
_SHORT_ANSWER = re.compile(rf"(?:at\s+)?{_EN_HOUR}\W*(?:please|pls|thanks|thank you)?\W*")
_EN_DAY_PART = re.compile(r"\bin the (morning|afternoon|evening)\b|\b(tonight|at night|this evening|noon|midnight)\b"
                          r"|\b(a\.?m\.?|p\.?m\.?)(?![a-z])")


def _number_word(text: str) -> int | None:
    text = text.strip()
    if text.isdigit():
        return int(text)
    if _ZH_NUMERAL.fullmatch(text):
        return zh_numeral_value(text)
    return en_numeral_value(text) if _EN_NUMERAL.fullmatch(text) else None


def _readings(hour: int, minute: int, part: str | None) -> list[tuple[int, int]]:
    """The 24-hour readings of a time said with an optional day part ('am', 'pm' or None)."""
    if not (0 <= hour <= 24 and 0 <= minute < 60):
        return []
    if hour > 12 or hour == 0:
        return [(hour % 24, minute)]
    if part == "am":
        return [(hour % 12, minute)]
    if part == "pm":
        return [(hour if hour == 12 else hour + 12, minute)]
    if part == "night":  # "3:30 at night" is 03:30, "11 at night" 23:00
        return [(hour % 12, minute)] if hour <= 5 or hour == 12 else [(hour + 12, minute)]
    return [(hour, minute), ((hour + 12) % 24, minute)]


def _zh_part(text: str, start: int) -> str | None:
    """The day part said just before a time ('下午3点'); the nearest word wins ('半夜' over '夜')."""
    before = text[max(0, start - 4):start]
    if not before:
        return None
    best: tuple[int, int, str] | None = None
    for words, part in ((_ZH_PM, "pm"), (_ZH_AM, "am"), (("中午",), "pm")):
        for word in words:
            end = before.rfind(word)
            if end >= 0:
                candidate = (end + len(word), len(word), part)
                best = max(best, candidate) if best else candidate
    return best[2] if best else None


def _zh_minutes(said: str | None) -> int | None:
    if not said:
        return 0
    if said == "半":
        return 30
    if said in ("一刻", "三刻"):
        return 15 if said == "一刻" else 45
    return _number_word(said.rstrip("分"))


def _en_part(text: str, start: int, end: int) -> str | None:
    """'am', 'pm' or 'night' when the words right around a time say the part of the day ('7 in the
    evening', 'tonight at 8'); an am/pm marker only counts after the time."""
    parts = set()
    for window, markers_count in ((text[end:end + 18], True), (text[max(0, start - 14):start], False)):
        for match in _EN_DAY_PART.finditer(window):
            word = next(g for g in match.groups() if g)
            marker = re.match(r"[ap]\.?m", word)
            if marker and not markers_count:
                continue
            parts.add("am" if word == "morning" or word.startswith("a") and marker
                      else "night" if word == "at night" else "pm")
    return parts.pop() if len(parts) == 1 else None


@_per_conversation
def mentioned_times(texts: Sequence[str]) -> list[str]:
    """Every clock time the texts mention, as HH:MM, with each reading of an ambiguous one."""
    found: list[tuple[int, int]] = []
    for raw in texts:
        text = normalized(raw)
        for match in _DIGITAL.finditer(text):
            marker = match.group(3)
            part = (("am" if marker.startswith("a") else "pm") if marker
                    else _en_part(text, match.start(), match.end()) or _zh_part(text, match.start()))
            found += _readings(int(match.group(1)), int(match.group(2)), part)
        dates = [m.span() for pattern in (_ISO, _EN_MONTH_DAY, _EN_DAY_MONTH) for m in pattern.finditer(text)]
        for match in _COMPACT.finditer(text):  # "0730", but not the year of a date
            if not any(a <= match.start() < b for a, b in dates):
                found.append((int(match.group(1)), int(match.group(2))))
        for match in _AM_PM.finditer(text):
            found += _readings(int(match.group(1)), 0, "am" if match.group(2).startswith("a") else "pm")
        for match in _AM_PM_WORD.finditer(text):
            before = re.search(r"([a-z]+)[\s-]*$", text[: match.start()])
            if before and (before.group(1) in _EN_SMALL or before.group(1) in _EN_TENS):
                continue  # the minutes of "nine forty-five pm", read below
            found += _readings(_number_word(match.group(1)), 0, "am" if match.group(2).startswith("a") else "pm")
        for match in _ZH_TIME.finditer(text):
            if text.startswith("差", match.end()):
                continue  # "八点差一刻": read below
            hour, minute = _number_word(match.group(1)), _zh_minutes(match.group(2))
            if hour is not None and minute is not None:
                found += _readings(hour, minute, _zh_part(text, match.start()))
        for match in _ZH_BEFORE.finditer(text):
            hour = _number_word(match.group(1) or match.group(6))
            gap = _zh_minutes(match.group(2) or match.group(4))
            if hour is not None and gap:
                found += _readings((hour - 1) % 24, 60 - gap, _zh_part(text, match.start()))
        if re.search(r"\b(?:noon|midday)\b|中午十二点", text):
            found.append((12, 0))
        if re.search(r"\bmidnight\b|午夜|零点", text):
            found.append((0, 0))
        found += _english_word_times(text)
        short_answer = _SHORT_ANSWER.fullmatch(text.strip())
        if short_answer:  # "9 please" in reply to "what time?": an hour
            hour = _number_word(short_answer.group(1))
            if hour is not None:
                found += _readings(hour, 0, None)
    return _unique(f"{h:02d}:{m:02d}" for h, m in found)


def _english_word_times(text: str) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    for match in _EN_PAST.finditer(text):
        said, direction, hour_said = match.groups()
        hour = _number_word(hour_said)
        minutes = 30 if said == "half" else 15 if said.endswith("quarter") else _number_word(said)
        if hour is None or minutes is None or not 0 < minutes < 60:
            continue
        if direction in ("to", "before"):
            hour, minutes = hour - 1 or 12, 60 - minutes
        found += _readings(hour, minutes, _en_part(text, *match.span()))
    for match in _EN_OCLOCK.finditer(text):
        hour = _number_word(match.group(1))
        if hour is not None:
            found += _readings(hour, 0, _en_part(text, *match.span()))
    for match in _EN_HALF_BRITISH.finditer(text):
        hour = _number_word(match.group(1))
        if hour is not None and not text[:match.start()].rstrip().endswith(("a", "and")):
            found += _readings(hour, 30, _en_part(text, *match.span()))
    for match in _EN_SPOKEN.finditer(text):
        hour = _number_word(match.group(1))
        said = match.group(2)
        oh = said.startswith("oh")
        minutes = _number_word(said[3:]) if oh else _number_word(said)
        if hour is not None and minutes is not None and (oh and minutes < 10 or 10 <= minutes < 60):
            found += _readings(hour, minutes, _en_part(text, *match.span()))
    spoken_minutes = rf"[\s-]+(?:oh|{_EN_MINUTE_WORD})\b"
    hour_alone = (rf"\b(?:at|for|by|around|until|till)\s+{_EN_HOUR}\b"
                  rf"(?![:.]\d|\s*(?:o'?clock|a\.?m|p\.?m)|{spoken_minutes})")
    for match in re.finditer(hour_alone, text):
        hour = _number_word(match.group(1))  # "at 7", "for 9 tomorrow morning": the hour alone
        if hour is not None:
            found += _readings(hour, 0, _en_part(text, *match.span()))
    day_part = r"\s+(?:in the (?:morning|afternoon|evening)|tonight|at night)\b"
    # "8 tonight", but not the "two" of "one forty-two in the afternoon"
    for match in re.finditer(rf"(?<!past )(?<!to )(?<![\w-]){_EN_HOUR}{day_part}", text):
        hour = _number_word(match.group(1))
        if hour is not None:
            found += _readings(hour, 0, _en_part(text, *match.span(1)))
    return found


# ---- dates -------------------------------------------------------------------------------------

_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december"]
_MONTH = "(" + "|".join(m[:3] + f"(?:{m[3:]})?" for m in _MONTHS) + r")\.?"
_ISO = re.compile(r"(?<!\d)(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})(?!\d)")
_ZH_MONTH_DAY = re.compile(r"(?<![\d年/.-])(\d{1,2}|[一二三四五六七八九十]{1,3})\s*月"
                           r"\s*(\d{1,2}|[一二三四五六七八九十]{1,3})\s*[日号號]?")
_EN_MONTH_DAY = re.compile(rf"\b{_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?(?!\d)(?:,?\s*(\d{{4}}))?")
_EN_DAY_MONTH = re.compile(rf"\b(?:the\s+)?(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\b(?:,?\s*(\d{{4}}))?")


def _month(said: str) -> int:
    return next(i + 1 for i, m in enumerate(_MONTHS) if m.startswith(said[:3]))


@_per_conversation
def mentioned_dates(texts: Sequence[str]) -> tuple[list[str], list[str]]:
    """(full dates as YYYY-MM-DD, month-days said without a year as MM-DD) the texts mention."""
    full: list[str] = []
    yearless: list[str] = []

    def add(year: str | None, month: int | None, day: int | None) -> None:
        if not (month and day and 1 <= month <= 12 and 1 <= day <= 31):
            return
        (full if year else yearless).append(f"{year}-{month:02d}-{day:02d}" if year else f"{month:02d}-{day:02d}")

    for raw in texts:
        text = normalized(raw)
        for match in _ISO.finditer(text):
            add(match.group(1), int(match.group(2)), int(match.group(3)))
        for match in _ZH_MONTH_DAY.finditer(text):
            add(None, _number_word(match.group(1)), _number_word(match.group(2)))
        for match in _EN_MONTH_DAY.finditer(text):
            add(match.group(3), _month(match.group(1)), int(match.group(2)))
        for match in _EN_DAY_MONTH.finditer(text):
            add(match.group(3), _month(match.group(2)), int(match.group(1)))
    yearless = [d for d in yearless if not any(f.endswith(d) for f in full)]
    return _unique(full), _unique(yearless)


# The relative words of each date keyword, as people type them (colloquial and misspelt forms).
_RELATIVE_DAY_WORDS = {
    "today": ("今天|今日|今晚|今早|今夜|今儿", "today|tonight|tonite"),
    "tomorrow": ("明天|明日|明早|明晚|明儿|名天", "tomorrow|tmrw|tmr|tmw|2moro|2morrow"),
    "day_after_tomorrow": ("后天|后儿", "day after tomorrow"),
}
# Ways of naming a day besides a date: relative words, weekdays, a week or a month. Date keywords
# ("today, tomorrow") are always offered for a date argument, so this decides only whether a
# *required* date was said at all: "schedule a design review" names no day, and the model should ask which.
_DAY_WORDS = re.compile(
    "|".join(zh for zh, _ in _RELATIVE_DAY_WORDS.values()) + "|"
    r"周[一二三四五六日天末]|星期[一二三四五六日天]|礼拜[一二三四五六日天]|[这本下][个]?[周月]|月[底初中]|\d+\s*号|"
    r"\b(?:" + "|".join(en for _, en in _RELATIVE_DAY_WORDS.values()) + "|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tue|tues|wed|thu|thurs|fri|sat|"
    r"weekend|week|month|this (?:morning|afternoon|evening))\b",
    re.IGNORECASE)
_DAY_NAMES = ("today", "tonight", "tomorrow", "monday", "tuesday", "wednesday", "thursday", "friday",
              "saturday", "sunday", "weekend")
_PARTS_OF_TODAY = ("morning", "afternoon", "evening")  # after "this"


def says_a_day(texts: Sequence[str]) -> bool:
    """Whether the texts name a day in any way: a date, one of `_DAY_WORDS`, or a misspelt day
    name ("tomrorow", "toady": the same first letter, and at least 80% alike)."""
    full, yearless = mentioned_dates(texts)
    texts = [normalized(t) for t in texts]
    if full or yearless or any(_DAY_WORDS.search(t) for t in texts):
        return True
    words = {w for t in texts for w in re.findall(r"[a-z]{4,}", t)}
    parts = {w for t in texts for w in re.findall(r"\bthis ([a-z]{4,})", t)}
    return (any(_alike(w, n) for w in words for n in _DAY_NAMES)
            or any(_alike(w, n) for w in parts for n in _PARTS_OF_TODAY))


_RELATIVE_DAYS = {keyword: re.compile(rf"{zh}|\b(?:{en})\b" + ("(?<!after tomorrow)" if keyword == "tomorrow" else ""))
                  for keyword, (zh, en) in _RELATIVE_DAY_WORDS.items()}


@_per_conversation
def said_relative_days(texts: Sequence[str]) -> set[str]:
    """The date keywords (today, tomorrow, day_after_tomorrow) the texts say in words ("明早",
    "tmrw"). Weekdays and "next week" are not among them: no keyword names them."""
    said = {normalized(t) for t in texts}
    return {keyword for keyword, pattern in _RELATIVE_DAYS.items() if any(pattern.search(t) for t in said)}


def _alike(word: str, name: str) -> bool:
    return word[0] == name[0] and difflib.SequenceMatcher(None, word, name).ratio() >= 0.8


# ---- what a property may take --------------------------------------------------------------------

_TIME_FIELD = re.compile(r"\bHH:MM\b")
_DATE_FIELD = re.compile(r"\bYYYY-MM-DD\b")
_RELATIVE_WORD = re.compile(r"^[a-z]+(?:_[a-z]+)*$")


def field_kind(prop: dict[str, Any]) -> str | None:
    """'number', 'time' or 'date' for properties whose value the conversation must mention;
    'unit' and 'language' for those whose value it names in words ("公里" -> km, "法语" -> fr);
    'expression' for arithmetic built from the numbers it mentions ("15减8再乘72" -> (15-8)*72)."""
    if "enum" in prop:
        codes = [v for v in prop["enum"] if isinstance(v, str)]
        return "language" if codes and all(v.lower() in _LANGUAGE_NAMES for v in codes) else None
    if prop.get("type") == "string" and _UNIT_FIELD.search(prop.get("description", "")):
        return "unit"
    if prop.get("type") in ("integer", "number"):
        return "number"
    description = prop.get("description", "")
    if prop.get("type") == "string" and _TIME_FIELD.search(description):
        return "time"
    if prop.get("type") == "string" and _DATE_FIELD.search(description):
        return "date"
    if prop.get("type") == "string" and _EXPRESSION_FIELD.search(description):
        return "expression"
    return None


# "Arithmetic expression using digits and + - * / ( ) . %": its numbers are the user's, in digits.
_EXPRESSION_FIELD = re.compile(r"\barithmetic expression\b|\bmath(?:ematical)? expression\b|算式|数学表达式",
                               re.IGNORECASE)


def relative_date_words(prop: dict[str, Any]) -> list[str]:
    """The keywords a date description lists besides the explicit form ('today, tomorrow, or YYYY-MM-DD')."""
    items = re.split(r",|\bor\b", prop.get("description", ""))
    return [item.strip() for item in items if _RELATIVE_WORD.match(item.strip())]


@dataclass(frozen=True)
class Grounded:
    """What a number/time/date argument may be: one of `values`, or (dates) any year's `month_days`."""
    values: list[Any]
    month_days: list[str] = field(default_factory=list)  # "06-18": said without a year


def grounded_values(prop: dict[str, Any], sources: Sequence[str]) -> Grounded | None:
    """The values of a number/time/date property that the conversation supports, or None when
    the property is not of those kinds or the conversation mentions nothing it could take."""
    kind = field_kind(prop)
    if kind == "number":
        values = [v for v in mentioned_numbers(sources) + _said_bounds(prop, sources) if _fits(v, prop)]
        return Grounded([int(v) if prop.get("type") == "integer" else v for v in values]) if values else None
    if kind == "time":
        # No clock time said, but a bare number ("alarm tmrw 11"): for a time, that is the hour.
        bare_hours = [int(n) for s in sources for n in _BARE_HOUR.findall(normalized(s)) if int(n) <= 24]
        times = mentioned_times(sources) or _unique(f"{h:02d}:{m:02d}" for n in bare_hours
                                                    for h, m in _readings(n, 0, None))
        return Grounded(times) if times else None
    if kind == "date":
        full, yearless = mentioned_dates(sources)
        words = relative_date_words(prop)
        # A description that lists no keywords leaves an unrecognised way of saying a date free.
        return Grounded(words + full, yearless) if words or full or yearless else None
    if kind == "unit":
        units = mentioned_units(sources)
        return Grounded(units) if units else None
    if kind == "language":
        # The languages named, and the one the user writes in ("这句英文什么意思" wants zh).
        codes = [c for c in mentioned_languages(sources) + [_writing_language(sources)] if c in prop["enum"]]
        return Grounded(_unique(codes)) if codes else None
    return None


# ---- units and languages, named in words --------------------------------------------------------

_UNIT_FIELD = re.compile(r"\bunit\b|单位", re.IGNORECASE)
# symbol: what a user may call it. Longer names are matched first, so 千米 is km, not m.
_UNIT_NAMES = {
    "km": ["kilometers", "kilometres", "kilometer", "kilometre", "kms", "km", "公里", "千米"],
    "mi": ["miles", "mile", "mi", "英里"],
    "m": ["meters", "metres", "meter", "metre", "m", "米"],
    "cm": ["centimeters", "centimetres", "centimeter", "centimetre", "cm", "厘米"],
    "mm": ["millimeters", "millimetres", "millimeter", "millimetre", "mm", "毫米"],
    "ft": ["feet", "foot", "ft", "英尺", "呎", "尺"],
    "in": ["inches", "inch", "英寸", "吋"],
    "kg": ["kilograms", "kilogram", "kilos", "kilo", "kg", "公斤", "千克"],
    "g": ["grams", "gram", "g", "克"],
    "lb": ["pounds", "pound", "lbs", "lb", "磅"],
    "oz": ["ounces", "ounce", "oz", "盎司"],
    "c": ["celsius", "centigrade", "°c", "℃", "摄氏", "c"],
    "f": ["fahrenheit", "°f", "℉", "华氏", "f"],
}
_UNIT_PATTERN = re.compile("|".join(
    (re.escape(name) if not name.isascii() or not name.isalpha() else rf"(?<![a-z'’]){name}(?![a-z])")
    for name in sorted((n for names in _UNIT_NAMES.values() for n in names), key=len, reverse=True)))
_UNIT_OF = {name: symbol for symbol, names in _UNIT_NAMES.items() for name in names}

_LANGUAGE_NAMES = {
    "zh": ["chinese", "mandarin", "中文", "汉语", "普通话", "国语"], "en": ["english", "英语", "英文"],
    "ja": ["japanese", "日语", "日文"], "ko": ["korean", "韩语", "韩文", "朝鲜语"], "fr": ["french", "法语", "法文"],
    "de": ["german", "德语", "德文"], "es": ["spanish", "西班牙语", "西语"], "it": ["italian", "意大利语"],
    "ru": ["russian", "俄语", "俄文"], "pt": ["portuguese", "葡萄牙语"], "ar": ["arabic", "阿拉伯语"],
}
_LANGUAGE_PATTERN = re.compile("|".join(
    (rf"\b{re.escape(name)}\b" if name.isascii() else re.escape(name))
    for name in sorted((n for names in _LANGUAGE_NAMES.values() for n in names), key=len, reverse=True)))
_LANGUAGE_OF = {name: code for code, names in _LANGUAGE_NAMES.items() for name in names}


@_per_conversation
def mentioned_units(texts: Sequence[str]) -> list[str]:
    """Unit symbols the texts name, in order: "5公里是多少英里" -> ["km", "mi"]."""
    return _unique(_UNIT_OF[m.group()] for t in texts for m in _UNIT_PATTERN.finditer(normalized(t)))


@_per_conversation
def mentioned_languages(texts: Sequence[str]) -> list[str]:
    """Language codes the texts name, in order: "翻成法语" -> ["fr"]."""
    return _unique(_LANGUAGE_OF[m.group()] for t in texts for m in _LANGUAGE_PATTERN.finditer(normalized(t)))


_QUOTED = re.compile(r"[“\"'‘「『][^“”\"'‘’「」『』]*[”\"'’」』]")


def _writing_language(texts: Sequence[str]) -> str:
    """zh or en: what the last message is mostly written in, quotations aside. A tool result
    (a JSON object) is not the user's writing: after `{"error": …}` it is the message before."""
    written = [t for t in texts if not t.lstrip().startswith("{")]
    text = _QUOTED.sub(" ", written[-1] if written else "")
    han, latin_words = len(re.findall("[\u4e00-\u9fff]", text)), len(re.findall("[A-Za-z]+", text))
    return "zh" if 2 * han >= latin_words else "en"


_SAID_MAXIMUM = re.compile(r"\b(?:full|max|maximum|highest|brightest|loudest)\b|all the way up"
                           r"|最亮|最大|最高|拉满|开满|调满|满格")
_SAID_MINIMUM = re.compile(r"\b(?:min|minimum|lowest|dimmest|quietest)\b|all the way down|最暗|最小|最低")


_BARE_HOUR = re.compile(r"(?<![\d:.\-/])(\d{1,2})(?![\d:.\-/%])")  # digits only: "一下" is not one o'clock


def _said_bounds(prop: dict[str, Any], sources: Sequence[str]) -> list[int | float]:
    """The schema's maximum (minimum) when the user asks for the most (least): "拉满" -> 100."""
    text = " ".join(normalized(s) for s in sources)
    said = [prop["maximum"]] if "maximum" in prop and _SAID_MAXIMUM.search(text) else []
    return said + ([prop["minimum"]] if "minimum" in prop and _SAID_MINIMUM.search(text) else [])


def _fits(value: int | float, prop: dict[str, Any]) -> bool:
    if prop.get("type") == "integer" and not float(value).is_integer():
        return False
    if "minimum" in prop and value < prop["minimum"]:
        return False
    return not ("maximum" in prop and value > prop["maximum"])


def _unique(values) -> list:
    return list(dict.fromkeys(values))
