"""Turn a template into what a user types, plus the arguments a correct call carries.

Order matters: values are chosen first (in schema order, so linked slots such as from_unit and
to_unit see each other), then the template is rendered, then noise (case, typos, punctuation,
polite words, Chinese input-method slips and particles, texting English) is applied to the words
around the values. Values copied verbatim follow the noise
applied to their own words (a lowercased "berlin" is passed as "berlin").
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from fnedge.data.fillers import FillContext, Filled
from fnedge.data.plan import NON_PARAM_SLOTS, ToolPlan
from fnedge.data.surface import to_full_width
from fnedge.data.templates import Segment, Slot, Template, render

LATIN_RE = re.compile(r"[A-Za-z]")
CJK_RE = re.compile(r"[\u3400-\u9fff]")
LATIN_WORD_RE = re.compile(r"[A-Za-z]{2,}")
ZH_TO_ASCII = str.maketrans({"，": ",", "？": "?", "！": "!", "：": ":", "。": "."})


@dataclass
class Utterance:
    text: str
    args: dict[str, Any]  # the first (or only) call's arguments, schema order
    args2: dict[str, Any] | None  # the second call's arguments in a parallel template
    template: Template
    lang: str  # "zh", "en" or "mix"
    reply_lang: str  # language the assistant answers in
    values: dict[str, Filled]  # slot key -> final filled value (after noise)
    state: dict[str, Any] = field(default_factory=dict)  # filler state (unit dimension, languages used)


@dataclass
class Noise:
    """Probabilities of each kind of noise; `scale` lowers them all for follow-up turns."""
    polite_prefix: float = 0.12
    polite_suffix: float = 0.10
    strip_end_punct: float = 0.35
    ascii_punct: float = 0.12
    lowercase: float = 0.22
    capitalize: float = 0.35
    typo: float = 0.05
    zh_space: float = 0.45
    full_width: float = 0.05
    zh_typo: float = 0.06  # a homophone slip of the input method: 在/再, 的/得, 那/哪, 天气/天汽
    zh_drop: float = 0.12  # dropped words: 一下, 的 after a value, 请 / 帮我 at the start
    particle: float = 0.14  # a sentence-final particle: 吧 / 呗 / 哈 / 啊 / 呀 / 嘛 / 呢
    slang: float = 0.18  # texting English: pls, thx, u, whats, im, dont, gonna, tmrw
    no_commas: float = 0.08  # mobile typing without commas
    request_prefix: float = 1.0  # 0: no "please"/"请"/"麻烦" in front (statements, chit-chat)


def sentence_lang(template_lang: str, mode: str) -> str:
    """Language the slot values are said in when the template is `template_lang`."""
    return template_lang if template_lang in ("zh", "en") else mode


def make_utterance(plan: ToolPlan | None, template: Template, mode: str, rng: random.Random,
                   pools: dict[str, Any], chat: dict[str, Any], noise: Noise | None,
                   preset: dict[str, Filled] | None = None, fillers: dict[str, Any] | None = None,
                   state: dict[str, Any] | None = None, longer_text_share: float = 0.0) -> Utterance:
    """Render `template` for the sample language `mode` ("zh", "en" or "mix").

    preset: slot values decided beforehand (the same city in a follow-up, ...).
    fillers: fillers for slots that are not parameters of `plan` (chat templates: {city}, ...).
    state: filler state of an earlier turn, so an answer continues it (a unit of the same dimension,
    a target language other than the one already used).
    longer_text_share: DataConfig.longer_text_share, for the free-text fillers.
    """
    base = template.lang if template.lang in ("zh", "en") else ("zh" if CJK_RE.search(template.text) else "en")
    mixed = template.lang == "mix"
    state = {k: (list(v) if isinstance(v, list) else set(v) if isinstance(v, set) else v)
             for k, v in (state or {}).items()}
    values: dict[str, Filled] = dict(preset or {})
    keys = _ordered_keys(template, plan)
    flip = {k: False for k in keys}
    if mode == "mix" and template.lang != "mix" and keys:
        for key in keys:
            flip[key] = rng.random() < 0.6
        if not any(flip.values()):
            flip[rng.choice(keys)] = True
    for key in keys:
        if key in values:
            continue
        name = key.split("#")[0]
        if plan is not None and name in plan.fillers:
            filler, schema = plan.fillers[name], plan.tool.properties[name]
        else:
            filler, schema = (fillers or {})[name], {}
        value_lang = base
        if mixed:
            value_lang = rng.choice(["zh", "en"])
        elif flip[key]:
            value_lang = "en" if base == "zh" else "zh"
        ctx = FillContext(rng, base, value_lang, pools, state, name, schema, template.variant_of(key),
                          longer_text_share)
        filled = filler(ctx)
        if key.endswith("#2"):
            first = values.get(name)
            for _ in range(6):
                if first is None or filled.value != first.value:
                    break
                filled = filler(ctx)
        values[key] = filled

    used: list[str] = []

    def surface(slot: Slot) -> list[Segment]:
        filled = values[slot.key]
        used.append(slot.key)
        pieces: list[Segment] = []
        if filled.pre:
            pieces.append((filled.pre, None))
        pieces.append((filled.surface, slot.key))
        if filled.post:
            pieces.append((filled.post, None))
        return pieces

    segments = render(template, rng, surface)
    if noise is not None:
        segments = apply_noise(segments, base, rng, chat, noise, values)
    segments = _separate_words(segments)
    text = "".join(piece for piece, _ in segments).strip()
    text = re.sub(r"  +", " ", text)
    final: dict[str, Filled] = {}
    for piece, key in segments:
        if key is not None:
            old = values[key]
            value = piece.strip() if old.verbatim else old.value
            final[key] = Filled(piece.strip(), value, old.verbatim, old.pre, old.post, old.free_text)
    for key, filled in values.items():
        final.setdefault(key, filled)
    args = _arguments(plan, template, final, used, second=False)
    args2 = _arguments(plan, template, final, used, second=True) if any(k.endswith("#2") for k in used) else None
    other_script = LATIN_WORD_RE if base == "zh" else CJK_RE
    mixed = mixed or any(flip.get(k) and other_script.search(f.surface) for k, f in final.items())
    return Utterance(text, args, args2, template, "mix" if mixed else base, base, final, state)


def _separate_words(segments: list[Segment]) -> list[Segment]:
    """A space where two pieces would glue Latin words or numbers together ("Calgary" + "tomorrow");
    a number right before a unit ("5" + "km") stays as it is."""
    out: list[list] = []
    for piece, key in segments:
        prev = next((p[0] for p in reversed(out) if p[0]), "")
        if prev and piece and prev[-1].isascii() and prev[-1].isalnum() and piece[0].isascii() and piece[0].isalnum() \
                and not (prev[-1].isdigit() and piece[0].isalpha()):
            piece = " " + piece
        out.append([piece, key])
    return [(p, k) for p, k in out]


def _ordered_keys(template: Template, plan: ToolPlan | None) -> list[str]:
    keys = template.always | template.maybe
    order = {name: i for i, name in enumerate(plan.tool.properties)} if plan else {}
    # Non-parameter slots first (a topic decides the file name), then parameters in schema order.
    return sorted(keys, key=lambda k: (k.split("#")[0] not in NON_PARAM_SLOTS,
                                       order.get(k.split("#")[0], 99), k.endswith("#2"), k))


def _arguments(plan: ToolPlan | None, template: Template, values: dict[str, Filled], used: list[str],
               second: bool) -> dict[str, Any]:
    if plan is None:
        return {}
    said: dict[str, Any] = dict(template.fixed)
    for key in used:  # shared slots (and the first call's own)
        if not key.endswith("#2") and key in values and key.split("#")[0] in plan.tool.properties:
            said[key] = values[key].value
    if second:
        for key in used:  # the second call takes its own {name#2} values
            if key.endswith("#2"):
                said[key[:-2]] = values[key].value
    return {p: said[p] for p in plan.tool.properties if p in said}


# ---- noise ----------------------------------------------------------------------------------

def apply_noise(segments: list[Segment], lang: str, rng: random.Random, chat: dict[str, Any],
                noise: Noise, values: dict[str, Filled]) -> list[Segment]:
    segs = [list(s) for s in segments]
    if lang == "zh":
        if rng.random() < noise.zh_typo:
            _zh_typo(segs, rng)
        if rng.random() < noise.zh_drop:
            _zh_drop(segs, rng)
        if rng.random() < noise.zh_space * 0.5:
            for s in segs:  # "check 一下", "帮我 play 一首": spaces where scripts meet in the wording
                if s[1] is None:
                    s[0] = CJK_LATIN_RE.sub(" ", s[0])
        if rng.random() < noise.zh_space:
            for i, s in enumerate(segs):  # "明天 Paris 天气": spaces around Latin values in Chinese text
                if s[1] is not None and LATIN_RE.search(s[0][:1] + s[0][-1:]):
                    filled = values[s[1]]
                    start = i - 1 if filled.pre and i > 0 and segs[i - 1][0] == filled.pre else i
                    end = i + 1 if filled.post and i + 1 < len(segs) and segs[i + 1][0] == filled.post else i
                    segs[start][0] = " " + segs[start][0]
                    segs[end][0] = segs[end][0] + " "
        if rng.random() < noise.full_width:
            for s in segs:
                if s[1] is not None and not values[s[1]].verbatim:
                    s[0] = to_full_width(s[0])
    if lang == "en" and rng.random() < noise.typo:
        _typo(segs, rng)
    if lang == "en" and rng.random() < noise.slang:
        _slang(segs, rng)
    if rng.random() < noise.no_commas:
        _drop_commas(segs, rng)
    first = next((s for s in segs if s[0].strip()), ["", None])
    last = next((s for s in reversed(segs) if s[0].strip()), ["", None])
    # Polite words must not touch a free-text value ("...存进x.txt：车停在B2，辛苦了" is ambiguous).
    open_start = first[1] is not None and values[first[1]].free_text and not values[first[1]].pre
    open_end = last[1] is not None and values[last[1]].free_text and not values[last[1]].post
    opener = first[0].lstrip().lower()
    addressed = first[1] is None and opener.startswith(ADDRESSED_OPENERS)  # "hey, ..." / "小助手，..." already
    if rng.random() < noise.polite_prefix and not open_start and not addressed \
            and not (lang == "zh" and first[0][:1] in "请麻帮能可我劳"):
        options = chat["prefixes"][lang]
        if noise.request_prefix < 1 or (lang == "en" and (opener.startswith(EN_QUESTION_OPENERS) or first[1] is not None)):
            # not "please how many ...", not "please I'm so tired"
            options = [p for p in options if p.strip(" ，,") not in REQUEST_PREFIXES] or options
        prefix = rng.choice(options)
        if lang == "en" and segs and segs[0][1] is None and segs[0][0][:1].isupper() and not segs[0][0].startswith("I "):
            segs[0][0] = segs[0][0][0].lower() + segs[0][0][1:]
        segs.insert(0, [prefix, None])
    end = _last_literal(segs)
    if rng.random() < noise.polite_suffix and not open_end:
        suffix = rng.choice(chat["suffixes"][lang])
        if end is not None:
            segs[end][0] = segs[end][0].rstrip("。.!！?？")
        segs.append([suffix, None])
    elif lang == "zh" and end is not None and rng.random() < noise.particle:
        particle = _zh_particle(segs, end, rng, chat)
        if particle:
            segs[end][0] = segs[end][0].rstrip("。.!！?？～") + particle
    elif end is not None and rng.random() < noise.strip_end_punct:
        segs[end][0] = segs[end][0].rstrip("。.!！?？")
    if lang == "zh" and rng.random() < noise.ascii_punct:
        for s in segs:
            if s[1] is None:
                s[0] = s[0].translate(ZH_TO_ASCII)
    if lang == "en":
        r = rng.random()
        if r < noise.lowercase:
            for s in segs:
                s[0] = s[0].lower()
        elif r < noise.lowercase + noise.capitalize:
            first = next((s for s in segs if s[0].strip()), None)
            if first is not None and first[0][:1].islower():
                first[0] = first[0][0].upper() + first[0][1:]
    return [(s[0], s[1]) for s in segs]


CJK_LATIN_RE = re.compile(r"(?<=[\u3400-\u9fff])(?=[A-Za-z])|(?<=[A-Za-z])(?=[\u3400-\u9fff])")
# Input-method slips and casual spellings in the wording around values (never in the values).
ZH_SLIPS = [("在", ["再"]), ("再", ["在"]), ("的", ["得", "地"]), ("得", ["的"]), ("那", ["哪"]), ("哪", ["那"]),
            ("天气", ["天汽", "天器"]), ("吗", ["嘛", "么"]), ("预订", ["预定"]), ("订", ["定"]), ("已经", ["以经"]),
            ("一下", ["一哈", "一夏"]), ("怎么", ["咋", "怎莫"]), ("什么", ["啥", "神马"]), ("帮我", ["帮窝", "帮"]),
            ("明天", ["名天"]), ("提醒", ["题醒"]), ("多少", ["多小"]), ("闹钟", ["闹中"]), ("音乐", ["音月"]),
            ("做", ["作"]), ("这个", ["这各"])]
ZH_QUESTION_RE = re.compile(r"(怎么|什么|多少|几|哪|谁|咋|啥|如何|是不是|要不要|会不会|有没有|冷不冷|热不热|能不能|行不行|好不好|[?？])")
ZH_FINAL_PARTICLES = "吗么嘛呢吧呗哈啊呀哦噢啦"


ADDRESSED_OPENERS = ("hey", "hi ", "hi,", "hello", "yo ", "ok ", "ok,", "okay", "so ", "um", "alright", "excuse",
                     "please", "pls", "小助手", "助手", "你好", "嗨", "哈喽", "嘿", "在吗", "那啥", "喂", "劳驾", "麻烦", "请")
REQUEST_PREFIXES = {"please", "请", "麻烦", "麻烦你", "劳驾"}
EN_QUESTION_OPENERS = ("how", "what", "whats", "is ", "are ", "will ", "do ", "does ", "should ", "any ", "can ", "could ",
                       "would ", "where", "when", "which", "who")


def _drop_commas(segs: list[list], rng: random.Random) -> None:
    """Mobile typing without commas; a comma between two Latin words becomes a space, not nothing."""
    glue = rng.choice([" ", ""])
    for i, s in enumerate(segs):
        if s[1] is not None:
            continue
        before = next((x[0] for x in reversed(segs[:i]) if x[0]), "")[-1:]
        after = next((x[0] for x in segs[i + 1:] if x[0]), "")[:1]
        text = s[0].replace(", ", " ").replace(",", " ")
        out = []
        for j, ch in enumerate(text):
            if ch != "，":
                out.append(ch)
                continue
            left = text[j - 1] if j > 0 else before
            right = text[j + 1] if j + 1 < len(text) else after
            out.append(" " if glue == "" and (left.isascii() and left.isalnum() or right.isascii() and right.isalnum())
                       else glue)
        s[0] = "".join(out)


def _zh_typo(segs: list[list], rng: random.Random) -> None:
    candidates = [(i, word, options) for i, s in enumerate(segs) if s[1] is None
                  for word, options in ZH_SLIPS if word in s[0]]
    if candidates:
        i, word, options = rng.choice(candidates)
        segs[i][0] = segs[i][0].replace(word, rng.choice(options), 1)


def _zh_drop(segs: list[list], rng: random.Random) -> None:
    """Drop a word people leave out when typing fast: 一下, 的 right after a value, 请/帮我 in front."""
    options = []
    for i, s in enumerate(segs):
        if s[1] is not None:
            continue
        if "一下" in s[0]:
            options.append((i, "一下"))
        if s[0].startswith("的") and i > 0 and segs[i - 1][1] is not None and not s[0].startswith("的话"):
            options.append((i, "的"))
        if i == 0 and s[0].startswith(("请", "帮我", "麻烦")) and not s[0].startswith("请问") and len(s[0]) > 2:
            options.append((i, next(w for w in ("请", "帮我", "麻烦") if s[0].startswith(w))))
    if options:
        i, word = rng.choice(options)
        segs[i][0] = segs[i][0].replace(word, "", 1)


def _zh_particle(segs: list[list], end: int, rng: random.Random, chat: dict[str, Any]) -> str | None:
    """A sentence-final particle that fits: 吧/呗/嘛 after a request, 啊/呀/呢 after a wh-question,
    nothing after a yes/no question that already ends in 吗."""
    text = "".join(s[0] for s in segs).rstrip("。.!！?？～ ")
    if not text or text[-1] in ZH_FINAL_PARTICLES or not CJK_RE.search(text[-1]):
        return None
    suffixes = chat.get("suffixes", {})
    kind = "zh_question" if ZH_QUESTION_RE.search(text) else "zh_request"
    options = suffixes.get(kind) or (["啊", "呀", "呢"] if kind == "zh_question" else ["吧", "呗", "哈", "嘛", "呀"])
    return rng.choice(options)


# Texting English, applied to the wording only: (pattern, replacements).
EN_SLANG = [(r"\bplease\b", ["pls", "plz", "pls"]), (r"\bthanks\b", ["thx", "thanx", "ty"]),
            (r"\bthank you\b", ["ty", "thx", "thank u"]), (r"\byou\b", ["u"]), (r"\byour\b", ["ur"]),
            (r"\b(W|w)hat's\b", ["whats", "what is", "wats"]), (r"\bI'm\b", ["im", "Im", "I am"]),
            (r"\bdon't\b", ["dont", "do not"]), (r"\b(I|i)t's\b", ["its", "it is"]), (r"\bcan't\b", ["cant"]),
            (r"\bI'll\b", ["Ill", "I will", "i'll"]), (r"\b(H|h)ow's\b", ["hows", "how is"]),
            (r"\b(W|w)hat is\b", ["what's", "whats"]), (r"\bI am\b", ["I'm", "im"]), (r"\bdo not\b", ["don't", "dont"]),
            (r"\bminutes\b", ["mins"]), (r"\btomorrow\b", ["tmrw", "tmr", "2moro"]), (r"\bokay\b", ["ok", "k"]),
            (r"\bgoing to\b", ["gonna"]), (r"\bwant to\b", ["wanna"]), (r"\bgot to\b", ["gotta"]),
            (r"\bbecause\b", ["cuz", "bc"]), (r"\bthat's\b", ["thats"]), (r"\bI've\b", ["ive", "Ive"]),
            (r"\bwe're\b", ["were", "we are"]), (r"\bdoesn't\b", ["doesnt"]), (r"\bisn't\b", ["isnt"]),
            (r"\bcould you\b", ["could u", "cud you"]), (r"\bthe (?=weather|lights?|alarm)", [""]),
            (r"\bmessage\b", ["msg"])]
EN_SLANG_RE = [(re.compile(p), r) for p, r in EN_SLANG]


def _slang(segs: list[list], rng: random.Random) -> None:
    hits = [(i, pattern, options) for i, s in enumerate(segs) if s[1] is None
            for pattern, options in EN_SLANG_RE if pattern.search(s[0])]
    rng.shuffle(hits)
    for i, pattern, options in hits[:rng.randint(1, 3)]:
        segs[i][0] = pattern.sub(lambda m: rng.choice(options), segs[i][0], count=1)


def _last_literal(segs: list[list]) -> int | None:
    for i in range(len(segs) - 1, -1, -1):
        if segs[i][0].strip():
            return i if segs[i][1] is None else None
    return None


def _typo(segs: list[list], rng: random.Random) -> None:
    candidates = [(i, m) for i, s in enumerate(segs) if s[1] is None
                  for m in re.finditer(r"[A-Za-z]{4,}", s[0])]
    if not candidates:
        return
    i, match = rng.choice(candidates)
    word = match.group(0)
    j = rng.randrange(1, len(word) - 1)
    kind = rng.random()
    if kind < 0.4:
        new = word[:j] + word[j + 1] + word[j] + word[j + 2:]
    elif kind < 0.7:
        new = word[:j] + word[j + 1:]
    else:
        new = word[:j] + word[j] + word[j:]
    text = segs[i][0]
    segs[i][0] = text[:match.start()] + new + text[match.end():]
