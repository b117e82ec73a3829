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
    """A plain amount of money or a quantity without unit: 1500 / 1,500 / 一千五百 / fifteen hundred."""
    r = rng.random()
    if lang == "zh":
        if r < 0.55:
            return str(n)
        if r < 0.7 and n >= 1000:
            return with_commas(n)
        return zh_number(n, liang=rng.random() < 0.5)
    if r < 0.6 or n > 9999:
        return str(n)
    if r < 0.8 and n >= 1000:
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
        return rng.choice(["早上", "早上", "早晨", "上午", "清晨"])
    if hour < 11:
        return rng.choice(["上午", "早上"])
    if hour < 13:
        return "中午" if hour == 12 else "上午"
    if hour < 17:
        return "下午"
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


def say_time(hour: int, minute: int, lang: str, rng: random.Random) -> str:
    """One way to say a clock time; the caller's value is always hhmm(hour, minute)."""
    if lang == "zh":
        return _say_time_zh(hour, minute, rng)
    return _say_time_en(hour, minute, rng)


def _say_time_zh(hour: int, minute: int, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.18:  # digital clock: 19:30 / 7:30
        return f"{hour}:{minute:02d}" if rng.random() < 0.5 else hhmm(hour, minute)
    if r < 0.25 and hour >= 13:  # 24-hour spoken: 19点30
        return f"{hour}{_zh_minutes(minute, rng)}"
    if hour == 0:
        return rng.choice(["00:00", "零点", "0点"]) if minute == 0 else f"零{_zh_minutes(minute, rng)}"
    h12 = hour % 12 or 12
    if 5 <= hour <= 12 and rng.random() < 0.3:
        period = ""  # a bare 1..12 o'clock reads as morning (八点二十 -> 08:20) or noon
    else:
        period = _zh_period(hour, rng) or ""
    return f"{period}{_zh_hour_word(h12, rng)}{_zh_minutes(minute, rng)}"


def _en_day_part(hour: int) -> str:
    if 5 <= hour < 12:
        return "in the morning"
    if 12 <= hour < 17:
        return "in the afternoon"
    if 17 <= hour < 21:
        return "in the evening"
    return "at night"


def _say_time_en(hour: int, minute: int, rng: random.Random) -> str:
    h12 = hour % 12 or 12
    r = rng.random()
    if hour == 12 and minute == 0 and r < 0.4:
        return rng.choice(["noon", "12 noon", "midday"])
    if hour == 0 and minute == 0 and r < 0.5:
        return "midnight"
    if r < 0.15:
        return hhmm(hour, minute) if hour >= 10 or rng.random() < 0.5 else f"{hour}:{minute:02d}"
    clock = f"{h12}" if minute == 0 else f"{h12}:{minute:02d}"
    if r < 0.6:
        marks = ["am", "am", "AM", " am", " a.m.", " AM"] if hour < 12 else ["pm", "pm", "PM", " pm", " p.m.", " PM"]
        return clock + rng.choice(marks)
    if r < 0.72:
        return f"{clock} {_en_day_part(hour)}"
    # Word forms. Without a day part they read as 1..12 in the morning (or 12 noon).
    bare_ok = 5 <= hour <= 12
    part = "" if bare_ok and rng.random() < 0.6 else " " + _en_day_part(hour)
    words = en_number(h12)
    if minute == 0:
        return f"{words} o'clock{part}" if rng.random() < 0.6 else (f"{words}{part}" if part else f"{words} o'clock")
    if minute == 30:
        return f"half past {words}{part}" if rng.random() < 0.6 else f"{words} thirty{part}"
    if minute == 15:
        return f"quarter past {words}{part}" if rng.random() < 0.6 else f"{words} fifteen{part}"
    if minute == 45 and rng.random() < 0.6 and hour not in (11, 23):
        return f"quarter to {en_number(h12 % 12 + 1)}{part}"
    if minute in (5, 10, 20, 25) and rng.random() < 0.5:
        return f"{en_number(minute)} past {words}{part}"
    return f"{words} {('oh ' + en_number(minute)) if minute < 10 else en_number(minute)}{part}"


# ---- dates ---------------------------------------------------------------------------------

RELATIVE_DATES = {
    "today": {"zh": ["今天", "今天", "今日", "今儿"], "en": ["today", "today", "today"]},
    "tomorrow": {"zh": ["明天", "明天", "明日", "明儿"], "en": ["tomorrow", "tomorrow", "tmrw"]},
    "day_after_tomorrow": {"zh": ["后天", "后天", "后儿"], "en": ["the day after tomorrow", "day after tomorrow"]},
}


def random_date(rng: random.Random, implied_year_only: bool = False) -> dt.date:
    year = IMPLIED_YEAR if implied_year_only else rng.choice([2025, 2025, 2026])
    return dt.date(year, 1, 1) + dt.timedelta(days=rng.randrange(365))


def say_explicit_date(day: dt.date, lang: str, rng: random.Random, bare: bool = False) -> str:
    """An explicit date; forms without a year are only produced for IMPLIED_YEAR dates."""
    iso = day.isoformat()
    has_implied_year = day.year == IMPLIED_YEAR
    r = rng.random()
    if lang == "zh":
        if r < 0.45 or not has_implied_year and r < 0.7:
            return iso if r < 0.6 or not has_implied_year else f"{day.year}年{day.month}月{day.day}日"
        if not has_implied_year:
            return f"{day.year}年{day.month}月{day.day}日"
        return rng.choice([f"{day.month}月{day.day}日", f"{day.month}月{day.day}号", f"{day.month}月{day.day}号",
                           f"{zh_number(day.month)}月{zh_number(day.day)}号", f"{day.year}年{day.month}月{day.day}日"])
    on = "" if bare else "on "
    month = MONTHS_EN[day.month - 1]
    if r < 0.45 or not has_implied_year and r < 0.7:
        return on + iso if r < 0.6 or not has_implied_year else f"{on}{month} {day.day}, {day.year}"
    if not has_implied_year:
        return f"{on}{month} {day.day}, {day.year}"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(day.day if day.day < 20 else day.day % 10, "th")
    return on + rng.choice([f"{month} {day.day}", f"{month} {day.day}{suffix}", f"{day.day} {month}",
                            f"{month[:3]} {day.day}", f"the {day.day}{suffix} of {month}"])


def to_full_width(text: str) -> str:
    return text.translate(FULL_WIDTH)
