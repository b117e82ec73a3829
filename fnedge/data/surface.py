"""How people say numbers, times and dates, paired with the normalized value a call needs.

Every `say_*` function takes the value and returns one random way to say it, so a generator picks
the value first (uniformly, no bias toward easy forms) and the surface form second.
"""

from __future__ import annotations

import datetime as dt
import random

ZH_DIGITS = "零一二三四五六七八九"
EN_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
           "nineteen"]
EN_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")

# Month-day dates without a year ("6月18日", "June 18") mean this year; the data fixes it to 2025.
IMPLIED_YEAR = 2025
MONTHS_EN = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
             "October", "November", "December"]


# ---- numbers -------------------------------------------------------------------------------

def zh_number(n: int, liang: bool = False) -> str:
    """Chinese numerals for 0 <= n < 10^8: 15 -> 十五, 105 -> 一百零五, 2000 -> 两千 (liang)."""
    if n < 0:
        return "负" + zh_number(-n, liang)
    if n < 10:
        return "两" if (liang and n == 2) else ZH_DIGITS[n]
    if n < 20:
        return "十" + (ZH_DIGITS[n - 10] if n > 10 else "")
    if n >= 10000:
        high, low = divmod(n, 10000)
        text = zh_number(high, liang) + "万"
        if low:
            text += ("零" if low < 1000 else "") + _zh_below_10000(low, liang, leading=False)
        return text
    return _zh_below_10000(n, liang, leading=True)


def _zh_below_10000(n: int, liang: bool, leading: bool) -> str:
    parts: list[str] = []
    zero_pending = started = False
    for size, name in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit, n = divmod(n, size)
        if not digit:
            zero_pending = started
            continue
        if zero_pending:
            parts.append("零")
        if size == 10 and digit == 1 and leading and not started:
            word = ""  # 十五, not 一十五
        elif liang and digit == 2 and size >= 100:
            word = "两"
        else:
            word = ZH_DIGITS[digit]
        parts.append(word + name)
        started, zero_pending = True, False
    return "".join(parts)


def zh_decimal(x: float) -> str:
    whole, _, frac = f"{x:g}".partition(".")
    text = zh_number(int(whole)) if whole != "-0" else "负零"
    return text + ("点" + "".join(ZH_DIGITS[int(d)] for d in frac) if frac else "")


def en_number(n: int) -> str:
    """English words for 0 <= n < 10^6."""
    if n < 0:
        return "minus " + en_number(-n)
    if n < 20:
        return EN_ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return EN_TENS[tens] + ("-" + EN_ONES[ones] if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return EN_ONES[hundreds] + " hundred" + (" and " + en_number(rest) if rest else "")
    thousands, rest = divmod(n, 1000)
    return en_number(thousands) + " thousand" + ((" " if rest >= 100 else " and ") + en_number(rest) if rest else "")


def zh_short_number(n: int) -> str | None:
    """The spoken short form that drops the last unit: 350 -> 三百五, 1200 -> 一千二, 25000 -> 两万五.

    Only for numbers made of two leading digits followed by zeros (the dropped unit is then
    unambiguous); None otherwise.
    """
    for size, name, lower in ((10000, "万", 1000), (1000, "千", 100), (100, "百", 10)):
        if n >= size and n < size * 10:
            high, rest = divmod(n, size)
            low, tail = divmod(rest, lower)
            if low and not tail:
                return ("两" if high == 2 else ZH_DIGITS[high]) + name + ZH_DIGITS[low]
            return None
    return None


def en_hundreds(n: int) -> str | None:
    """'twelve hundred' for 1100..9900 in hundreds that are not whole thousands; None otherwise."""
    if 1100 <= n <= 9900 and n % 100 == 0 and n % 1000:
        return en_number(n // 100) + " hundred"
    return None


def with_commas(n: int) -> str:
    return f"{n:,}"


def number_text(x: float) -> str:
    """A number as digits, without a trailing .0."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def as_number(x: float) -> int | float:
    """JSON-friendly: 5.0 -> 5."""
    return int(x) if float(x).is_integer() else x


def say_count_zh(n: int, rng: random.Random) -> str:
    """A small count in Chinese: digits or words, 2 as 两."""
    return str(n) if rng.random() < 0.45 else zh_number(n, liang=True)


def say_amount(n: int, lang: str, rng: random.Random) -> str:
    """A plain amount of money or a quantity without unit: 1500 / 1,500 / 一千五百 / 一千五 /
    fifteen hundred / 1.5k."""
    r = rng.random()
    short = zh_short_number(n) if lang == "zh" else en_hundreds(n)
    if short and r < 0.25:
        return short
    if n >= 1000 and n % 100 == 0 and r < 0.32:
        return f"{n / 1000:g}k"
    if lang == "zh":
        if r < 0.65:
            return str(n)
        if r < 0.75 and n >= 1000:
            return with_commas(n)
        return zh_number(n, liang=rng.random() < 0.5)
    if r < 0.7 or n > 9999:
        return str(n)
    if r < 0.85 and n >= 1000:
        return with_commas(n)
    return en_number(n) if n < 100 or n % 100 == 0 else str(n)


# ---- times ---------------------------------------------------------------------------------

def hhmm(hour: int, minute: int) -> str:
    return f"{hour:02d}:{minute:02d}"


def random_time(rng: random.Random) -> tuple[int, int]:
    """Hours weighted toward waking hours; minutes mostly round."""
    hour = rng.choice(list(range(24)) + list(range(6, 23)) * 2)
    minute = rng.choice([0] * 6 + [30] * 4 + [15, 45] * 2 + [5, 10, 20, 25, 35, 40, 50, 55] + [rng.randrange(60)] * 2)
    return hour, minute


def _zh_period(hour: int, rng: random.Random) -> str | None:
    """A Chinese day-period word that makes a 12-hour reading unambiguous, or None."""
    if hour < 5:
        return rng.choice(["凌晨", "凌晨", "半夜"]) if hour >= 1 else None
    if hour < 9:
        return rng.choice(["早上", "早上", "早晨", "上午", "清晨", "早"])
    if hour < 11:
        return rng.choice(["上午", "早上"])
    if hour < 13:
        return "中午" if hour == 12 else "上午"
    if hour < 17:
        return rng.choice(["中午", "下午"]) if hour == 13 else "下午"
    if hour < 19:
        return rng.choice(["下午", "傍晚", "晚上"])
    return rng.choice(["晚上", "晚上", "夜里"]) if hour >= 21 else "晚上"


def _zh_hour_word(h12: int, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return str(h12)
    return "两" if h12 == 2 else zh_number(h12)


def _zh_minutes(minute: int, rng: random.Random) -> str:
    if minute == 0:
        return rng.choice(["点", "点", "点整", "点钟"])
    if minute == 30:
        return rng.choice(["点半", "点半", "点30", "点三十", "点30分"])
    if minute == 15 and rng.random() < 0.5:
        return "点一刻"
    if minute == 45 and rng.random() < 0.3:
        return "点三刻"
    if minute < 10:
        return rng.choice([f"点0{minute}", f"点零{ZH_DIGITS[minute]}", f"点{minute}分", f"点0{minute}分",
                           f"点零{ZH_DIGITS[minute]}分"])
    words = zh_number(minute)
    return rng.choice([f"点{minute}", f"点{minute}分", f"点{words}", f"点{words}分"])


def say_time(hour: int, minute: int, lang: str, rng: random.Random, period: bool = True) -> str:
    """One way to say a clock time; the caller's value is always hhmm(hour, minute).

    period=False: the sentence already says the part of the day ("明早", "今晚", "tonight at"), so
    the time is said as on a 12-hour clock with no day-part word ("今晚8点" -> 20:00).
    """
    if lang == "zh":
        return _say_time_zh(hour, minute, rng, period)
    return _say_time_en(hour, minute, rng, period)


def _zh_before_hour(hour: int, minute: int, rng: random.Random, period: bool) -> str | None:
    """'八点差一刻' / '差五分八点' for 7:45 / 7:55 (daytime only, where the reading is clear)."""
    if minute not in (45, 50, 55) or not 6 <= hour <= 20:
        return None
    nxt = hour + 1
    gap = "一刻" if minute == 45 else f"{zh_number(60 - minute)}分"
    word = _zh_hour_word(nxt % 12 or 12, rng)
    if not period or (6 <= nxt <= 12 and rng.random() < 0.4):
        return rng.choice([f"{word}点差{gap}", f"差{gap}{word}点"])
    return f"{_zh_period(nxt, rng)}{word}点差{gap}"


def _say_time_zh(hour: int, minute: int, rng: random.Random, period: bool = True) -> str:
    r = rng.random()
    h12 = hour % 12 or 12
    if r < 0.06:
        before = _zh_before_hour(hour, minute, rng, period)
        if before:
            return before
    if not period:
        if r < 0.22:
            return f"{h12}:{minute:02d}"
        return f"{_zh_hour_word(h12, rng)}{_zh_minutes(minute, rng)}"
    if r < 0.17:  # digital clock: 19:30 / 7:30
        return f"{hour}:{minute:02d}" if rng.random() < 0.5 else hhmm(hour, minute)
    if r < 0.24 and hour >= 13:  # 24-hour spoken: 19点30
        return f"{hour}{_zh_minutes(minute, rng)}"
    if hour == 0:
        if minute == 0:
            return rng.choice(["00:00", "零点", "0点", "半夜十二点", "半夜12点", "午夜十二点", "凌晨12点", "凌晨零点",
                               "夜里12点"])
        return rng.choice([f"零{_zh_minutes(minute, rng)}", f"凌晨0{_zh_minutes(minute, rng)}",
                           f"半夜12{_zh_minutes(minute, rng)}"])
    if r < 0.3 and hour >= 1:  # day part + digital clock: 下午3:30
        return f"{_zh_period(hour, rng)}{h12}:{minute:02d}"
    if 5 <= hour <= 12 and rng.random() < 0.3:
        prefix = ""  # a bare 1..12 o'clock reads as morning (八点二十 -> 08:20) or noon
    else:
        prefix = _zh_period(hour, rng) or ""
    return f"{prefix}{_zh_hour_word(h12, rng)}{_zh_minutes(minute, rng)}"


def _en_day_part(hour: int, rng: random.Random | None = None) -> str:
    if 5 <= hour < 12:
        return "in the morning"
    if 12 <= hour < 17:
        return "in the afternoon"
    if 17 <= hour < 21:
        return "in the evening"
    if 1 <= hour < 5 and rng is not None and rng.random() < 0.6:
        return "in the morning"  # "2 in the morning"
    return "at night"


def _en_words_time(hour: int, minute: int, rng: random.Random, part: str) -> str:
    """'half past seven', 'quarter to eight', 'seven thirty', 'ten past 7' (+ part)."""
    h12 = hour % 12 or 12
    words = en_number(h12) if rng.random() < 0.8 else str(h12)
    nxt = en_number(h12 % 12 + 1) if rng.random() < 0.8 else str(h12 % 12 + 1)
    # "quarter to one" next to a 12 o'clock hour (or 11 -> 12) reads ambiguously: say it forward.
    forward_ok = 5 <= hour <= 10 or (bool(part) and 12 <= hour <= 22)
    if minute == 0:
        return f"{words} o'clock{part}" if rng.random() < 0.6 or not part else f"{words}{part}"
    if minute == 30:
        r = rng.random()
        if r < 0.12 and part == "" and 5 <= hour <= 11:
            return f"half {words}"  # British: half seven = 7:30
        return f"half past {words}{part}" if r < 0.6 else f"{en_number(h12)} thirty{part}"
    if minute == 15:
        return (f"{rng.choice(['quarter', 'a quarter'])} past {words}{part}" if rng.random() < 0.6
                else f"{en_number(h12)} fifteen{part}")
    if minute == 45 and forward_ok and rng.random() < 0.6:
        return f"{rng.choice(['quarter', 'a quarter'])} to {nxt}{part}"
    if minute in (40, 50, 55) and forward_ok and rng.random() < 0.4:
        return f"{en_number(60 - minute)} to {nxt}{part}"
    if minute in (5, 10, 20, 25) and rng.random() < 0.5:
        return f"{en_number(minute)} past {words}{part}"
    words = en_number(h12)  # "seven forty-one", never "7 forty-one"
    return f"{words} {('oh ' + en_number(minute)) if minute < 10 else en_number(minute)}{part}"


def _say_time_en(hour: int, minute: int, rng: random.Random, period: bool = True) -> str:
    h12 = hour % 12 or 12
    clock = f"{h12}" if minute == 0 else f"{h12}:{minute:02d}"
    marks = ["am", "am", "AM", " am", " a.m.", " AM"] if hour < 12 else ["pm", "pm", "PM", " pm", " p.m.", " PM"]
    r = rng.random()
    if not period:
        if r < 0.35:
            return clock
        if r < 0.6:
            return clock + rng.choice(marks)
        return _en_words_time(hour, minute, rng, "")
    if hour == 12 and minute == 0 and r < 0.4:
        return rng.choice(["noon", "12 noon", "midday", "noon"])
    if hour == 0 and minute == 0 and r < 0.5:
        return rng.choice(["midnight", "midnight", "12 midnight"])
    if r < 0.13:
        return hhmm(hour, minute) if hour >= 10 or rng.random() < 0.5 else f"{hour}:{minute:02d}"
    if r < 0.16:
        return f"{hour:02d}{minute:02d}"  # "0730", "1930"
    if r < 0.22 and 5 <= hour <= 12:
        return clock  # a bare "7" or "7:30" reads as morning (or noon)
    if r < 0.55:
        if minute and rng.random() < 0.2:
            clock = f"{h12}.{minute:02d}"  # 7.30am
        return clock + rng.choice(marks)
    if r < 0.68:
        return f"{clock} {_en_day_part(hour, rng)}"
    if r < 0.72:
        words = en_number(h12) + ("" if minute == 0 else " " + (("oh " + en_number(minute)) if minute < 10 else en_number(minute)))
        return words + (" pm" if hour >= 12 else " am")  # "seven thirty pm"
    # Word forms. Without a day part they read as 1..12 in the morning (or 12 noon).
    bare_ok = 5 <= hour <= 12
    part = "" if bare_ok and rng.random() < 0.6 else " " + _en_day_part(hour, rng)
    return _en_words_time(hour, minute, rng, part)


# ---- dates ---------------------------------------------------------------------------------

RELATIVE_DATES = {
    "today": {"zh": ["今天", "今天", "今天", "今日", "今儿", "今儿个"], "en": ["today", "today", "today"]},
    "tomorrow": {"zh": ["明天", "明天", "明天", "明日", "明儿", "明儿个"],
                 "en": ["tomorrow", "tomorrow", "tomorrow", "tmrw", "tmr", "tomorrow"]},
    "day_after_tomorrow": {"zh": ["后天", "后天", "后天", "后儿", "后儿个"],
                           "en": ["the day after tomorrow", "day after tomorrow", "the day after tomorrow",
                                  "day after tmrw"]},
}


def random_date(rng: random.Random, implied_year_only: bool = False) -> dt.date:
    year = IMPLIED_YEAR if implied_year_only else rng.choice([2025, 2025, 2026])
    return dt.date(year, 1, 1) + dt.timedelta(days=rng.randrange(365))


def ordinal_suffix(n: int) -> str:
    return "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def say_explicit_date(day: dt.date, lang: str, rng: random.Random, bare: bool = False) -> str:
    """An explicit date; forms without a year are only produced for IMPLIED_YEAR dates.

    zh: 2025年6月18日, 6月18号, 6月18, 六月十八号, 2025/6/18 ...; en: June 18th, 18 June, Jun 18,
    the 18th of June, June 18, 2026, 2025-06-18 ... ("on " in front unless bare).
    """
    y, m, d = day.year, day.month, day.day
    with_year_first = rng.random() < 0.2 or y != IMPLIED_YEAR
    if lang == "zh":
        if with_year_first:
            return rng.choice([day.isoformat(), f"{y}年{m}月{d}日", f"{y}年{m}月{d}日", f"{y}年{m}月{d}号",
                               f"{y}/{m}/{d}", f"{y}.{m}.{d}"])
        return rng.choice([f"{m}月{d}日", f"{m}月{d}号", f"{m}月{d}号", f"{m}月{d}", f"{zh_number(m)}月{zh_number(d)}号",
                           f"{zh_number(m)}月{zh_number(d)}日"])
    on = "" if bare else "on "
    month = MONTHS_EN[m - 1]
    th = ordinal_suffix(d)
    if with_year_first:
        return on + rng.choice([day.isoformat(), f"{month} {d}, {y}", f"{month} {d}{th}, {y}", f"{d} {month} {y}",
                                f"{y}/{m:02d}/{d:02d}"])
    return on + rng.choice([f"{month} {d}", f"{month} {d}{th}", f"{month} {d}{th}", f"{d} {month}", f"{d}{th} {month}",
                            f"{month[:3]} {d}", f"the {d}{th} of {month}"])


def to_full_width(text: str) -> str:
    return text.translate(FULL_WIDTH)
