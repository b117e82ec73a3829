"""Aggregate case scores into the evaluation summary and render it as a plain-text table.

Each metric is a fraction in [0, 1] over the cases where it applies, None where none does:
function match over all cases; argument match over `call`/`text_then_call`; required
completeness and valid calls pooled over the arguments / calls the turns emitted (they are
shares of arguments and of calls, so a case with three calls weighs three times);
no_call_rate over `text`/`ask`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from fnedge.eval.scoring import CaseScore

METRIC_KEYS = ("n", "function_match", "argument_match", "required_completeness", "valid_calls",
               "no_call_rate", "latency_p50_ms", "latency_p95_ms")
NO_CALL_TYPES = ("text", "ask")


def summarize(scores: Sequence[CaseScore], latencies_ms: Sequence[float]) -> dict[str, Any]:
    """Overall metrics, the same per expect.type and per lang, and the failing cases with reasons.

    `latencies_ms[i]` is the latency of `scores[i]`.
    """
    if len(scores) != len(latencies_ms):
        raise ValueError(f"{len(scores)} scores but {len(latencies_ms)} latencies")
    rows = list(zip(scores, latencies_ms))
    summary = _metrics(rows)
    summary["by_type"] = _grouped(rows, key=lambda score: score.expect_type)
    summary["by_lang"] = _grouped(rows, key=lambda score: score.lang)
    summary["failures"] = [{"id": score.case_id, "reason": score.reason or "failed"}
                           for score in scores if not score.passed]
    return summary


def _grouped(rows: list[tuple[CaseScore, float]], key: Callable[[CaseScore], str]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[tuple[CaseScore, float]]] = {}
    for row in rows:
        groups.setdefault(key(row[0]), []).append(row)
    return {name: _metrics(groups[name]) for name in sorted(groups)}


def _metrics(rows: list[tuple[CaseScore, float]]) -> dict[str, Any]:
    scores = [score for score, _ in rows]
    latencies = [latency for _, latency in rows]
    argument_cases = [s for s in scores if s.argument_match is not None]
    no_call_cases = [s for s in scores if s.expect_type in NO_CALL_TYPES]
    return {
        "n": len(scores),
        "function_match": _share(sum(s.function_match for s in scores), len(scores)),
        "argument_match": _share(sum(bool(s.argument_match) for s in argument_cases), len(argument_cases)),
        "required_completeness": _share(sum(s.required_filled for s in scores),
                                        sum(s.required_total for s in scores)),
        "valid_calls": _share(sum(s.valid_calls for s in scores), sum(s.emitted_calls for s in scores)),
        "no_call_rate": _share(sum(not s.made_call for s in no_call_cases), len(no_call_cases)),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
    }


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def format_report(summary: dict[str, Any], max_failures: int = 20) -> str:
    """A compact table: one row per metric, columns all / each expect.type / each lang."""
    columns = [("all", summary)]
    columns += [(name, group) for name, group in summary["by_type"].items()]
    columns += [(f"lang:{name}", group) for name, group in summary["by_lang"].items()]
    label_width = max(len(key) for key in METRIC_KEYS)
    widths = [max(len(name), 7) for name, _ in columns]
    lines = ["  ".join([" " * label_width] + [name.rjust(w) for (name, _), w in zip(columns, widths)])]
    for key in METRIC_KEYS:
        cells = [_format_cell(key, group.get(key)).rjust(w) for (_, group), w in zip(columns, widths)]
        lines.append("  ".join([key.ljust(label_width)] + cells))
    failures = summary["failures"]
    lines.append(f"failures: {len(failures)}")
    lines += [f"  {f['id']}: {f['reason']}" for f in failures[:max_failures]]
    if len(failures) > max_failures:
        lines.append(f"  ... and {len(failures) - max_failures} more")
    return "\n".join(lines)


def _format_cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "n":
        return str(value)
    if key.startswith("latency"):
        return f"{value:.1f}"
    return f"{100 * value:.1f}%"
