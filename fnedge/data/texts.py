"""The assistant's own writing for deferred calls: poems, stories, lyrics, notes, lists, messages.

Texts are assembled from fragments in hints/texts.json around the user's topic, so they stay
on topic, vary, and stay short (20-120 words; the model's whole context is 512 tokens).
"""

from __future__ import annotations

import random
from typing import Any

GENRES = ("poem", "story", "lyrics", "note", "list", "points")
MESSAGE_GENRES = ("birthday", "thanks", "apology", "invite", "encourage", "congrats", "reminder", "getwell",
                  "late", "welcome")


def write_text(genre: str, lang: str, topic: str | None, rng: random.Random, texts: dict[str, Any],
               pools: dict[str, Any], to: str | None = None) -> str:
    """A short text of `genre` in `lang` ("zh" or "en") about `topic`."""
    topic = topic or rng.choice(pools[f"topics_{lang}"])
    if genre in MESSAGE_GENRES:
        return _message(genre, lang, rng, texts, to)
    if genre == "poem":
        return _poem(lang, topic, rng, texts)
    if genre == "story":
        return _story(lang, topic, rng, texts)
    if genre == "lyrics":
        return _lyrics(lang, topic, rng, texts)
    if genre == "note":
        return _note(lang, topic, rng, texts, pools)
    if genre == "list":
        return _list(lang, rng, texts)
    if genre == "points":
        return _points(lang, topic, rng, texts)
    raise ValueError(f"unknown genre {genre!r}")


def _fill(text: str, topic: str, lang: str) -> str:
    text = text.replace("{topic}", topic)
    if lang == "en" and text[:1].islower():
        text = text[0].upper() + text[1:]
    return text


def _poem(lang: str, topic: str, rng: random.Random, texts: dict[str, Any]) -> str:
    parts = texts["poem"][lang]
    lines = rng.sample(parts["lines"], rng.randint(1, 2)) + rng.sample(parts["extra"], rng.randint(2, 4))
    rng.shuffle(lines)
    ending = "，" if lang == "zh" else ","
    body = [_fill(line, topic, lang) for line in lines]
    if lang == "zh":
        body = [line + ("。" if i == len(body) - 1 else ending) for i, line in enumerate(body)]
    else:
        body = [line + ("." if i == len(body) - 1 else ending) for i, line in enumerate(body)]
    return "\n".join(body)


def _story(lang: str, topic: str, rng: random.Random, texts: dict[str, Any]) -> str:
    parts = texts["story"][lang]
    hero = rng.choice(parts["heroes"])
    sentences = [rng.choice(parts["openings"]).replace("{hero}", hero)]
    sentences += rng.sample(parts["middles"], rng.randint(2, 3))
    sentences.append(rng.choice(parts["endings"]))
    sentences = [_fill(s, topic, lang) for s in sentences]
    return ("" if lang == "zh" else " ").join(sentences)


def _lyrics(lang: str, topic: str, rng: random.Random, texts: dict[str, Any]) -> str:
    parts = texts["lyrics"][lang]
    verse = [_fill(line, topic, lang) for line in rng.sample(parts["verses"], 4)]
    chorus = _fill(rng.choice(parts["choruses"]), topic, lang)
    return "\n".join(verse[:2] + [chorus] + verse[2:] + [chorus])


def _note(lang: str, topic: str, rng: random.Random, texts: dict[str, Any], pools: dict[str, Any]) -> str:
    parts = texts["note"][lang]
    contact = rng.choice(pools["relatives_zh" if lang == "zh" else "first_names_en"])
    item = rng.choice(pools[f"list_items_{lang}"])
    items = [line.replace("{topic}", topic).replace("{contact}", contact).replace("{item}", item)
             for line in rng.sample(parts["items"], rng.randint(3, 5))]
    colon = "：" if lang == "zh" else ":"
    return rng.choice(parts["titles"]) + colon + "\n" + "\n".join(f"{i}. {line}" for i, line in enumerate(items, 1))


def _list(lang: str, rng: random.Random, texts: dict[str, Any]) -> str:
    parts = texts["list"][lang]
    colon = "：" if lang == "zh" else ":"
    items = rng.sample(parts["items"], rng.randint(4, 7))
    return rng.choice(parts["titles"]) + colon + "\n" + "\n".join(f"- {item}" for item in items)


def _points(lang: str, topic: str, rng: random.Random, texts: dict[str, Any]) -> str:
    """Tips, reasons or facts about the topic as a numbered list ("list five tips on X")."""
    parts = texts["points"][lang]
    colon = "：" if lang == "zh" else ":"
    lines = [_fill(line, topic, lang) for line in rng.sample(parts["lines"], rng.randint(3, 5))]
    return _fill(rng.choice(parts["titles"]), topic, lang) + colon + "\n" + "\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1))


def _message(genre: str, lang: str, rng: random.Random, texts: dict[str, Any], to: str | None) -> str:
    lines = texts["message"][lang][genre]
    chosen = [lines[0]] + rng.sample(lines[1:], rng.randint(2, len(lines) - 1))
    name = to or ("朋友" if lang == "zh" else "friend")
    return ("" if lang == "zh" else " ").join(line.replace("{to}", name) for line in chosen)
