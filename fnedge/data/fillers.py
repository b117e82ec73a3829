"""Slot fillers: each returns how the user says a value and the argument value a call carries.

A filler is a function `FillContext -> Filled`. Values are composed (surname + given name, floor +
room, random hotel ids, random arithmetic) so that no list is small enough for a model to memorize.
`verbatim` values are copied from the user's words: if noise later changes the words (lowercase),
the argument changes with them, because the schema says "as the user wrote it".
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from typing import Any, Callable

from fnedge.data import surface as sf
from fnedge.data.free_texts import dictated_note, dictated_text


@dataclass
class Filled:
    surface: str
    value: Any
    verbatim: bool = False  # value == surface (before noise) and follows it through noise
    pre: str = ""  # decoration around the surface that is not part of the value: quotes, 《》
    post: str = ""
    free_text: bool = False  # free wording: polite words next to it would blur where it ends


@dataclass
class FillContext:
    rng: random.Random
    lang: str  # language of the sentence around the slot: "zh" or "en"
    value_lang: str  # language the value is drawn in (differs from lang in code-mixed samples)
    pools: dict[str, Any]
    state: dict[str, Any]  # shared by all slots of one sample (e.g. the chosen unit dimension)
    param: str = ""
    schema: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None
    longer_text_share: float = 0.0  # DataConfig.longer_text_share

    def pick(self, pool: str) -> Any:
        return self.rng.choice(self.pools[pool])


Filler = Callable[[FillContext], Filled]
FILLERS: dict[str, Filler] = {}


def filler(name: str):
    def register(fn: Filler) -> Filler:
        FILLERS[name] = fn
        return fn
    return register


def _quoted(ctx: FillContext, text: str, chance: float) -> Filled:
    if ctx.rng.random() >= chance:
        return Filled(text, text, verbatim=True, free_text=True)
    pre, post = ctx.rng.choice([("“", "”"), ("'", "'"), ("「", "」"), ("\"", "\"")] if ctx.lang == "zh"
                               else [("\"", "\""), ("'", "'"), ("“", "”")])
    return Filled(text, text, verbatim=True, pre=pre, post=post, free_text=True)


# ---- places, people, rooms ------------------------------------------------------------------

@filler("city")
def fill_city(ctx: FillContext) -> Filled:
    if ctx.value_lang == "zh":
        city = ctx.pick("cities_cn_zh" if ctx.rng.random() < 0.68 else "cities_world_zh")
    else:
        city = ctx.pick("cities_world_en" if ctx.rng.random() < 0.82 else "cities_cn_en")
    return Filled(city, city, verbatim=True)


@filler("contact")
def fill_contact(ctx: FillContext) -> Filled:
    rng, r = ctx.rng, ctx.rng.random()
    if ctx.value_lang == "zh":
        surname = ctx.pick("surnames_zh")
        if r < 0.3:
            name = ctx.pick("relatives_zh")
        elif r < 0.5:
            name = surname + ctx.pick("titles_zh")
        elif r < 0.62:
            name = ctx.pick("nick_prefix_zh") + (surname if len(surname) == 1 else ctx.pick("given_chars_zh"))
        elif r < 0.67:
            name = ctx.pick("contact_roles_zh")
        else:
            given = ctx.pick("given_chars_zh") + (ctx.pick("given_chars_zh") if rng.random() < 0.65 else "")
            name = surname + given if rng.random() < 0.8 else given if len(given) == 2 else surname + given
    else:
        first = ctx.pick("first_names_en")
        if r < 0.5:
            name = first
        elif r < 0.68:
            name = f"{first} {ctx.pick('last_names_en')}"
        elif r < 0.85:
            name = ctx.pick("relatives_en")
        elif r < 0.95:
            name = f"{ctx.pick('titles_en')} {ctx.pick('last_names_en')}"
        else:
            name = ctx.pick("contact_roles_en")
    return Filled(name, name, verbatim=True)


@filler("room")
def fill_room(ctx: FillContext) -> Filled:
    rng, r = ctx.rng, ctx.rng.random()
    used = ctx.state.setdefault("rooms_used", set())
    for _ in range(5):
        if ctx.value_lang == "zh":
            room = ctx.pick("rooms_zh")
            if r < 0.12:
                room = ctx.pick("room_floors_zh") + room
            elif r < 0.2:
                room = ctx.pick("room_owners_zh") + rng.choice(["的房间", "房间", "的卧室"])
        else:
            room = ctx.pick("rooms_en")
            if r < 0.12:
                room = f"{ctx.pick('room_floors_en')} {room}"
            elif r < 0.2:
                room = f"{ctx.pick('room_owners_en')} {rng.choice(['room', 'bedroom'])}"
        if room not in used:
            break
    used.add(room)
    return Filled(room, room, verbatim=True)


# ---- dates, times, counts, money -------------------------------------------------------------

def _allowed_relative_dates(schema: dict[str, Any]) -> list[str]:
    """Relative words the schema allows, read from its description ('today, tomorrow, or ...')."""
    description = schema.get("description", "")
    found = [word for word in sf.RELATIVE_DATES if word in description]
    if "day_after_tomorrow" in found and "tomorrow" in found:
        return found
    return found or ["today", "tomorrow", "day_after_tomorrow"]


@filler("date")
def fill_date(ctx: FillContext) -> Filled:
    rng = ctx.rng
    allowed = _allowed_relative_dates(ctx.schema)
    if "YYYY-MM-DD" not in ctx.schema.get("description", "YYYY-MM-DD") or rng.random() < 0.6:
        word = rng.choice(allowed + ["tomorrow", "today"] if "tomorrow" in allowed else allowed)
        return Filled(rng.choice(sf.RELATIVE_DATES[word][ctx.value_lang]), word)
    day = sf.random_date(rng)
    return Filled(sf.say_explicit_date(day, ctx.value_lang, rng, bare=ctx.variant == "bare"), day.isoformat())


# Time variants for sentences that already say the part of the day: "明早{time:am}",
# "tonight at {time:pm}", "明天下午{time:afternoon}". The time is then said without a day-part word.
TIME_VARIANTS = {"am": (5, 11), "afternoon": (13, 17), "pm": (18, 23)}


@filler("time")
def fill_time(ctx: FillContext) -> Filled:
    rng = ctx.rng
    if ctx.variant in TIME_VARIANTS:
        low, high = TIME_VARIANTS[ctx.variant]
        hour, minute = rng.randint(low, high), sf.random_time(rng)[1]
        return Filled(sf.say_time(hour, minute, ctx.value_lang, rng, period=False), sf.hhmm(hour, minute))
    hour, minute = sf.random_time(rng)
    return Filled(sf.say_time(hour, minute, ctx.value_lang, rng), sf.hhmm(hour, minute))


def say_nights(n: int, lang: str, rng: random.Random) -> str:
    """三晚 / 两个晚上 / 两宿 / 一周 / 3 nights / two nights / a couple of nights / a week."""
    r = rng.random()
    if lang == "zh":
        if n == 7 and r < 0.35:
            return rng.choice(["一周", "一个星期", "一星期"])
        if n == 1 and r < 0.3:
            return rng.choice(["一晚", "一个晚上", "一晚上", "一夜", "一宿"])
        return sf.say_count_zh(n, rng) + rng.choice(["晚", "晚", "晚", "个晚上", "夜", "宿"])
    if n == 1:
        return rng.choice(["1 night", "one night", "a night", "a single night", "just one night"])
    if n == 2 and r < 0.3:
        return rng.choice(["a couple of nights", "a couple nights", "a couple of nights"])
    if n == 7 and r < 0.35:
        return rng.choice(["a week", "one week", "a whole week"])
    if n == 14 and r < 0.35:
        return rng.choice(["two weeks", "2 weeks", "a fortnight"])
    return f"{n if rng.random() < 0.5 else sf.en_number(n)} {'nites' if rng.random() < 0.03 else 'nights'}"


@filler("nights")
def fill_nights(ctx: FillContext) -> Filled:
    n = ctx.rng.choice([1, 2, 2, 3, 3, 4, 5, 6, 7, 10, 14])
    return Filled(say_nights(n, ctx.value_lang, ctx.rng), n)


@filler("price")
def fill_price(ctx: FillContext) -> Filled:
    rng = ctx.rng
    n = rng.choice([rng.randrange(1, 40) * 50, rng.randrange(2, 30) * 100, rng.randrange(60, 2000)])
    amount = sf.say_amount(n, ctx.value_lang, rng)
    if ctx.value_lang == "zh":
        if amount[0].isdigit() and rng.random() < 0.1:
            return Filled(rng.choice(["¥", "￥"]) + amount, n)
        unit = rng.choice(["元", "块", "块钱", "", "元", "人民币", ""]) if not amount.isdigit() or rng.random() < 0.8 else ""
        return Filled(amount + unit, n)
    if amount[0].isdigit():
        form = rng.choice(["${n}", "${n}", "{n} dollars", "{n}", "{n} bucks", "{n} euros", "€{n}", "{n} USD", "£{n}",
                           "{n} pounds"])
    else:
        form = rng.choice(["{n} dollars", "{n} euros", "{n}", "{n} bucks"])
    return Filled(form.replace("{n}", amount), n)


@filler("percent")
def fill_percent(ctx: FillContext) -> Filled:
    rng = ctx.rng
    low, high = int(ctx.schema.get("minimum", 0)), int(ctx.schema.get("maximum", 100))
    n = rng.choice([rng.randrange(1, 11) * 10, rng.randrange(1, 20) * 5, rng.randint(max(low, 1), high)])
    n = max(low, min(high, n))
    if ctx.value_lang == "zh":
        forms = [f"{n}%", f"{n}%", f"百分之{sf.zh_number(n)}", f"百分之{sf.zh_number(n)}", f"{n}", f"百分之{n}", f"{n}％"]
        if n % 10 == 0 and 10 <= n <= 90:
            forms.append(f"{sf.zh_number(n // 10)}成")
        if n == 50:
            forms.append("一半")
        return Filled(rng.choice(forms), n)
    forms = [f"{n}%", f"{n}%", f"{n} percent", f"{n}", f"{sf.en_number(n)} percent", f"{n} per cent"]
    if n == 50:
        forms.append("half")
    return Filled(rng.choice(forms), n)


@filler("integer")
def fill_integer(ctx: FillContext) -> Filled:
    rng = ctx.rng
    low = int(ctx.schema.get("minimum", 0 if "maximum" in ctx.schema else 1))
    high = int(ctx.schema.get("maximum", max(low, 0) + 100))
    n = rng.randint(low, high) if rng.random() < 0.6 or high - low < 12 else rng.randint(low, low + 10)
    if ctx.value_lang == "zh":
        text = str(n) if rng.random() < 0.6 or n < 0 else sf.zh_number(n)
    else:
        text = str(n) if rng.random() < 0.7 or n < 0 or n > 999 else sf.en_number(n)
    return Filled(text, n)


@filler("number")
def fill_number(ctx: FillContext) -> Filled:
    rng = ctx.rng
    low = float(ctx.schema.get("minimum", 0))
    high = float(ctx.schema.get("maximum", low + 1000))
    x = round(rng.uniform(low, high), rng.choice([0, 0, 1, 2]))
    x = min(max(x, low), high)
    return Filled(sf.number_text(x), sf.as_number(x))


# ---- units ----------------------------------------------------------------------------------

# Variants that fix the unit dimension: "I ran {value:length} {from_unit}", "华氏{value:temp}度";
# "one" (a singular unit after a fixed value 1: "how many feet in one mile") is length or mass.
DIMENSION_VARIANTS = {"length": ["length"], "mass": ["mass"], "temp": ["temperature"], "prefix": ["temperature"],
                      "one": ["length", "length", "mass"]}


def _unit_dimension(ctx: FillContext) -> str:
    if "dimension" not in ctx.state:
        options = DIMENSION_VARIANTS.get(ctx.variant or "", ["length", "length", "mass", "temperature"])
        ctx.state["dimension"] = ctx.rng.choice(options)
    return ctx.state["dimension"]


# Chinese temperature scales said in front of the number: 华氏100度, 摄氏37度.
UNIT_PREFIX_ZH = {"c": ["摄氏"], "f": ["华氏"]}
# English singular unit names, for "one mile" / "a kilo".
UNIT_SINGULAR_EN = {"km": ["kilometer", "kilometre", "km"], "mi": ["mile"], "m": ["meter", "metre"], "ft": ["foot"],
                    "cm": ["centimeter"], "in": ["inch"], "kg": ["kilogram", "kilo", "kg"], "lb": ["pound", "lb"],
                    "g": ["gram"], "oz": ["ounce"], "c": ["degree celsius"], "f": ["degree fahrenheit"]}


@filler("unit")
def fill_unit(ctx: FillContext) -> Filled:
    """from_unit then to_unit: two different units of one dimension."""
    units = ctx.pools["units"][_unit_dimension(ctx)]
    used = ctx.state.setdefault("units_used", [])
    preferred = ["km", "mi", "kg", "lb", "c", "f", "m", "ft"]
    choices = [u for u in units if u not in used] or list(units)
    if ctx.variant == "prefix":
        choices = [u for u in choices if u in UNIT_PREFIX_ZH] or list(UNIT_PREFIX_ZH)
    weights = [4 if u in preferred else 1 for u in choices]
    unit = ctx.rng.choices(choices, weights)[0]
    used.append(unit)
    if ctx.variant == "prefix":
        return Filled(ctx.rng.choice(UNIT_PREFIX_ZH[unit]), unit)
    said = units[unit][ctx.value_lang]
    if ctx.variant == "one" and ctx.value_lang == "en":
        said = UNIT_SINGULAR_EN.get(unit, said)
    if ctx.variant == "symbol":  # right after a number with no space: "5km", "30°C"
        said = [w for w in said if " " not in w and len(w) <= 3] or said
    return Filled(ctx.rng.choice(said), unit)


@filler("unit_value")
def fill_unit_value(ctx: FillContext) -> Filled:
    rng = ctx.rng
    if _unit_dimension(ctx) == "temperature":
        x: float = rng.choice([rng.randint(-30, 45), rng.randint(0, 110), rng.choice([0, 37, 100, -10, 98.6, 36.5])])
    else:
        x = rng.choice([rng.randint(1, 20), rng.randint(1, 1000), round(rng.uniform(0.5, 100), 1),
                        rng.choice([5, 10, 42.195, 100, 1000, 1500, 26.2, 3.5, 1200, 2.5])])
    value = sf.as_number(x)
    text = sf.number_text(x)
    r = rng.random()
    zh = ctx.value_lang == "zh"
    if isinstance(value, int) and value >= 0 and r < 0.2:
        text = sf.zh_number(value, liang=True) if zh and value < 10000 else sf.en_number(value)
        if not zh and value == 100 and rng.random() < 0.5:
            text = "a hundred"
    elif isinstance(value, int) and zh and r < 0.3 and sf.zh_short_number(value):
        text = sf.zh_short_number(value)  # 一千五 = 1500
    elif isinstance(value, int) and value >= 1000 and r < 0.4:
        text = sf.with_commas(value)
    elif isinstance(value, int) and value < 0 and zh and r < 0.5:
        text = f"零下{-value}" if rng.random() < 0.7 else f"零下{sf.zh_number(-value)}"
    elif isinstance(value, int) and value < 0 and not zh and r < 0.3:
        text = f"minus {-value}"
    elif isinstance(value, float) and zh and r < 0.3 and 0 < value < 100 and len(text) <= 4:
        text = sf.zh_decimal(value)  # 三点五
    return Filled(text, value)


# ---- arithmetic -----------------------------------------------------------------------------

OPS_SYMBOL = {"+": ["+"], "-": ["-"], "*": ["*", "x", "×"], "/": ["/", "÷"]}
OPS_ZH = {"+": ["加", "加上"], "-": ["减", "减去"], "*": ["乘", "乘以"], "/": ["除以"]}
OPS_EN = {"+": ["plus", "plus", "and"], "-": ["minus", "minus", "take away"], "*": ["times", "multiplied by", "x"],
          "/": ["divided by", "over"]}


def _operand(rng: random.Random) -> float:
    r = rng.random()
    if r < 0.45:
        return rng.randint(1, 99)
    if r < 0.75:
        return rng.randint(100, 9999)
    if r < 0.9:
        return round(rng.uniform(0.1, 500), rng.choice([1, 2]))
    return rng.randint(10000, 999999)


@filler("expression")
def fill_expression(ctx: FillContext) -> Filled:
    """Random arithmetic, said with symbols or words; the value is the canonical expression."""
    rng = ctx.rng
    r = rng.random()
    if r < 0.12:  # percentages: "15% of 80" -> 80*15%
        pct, base = rng.choice([5, 10, 12, 15, 18, 20, 25, 30, 33, 40, 50, 75, 8.5]), rng.randint(10, 5000)
        value = f"{base}*{sf.number_text(pct)}%"
        if ctx.value_lang == "zh":
            return Filled(rng.choice([f"{base}的{sf.number_text(pct)}%", f"{base}的百分之{sf.number_text(pct)}",
                                      f"{base}乘{sf.number_text(pct)}%"]), value)
        return Filled(rng.choice([f"{sf.number_text(pct)}% of {base}", f"{sf.number_text(pct)} percent of {base}",
                                  f"{base} * {sf.number_text(pct)}%"]), value)
    count = rng.choice([1, 1, 1, 2, 2, 3])
    numbers = [_operand(rng) for _ in range(count + 1)]
    ops = [rng.choice("+-*/") for _ in range(count)]
    if r < 0.25 and count >= 2:  # parentheses, only as symbols
        value = f"({sf.number_text(numbers[0])}{ops[0]}{sf.number_text(numbers[1])})" + "".join(
            f"{op}{sf.number_text(n)}" for op, n in zip(ops[1:], numbers[2:]))
        spaced = rng.random() < 0.4
        text = value.replace("*", rng.choice(OPS_SYMBOL["*"])) if rng.random() < 0.3 else value
        if spaced:
            for op in "+-*/x×÷":
                text = text.replace(op, f" {op} ")
            text = text.replace("( ", "(").replace(" )", ")")
        return Filled(text, value)
    value = sf.number_text(numbers[0]) + "".join(f"{op}{sf.number_text(n)}" for op, n in zip(ops, numbers[1:]))
    style = rng.random()
    pieces = [_say_operand(numbers[0], ctx, style)]
    for op, n in zip(ops, numbers[1:]):
        if style < 0.45:
            symbol = rng.choice(OPS_SYMBOL[op])
            pieces.append(f" {symbol} " if rng.random() < 0.4 else symbol)
        else:
            words = OPS_ZH[op] if ctx.value_lang == "zh" else OPS_EN[op]
            pieces.append(rng.choice(words) if ctx.value_lang == "zh" else f" {rng.choice(words)} ")
        pieces.append(_say_operand(n, ctx, style))
    return Filled("".join(pieces), value)


def _say_operand(x: float, ctx: FillContext, style: float) -> str:
    if style >= 0.45 and float(x).is_integer() and x < 10000 and ctx.rng.random() < 0.35:
        return sf.zh_number(int(x)) if ctx.value_lang == "zh" else sf.en_number(int(x))
    return sf.number_text(x)


# ---- text values ----------------------------------------------------------------------------

# Heads and tails a free text may take (not pools: a pool's characters also feed novel values).
_TEXT_HEADS_ZH = ["明天", "今晚", "周末", "下周一", "到时候", "这次", "待会儿", "晚上", "一会儿", "后天",
                  "周五的聚餐", "下午的会", "明早", "月底之前", "开完会", "下班以后", "放假的时候", "上次说的事"]
_TEXT_TAILS_ZH = ["，别忘了", "，到时候见", "，在老地方", "，越快越好", "，等你回复", "，辛苦了", "，我在门口",
                  "，明天再说", "，记得回电话", "的事情", "，不用等我", "，先这样", "，晚上聊", "，我已经出发了"]
_TEXT_HEADS_EN = ["tomorrow", "tonight", "by the way", "also", "honestly", "this weekend", "after the meeting",
                  "on Friday", "just so you know", "before lunch", "quick update:", "heads up,"]
_TEXT_TAILS_EN = ["with the move", "with the interview", "for the weekend", "on Sunday", "at the station",
                  "before dinner", "after work", "for the kids", "tonight", "if you can", "when you get a chance",
                  "as soon as possible", "right now", "this time", "again", "by Friday", "with mom",
                  "at the party", "in the morning", "and the rest of the team", "from all of us", "on the way back"]
_TITLE_HEADS_ZH = ["跟{contact}", "和{contact}一起", "去{city}", "陪{contact}", "给{contact}"]
_TITLE_TAILS_EN = ["with {contact}", "at the office", "for the team", "prep", "follow-up", "in {city}", "part 2",
                   "with the client"]


def _pick_text(ctx: FillContext, pool: str) -> str:
    """An item of `pool`, sometimes (`longer_text_share`) extended by another item, a head or a
    tail: a free text that says more than one pool item ("good luck" + "with your exam")."""
    rng, lang = ctx.rng, ctx.value_lang
    text = ctx.pick(pool)
    if not ctx.longer_text_share or rng.random() >= ctx.longer_text_share:
        return text
    way = rng.random()
    if way < 0.35:
        other = ctx.pick(pool)
        if other == text:
            return text
        joiner = rng.choice(["，", "，", "；", ""]) if lang == "zh" else rng.choice([", ", " and ", "; ", ". "])
        return text + joiner + (other if lang == "zh" else other[0].lower() + other[1:])
    if way < 0.65:
        head = rng.choice(_TEXT_HEADS_ZH if lang == "zh" else _TEXT_HEADS_EN)
        return head + text if lang == "zh" else f"{head} {text[0].lower() + text[1:]}"
    tail = rng.choice(_TEXT_TAILS_ZH if lang == "zh" else _TEXT_TAILS_EN)
    return text + tail if lang == "zh" else f"{text} {tail}"


@filler("message_text")
def fill_message_text(ctx: FillContext) -> Filled:
    if ctx.rng.random() < 0.5:
        text = _pick_text(ctx, f"message_texts_{ctx.value_lang}")
    else:  # with the days, times and numbers people put in messages (free_texts.py)
        text = dictated_text(ctx.rng, ctx.value_lang, ctx.pools)
    return _quoted(ctx, text, 0.25)


@filler("short_text")
def fill_short_text(ctx: FillContext) -> Filled:
    rng = ctx.rng
    r = rng.random()
    if r < 0.3:
        text = _pick_text(ctx, f"message_texts_{ctx.value_lang}")
    elif r < 0.5:
        text = _pick_text(ctx, f"phrases_{ctx.value_lang}")
    elif r < 0.7:
        items = rng.sample(ctx.pools[f"list_items_{ctx.value_lang}"], rng.randint(2, 4))
        text = ("买" if ctx.value_lang == "zh" else "buy ") + ("、".join(items) if ctx.value_lang == "zh" else ", ".join(items))
    else:
        text = dictated_note(rng, ctx.value_lang, ctx.pools)
    return _quoted(ctx, text, 0.55)


@filler("translate_text")
def fill_translate_text(ctx: FillContext) -> Filled:
    """Text to translate; its language goes to state so the target language differs from it."""
    rng = ctx.rng
    if ctx.variant == "foreign":  # "'good luck'是什么意思": text in the other language, target = the sentence's
        source = "en" if ctx.lang == "zh" else "zh"
    else:
        source = ctx.value_lang if rng.random() < 0.7 else ("en" if ctx.value_lang == "zh" else "zh")
    targets = [code for code in ctx.state.get("languages_used", []) if code]
    if source in targets:  # the target language was said first ("翻译成英语" ... then the text)
        source = "en" if source == "zh" else "zh"
    ctx.state["text_lang"] = source
    way = rng.random()
    if way < 0.55:
        in_source = FillContext(rng, ctx.lang, source, ctx.pools, {}, longer_text_share=ctx.longer_text_share)
        text = _pick_text(in_source, f"phrases_{source}")
    elif way < 0.8:
        text = dictated_text(rng, source, ctx.pools, clauses=1)
    elif source == "zh":
        text = rng.choice(["我想去{city}", "我明天去{city}", "请给我{item}", "{item}多少钱", "我在找{item}"]).format(
            city=ctx.pick("cities_world_zh"), item=ctx.pick("phrase_items_zh"))
    else:
        text = rng.choice(["I want to go to {city}", "I'm flying to {city} tomorrow", "can I have {item}",
                           "how much is {item}", "I'm looking for {item}"]).format(
            city=ctx.pick("cities_world_en"), item=ctx.pick("phrase_items_en"))
    if source == "en" and rng.random() < 0.3:
        text = text[0].upper() + text[1:]
    return _quoted(ctx, text, 0.65)


@filler("language")
def fill_language(ctx: FillContext) -> Filled:
    languages = ctx.pools["languages"]
    allowed = [code for code in ctx.schema.get("enum", list(languages)) if code in languages]
    used = ctx.state.setdefault("languages_used", [ctx.state.get("text_lang")])
    choices = [code for code in allowed if code not in used] or allowed
    code = ctx.rng.choice(choices)
    used.append(code)
    return Filled(ctx.rng.choice(languages[code][ctx.value_lang]), code)


@filler("music")
def fill_music(ctx: FillContext) -> Filled:
    rng, lang = ctx.rng, ctx.value_lang
    kind = ctx.variant or rng.choice(["song", "song", "artist", "genre", "artist_song"])
    if kind == "song" and rng.random() < 0.3:
        kind = "artist_song"
    if kind == "artist":
        text = ctx.pick(f"artists_{lang}")
    elif kind == "genre":
        text = ctx.pick(f"genres_{lang}")
    elif kind == "artist_song":
        if lang == "zh":
            text = f"{ctx.pick('artists_zh')}的{ctx.pick('songs_zh')}"
        else:
            text = f"{ctx.pick('songs_en')} by {ctx.pick('artists_en')}"
    else:
        text = ctx.pick(f"songs_{lang}")
        if ctx.lang == "zh" and lang == "zh" and rng.random() < 0.3:
            return Filled(text, text, verbatim=True, pre="《", post="》")
    return Filled(text, text, verbatim=True)


@filler("event_title")
def fill_event_title(ctx: FillContext) -> Filled:
    rng, lang = ctx.rng, ctx.value_lang
    if rng.random() < 0.75:
        title = ctx.pick(f"event_titles_{lang}")
        if ctx.longer_text_share and rng.random() < ctx.longer_text_share:  # more than a pool item
            sub = FillContext(rng, lang, lang, ctx.pools, {})
            said = {"contact": fill_contact(sub).value, "city": fill_city(sub).value}
            if lang == "zh":
                title = rng.choice(_TITLE_HEADS_ZH).format(**said) + title
            else:
                title += " " + rng.choice(_TITLE_TAILS_EN).format(**said)
    else:
        sub = FillContext(rng, lang, lang, ctx.pools, {})
        title = ctx.pick(f"event_title_patterns_{lang}").format(
            contact=fill_contact(sub).value, city=fill_city(sub).value)
    return Filled(title, title, verbatim=True, free_text=True)


@filler("alarm_label")
def fill_alarm_label(ctx: FillContext) -> Filled:
    labels = ctx.pools[f"alarm_labels_{ctx.value_lang}"]
    if ctx.variant == "verb" and ctx.value_lang == "en":
        labels = ctx.pools["alarm_label_verbs_en"]
    label = ctx.rng.choice(labels)
    return Filled(label, label, verbatim=True, free_text=True)


@filler("path")
def fill_path(ctx: FillContext) -> Filled:
    rng = ctx.rng
    lang = ctx.value_lang
    topic = ctx.state.get("topic")
    if topic and rng.random() < 0.6:
        stem = topic.replace("the ", "").replace("a ", "").replace(" ", rng.choice(["_", "-", ""])) if lang == "en" else topic
    else:
        stem = ctx.pick(f"file_stems_{lang}")
        if rng.random() < 0.3:
            stem += rng.choice(["_", "-", ""]) + str(rng.choice([1, 2, 3, 2025, 626, 7]))
    ext = ctx.pick("file_exts")
    folder = ctx.pick(f"folders_{lang}") if rng.random() < 0.8 else ""
    path = f"{folder}/{stem}{ext}" if folder else f"{stem}{ext}"
    return Filled(path, path, verbatim=True)


@filler("topic")
def fill_topic(ctx: FillContext) -> Filled:
    topic = ctx.pick(f"topics_{ctx.value_lang}")
    ctx.state["topic"] = topic
    return Filled(topic, topic, verbatim=True)


@filler("hotel_id")
def fill_hotel_id(ctx: FillContext) -> Filled:
    hotel_id = random_hotel_id(ctx.rng)
    return Filled(hotel_id, hotel_id, verbatim=True)


def random_hotel_id(rng: random.Random) -> str:
    """Ids in a few shapes (sh-204, HZ-77, KRK-31, h10293, BJ_5521) from random letters and digits."""
    letters = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.choice([2, 2, 3])))
    digits = str(rng.randint(1, 9999) if rng.random() < 0.7 else rng.randint(10, 99))
    shape = rng.random()
    if shape < 0.45:
        return f"{letters}-{digits}"
    if shape < 0.7:
        return f"{letters.upper()}-{digits}"
    if shape < 0.82:
        return f"{letters[0]}{rng.randint(1000, 99999)}"
    if shape < 0.92:
        return f"{letters.upper()}_{digits}"
    return f"{letters}{digits}"


@filler("phone")
def fill_phone(ctx: FillContext) -> Filled:
    rng = ctx.rng
    number = ("1" + "".join(rng.choice(string.digits) for _ in range(10)) if rng.random() < 0.5
              else f"{rng.randint(200, 999)}-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}")
    return Filled(number, number, verbatim=True)


@filler("artist")
def fill_artist(ctx: FillContext) -> Filled:
    artist = ctx.pick(f"artists_{ctx.value_lang}")
    return Filled(artist, artist, verbatim=True)


@filler("word")
def fill_word(ctx: FillContext) -> Filled:
    """Last resort for a string with no hint and no recognizable name: a short neutral phrase."""
    rng = ctx.rng
    pool = "generic_words_zh" if ctx.value_lang == "zh" else "generic_words_en"
    word = rng.choice(ctx.pools[pool])
    if rng.random() < 0.3:
        word = f"{word}{'' if ctx.value_lang == 'zh' else ' '}{rng.randint(1, 99)}"
    return Filled(word, word, verbatim=True)


# ---- hint-defined pools ---------------------------------------------------------------------

@dataclass
class PoolFiller:
    """A filler from a hint file: {"pool": [...]} or {"pool": {"zh": [...], "en": [...]}}.
    Items are strings (said and passed as is) or [said, value] pairs (said one way, passed another)."""
    pool: Any

    def __call__(self, ctx: FillContext) -> Filled:
        if isinstance(self.pool, dict):
            items = self.pool.get(ctx.value_lang) or self.pool.get("en") or next(iter(self.pool.values()))
        else:
            items = self.pool
        item = ctx.rng.choice(items)
        if isinstance(item, list):
            return Filled(str(item[0]), item[1])
        return Filled(str(item), item, verbatim=isinstance(item, str))


@dataclass
class EnumFiller:
    """An enum with no hint: say the value itself (or a language name for language codes)."""
    values: list[Any]

    def __call__(self, ctx: FillContext) -> Filled:
        value = ctx.rng.choice(self.values)
        languages = ctx.pools["languages"]
        if all(v in languages for v in self.values):
            return FILLERS["language"](ctx)
        text = str(value).replace("_", " ") if not isinstance(value, bool) else ("yes" if value else "no")
        return Filled(text, value)


@dataclass
class BooleanFiller:
    def __call__(self, ctx: FillContext) -> Filled:
        value = ctx.rng.random() < 0.5
        if ctx.lang == "zh":
            text = ctx.rng.choice(["开", "开启", "是"] if value else ["关", "关闭", "否"])
        else:
            text = ctx.rng.choice(["on", "yes", "true", "enabled"] if value else ["off", "no", "false", "disabled"])
        return Filled(text, value)


@dataclass
class ArrayFiller:
    item: Callable[[FillContext], Filled]

    def __call__(self, ctx: FillContext) -> Filled:
        parts = [self.item(ctx) for _ in range(ctx.rng.randint(1, 3))]
        joiner = "、" if ctx.lang == "zh" else ", "
        return Filled(joiner.join(p.surface for p in parts), [p.value for p in parts])


@dataclass
class ObjectFiller:
    fields: dict[str, Callable[[FillContext], Filled]]
    required: list[str]

    def __call__(self, ctx: FillContext) -> Filled:
        chosen = [name for name in self.fields if name in self.required or ctx.rng.random() < 0.4]
        parts = {name: self.fields[name](ctx) for name in chosen}
        text = ("，" if ctx.lang == "zh" else ", ").join(f"{name} {p.surface}" for name, p in parts.items())
        return Filled(text, {name: p.value for name, p in parts.items()})
