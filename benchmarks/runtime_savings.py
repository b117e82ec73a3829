"""What each runtime feature buys, each switched off in turn, in one process on the same cases.

    python benchmarks/runtime_savings.py --build builds/rpi4 --cases ../shared/eval/dev.jsonl

Variants, run interleaved case by case so that a busy machine slows them all alike:
- `full`: the call grammar, forced tokens and the kept template prefix (the runtime's default);
- `no-forcing`: the grammar still masks every step, but forced tokens take one decode step each;
- `no-prefix-cache`: every prompt is prefilled from its first token;
- `no-grammar`: free greedy decoding.
The prefix cache matters when the prompt carries tool schemas, so the prefix variants are also
run with the catalog's schemas rendered into the prompt (`--tools-in-prompt`).
Reports, per variant: request -> parsed call latency p50/p95 on single-call cases, time to first
token, decode tokens/s, argument match; and each feature's share of the `full` latency saved.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from fnedge.chat_format import parse_assistant, render
from fnedge.eval.cases import load_cases
from fnedge.eval.report import percentile
from fnedge.eval.scoring import score_case
from fnedge.runtime.engine import Assistant, canonical_messages

VARIANTS = ("full", "no-forcing", "no-prefix-cache", "no-grammar")


def configure(assistant: Assistant, guides, variant: str) -> None:
    assistant.guides = None if variant == "no-grammar" else guides
    assistant.force_tokens = variant != "no-forcing"
    assistant.backend.reuse_prefix = variant != "no-prefix-cache"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", type=Path, required=True)
    parser.add_argument("--cases", type=Path, required=True)
    parser.add_argument("--artifact", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tools-in-prompt", action="store_true",
                        help="render the catalog's schemas into every prompt (as a generalist model reads them)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N single-call cases")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    cases = [c for c in load_cases(args.cases) if c.expect.type == "call" and len(c.expect.calls) == 1]
    cases = cases[: args.limit]
    assistant = Assistant.from_build(args.build, artifact=args.artifact, threads=args.threads)
    guides = assistant.guides
    tools = assistant.catalog.to_openai() if args.tools_in_prompt else None
    if tools is not None:  # the default model is trained without schemas; here only the timing counts
        assistant.prompt = lambda messages, _tools=None: render(canonical_messages(messages), tools,
                                                                add_generation_prompt=True)
    rows: dict[str, list] = {v: [] for v in VARIANTS}
    for variant in VARIANTS:  # warm-up: load pages, compile the first grammar
        configure(assistant, guides, variant)
        assistant.respond(cases[0].messages)
    for case in cases:
        for variant in VARIANTS:
            configure(assistant, guides, variant)
            reply = assistant.respond(case.messages)
            rows[variant].append((reply, score_case(case, parse_assistant(reply.generation.text))))
    report = {"cases": len(cases), "threads": args.threads, "tools_in_prompt": args.tools_in_prompt,
              "variants": {v: summarize_variant(rows[v]) for v in VARIANTS}}
    full = report["variants"]["full"]["latency_p50_ms"]
    for variant in VARIANTS[1:]:
        other = report["variants"][variant]["latency_p50_ms"]
        report["variants"][variant]["full_saves_p50"] = round(1 - full / other, 3) if other else None
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2, ensure_ascii=False))


def summarize_variant(rows: list) -> dict:
    latencies = [reply.generation.total_ms for reply, _ in rows]
    decode_rates = [(len(r.generation.tokens) - 1) / ((r.generation.total_ms - r.generation.ttft_ms) / 1000)
                    for r, _ in rows if len(r.generation.tokens) > 1 and r.generation.total_ms > r.generation.ttft_ms]
    scored = [s for _, s in rows if s.argument_match is not None]
    return {
        "latency_p50_ms": round(percentile(latencies, 50), 2),
        "latency_p95_ms": round(percentile(latencies, 95), 2),
        "ttft_p50_ms": round(percentile([r.generation.ttft_ms for r, _ in rows], 50), 2),
        "tokens_per_second_p50": round(statistics.median(decode_rates), 1) if decode_rates else None,
        "forced_tokens_mean": round(statistics.mean(r.generation.forced_tokens for r, _ in rows), 1),
        "generated_tokens_mean": round(statistics.mean(len(r.generation.tokens) for r, _ in rows), 1),
        "argument_match": round(sum(s.argument_match for s in scored) / len(scored), 3) if scored else None,
        "valid_calls": round(sum(not r.problems for r, _ in rows) / len(rows), 3),
    }


if __name__ == "__main__":
    main()
