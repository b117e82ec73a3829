"""Free texts as people dictate them: messages, notes and sentences that carry days, times,
numbers, codes and a second clause.

A tiny model trained only on short pool texts ("我晚点到", "on my way") learns that a message
ends where a day word, a number or a comma begins: asked to send "周六我带孩子过去吃饭" it copies
"周六" and stops. These texts are composed from clauses with those things inside them, so that
the only rule that fits is "the text runs to the end of what the user dictated".
"""

from __future__ import annotations

import random
import string

from fnedge.data import surface as sf

# Clauses, by language. Slots: {day} a day said alone (no part of the day), {when} a day that may
# carry it (今晚, tomorrow morning), {time}, {n} a small count, {num} a larger number, {code} a
# digit code, {tag} a letter-and-digit code, {amount} money, {phone}, {name}, {place}, {thing},
# {event}.
_CLAUSES = {
    "zh": [
        "{day}{time}在{place}见", "{event}改到{day}{time}了", "{day}的{event}取消了", "我{day}{time}到{place}",
        "{thing}放在{place}了", "{thing}我{day}之前给你", "记得{day}带{thing}", "取件码{code}",
        "门禁密码是{code}", "我们住{num}房间", "我在{place}，{n}号口", "这个月水费{amount}，我已经交了",
        "{name}的电话是{phone}", "{day}{time}的票买好了", "{day}要交{thing}，别忘了", "我们{n}个人，{time}到",
        "{when}不用接我，我自己打车回去", "钱转你了，一共{amount}", "{event}在{place}，{time}开始",
        "我{day}请假，{thing}帮我交一下", "航班{tag}，{time}落地", "车停在{tag}", "{when}一起吃饭，位子订在{time}",
        "会议室换到{n}楼了", "{when}降温，多穿点", "我晚{n}分钟到", "{event}的资料发你邮箱了",
        "{name}说{day}{time}过来", "订单{code}已经发货了，{day}到", "快递放在{place}了，取件码{code}",
        "{when}的{event}我去不了了", "{event}定在{day}{time}", "帮我留{n}张票", "{when}记得给{name}回电话",
    ],
    "en": [
        "see you at {place} at {time}", "the {event} moved to {day} at {time}", "the {event} on {day} is off",
        "I'll be at {place} by {time}", "the {thing} is at {place}", "I'll get you the {thing} by {day}",
        "don't forget the {thing} on {day}", "the pickup code is {code}", "door code {code}", "we're in room {num}",
        "I'm at gate {n}", "the water bill was {amount}, I paid it", "{name}'s number is {phone}",
        "got the tickets for {day} at {time}", "the {thing} is due {day}, don't forget", "{n} of us are coming at {time}",
        "no need to pick me up {when}, I'll grab a cab", "sent you {amount}", "the {event} is at {place}, starts at {time}",
        "I'm off on {day}, can you hand in the {thing}", "flight {tag} lands at {time}", "parked at {tag}",
        "dinner {when}? I booked a table for {time}", "the meeting room is on floor {n} now",
        "it's cold {when}, take a jacket", "running {n} minutes late", "all the {event} files are in your inbox",
        "{name} will come by {day} at {time}", "order {code} shipped, it arrives {day}", "the package is at {place}, code {code}",
        "I can't make the {event} {when}", "the {event} is set for {day} at {time}", "save me {n} tickets",
        "call {name} back {when}", "bring {n} chairs by {time}",
    ],
}
_DAYS = {"zh": ["今天", "明天", "后天", "周一", "周二", "周三", "周四", "周五", "周六", "周日", "下周一", "下周三",
                "这周五", "星期六", "礼拜天", "15号", "3月8号", "月底"],
         "en": ["today", "tomorrow", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
                "next Tuesday", "this Friday", "the 15th", "May 3rd"]}
_NAMED_DAYS_EN = [day for day in _DAYS["en"] if day not in ("today", "tomorrow")]
_PARTS = {"zh": ["今晚", "明早", "明天晚上", "周末", "这周末", "下周", "后天上午", "周五晚上"],
          "en": ["tonight", "tomorrow morning", "this weekend", "next week", "Friday night", "on Sunday"]}
_PLACES = {"zh": ["公司", "地铁站", "楼下", "咖啡店", "学校门口", "老地方", "前台", "小区门口", "会议室", "火车站", "3号门"],
           "en": ["the office", "the station", "the cafe", "the lobby", "the front desk", "the usual spot", "school",
                  "the north entrance", "the parking lot", "gate 5"]}
_THINGS = {"zh": ["报告", "钥匙", "合同", "作业", "发票", "身份证", "充电器", "样品", "表格", "护照"],
           "en": ["report", "keys", "contract", "homework", "invoice", "ID", "charger", "samples", "form", "passport"]}


def dictated_text(rng: random.Random, lang: str, pools: dict, clauses: int | None = None) -> str:
    """One or two clauses in `lang`; two are joined as people type them (comma, 'and', '；')."""
    count = clauses or (1 if rng.random() < 0.65 else 2)
    said = [_clause(rng, lang, pools) for _ in range(count)]
    if count == 1:
        return said[0]
    joiner = rng.choice(["，", "，", "；", "。"]) if lang == "zh" else rng.choice([", ", ", ", " and ", ". "])
    return joiner.join(said)


def dictated_note(rng: random.Random, lang: str, pools: dict) -> str:
    """A line kept in a file: a label and a code, or a dictated clause."""
    if rng.random() < 0.5:
        return dictated_text(rng, lang, pools)
    labels = (["门禁密码", "wifi密码", "储物柜密码", "车位", "快递单号", "取件码", "房间号", "会员号"] if lang == "zh"
              else ["gate code", "wifi password", "locker combo", "parking spot", "tracking number", "room",
                    "member number", "PIN"])
    label = rng.choice(labels)
    value = rng.choice((_code, _tag, lambda r: _password(r, pools)))(rng)
    sep = rng.choice(["", "：", " "]) if lang == "zh" else rng.choice([" ", ": ", " is "])
    return f"{label}{sep}{value}"


def _clause(rng: random.Random, lang: str, pools: dict) -> str:
    template = rng.choice(_CLAUSES[lang])
    slots = {
        # "on today" is not English: after "on", only a named day
        "day": lambda: rng.choice(_NAMED_DAYS_EN if lang == "en" and "on {day}" in template else _DAYS[lang]),
        "when": lambda: rng.choice(_DAYS[lang] + _PARTS[lang]),
        "time": lambda: sf.say_time(*sf.random_time(rng), lang, rng),
        "n": lambda: str(rng.randint(2, 12)) if lang == "en" or rng.random() < 0.5 else sf.zh_number(rng.randint(2, 12)),
        "num": lambda: str(rng.randint(100, 2999)),
        "code": lambda: _code(rng),
        "tag": lambda: _tag(rng),
        "amount": lambda: _amount(rng, lang),
        "phone": lambda: _phone(rng, lang),
        "name": lambda: _name(rng, lang, pools),
        "place": lambda: rng.choice(_PLACES[lang]),
        "thing": lambda: rng.choice(_THINGS[lang]),
        "event": lambda: rng.choice(pools[f"event_titles_{lang}"]),
        "password": lambda: _password(rng, pools),
    }
    return template.format_map({key: fill() for key, fill in slots.items() if "{" + key + "}" in template})


def _code(rng: random.Random) -> str:
    return "".join(rng.choice(string.digits) for _ in range(rng.randint(4, 6)))


def _tag(rng: random.Random) -> str:
    """A letter-and-digit code: B2-117, CA981, 3F."""
    letters = "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randint(1, 2)))
    digits = str(rng.randint(1, 999))
    return rng.choice([f"{letters}{digits}", f"{letters}-{digits}", f"{digits}{letters}", f"{letters}{rng.randint(1, 3)}-{digits}"])


def _password(rng: random.Random, pools: dict) -> str:
    word = rng.choice(pools["first_names_en"] + pools["list_items_en"]).replace(" ", "").lower()
    return word + str(rng.randint(1, 9999))


def _amount(rng: random.Random, lang: str) -> str:
    n = rng.choice([rng.randint(5, 99), rng.randint(100, 5000)])
    if lang == "zh":
        return rng.choice([f"{n}元", f"{n}块", f"¥{n}"])
    return rng.choice([f"${n}", f"{n} bucks", f"{n} dollars"])


def _phone(rng: random.Random, lang: str) -> str:
    if lang == "zh":
        return "1" + rng.choice("3578") + "".join(rng.choice(string.digits) for _ in range(9))
    return f"{rng.randint(200, 989)}-{rng.randint(200, 989)}-{rng.randint(1000, 9999)}"


def _name(rng: random.Random, lang: str, pools: dict) -> str:
    if lang == "zh":
        return rng.choice(pools["surnames_zh"]) + rng.choice(pools["given_chars_zh"] + pools["titles_zh"])
    return rng.choice(pools["first_names_en"])
