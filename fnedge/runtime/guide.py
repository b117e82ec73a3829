"""Constrained decoding inside tool calls only: a lazy grammar that wakes at `<tool_call>`.

Outside a call the model writes freely (answers, questions, the text of a deferred call). From
`<tool_call>` to `</tool_call>` every token must keep the call inside the catalog's grammar
(`call_grammar`), so each emitted call parses and validates, on any model and quantization.
Tokens the grammar leaves no choice about (`{"name": "get_weather", "arguments": {"city": "`
once the name is chosen) are *forced*: appended without sampling and evaluated in one batch.

The guide also weighs against stopping early, which a tiny model does far more often than going
on too long: against ending a copied value (`COPY_CLOSE_PENALTY`: "Good luck" of "Good luck with
your exam"), and against ending the arguments where the grammar still allows another one
(`OMIT_PENALTY`: search_hotels without the nights the user said). The grammar already leaves out
every number, time and date argument the conversation gives no value for. A call that opens the
reply and reads two of its copied values from the same words ("帮我发条消息：下午2:55见" -> to="下午",
text="下午2:55见") invents one of them: the loop drops it and the reply starts over in prose, so the
model asks for the value.

llguidance computes the token masks (a Rust Earley parser over the tokenizer's trie, well
under a millisecond per token for our 6,400-token vocabulary).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import json
import re

import numpy as np

from fnedge.catalog import Catalog
from fnedge.errors import FnedgeError
from fnedge.runtime.call_grammar import (call_grammar, callable_tools, copied_fields, distinct_sources,
                                         overlapping_copies, said_optional_arguments)

# Weights below were chosen on held-out splits only (templates and values no run trained on;
# `fnedge eval heldout.jsonl --model fnedge/models/default`), never on the dev set, and re-checked
# on each new built-in model. Failures on e14's 811 held-out cases, current model: 43 at these
# weights; 45 with a close weight of 2; 48 with an open weight of 0, 46 with 2.
#
# Logit taken off the tokens that close a copied value, where the grammar lets the copy go on:
# a tiny model stops copies short more often than it runs them long. (A weaker model wanted 2.)
COPY_CLOSE_PENALTY = 1.0
# Logit taken off the tokens that end the arguments, where the grammar allows one more.
OMIT_PENALTY = 1.0
# Logit taken off opening a call as the reply's first token (tool_choice "auto"): models trained
# on one pass over 112k conversations answer some chat lines with a call (no call on held-out
# 96.8% -> 98.1% at 1 for the first of them).
OPEN_PENALTY = 1.0
_CALL_NAME = re.compile(r'^\{"name": ("(?:[^"\\]|\\.)*")')
_OPEN_VALUE = re.compile(r'("(?:[^"\\]|\\.)*"): "(?:[^"\\]|\\.)*$')  # a key, then a string still open


class GuideFactory:
    """What stays fixed across requests: the tokenizer in llguidance's form and the markers."""

    def __init__(self, tokenizer_dir: str | Path) -> None:
        try:
            from llguidance import LLTokenizer
        except ImportError:
            raise FnedgeError("constrained decoding needs llguidance: pip install llguidance") from None
        from fnedge.runtime.vocab import RuntimeVocab

        vocab = RuntimeVocab(tokenizer_dir)
        self.open_id, self.close_id, self.vocab_size = vocab.call_open_id, vocab.call_close_id, vocab.size
        self.token_bytes = vocab.token_bytes
        # Inside a JSON string, a token starting with a quote ends it (a quote in a value is \").
        self.quote_tokens = np.array([t for t in range(vocab.size) if vocab.token_bytes(t).startswith(b'"')],
                                     dtype=np.int64)
        # After a value, the tokens that end the arguments and those that go on to another one.
        # Inside a string value the choice comes with its closing quote: a bare '"' is nearly
        # always followed by '}}', and '",' goes on.
        def tokens(keep) -> np.ndarray:
            return np.array([t for t in range(vocab.size) if keep(vocab.token_bytes(t))], dtype=np.int64)
        self.end_tokens = {False: tokens(lambda b: b"}" in b), True: tokens(lambda b: b.startswith(b'"') and not b.startswith(b'",'))}
        self.next_tokens = {False: tokens(lambda b: b.startswith(b",")), True: tokens(lambda b: b.startswith(b'",'))}
        # Outside a call, prose may end the turn or open a call, but no other marker belongs
        # there (a stray </tool_call> or <|im_start|> in the text is always a model error).
        markers = [t for t in vocab.special.values() if t not in (self.open_id, vocab.eos_id)]
        self.prose_forbidden = np.array(sorted(markers), dtype=np.int64)
        self.tokenizer = LLTokenizer(vocab.json, n_vocab=vocab.size, eos_token=vocab.eos_id)

    def guide(self, catalog: Catalog, sources: Sequence[str], force: bool = True,
              tool_choice: str = "auto", copied: Mapping[str, Mapping[str, bool]] | None = None) -> "CallGuide":
        """`tool_choice` as OpenAI's: "auto", "none" (no call at all) or "required" (the reply
        opens with a call); to require one named tool, pass a catalog holding only that tool."""
        if tool_choice not in ("auto", "none", "required"):
            raise FnedgeError(f"tool_choice must be auto, none or required, not {tool_choice!r}")
        callable_ = callable_tools(catalog, sources)
        every_tool = None
        if tool_choice != "required" and len(callable_.tools) < len(catalog.tools):
            # A demanded call may fill an unsaid argument from its type alone; otherwise a tool
            # whose required value was not said is not callable, and a reply that would open
            # with a call to it asks instead (`CallGuide.prefers_uncallable`).
            every_tool = call_grammar(catalog, sources, self.close_id, copied)
            if not callable_.tools:
                tool_choice = "none"
            else:
                catalog = callable_
        guide = CallGuide(self, call_grammar(catalog, sources, self.close_id, copied), force, tool_choice)
        guide.every_tool_grammar = every_tool
        guide.copied = copied_fields(catalog, sources, copied)
        guide.said_optional = {tool.name: said_optional_arguments(tool, sources) for tool in catalog.tools}
        guide.sources = distinct_sources(sources)
        return guide


class CallGuide:
    """Per request: follows the generated tokens and constrains those inside a call."""

    def __init__(self, factory: GuideFactory, grammar: str, force: bool = True, tool_choice: str = "auto") -> None:
        from llguidance import LLMatcher

        self.factory = factory
        self.matcher = LLMatcher(factory.tokenizer, LLMatcher.grammar_from_lark(grammar))
        if self.matcher.is_error():
            raise FnedgeError(f"tool-call grammar does not compile: {self.matcher.get_error()}")
        self.active = False
        self.force = force  # off only to measure what forcing saves: each token then takes a step
        self.forced_count = 0  # tokens appended without sampling (for the runtime's stats)
        self.tool_choice = tool_choice
        self.started = False
        self.overrun = 0  # tokens a call open at the token limit may still take to close
        self.every_tool_grammar: str | None = None  # the call grammar without the callability filter
        self.repeated = False  # the last call to close was identical to an earlier one
        # The call that just closed opened the reply and read two copied values from the same
        # words (`overlapping_copies`): the loop drops it and starts the reply over, in prose.
        self.invented = False
        self.sources: list[str] = []
        self.copied: dict[str, set[str]] = {}  # {tool: fields held to a copy}: where the close penalty applies
        self.said_optional: dict[str, set[str]] = {}  # {tool: optional fields the user gave a value for}
        self.close_penalty = COPY_CLOSE_PENALTY
        self.omit_penalty = OMIT_PENALTY
        self.open_penalty = OPEN_PENALTY
        self._call: list[int] = []
        self._call_bytes = bytearray()
        self._closed_calls: set[tuple[int, ...]] = set()
        self._call_opens_reply = False
        prose_forbidden = factory.prose_forbidden
        if tool_choice == "none":
            prose_forbidden = np.append(prose_forbidden, factory.open_id)
        self.prose_forbidden = prose_forbidden

    def prefers_uncallable(self, logits: np.ndarray, head: Sequence[int]) -> bool:
        """At the tool name of a call that opens the reply (`head`: the tokens up to the name):
        whether the model's choice among *all* tools is one it cannot call for lack of a value
        the user did not say. Then the reply should ask for it instead (`withdraw_call`)."""
        if self.every_tool_grammar is None:
            return False
        from llguidance import LLMatcher

        every_tool = LLMatcher(self.factory.tokenizer, LLMatcher.grammar_from_lark(self.every_tool_grammar))
        for token in head:
            every_tool.consume_token(token)
        preferred = int(np.argmax(_masked(logits, every_tool)))
        return bool(np.isneginf(self.mask(logits)[preferred]))

    def withdraw_call(self) -> None:
        """Back to the start of the reply, which may no longer open with a call."""
        self.active = self.started = False
        self.matcher.reset()
        self.prose_forbidden = np.append(self.prose_forbidden, self.factory.open_id)
        self.every_tool_grammar = None

    def observe(self, token: int) -> None:
        """Record a token the loop emitted (sampled or forced)."""
        opens_reply = not self.started
        self.started = True
        if not self.active:
            if token == self.factory.open_id:
                self._call_opens_reply = opens_reply
                self.matcher.reset()
                self.active = True
                self._call = []
                self._call_bytes.clear()
            return
        self._call.append(token)
        self._call_bytes += self.factory.token_bytes(token)
        if not self.matcher.consume_token(token) or self.matcher.is_error():
            self.active = False  # cannot happen under our own masks; never wedge the loop
        elif token == self.factory.close_id:
            self.active = False
            call = tuple(self._call)
            self.repeated = call in self._closed_calls
            self._closed_calls.add(call)
            self.invented = self._call_opens_reply and self.tool_choice == "auto" and self._invents_a_copy()

    def forced(self) -> list[int]:
        """Tokens the grammar allows no alternative to, right now (empty outside a call)."""
        if self.tool_choice == "required" and not self.started:
            return [self.factory.open_id]  # even without forcing: this is the request, not a shortcut
        if not (self.active and self.force):
            return []
        tokens = self.matcher.compute_ff_tokens()
        self.forced_count += len(tokens)
        return tokens

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """The logits with every token the grammar forbids set to -inf (outside a call: the
        markers that cannot appear in prose)."""
        if not self.active:
            logits = logits.copy()
            logits[self.prose_forbidden] = -np.inf
            if not self.started and self.tool_choice == "auto":
                logits[self.factory.open_id] -= self.open_penalty
            return logits
        masked = _masked(logits, self.matcher)
        text = self._call_bytes.decode("utf-8", errors="ignore")
        field = _open_field(text)
        if self.close_penalty and field and field[1] in self.copied.get(field[0], ()):
            masked[self.factory.quote_tokens] -= self.close_penalty
        in_string = _OPEN_VALUE.search(text) is not None
        if self.omit_penalty and (field or not in_string) and self._said_but_unwritten(text) \
                and np.isfinite(masked[self.factory.next_tokens[in_string]]).any():
            masked[self.factory.end_tokens[in_string]] -= self.omit_penalty
        return masked

    def _invents_a_copy(self) -> bool:
        text = self._call_bytes.decode("utf-8", errors="ignore")
        try:
            call = json.loads(text[: text.rfind("}") + 1])
            fields = self.copied.get(call["name"], set())
            return overlapping_copies(call["arguments"], fields, self.sources)
        except (ValueError, KeyError, TypeError):
            return False

    def _said_but_unwritten(self, call_text: str) -> bool:
        """Whether the call's tool has an optional argument the user gave a value for, not yet written."""
        name = _CALL_NAME.match(call_text)
        keys = self.said_optional.get(json.loads(name.group(1)), ()) if name else ()
        return any(json.dumps(key, ensure_ascii=False) + ": " not in call_text for key in keys)


def _open_field(call_text: str) -> tuple[str, str] | None:
    """(tool, argument) when the call written so far ends inside that argument's string value."""
    name, value = _CALL_NAME.match(call_text), _OPEN_VALUE.search(call_text)
    if not (name and value) or value.start() < name.end():
        return None
    return json.loads(name.group(1)), json.loads(value.group(1))


def _masked(logits: np.ndarray, matcher) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
    allowed = bits[: logits.shape[-1]].astype(bool)
    if len(allowed) < logits.shape[-1]:  # a padded output head: rows past the vocab never allowed
        allowed = np.concatenate([allowed, np.zeros(logits.shape[-1] - len(allowed), dtype=bool)])
    return np.where(allowed, logits, -np.inf)
