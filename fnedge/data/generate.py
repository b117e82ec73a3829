"""The data generator's entry point: n conversations for a catalog, deterministic by seed.

    records = generate_dataset(load_catalog(), n=20000, seed=0)
    write_jsonl(records, "runs/data/train.jsonl")

Each kind gets its quota (DataConfig.ratios) and its own random stream, so changing one kind's
share does not change the samples of the others. Every sample is validated against the catalog
and deduplicated before it counts.
"""

from __future__ import annotations

import json
import random
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fnedge.catalog import Catalog, load_catalog
from fnedge.data.config import DataConfig
from fnedge.data.hints import HintSet, load_hints
from fnedge.data.kinds import KINDS, Context
from fnedge.data.novel_values import with_novel_values
from fnedge.data.plan import DataWarning, build_plans
from fnedge.data.quality import exact_key, near_key, record_problem, rendered_length
from fnedge.errors import FnedgeError
from fnedge.io import write_text_atomic


@dataclass
class GenerationReport:
    """What happened besides the records: drops by reason and kinds that fell short."""
    wanted: dict[str, int] = field(default_factory=dict)
    produced: dict[str, int] = field(default_factory=dict)
    dropped: Counter = field(default_factory=Counter)  # invalid, duplicate, near_duplicate, too_long, empty
    invalid_examples: list[str] = field(default_factory=list)
    skipped_tools: list[str] = field(default_factory=list)


def quotas(n: int, ratios: dict[str, float]) -> dict[str, int]:
    """Split n by ratios with largest remainders, so the counts add up to n exactly."""
    raw = {k: n * r for k, r in ratios.items()}
    counts = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def impossible_kinds(plans: dict[str, Any], hints: HintSet) -> list[str]:
    """Kinds no tool of this catalog can produce (their share goes to the others)."""
    impossible = []
    if not any(p.deferred for p in plans.values()):
        impossible.append("deferred")
    if not any(p.partial or p.generic_partial for p in plans.values()):
        impossible += ["ask", "ask_then_call"]
    if len(plans) < 2 and not any(p.parallel for p in plans.values()):
        impossible.append("parallel_call")
    return impossible


def generate_dataset(catalog: Catalog | None = None, n: int = 20000, seed: int = 0,
                     config: DataConfig | None = None, hints: HintSet | str | Path | dict | None = None,
                     progress: Callable[[str, int, int], None] | None = None,
                     report: GenerationReport | None = None) -> list[dict[str, Any]]:
    """Generate n training conversations for `catalog` (None: the built-in one).

    hints: a HintSet, a hints file path, a dict in the hints format, or None (built-in hints only).
    progress(kind, done, wanted) is called while generating; report collects drop counts.
    """
    if n < 0:
        raise FnedgeError(f"n must be >= 0, got {n}")
    catalog = catalog if catalog is not None else load_catalog()
    config = config or DataConfig()
    config.check_tool_weights(list(catalog.names))
    report = report if report is not None else GenerationReport()
    hint_set = hints if isinstance(hints, HintSet) else load_hints(hints)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        plans = build_plans(catalog, hint_set)
    for w in caught:  # re-emit for the caller, and keep the skipped tools in the report
        if "skipping the tool" in str(w.message):
            report.skipped_tools.append(str(w.message))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    ratios = config.normalized_ratios()
    for kind in impossible_kinds(plans, hint_set):
        ratios[kind] = 0.0  # e.g. no tool takes written text: no deferred samples; others grow
    if not any(ratios.values()):
        raise FnedgeError(f"{catalog.source}: none of the requested sample kinds can be made for this catalog")
    total = sum(ratios.values())
    wanted = quotas(n, {k: r / total for k, r in ratios.items()})
    report.wanted = dict(wanted)
    seen_exact: set[str] = set()
    seen_near: set[str] = set()
    records: list[dict[str, Any]] = []
    # Kinds that fall short are topped up with single_call so the dataset still has n records.
    order = list(KINDS) + ["single_call"]
    for position, kind in enumerate(order):
        generator = KINDS[kind]
        quota = wanted.get(kind, 0) if position < len(KINDS) else n - len(records)
        if position == len(KINDS):
            seed_label = f"{seed}:{kind}:top-up"
            if quota <= 0:
                break
        else:
            seed_label = f"{seed}:{kind}"
        ctx = Context(catalog, plans, hint_set, config, random.Random(seed_label))
        produced = tries = 0
        max_tries = quota * config.max_tries_per_sample + 50
        while produced < quota and tries < max_tries:
            tries += 1
            record = generator(ctx)
            if record is None:
                report.dropped["empty"] += 1
                continue
            if rendered_length(record) > config.max_chars:
                report.dropped["too_long"] += 1
                continue
            problem = record_problem(record, catalog)
            if problem:
                report.dropped["invalid"] += 1
                if len(report.invalid_examples) < 20:
                    report.invalid_examples.append(f"{kind} {record['template']}: {problem}")
                continue
            key = exact_key(record)
            if key in seen_exact:
                report.dropped["duplicate"] += 1
                continue
            seen_exact.add(key)
            if config.near_dedup:
                key = near_key(record)
                if key in seen_near:
                    report.dropped["near_duplicate"] += 1
                    continue
                seen_near.add(key)
            records.append(record)
            produced += 1
            if progress is not None and (produced % 500 == 0 or produced == quota):
                progress(kind, produced, quota)
        report.produced[kind] = report.produced.get(kind, 0) + produced
        if produced < quota:
            warnings.warn(f"{catalog.source}: only {produced} of {quota} '{kind}' samples could be made "
                          f"(the catalog or hints leave too little variety)", DataWarning, stacklevel=2)
    if len(records) < n:
        warnings.warn(f"{catalog.source}: generated {len(records)} of {n} records", DataWarning, stacklevel=2)
    if n and not records:
        raise FnedgeError(f"{catalog.source}: no samples could be generated")
    rng = random.Random(seed)
    rng.shuffle(records)
    records = [with_novel_values(r, catalog, rng) if rng.random() < config.novel_value_share else r
               for r in records]
    return [{"id": f"fnedge-{seed}-{i:07d}", **record} for i, record in enumerate(records)]


def write_jsonl(records: list[dict[str, Any]], path: str | Path) -> None:
    """Write one JSON object per line, atomically."""
    write_text_atomic(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FnedgeError(f"{path}: file not found")
    records = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise FnedgeError(f"{path}: line {number} is not valid JSON ({e.msg})") from None
    return records
