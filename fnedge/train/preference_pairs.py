"""Preference pairs from execution feedback: check a model's replies against the reference turns.

For each generated conversation one learned assistant turn is picked (seeded); the model answers
the conversation up to that turn, and its reply is checked the way the runtime would execute it:
parsed, its calls validated against the catalog, and compared with the reference turn. A wrong
reply becomes a pair: chosen = the reference reply, rejected = the model's reply, same prompt.

Failure kinds, in the order they are checked (a reply gets the first that applies):

    malformed_call     a <tool_call> block that does not parse
    unexpected_call    a call where the reference asks a question or answers in text
    missing_call       no call where the reference calls
    wrong_tool         other tool names (or another number of calls) than the reference
    missing_argument   a call leaves out a required argument
    invalid_value      a value the schema refuses (type, enum, range, unknown argument)
    wrong_value        valid calls whose values differ from the reference's

Values compare as the evaluation does (strings after NFKC, case folding and trimming; 4 == 4.0);
an argument left out counts as its schema default; a reference value holding `{{text}}` (a deferred
call's text) only has to be present and not blank. Text is not compared: an answer or a question
worded differently from the reference is not a failure.

pairs.jsonl, one pair per line:

    {"id": "<record id>:<turn index>", "record_id": str, "record_kind": str, "lang": str,
     "template": str, "split": "train" | "dev", "failure": one of FAILURE_KINDS, "detail": str,
     "messages": [the conversation before the turn, in the generated record format],
     "tool_schemas": list | null,
     "chosen": "the reference reply as the model writes it (assistant_body), without <|im_end|>",
     "rejected": "the model's reply as decoded, without <|im_end|>"}
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from fnedge.catalog import Catalog, Tool, call_problem
from fnedge.chat_format import assistant_body, mentions_text_reference, parse_assistant
from fnedge.eval.scoring import normalize

FAILURE_KINDS = ("malformed_call", "unexpected_call", "missing_call", "wrong_tool", "missing_argument",
                 "invalid_value", "wrong_value")
LEFT_OUT = object()  # an argument neither written nor defaulted


@dataclass(frozen=True)
class Failure:
    kind: str    # one of FAILURE_KINDS
    detail: str  # what exactly was wrong, for reading pairs.jsonl


@dataclass
class PairReport:
    """What checking the replies found: how many were right, and the wrong ones by kind."""
    prompts: int = 0
    correct: int = 0
    failures: Counter = field(default_factory=Counter)         # failure kind -> pairs
    wrong_by_record_kind: Counter = field(default_factory=Counter)
    prompts_by_record_kind: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"prompts": self.prompts, "correct": self.correct, "pairs": sum(self.failures.values()),
                "failures": dict(self.failures.most_common()),
                "wrong_by_record_kind": {k: f"{self.wrong_by_record_kind[k]}/{n}"
                                         for k, n in self.prompts_by_record_kind.most_common()}}


def learned_turns(record: dict[str, Any]) -> list[int]:
    """Indices of the assistant turns a model is trained to write (not the deliberate mistakes)."""
    return [i for i, m in enumerate(record["messages"]) if m["role"] == "assistant" and m.get("weight", 1) != 0]


def pick_turn(record: dict[str, Any], seed: int) -> int | None:
    """One learned turn per conversation, fixed by seed and record id (so a rerun picks the same)."""
    turns = learned_turns(record)
    return random.Random(f"{seed}:{record['id']}").choice(turns) if turns else None


def reference_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A generated assistant message's calls as {"name", "arguments": dict}."""
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function", call)
        arguments = function["arguments"]
        calls.append({"name": function["name"],
                      "arguments": json.loads(arguments) if isinstance(arguments, str) else arguments})
    return calls


def classify_reply(reference: dict[str, Any], reply: str, catalog: Catalog) -> Failure | None:
    """Why `reply` (model text) is wrong for the reference assistant message, or None when it is right."""
    turn = parse_assistant(reply)
    expected = reference_calls(reference)
    if turn.malformed:
        return Failure("malformed_call", f"malformed call block: {turn.malformed[0][:60]}")
    if not expected:
        if turn.calls:
            return Failure("unexpected_call", f"expected no call, got {_names(turn.calls)}")
        return None
    if not turn.calls:
        return Failure("missing_call", f"expected {_names(expected)}, got no call")
    if Counter(c["name"] for c in turn.calls) != Counter(c["name"] for c in expected):
        return Failure("wrong_tool", f"expected {_names(expected)}, got {_names(turn.calls)}")
    for call in turn.calls:
        tool = catalog[call["name"]]
        missing = [name for name in tool.required if name not in call["arguments"]]
        if missing:
            return Failure("missing_argument", f"{call['name']}: missing required argument '{missing[0]}'")
        problem = call_problem(call, catalog)
        if problem:
            return Failure("invalid_value", f"{call['name']}: {problem}")
    return _value_failure(expected, turn.calls, catalog)


def _value_failure(expected: list[dict[str, Any]], emitted: list[dict[str, Any]], catalog: Catalog) -> Failure | None:
    """Pair each expected call with an equal emitted one (order-free); the first that has none fails."""
    unused = list(emitted)
    for want in expected:
        tool = catalog[want["name"]]
        equal = next((got for got in unused if got["name"] == want["name"]
                      and argument_mismatch(got["arguments"], want["arguments"], tool) is None), None)
        if equal is None:
            same_name = next(got for got in unused if got["name"] == want["name"])
            return Failure("wrong_value", f"{want['name']}: "
                                          f"{argument_mismatch(same_name['arguments'], want['arguments'], tool)}")
        unused.remove(equal)
    return None


def argument_mismatch(got: dict[str, Any], want: dict[str, Any], tool: Tool) -> str | None:
    """The first argument whose value differs from the reference's, or None."""
    for name in dict.fromkeys([*want, *got]):  # the reference's order first
        default = tool.properties.get(name, {}).get("default", LEFT_OUT)
        expected, actual = want.get(name, default), got.get(name, default)
        if name in want and mentions_text_reference(want[name]):
            if isinstance(got.get(name), str) and got[name].strip():
                continue  # the turn's own text: any text will do, but not none
        elif expected is not LEFT_OUT and actual is not LEFT_OUT and same_value(actual, expected):
            continue
        return f"{name}={_show(got, name)}, expected {_show(want, name)}"
    return None


def same_value(got: Any, want: Any) -> bool:
    if isinstance(got, str) and isinstance(want, str):
        return normalize(got) == normalize(want)
    if isinstance(got, bool) or isinstance(want, bool):
        return got is want  # True is not 1
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        return got == want  # 4 == 4.0
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(same_value(g, w) for g, w in zip(got, want))
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(same_value(got[k], want[k]) for k in want)
    return got == want


def build_pairs(records: list[dict[str, Any]], respond: Callable[[list[dict[str, Any]]], str], catalog: Catalog,
                seed: int, dev_ids: Collection[str] = (),
                progress: Callable[[int, int], None] | None = None) -> tuple[list[dict[str, Any]], PairReport]:
    """Ask `respond` (prompt messages -> reply text) for one turn of every record; pair the wrong replies.
    Records whose id is in `dev_ids` give pairs of the dev split."""
    pairs: list[dict[str, Any]] = []
    report = PairReport()
    for done, record in enumerate(records, 1):
        index = pick_turn(record, seed)
        if index is None:
            continue
        reference = record["messages"][index]
        reply = respond(record["messages"][:index])
        report.prompts += 1
        report.prompts_by_record_kind[record.get("kind", "?")] += 1
        failure = classify_reply(reference, reply, catalog)
        if failure is None:
            report.correct += 1
        else:
            report.failures[failure.kind] += 1
            report.wrong_by_record_kind[record.get("kind", "?")] += 1
            pairs.append(pair_record(record, index, reply, failure, "dev" if record["id"] in dev_ids else "train"))
        if progress is not None:
            progress(done, len(records))
    return pairs, report


def pair_record(record: dict[str, Any], index: int, reply: str, failure: Failure, split: str) -> dict[str, Any]:
    """One line of pairs.jsonl (the schema is in the module docstring)."""
    return {"id": f"{record['id']}:{index}", "record_id": record["id"], "record_kind": record.get("kind"),
            "lang": record.get("lang"), "template": record.get("template"), "split": split,
            "failure": failure.kind, "detail": failure.detail,
            "messages": record["messages"][:index], "tool_schemas": record.get("tool_schemas"),
            "chosen": assistant_body(record["messages"][index]), "rejected": reply}


def _names(calls: list[dict[str, Any]]) -> str:
    return ", ".join(call["name"] for call in calls)


def _show(arguments: dict[str, Any], name: str) -> str:
    if name not in arguments:
        return "(left out)"
    text = json.dumps(arguments[name], ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."
