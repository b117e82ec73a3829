"""One generator per sample kind. Each returns one conversation (or None to try again).

A sample is {"kind", "lang", "tools", "template", "messages"}; the last message is the assistant
turn being taught. Every assistant turn is learned, so earlier ones are correct too, except the
deliberate mistake in error_correction, which carries "weight": 0.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

from fnedge.catalog import Catalog, call_problem
from fnedge.chat_format import TEXT_REFERENCE, openai_tool_call
from fnedge.data import fillers as fl
from fnedge.data import generic, results
from fnedge.data.config import DataConfig
from fnedge.data.fillers import FillContext, Filled
from fnedge.data.hints import HintSet
from fnedge.data.plan import ToolPlan
from fnedge.data.templates import Template, compile_template, render_plain
from fnedge.data.texts import write_text
from fnedge.data.utterance import Noise, Utterance, make_utterance

Sample = dict[str, Any]
ORDINALS_ZH = ["一", "二", "三", "四"]
ORDINALS_EN = ["first", "second", "third", "fourth"]


@dataclass
class Context:
    """Shared state for one generation run."""
    catalog: Catalog
    plans: dict[str, ToolPlan]
    hints: HintSet
    config: DataConfig
    rng: random.Random
    noise: Noise = field(default_factory=Noise)
    light_noise: Noise = field(default_factory=Noise)
    chat_noise: Noise = field(default_factory=Noise)  # chit-chat and statements: no "please"/"thanks" added
    _compiled: dict[tuple, list[Template]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.noise = scaled_noise(self.config.noise_scale)
        self.light_noise = scaled_noise(self.config.noise_scale * 0.4, polite=False)
        self.chat_noise = scaled_noise(self.config.noise_scale, polite=False)
        self.chat_noise.polite_prefix = self.noise.polite_prefix * 0.5
        self.chat_noise.request_prefix = 0.0

    @property
    def pools(self) -> dict[str, Any]:
        return self.hints.pools

    @property
    def chat(self) -> dict[str, Any]:
        return self.hints.chat

    def mode(self) -> str:
        weights = self.config.lang_weights
        return self.rng.choices(list(weights), list(weights.values()))[0]

    def call_id(self) -> str:
        return f"call_{self.rng.getrandbits(32):08x}"

    def compiled(self, key: tuple, texts: list[str], prefix: str, lang: str) -> list[Template]:
        """Compile inline template lists once (chat lines, answers), keyed by where they come from."""
        if key not in self._compiled:
            self._compiled[key] = [compile_template(t, f"{prefix}.{i}", lang) for i, t in enumerate(texts)]
        return self._compiled[key]

    def utter(self, plan: ToolPlan | None, template: Template, mode: str, light: bool = False,
              preset: dict[str, Filled] | None = None, state: dict[str, Any] | None = None,
              noise: Noise | None = None) -> Utterance:
        noise = noise or (self.light_noise if light else self.noise)
        return make_utterance(plan, template, mode, self.rng, self.pools, self.chat, noise, preset, fl.FILLERS, state,
                              self.config.longer_text_share)


def scaled_noise(scale: float, polite: bool = True) -> Noise:
    base = Noise()
    values = {name: min(1.0, getattr(base, name) * scale) for name in base.__dataclass_fields__}
    for name in ("capitalize", "zh_space", "request_prefix"):  # style choices, not noise: keep them
        values[name] = getattr(base, name)
    if not polite:
        values["polite_prefix"] = values["polite_suffix"] = values["particle"] = 0.0
    return Noise(**values)


# ---- message builders -----------------------------------------------------------------------

def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def say(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def calls(ctx: Context, items: list[tuple[str, dict[str, Any]]], content: str = "") -> dict[str, Any]:
    return {"role": "assistant", "content": content,
            "tool_calls": [openai_tool_call(name, args, ctx.call_id()) for name, args in items]}


def tool_result(call_message: dict[str, Any], content: str, index: int = 0) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_message["tool_calls"][index]["id"], "content": content}


def sample(kind: str, lang: str, tools: list[str], template: str, messages: list[dict[str, Any]]) -> Sample:
    return {"kind": kind, "lang": lang, "tools": tools, "template": template, "messages": messages}


# ---- choosing tools and templates -----------------------------------------------------------

def choose_template(ctx: Context, plan: ToolPlan, mode: str, complete: bool = True) -> Template | None:
    """A hint template most of the time, a generic one sometimes (always, without hints)."""
    rng = ctx.rng
    hinted = plan.complete if complete else plan.partial
    generic_ = plan.generic_complete if complete else plan.generic_partial
    lang = mode
    if mode == "mix":
        if hinted.get("mix") and rng.random() < 0.45:
            return rng.choice(hinted["mix"])
        lang = rng.choice(["zh", "en"])
    pool = hinted.get(lang, [])
    if not pool or rng.random() < ctx.config.generic_share:
        pool = generic_.get(lang, [])
    return rng.choice(pool) if pool else None


def choose_plan(ctx: Context, usable: Callable[[ToolPlan], bool] = lambda p: True) -> ToolPlan | None:
    plans = [p for p in ctx.plans.values() if usable(p)]
    if not plans:
        return None
    weights = ctx.config.tool_weights
    if not weights:
        return ctx.rng.choice(plans)
    return ctx.rng.choices(plans, weights=[weights.get(p.name, 1.0) for p in plans])[0]


def capabilities(ctx: Context, lang: str) -> str:
    plans = ctx.rng.sample(list(ctx.plans.values()), min(3, len(ctx.plans)))
    if lang == "zh":
        return "、".join(generic.chinese_phrase(p.tool) or generic.english_phrase(p.tool) for p in plans)
    return ", ".join(generic.english_phrase(p.tool) for p in plans)


def reply(ctx: Context, options: list[str], values: dict[str, str] | None = None) -> str:
    values = dict(values or {})
    text = ctx.rng.choice(options)
    if "{capabilities}" in text:
        values["capabilities"] = capabilities(ctx, "zh" if any("\u4e00" <= c <= "\u9fff" for c in text) else "en")
    return render_plain(text, ctx.rng, values)


def ask_question(ctx: Context, plan: ToolPlan, missing: list[str], lang: str, utt: Utterance) -> str:
    """A short question for the first missing argument (or all of them), in the user's language."""
    rng = ctx.rng
    said = {key: f.surface for key, f in utt.values.items()}
    hinted = plan.ask.get(missing[0], {}).get(lang, [])
    hinted = [q for q in hinted if all(f"{{{k}}}" not in q or k in said for k in plan.tool.properties)]
    replies = ctx.chat["replies"]
    if hinted and (len(missing) == 1 or rng.random() < 0.5):
        return render_plain(rng.choice(hinted), rng, said)
    labels = [plan.labels[p][lang] for p in missing]
    if len(labels) == 1:
        return render_plain(rng.choice(replies["ask_one"][lang]), rng, {"label": labels[0]})
    joined = ("、".join(labels[:-1]) + "和" + labels[-1]) if lang == "zh" else (", ".join(labels[:-1]) + " and " + labels[-1])
    return render_plain(rng.choice(replies["ask_many"][lang]), rng, {"labels": joined})


# ---- 1. single_call -------------------------------------------------------------------------

def single_call(ctx: Context) -> Sample | None:
    """One instruction, one call with exactly the arguments the user said."""
    plan = choose_plan(ctx)
    mode = ctx.mode()
    template = choose_template(ctx, plan, mode)
    if template is None:
        return None
    utt = ctx.utter(plan, template, mode)
    return sample("single_call", utt.lang, [plan.name], template.id,
                  [user(utt.text), calls(ctx, [(plan.name, utt.args)])])


# ---- 2. parallel_call -----------------------------------------------------------------------

def parallel_call(ctx: Context) -> Sample | None:
    """One message asking for two things: two calls in one assistant turn."""
    rng = ctx.rng
    mode = ctx.mode()
    lang = mode if mode != "mix" else rng.choice(["zh", "en"])
    same_tool = [p for p in ctx.plans.values() if p.parallel.get(lang)]
    if same_tool and rng.random() < 0.35:
        plan = rng.choice(same_tool)
        template = rng.choice(plan.parallel[lang])
        utt = ctx.utter(plan, template, mode if mode == "mix" else lang)
        if utt.args2 is None or utt.args2 == utt.args:
            return None
        return sample("parallel_call", utt.lang, [plan.name, plan.name], template.id,
                      [user(utt.text), calls(ctx, [(plan.name, utt.args), (plan.name, utt.args2)])])
    if len(ctx.plans) < 2:
        return None
    first, second = rng.sample(list(ctx.plans.values()), 2)
    t1, t2 = choose_template(ctx, first, lang), choose_template(ctx, second, lang)
    if t1 is None or t2 is None:
        return None
    quiet = Noise(polite_prefix=0, polite_suffix=0, strip_end_punct=1.0, ascii_punct=0, lowercase=0,
                  capitalize=0, typo=ctx.noise.typo, zh_space=ctx.noise.zh_space, full_width=ctx.noise.full_width,
                  zh_typo=ctx.noise.zh_typo, zh_drop=ctx.noise.zh_drop, particle=0, slang=ctx.noise.slang,
                  no_commas=0)
    share = ctx.config.longer_text_share
    u1 = make_utterance(first, t1, mode, rng, ctx.pools, ctx.chat, quiet, longer_text_share=share)
    u2 = make_utterance(second, t2, mode, rng, ctx.pools, ctx.chat, quiet, longer_text_share=share)
    if _ends_with_free_text(u1) and not _ends_with_free_text(u2):
        # "tell Mom I'm late, and turn on the light" blurs where the message ends: put it last.
        first, second, t1, t2, u1, u2 = second, first, t2, t1, u2, u1
    joiner = rng.choice(ctx.chat["replies"]["joiners"][lang])
    text = u1.text.rstrip("。.!！?？,，") + joiner + u2.text
    lang_out = "mix" if "mix" in (u1.lang, u2.lang) else lang
    return sample("parallel_call", lang_out, [first.name, second.name], f"{t1.id}|{t2.id}",
                  [user(text), calls(ctx, [(first.name, u1.args), (second.name, u2.args)])])


def _ends_with_free_text(utt: Utterance) -> bool:
    end = utt.text.rstrip("。.!！?？,， ")
    return any(f.free_text and not f.post and f.surface and end.endswith(f.surface) for f in utt.values.values())


# ---- 3. ask ---------------------------------------------------------------------------------

def ask(ctx: Context) -> Sample | None:
    """A required argument is missing: ask for it, make no call."""
    plan = choose_plan(ctx, lambda p: bool(p.partial or p.generic_partial))
    if plan is None:
        return None
    mode = ctx.mode()
    template = choose_template(ctx, plan, mode, complete=False)
    if template is None:
        return None
    utt = ctx.utter(plan, template, mode)
    question = ask_question(ctx, plan, plan.missing(template), utt.reply_lang, utt)
    return sample("ask", utt.lang, [plan.name], template.id, [user(utt.text), say(question)])


# ---- 4. ask_then_call -----------------------------------------------------------------------

def answer_templates(ctx: Context, plan: ToolPlan, param: str, lang: str) -> list[Template]:
    texts = plan.answers.get(param, {}).get(lang) or [
        t.replace("{value}", f"{{{param}}}") for t in ctx.chat["replies"]["answer"][lang]]
    return ctx.compiled(("answer", plan.name, param, lang), texts, f"{plan.name}.answer.{param}.{lang}", lang)


def ask_then_call(ctx: Context) -> Sample | None:
    """Ask for the one missing argument, the user answers, then call with both turns' arguments."""
    rng = ctx.rng
    plan = choose_plan(ctx, lambda p: bool(p.partial or p.generic_partial))
    if plan is None:
        return None
    mode = ctx.mode()
    template = choose_template(ctx, plan, mode, complete=False)
    if template is None or len(plan.missing(template)) != 1:
        return None
    missing = plan.missing(template)[0]
    if missing not in plan.fillers:
        return None
    utt = ctx.utter(plan, template, mode)
    question = ask_question(ctx, plan, [missing], utt.reply_lang, utt)
    answer_template = rng.choice(answer_templates(ctx, plan, missing, utt.reply_lang))
    # The answer continues the first turn's values: a unit of the same dimension, another language.
    answer = ctx.utter(plan, answer_template, "mix" if utt.lang == "mix" and rng.random() < 0.5 else utt.reply_lang,
                       light=True, state=utt.state)
    merged = {**utt.args, **answer.args}
    args = {p: merged[p] for p in plan.tool.properties if p in merged}
    lang = "mix" if "mix" in (utt.lang, answer.lang) else utt.lang
    return sample("ask_then_call", lang, [plan.name], f"{template.id}|{answer_template.id}",
                  [user(utt.text), say(question), user(answer.text), calls(ctx, [(plan.name, args)])])


# ---- 5. no_call -----------------------------------------------------------------------------

def usable_chat_categories(ctx: Context) -> list[dict[str, Any]]:
    if "no_call_usable" not in ctx.__dict__:
        haystack = " ".join(f"{t.name} {t.description}".lower() for t in ctx.catalog.tools)
        usable = [c for c in ctx.chat.get("no_call", [])
                  if not any(w.lower() in haystack for w in c.get("avoid", []))]
        ctx.__dict__["no_call_usable"] = usable
        ctx.__dict__["no_call_weights"] = [c.get("weight", 1) for c in usable]
    return ctx.__dict__["no_call_usable"]


def _chat_line(ctx: Context, group: dict[str, Any], prefix: str, mode: str) -> tuple[Utterance, Template] | None:
    lang = mode if mode in ("zh", "en") else ctx.rng.choice(["zh", "en"])
    if not group.get(lang):
        lang = "en" if lang == "zh" else "zh"
        if not group.get(lang):
            return None
    templates = ctx.compiled((prefix, lang), group[lang], f"{prefix}.{lang}", lang)
    template = ctx.rng.choice(templates)
    return ctx.utter(None, template, mode if mode == "mix" else lang, noise=ctx.chat_noise), template


def no_call(ctx: Context) -> Sample | None:
    """Chit-chat, questions, near-miss words and out-of-scope requests: a short reply, no call."""
    rng = ctx.rng
    mode = ctx.mode()
    r = rng.random()
    near_misses = [(p, i, item) for p in ctx.plans.values() for i, item in enumerate(p.near_miss)]
    if r < 0.18 and near_misses:
        plan, index, group = rng.choice(near_misses)
        prefix, tools = f"{plan.name}.near{index}", [plan.name]
    elif r < 0.33 and ctx.chat.get("compose"):
        return _compose(ctx, mode)
    else:
        categories = usable_chat_categories(ctx)
        if not categories:
            return None
        # Open-ended categories (templates with many alternatives) carry a weight > 1: they are
        # how people really chat, and their variety keeps the extra draws from repeating.
        group = rng.choices(categories, weights=ctx.__dict__["no_call_weights"])[0]
        prefix, tools = f"no_call.{group.get('id', 'chat')}", []
    line = _chat_line(ctx, group, prefix, mode)
    if line is None:
        return None
    utt, template = line
    options = group.get(f"reply_{utt.reply_lang}") or group.get("reply_en") or ["OK."]
    return sample("no_call", utt.lang, tools, template.id, [user(utt.text), say(reply(ctx, options))])


def _compose(ctx: Context, mode: str) -> Sample | None:
    """'Write a poem about X' with nothing to save or send: the reply is the text itself."""
    group = ctx.rng.choice(ctx.chat["compose"])
    line = _chat_line(ctx, group, f"no_call.compose.{group['genre']}", "zh" if mode == "zh" else "en" if mode == "en" else ctx.rng.choice(["zh", "en"]))
    if line is None:
        return None
    utt, template = line
    topic = utt.values.get("topic")
    text = write_text(group["genre"], utt.reply_lang, topic.value if topic else None, ctx.rng, ctx.hints.texts, ctx.pools)
    return sample("no_call", utt.lang, [], template.id, [user(utt.text), say(text)])


# ---- 6. deferred ----------------------------------------------------------------------------

def deferred(ctx: Context) -> Sample | None:
    """Write a text, then save/send it: the call's text argument is TEXT_REFERENCE, not a copy."""
    rng = ctx.rng
    plan = choose_plan(ctx, lambda p: bool(p.deferred))
    if plan is None:
        return None
    mode = ctx.mode()
    lang = mode if mode in plan.deferred else rng.choice(list(plan.deferred))
    template = rng.choice(plan.deferred[lang])
    utt = ctx.utter(plan, template, "mix" if mode == "mix" else template.lang)
    topic = utt.values.get("topic")
    genre = template.extra.get("genre", "note")
    text = write_text(genre, utt.reply_lang, topic.value if topic else None, rng, ctx.hints.texts, ctx.pools,
                      to=utt.args.get("to"))
    merged = {**utt.args, plan.deferred_param: TEXT_REFERENCE}
    args = {p: merged[p] for p in plan.tool.properties if p in merged}
    return sample("deferred", utt.lang, [plan.name], template.id,
                  [user(utt.text), calls(ctx, [(plan.name, args)], content=text)])


# ---- 7. multi_turn --------------------------------------------------------------------------

def multi_turn(ctx: Context) -> Sample | None:
    """Conversations that continue after a tool result."""
    rng = ctx.rng
    r = rng.random()
    if r < 0.3 and _hotel_flow_ready(ctx):
        return _hotel_flow(ctx)
    if r < 0.5:
        plan = choose_plan(ctx, lambda p: bool(p.followups))
        if plan is not None:
            return _followup(ctx, plan)
    if r < 0.8:
        return _summary(ctx)
    return _sequential(ctx)


def _first_call(ctx: Context, plan: ToolPlan, mode: str | None = None) -> tuple[Utterance, Template, dict] | None:
    mode = mode or ctx.mode()
    template = choose_template(ctx, plan, mode)
    if template is None:
        return None
    utt = ctx.utter(plan, template, mode)
    return utt, template, calls(ctx, [(plan.name, utt.args)])


def _summary(ctx: Context) -> Sample | None:
    plan = choose_plan(ctx)
    first = _first_call(ctx, plan)
    if first is None:
        return None
    utt, template, call = first
    simulated = results.simulate(plan.name, utt.args, utt.reply_lang, ctx.rng, ctx.pools, ctx.chat["replies"]["done"])
    if simulated is None:
        return None
    content, text = simulated
    return sample("multi_turn", utt.lang, [plan.name], template.id,
                  [user(utt.text), call, tool_result(call, content), say(text)])


def _sequential(ctx: Context) -> Sample | None:
    """A finished exchange, then an unrelated new request: only the new one gets a call."""
    plan_a = choose_plan(ctx)
    # A new request to book right after a search would look like picking from the list: not here.
    plan_b = choose_plan(ctx, lambda p: p is not plan_a and not (plan_a.name == "search_hotels" and p.name == "book_hotel"))
    if plan_b is None:
        return None
    first = _first_call(ctx, plan_a)
    if first is None:
        return None
    utt, template, call = first
    simulated = results.simulate(plan_a.name, utt.args, utt.reply_lang, ctx.rng, ctx.pools, ctx.chat["replies"]["done"])
    if simulated is None:
        return None
    content, text = simulated
    second = _first_call(ctx, plan_b, utt.reply_lang if utt.lang != "mix" else "mix")
    if second is None:
        return None
    utt_b, template_b, call_b = second
    lang = "mix" if "mix" in (utt.lang, utt_b.lang) else utt.lang
    return sample("multi_turn", lang, [plan_a.name, plan_b.name], f"{template.id}|{template_b.id}",
                  [user(utt.text), call, tool_result(call, content), say(text), user(utt_b.text), call_b])


def _followup(ctx: Context, plan: ToolPlan) -> Sample | None:
    """Result, then 'what about X?': the next call keeps the earlier arguments and changes X."""
    rng = ctx.rng
    first = _first_call(ctx, plan)
    if first is None:
        return None
    utt, template, call = first
    lang = utt.reply_lang
    options = plan.followups.get(lang) or []
    if not options:
        return None
    follow = rng.choice(options)
    f_utt = ctx.utter(plan, follow, "mix" if utt.lang == "mix" and rng.random() < 0.5 else lang, light=True,
                      state=utt.state)
    if all(utt.args.get(k) == v for k, v in f_utt.args.items()):
        return None
    merged = {**utt.args, **f_utt.args}
    args = {p: merged[p] for p in plan.tool.properties if p in merged}
    simulated = results.simulate(plan.name, utt.args, lang, rng, ctx.pools, ctx.chat["replies"]["done"])
    if simulated is None:
        return None
    content, text = simulated
    out_lang = "mix" if "mix" in (utt.lang, f_utt.lang) else utt.lang
    return sample("multi_turn", out_lang, [plan.name, plan.name], f"{template.id}|{follow.id}",
                  [user(utt.text), call, tool_result(call, content), say(text), user(f_utt.text),
                   calls(ctx, [(plan.name, args)])])


def _hotel_flow_ready(ctx: Context) -> bool:
    search, book = ctx.plans.get("search_hotels"), ctx.plans.get("book_hotel")
    return bool(search and book and {"hotel_id", "check_in"} <= set(book.tool.properties)
                and "city" in search.tool.properties)


def _hotel_flow(ctx: Context) -> Sample | None:
    """search_hotels -> list -> the user picks one -> book_hotel with that id and the dates."""
    rng = ctx.rng
    search, book = ctx.plans["search_hotels"], ctx.plans["book_hotel"]
    first = _first_call(ctx, search)
    if first is None:
        return None
    utt, template, call = first
    lang = utt.reply_lang
    hotels = results.hotel_list(utt.args, lang, rng, ctx.pools)
    if len(hotels) < 2:
        return None
    summary = results.summarize_hotels(hotels, lang, rng)
    pick_text, index = _pick_hotel(ctx, hotels, lang)
    args: dict[str, Any] = {"hotel_id": hotels[index]["id"]}
    extra = ""
    fill = FillContext(rng, lang, lang, ctx.pools, {}, "check_in", book.tool.properties.get("check_in", {}))
    if "check_in" in utt.args:
        args["check_in"] = utt.args["check_in"]
    else:
        day = fl.fill_date(fill)
        args["check_in"] = day.value
        extra = rng.choice(["，{d}入住", "，{d}住", "，入住时间{d}"] if lang == "zh" else [", checking in {d}", ", {d}", ", arriving {d}"]).format(d=day.surface)
    if "nights" in utt.args:
        args["nights"] = utt.args["nights"]
    elif rng.random() < 0.35 and "nights" in book.tool.properties:
        n = fl.fill_nights(fill)
        args["nights"] = n.value
        extra += ("，住" + n.surface) if lang == "zh" else (", " + n.surface if rng.random() < 0.5 else f" for {n.surface}")
    pick_text += extra
    book_call = calls(ctx, [(book.name, {p: args[p] for p in book.tool.properties if p in args})])
    messages = [user(utt.text), call, tool_result(call, results.dumps(hotels)), say(summary), user(pick_text), book_call]
    if rng.random() < 0.25 and len(hotels) <= 3:
        simulated = results.simulate(book.name, book_call_args(book_call), lang, rng, ctx.pools, ctx.chat["replies"]["done"])
        if simulated is not None:
            messages += [tool_result(book_call, simulated[0]), say(simulated[1])]
    return sample("multi_turn", utt.lang, [search.name, book.name], f"{template.id}|hotel_pick.{lang}", messages)


def book_call_args(message: dict[str, Any]) -> dict[str, Any]:
    import json
    return json.loads(message["tool_calls"][0]["function"]["arguments"])


def _pick_hotel(ctx: Context, hotels: list[dict[str, Any]], lang: str) -> tuple[str, int]:
    rng = ctx.rng
    r = rng.random()
    if r < 0.15:
        index = min(range(len(hotels)), key=lambda i: hotels[i]["price"])
        return rng.choice(["订最便宜的那家", "就最便宜的吧", "最便宜的那个"] if lang == "zh"
                          else ["book the cheapest one", "the cheapest please", "go with the cheapest"]), index
    index = rng.randrange(len(hotels))
    hotel = hotels[index]
    if r < 0.6:
        options = (["订第{o}家", "就第{o}个吧", "第{o}家不错，帮我订", "订第{o}个", "第{o}家"] if lang == "zh"
                   else ["book the {o} one", "the {o} one please", "I'll take the {o} one", "{o} one", "let's do the {o}"])
        return rng.choice(options).format(o=(ORDINALS_ZH if lang == "zh" else ORDINALS_EN)[index]), index
    if r < 0.85:
        options = (["订{n}", "就{n}吧", "{n}那家", "帮我订{n}"] if lang == "zh"
                   else ["book {n}", "let's go with {n}", "{n} please", "the {n}"])
        return rng.choice(options).format(n=hotel["name"]), index
    options = ["订{i}", "{i}", "就{i}"] if lang == "zh" else ["book {i}", "{i}", "{i} please"]
    return rng.choice(options).format(i=hotel["id"]), index


# ---- 8. error_correction --------------------------------------------------------------------

SYNONYMS = {"city": "location", "text": "message", "to": "recipient", "time": "alarm_time", "query": "song",
            "room": "location", "expression": "expr", "path": "filename", "title": "name", "date": "day",
            "target_lang": "language", "hotel_id": "id", "check_in": "date", "content": "body"}


def error_correction(ctx: Context) -> Sample | None:
    """A call fails: fix a malformed call from the error message, or tell the user what went wrong."""
    rng = ctx.rng
    plan = choose_plan(ctx)
    first = _first_call(ctx, plan)
    if first is None:
        return None
    utt, template, good_call = first
    lang = utt.reply_lang
    if rng.random() < 0.35:
        content, text = results.failure(plan.name, utt.args, lang, rng)
        return sample("error_correction", utt.lang, [plan.name], template.id,
                      [user(utt.text), good_call, tool_result(good_call, content), say(text)])
    broken = _break_arguments(ctx, plan, utt)
    if broken is None:
        return None
    bad_args, error = broken
    bad_call = calls(ctx, [(plan.name, bad_args)])
    if ctx.config.weight_zero_mistakes:
        bad_call["weight"] = 0
    fixed = calls(ctx, [(plan.name, utt.args)])
    return sample("error_correction", utt.lang, [plan.name], template.id,
                  [user(utt.text), bad_call, tool_result(bad_call, results.dumps({"error": error})), fixed])


def _break_arguments(ctx: Context, plan: ToolPlan, utt: Utterance) -> tuple[dict[str, Any], str] | None:
    """A plausible wrong version of the arguments and the error a validating runtime returns."""
    rng = ctx.rng
    args = utt.args
    options: list[tuple[dict[str, Any], str]] = []
    for param, value in args.items():
        filled = utt.values.get(param)
        filler = plan.fillers.get(param)
        schema = plan.tool.properties[param]
        if filler is fl.FILLERS["time"] and filled is not None and filled.surface != value:
            options.append(({**args, param: filled.surface}, f"invalid argument '{param}': expected HH:MM"))
        elif filler is fl.FILLERS["date"] and filled is not None and filled.surface != value:
            allowed = ", ".join(fl._allowed_relative_dates(schema))
            options.append(({**args, param: filled.surface}, f"invalid argument '{param}': expected {allowed} or YYYY-MM-DD"))
        elif "enum" in schema and filled is not None and filled.surface != value:
            options.append(({**args, param: filled.surface}, None))
        elif schema.get("type") in ("integer", "number") and filled is not None:
            options.append(({**args, param: filled.surface if filled.surface != str(value) else str(value)}, None))
    for param in plan.tool.required:
        if param in args and len(args) >= 2:
            options.append(({k: v for k, v in args.items() if k != param}, None))
    for param in list(args)[:2]:
        alias = SYNONYMS.get(param, f"{param}_value")
        if alias not in plan.tool.properties:
            options.append(({(alias if k == param else k): v for k, v in args.items()}, None))
    rng.shuffle(options)
    for bad, error in options:
        problem = call_problem({"name": plan.name, "arguments": bad}, ctx.catalog)
        if error is None:
            if problem is None:
                continue
            error = problem
        if bad != args:
            return bad, error
    return None


# ---- 9. ambiguous ---------------------------------------------------------------------------

def ambiguous(ctx: Context) -> Sample | None:
    """Too vague to act on: ask what the user means."""
    rng = ctx.rng
    vague = [(p, i, item) for p in ctx.plans.values() for i, item in enumerate(p.vague)]
    if vague and rng.random() < 0.75:
        plan, index, group = rng.choice(vague)
        prefix, tools = f"{plan.name}.vague{index}", [plan.name]
    else:
        groups = ctx.chat.get("ambiguous", [])
        if not groups:
            return None
        group = rng.choice(groups)
        prefix, tools = f"ambiguous.{group.get('id', 'any')}", []
    line = _chat_line(ctx, group, prefix, ctx.mode())
    if line is None:
        return None
    utt, template = line
    options = group.get(f"reply_{utt.reply_lang}") or group.get("reply_en")
    return sample("ambiguous", utt.lang, tools, template.id, [user(utt.text), say(reply(ctx, options))])


def echo(ctx: Context) -> Sample | None:
    """"Repeat after me": the reply is the user's random words, verbatim, and no call.

    Copying is how every argument gets into a call, and a tiny model learns to copy (induction
    heads) in a few hundred steps on text it can only continue by copying, but not within our
    CPU budget from call data alone, where a value prior competes. Random words make copying
    the only way to lower this loss."""
    from fnedge.data.novel_values import novel_like

    lang = ctx.rng.choice(["zh", "en", "mix"])
    size = ctx.rng.randint(2, 8)
    seeds = ["上海市", "Springfield", "Harbor Lane"] if lang == "mix" else (["北京", "上海市"] if lang == "zh"
                                                                          else ["Paris", "New Haven"])
    words = [novel_like(ctx.rng.choice(seeds), ctx.rng) for _ in range(size)]
    text = ("" if lang == "en" else "").join(w + (" " if lang != "zh" else "") for w in words).strip()
    ask_forms = {"zh": ["跟我念：{}", "复述一遍：{}", "重复这句话：{}"],
                 "en": ["Repeat after me: {}", "say exactly this: {}", "echo: {}"],
                 "mix": ["repeat一下：{}", "跟我说 {}"]}
    return sample("echo", lang, [], f"echo.{lang}", [user(ctx.rng.choice(ask_forms[lang]).format(text)), say(text)])


KINDS: dict[str, Callable[[Context], Sample | None]] = {
    "single_call": single_call,
    "parallel_call": parallel_call,
    "ask": ask,
    "ask_then_call": ask_then_call,
    "no_call": no_call,
    "deferred": deferred,
    "multi_turn": multi_turn,
    "error_correction": error_correction,
    "ambiguous": ambiguous,
    "echo": echo,
}
