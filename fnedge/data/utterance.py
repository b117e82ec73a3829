"""Turn a template into what a user types, plus the arguments a correct call carries.

Order matters: values are chosen first (in schema order, so linked slots such as from_unit and
to_unit see each other), then the template is rendered, then noise (case, typos, punctuation,
polite words) is applied to the words around the values. Values copied verbatim follow the noise
applied to their own words (a lowercased "berlin" is passed as "berlin").
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
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


def sentence_lang(template_lang: str, mode: str) -> str:
    """Language the slot values are said in when the template is `template_lang`."""
    return template_lang if template_lang in ("zh", "en") else mode


def make_utterance(plan: ToolPlan | None, template: Template, mode: str, rng: random.Random,
                   pools: dict[str, Any], chat: dict[str, Any], noise: Noise | None,
                   preset: dict[str, Filled] | None = None, fillers: dict[str, Any] | None = None) -> Utterance:
    """Render `template` for the sample language `mode` ("zh", "en" or "mix").

    preset: slot values decided beforehand (the same city in a follow-up, ...).
    fillers: fillers for slots that are not parameters of `plan` (chat templates: {city}, ...).
    """
    base = template.lang if template.lang in ("zh", "en") else ("zh" if CJK_RE.search(template.text) else "en")
    mixed = template.lang == "mix"
    state: dict[str, Any] = {}
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
        ctx = FillContext(rng, base, value_lang, pools, state, name, schema, template.variant_of(key))
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
    return Utterance(text, args, args2, template, "mix" if mixed else base, base, final)


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
    first = next((s for s in segs if s[0].strip()), ["", None])
    last = next((s for s in reversed(segs) if s[0].strip()), ["", None])
    # Polite words must not touch a free-text value ("...存进x.txt：车停在B2，辛苦了" is ambiguous).
    open_start = first[1] is not None and values[first[1]].free_text and not values[first[1]].pre
    open_end = last[1] is not None and values[last[1]].free_text and not values[last[1]].post
    if rng.random() < noise.polite_prefix and not open_start and not (lang == "zh" and first[0][:1] in "请麻帮能可我劳"):
        prefix = rng.choice(chat["prefixes"][lang])
        if lang == "en" and segs and segs[0][1] is None and segs[0][0][:1].isupper() and not segs[0][0].startswith("I "):
            segs[0][0] = segs[0][0][0].lower() + segs[0][0][1:]
        segs.insert(0, [prefix, None])
    end = _last_literal(segs)
    if rng.random() < noise.polite_suffix and not open_end:
        suffix = rng.choice(chat["suffixes"][lang])
        if end is not None:
            segs[end][0] = segs[end][0].rstrip("。.!！?？")
        segs.append([suffix, None])
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
