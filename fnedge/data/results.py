"""Pretend tool executions: a plausible JSON result for a call and the assistant's short summary.

The summaries copy numbers and names from the result, so the model learns to read tool output
rather than invent it. Tools without a simulator here get {"status": "ok"} and a generic "done".
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import string
from typing import Any, Callable

from fnedge.data import surface as sf

UNIT_WORDS = {"km": ("公里", "km"), "mi": ("英里", "mi"), "kg": ("公斤", "kg"), "lb": ("磅", "lb"),
              "c": ("摄氏度", "°C"), "f": ("华氏度", "°F"), "m": ("米", "m"), "ft": ("英尺", "ft"),
              "cm": ("厘米", "cm"), "in": ("英寸", "in"), "g": ("克", "g"), "oz": ("盎司", "oz")}
TO_METERS = {"km": 1000, "mi": 1609.344, "m": 1, "ft": 0.3048, "cm": 0.01, "in": 0.0254}
TO_KG = {"kg": 1, "lb": 0.45359237, "g": 0.001, "oz": 0.028349523125}
# A few phrases with known translations, so translate results are real translations.
TRANSLATIONS = {
    "hello": {"zh": "你好", "ja": "こんにちは", "ko": "안녕하세요", "fr": "bonjour", "de": "hallo", "es": "hola"},
    "thank you": {"zh": "谢谢", "ja": "ありがとう", "ko": "감사합니다", "fr": "merci", "de": "danke", "es": "gracias"},
    "good morning": {"zh": "早上好", "ja": "おはようございます", "ko": "좋은 아침", "fr": "bonjour", "de": "guten Morgen", "es": "buenos días"},
    "good night": {"zh": "晚安", "ja": "おやすみなさい", "ko": "잘 자요", "fr": "bonne nuit", "de": "gute Nacht", "es": "buenas noches"},
    "I love you": {"zh": "我爱你", "ja": "愛してる", "ko": "사랑해요", "fr": "je t'aime", "de": "ich liebe dich", "es": "te quiero"},
    "happy birthday": {"zh": "生日快乐", "ja": "誕生日おめでとう", "ko": "생일 축하해요", "fr": "joyeux anniversaire", "de": "alles Gute zum Geburtstag", "es": "feliz cumpleaños"},
    "你好": {"en": "hello", "ja": "こんにちは", "ko": "안녕하세요", "fr": "bonjour", "de": "hallo", "es": "hola"},
    "谢谢你": {"en": "thank you", "ja": "ありがとう", "ko": "고마워요", "fr": "merci", "de": "danke", "es": "gracias"},
    "早上好": {"en": "good morning", "ja": "おはようございます", "ko": "좋은 아침", "fr": "bonjour", "de": "guten Morgen", "es": "buenos días"},
    "晚安": {"en": "good night", "ja": "おやすみなさい", "ko": "잘 자요", "fr": "bonne nuit", "de": "gute Nacht", "es": "buenas noches"},
    "我爱你": {"en": "I love you", "ja": "愛してる", "ko": "사랑해요", "fr": "je t'aime", "de": "ich liebe dich", "es": "te quiero"},
    "生日快乐": {"en": "happy birthday", "ja": "誕生日おめでとう", "ko": "생일 축하해요", "fr": "joyeux anniversaire", "de": "alles Gute zum Geburtstag", "es": "feliz cumpleaños"},
}

Result = tuple[str, str]  # (tool message content as JSON, assistant summary)


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def say_date(value: str, lang: str) -> str:
    relative = {"today": ("今天", "today"), "tomorrow": ("明天", "tomorrow"),
                "day_after_tomorrow": ("后天", "the day after tomorrow")}
    if value in relative:
        return relative[value][0 if lang == "zh" else 1]
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return value
    return f"{day.month}月{day.day}日" if lang == "zh" else f"{sf.MONTHS_EN[day.month - 1]} {day.day}"


def simulate(name: str, args: dict[str, Any], lang: str, rng: random.Random, pools: dict[str, Any],
             done_replies: dict[str, list[str]]) -> Result | None:
    """(result JSON, summary), or None when this call cannot be simulated truthfully."""
    simulator = SIMULATORS.get(name)
    if simulator is not None:
        return simulator(args, lang, rng, pools)
    return dumps({"status": "ok"}), rng.choice(done_replies[lang])


def _weather(args, lang, rng, pools) -> Result:
    conditions = pools["weather_conditions"]
    index = rng.randrange(len(conditions["en"]))
    snowy = "snow" in conditions["en"][index]
    low = rng.randint(-18, -3) if snowy else rng.randint(-5, 28)
    high = low + rng.randint(2, 10)
    date = args.get("date", "today")
    condition = conditions[lang][index]
    result = {"city": args["city"], "date": date, "condition": condition, "high_c": high, "low_c": low}
    rainy = any(w in conditions["en"][index] for w in ("rain", "shower", "thunder"))
    if lang == "zh":
        text = f"{args['city']}{say_date(date, lang)}{condition}，{low}到{high}°C。"
        text += "记得带伞。" if rainy else ("注意保暖。" if high < 8 else "")
    else:
        text = f"{say_date(date, lang).capitalize()} in {args['city']}: {condition}, {low} to {high}°C."
        text += " Bring an umbrella." if rainy else (" Dress warmly." if high < 8 else "")
    return dumps(result), text


def hotel_list(args: dict[str, Any], lang: str, rng: random.Random, pools: dict[str, Any]) -> list[dict[str, Any]]:
    from fnedge.data.fillers import random_hotel_id
    cap = args.get("max_price")
    hotels, names = [], set()
    for _ in range(rng.choice([2, 2, 3, 3, 4])):
        if lang == "zh":
            name = rng.choice(pools["hotel_brands_zh"]) + rng.choice(pools["hotel_suffixes_zh"])
            if rng.random() < 0.5:
                name += f"（{rng.choice(pools['hotel_areas_zh'])}）"
        else:
            name = f"{rng.choice(pools['hotel_names_en_a'])} {rng.choice(pools['hotel_names_en_b'])}"
        if name in names:
            continue
        names.add(name)
        high = int(cap) if cap else 1500
        price = rng.randint(max(30, high // 4), max(31, high)) // 10 * 10 or 30
        hotels.append({"id": random_hotel_id(rng), "name": name, "price": price,
                       "rating": round(rng.uniform(3.5, 4.9), 1)})
    return hotels


def summarize_hotels(hotels: list[dict[str, Any]], lang: str, rng: random.Random) -> str:
    if not hotels:
        return "没有找到符合条件的酒店，要换个条件试试吗？" if lang == "zh" else "I couldn't find any matching hotels. Want to try different criteria?"
    if lang == "zh":
        items = "；".join(f"{i}. {h['name']}（{h['id']}），每晚{h['price']}元，评分{h['rating']}"
                         for i, h in enumerate(hotels, 1))
        return f"找到{len(hotels)}家：{items}。" + rng.choice(["要订哪一家？", "想订哪家？", "需要帮你预订吗？"])
    items = "; ".join(f"{i}. {h['name']} ({h['id']}), {h['price']}/night, rated {h['rating']}"
                      for i, h in enumerate(hotels, 1))
    return f"I found {len(hotels)} hotels: {items}. " + rng.choice(["Which one would you like?", "Want me to book one?", "Which one should I book?"])


def _search_hotels(args, lang, rng, pools) -> Result:
    hotels = hotel_list(args, lang, rng, pools)
    return dumps(hotels), summarize_hotels(hotels, lang, rng)


def _book_hotel(args, lang, rng, pools) -> Result:
    code = "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(6))
    nights = args.get("nights", 1)
    result = {"status": "confirmed", "confirmation": code, "hotel_id": args["hotel_id"],
              "check_in": args["check_in"], "nights": nights}
    if lang == "zh":
        text = f"预订成功！确认号{code}，{say_date(args['check_in'], lang)}入住，共{nights}晚。"
    else:
        text = f"Booked! Confirmation {code}, checking in {say_date(args['check_in'], lang)} for {nights} night{'s' if nights > 1 else ''}."
    return dumps(result), text


def _set_alarm(args, lang, rng, pools) -> Result:
    result = {"status": "ok", "time": args["time"]} | ({"label": args["label"]} if "label" in args else {})
    label = args.get("label")
    if lang == "zh":
        text = f"好的，已设好{args['time']}的闹钟" + (f"，备注“{label}”。" if label else "。")
    else:
        text = f"Done, your alarm is set for {args['time']}" + (f" ({label})." if label else ".")
    return dumps(result), text


def _send_message(args, lang, rng, pools) -> Result:
    result = {"status": "sent", "to": args["to"]}
    return dumps(result), (f"消息已发送给{args['to']}。" if lang == "zh" else f"Message sent to {args['to']}.")


def evaluate_expression(expression: str) -> float | None:
    """Evaluate digits, + - * / ( ) . and % (as /100); None when it does not compute."""
    if not re.fullmatch(r"[0-9+\-*/().% ]+", expression):
        return None
    try:
        value = eval(expression.replace("%", "/100"), {"__builtins__": {}}, {})  # charset checked above
    except (ZeroDivisionError, SyntaxError, TypeError):
        return None
    return float(value)


def format_number(x: float) -> str:
    if abs(x - round(x)) < 1e-9:
        return str(int(round(x)))
    return f"{x:.4f}".rstrip("0").rstrip(".")


def _calculate(args, lang, rng, pools) -> Result:
    value = evaluate_expression(args["expression"])
    if value is None:
        return dumps({"error": "cannot evaluate expression"}), (
            "这个算式算不出来，可能除以了零，能检查一下吗？" if lang == "zh" else "That expression can't be evaluated (maybe a division by zero). Can you check it?")
    shown = format_number(value)
    result = {"result": float(shown) if "." in shown else int(shown)}
    return dumps(result), (f"{args['expression']} = {shown}。" if lang == "zh" else f"{args['expression']} = {shown}.")


def _translate(args, lang, rng, pools) -> Result:
    known = TRANSLATIONS.get(args["text"].strip().lower() if args["text"].isascii() else args["text"], {})
    target = args["target_lang"]
    if target not in known:
        return None  # we cannot make up a real translation; callers pick another sample
    translation = known[target]
    return dumps({"translation": translation}), (f"翻译结果：{translation}" if lang == "zh" else f"Translation: {translation}")


def _play_music(args, lang, rng, pools) -> Result:
    return dumps({"status": "playing", "query": args["query"]}), (
        f"正在播放：{args['query']}。" if lang == "zh" else f"Now playing {args['query']}.")


def _control_light(args, lang, rng, pools) -> Result:
    result = {"room": args["room"], "state": args["action"]} | (
        {"brightness": args["brightness"]} if "brightness" in args else {})
    on = args["action"] == "on"
    if lang == "zh":
        text = f"{args['room']}的灯已{'打开' if on else '关闭'}" + (f"，亮度{args['brightness']}%。" if "brightness" in args else "。")
    else:
        text = f"The {args['room']} light is {'on' if on else 'off'}" + (f" at {args['brightness']}%." if "brightness" in args else ".")
    return dumps(result), text


def convert(value: float, source: str, target: str) -> float | None:
    if source in TO_METERS and target in TO_METERS:
        return value * TO_METERS[source] / TO_METERS[target]
    if source in TO_KG and target in TO_KG:
        return value * TO_KG[source] / TO_KG[target]
    if (source, target) == ("c", "f"):
        return value * 9 / 5 + 32
    if (source, target) == ("f", "c"):
        return (value - 32) * 5 / 9
    return None


def _convert_units(args, lang, rng, pools) -> Result:
    result = convert(float(args["value"]), args["from_unit"], args["to_unit"])
    if result is None:
        return dumps({"error": "incompatible units"}), ("这两个单位没法互相换算。" if lang == "zh" else "Those units can't be converted into each other.")
    shown = f"{result:.2f}".rstrip("0").rstrip(".")
    words = 0 if lang == "zh" else 1
    source = UNIT_WORDS.get(args["from_unit"], (args["from_unit"],) * 2)[words]
    target = UNIT_WORDS.get(args["to_unit"], (args["to_unit"],) * 2)[words]
    value = sf.number_text(args["value"])
    payload = {"value": args["value"], "from_unit": args["from_unit"], "to_unit": args["to_unit"], "result": float(shown)}
    if lang == "zh":
        return dumps(payload), f"{value}{source}约等于{shown}{target}。"
    return dumps(payload), f"{value} {source} is about {shown} {target}."


def _create_event(args, lang, rng, pools) -> Result:
    event_id = f"ev-{rng.randint(1000, 99999)}"
    when_zh = say_date(args["date"], "zh") + (f" {args['time']}" if "time" in args else "")
    when_en = say_date(args["date"], "en") + (f" at {args['time']}" if "time" in args else "")
    result = {"status": "created", "event_id": event_id, "title": args["title"], "date": args["date"]}
    if lang == "zh":
        return dumps(result), f"已添加日程：{args['title']}，{when_zh}。"
    return dumps(result), f"Added \"{args['title']}\" on {when_en}."


def _save_file(args, lang, rng, pools) -> Result:
    result = {"status": "saved", "path": args["path"], "bytes": len(str(args.get("content", "")).encode("utf-8"))}
    return dumps(result), (f"已保存到{args['path']}。" if lang == "zh" else f"Saved to {args['path']}.")


SIMULATORS: dict[str, Callable[..., Result]] = {
    "get_weather": _weather, "search_hotels": _search_hotels, "book_hotel": _book_hotel,
    "set_alarm": _set_alarm, "send_message": _send_message, "calculate": _calculate,
    "translate": _translate, "play_music": _play_music, "control_light": _control_light,
    "convert_units": _convert_units, "create_event": _create_event, "save_file": _save_file,
}

# Failures that are not the model's fault: the right move is to tell the user, not to retry.
FAILURES: dict[str, list[tuple[str, str, str]]] = {
    "get_weather": [("city not found: {city}", "抱歉，没有找到“{city}”这个城市，能确认一下名字吗？",
                     "Sorry, I couldn't find a city called \"{city}\". Could you check the name?")],
    "send_message": [("contact not found: {to}", "通讯录里没有找到{to}，要换个名字试试吗？",
                      "I couldn't find {to} in your contacts. Want to try another name?")],
    "book_hotel": [("no rooms available", "这家酒店那天已经没有空房了，要换一家吗？",
                    "That hotel has no rooms left for that date. Want to try another one?"),
                   ("unknown hotel_id: {hotel_id}", "没有找到编号为{hotel_id}的酒店，要先搜索一下吗？",
                    "I couldn't find a hotel with id {hotel_id}. Should I search first?")],
    "play_music": [("no results for: {query}", "没有找到“{query}”，换一首试试？",
                    "I couldn't find \"{query}\". Want to try something else?")],
    "control_light": [("unknown room: {room}", "没有找到叫“{room}”的房间，是不是名字不一样？",
                       "I couldn't find a room called \"{room}\". Is it named differently?")],
    "save_file": [("permission denied: {path}", "没有权限写入{path}，换个路径可以吗？",
                   "I don't have permission to write {path}. Can I use a different path?")],
}
GENERIC_FAILURES = [("service unavailable", "抱歉，服务暂时不可用，请稍后再试。",
                     "Sorry, the service is unavailable right now. Please try again later."),
                    ("timeout", "请求超时了，要我再试一次吗？", "The request timed out. Should I try again?")]


def failure(name: str, args: dict[str, Any], lang: str, rng: random.Random) -> Result:
    options = [f for f in FAILURES.get(name, []) if all(f"{{{k}}}" not in f[0] or k in args for k in re.findall(r"{(\w+)}", f[0]))]
    error, zh, en = rng.choice(options + GENERIC_FAILURES[:1] if options else GENERIC_FAILURES)
    values = {k: str(v) for k, v in args.items()}
    fmt = lambda s: re.sub(r"{(\w+)}", lambda m: values.get(m.group(1), m.group(0)), s)  # noqa: E731
    return dumps({"error": fmt(error)}), fmt(zh if lang == "zh" else en)
