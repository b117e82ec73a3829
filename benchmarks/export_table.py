"""Size, logit parity, dev-set accuracy and decode speed of every export type, in one run.

    python benchmarks/export_table.py --model fnedge/models/default --cases ../shared/eval/dev.jsonl

Each artifact is compared with the torch model it came from: max |logit difference| on the
next-token logits after each case's prompt, and whether the reply's tokens are identical.
Replies are decoded as the runtime decodes them by default, with calls under the catalog's call
grammar (`--no-grammar`: free greedy decoding); the table says which. Speed is decode tokens/s
over the dev replies (median per case), same threads for every backend; under the grammar, the
tokens it forces are evaluated in one batched step, so they count as output without a step each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

from fnedge.eval.cases import EvalCase, load_cases
from fnedge.eval.report import summarize
from fnedge.eval.scoring import score_case
from fnedge.export.build import export_build
from fnedge.runtime.build import load_build
from fnedge.runtime.engine import Assistant, Reply

ALL = "f16,q8_0,q4_0,q4_k_m,onnx-fp32,onnx-int8,onnx-int4,onnx-int8-ort"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--cases", type=Path, required=True)
    parser.add_argument("--quants", default=ALL)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--grammar", action=argparse.BooleanOptionalAction, default=True,
                        help="decode calls under the call grammar, the runtime's default (default: on)")
    parser.add_argument("--out", type=Path, default=Path("builds/export_table.json"))
    args = parser.parse_args()

    cases = load_cases(args.cases)
    reference = Assistant.from_model_dir(args.model, threads=args.threads, constrained=args.grammar)
    prompts = [reference.prompt(case.messages, inline_tools(case)) for case in cases]
    torch_replies = respond_all(reference, cases)
    torch_logits = [reference.backend.prompt_logits(reference.backend.tokenize(p)) for p in prompts]

    with tempfile.TemporaryDirectory() as tmp:
        build = export_build("laptop-x86", model_dir=args.model, quants=args.quants, out_dir=Path(tmp) / "table")
        manifest = load_build(build).manifest
        rows = {"torch-fp32": row_for(cases, torch_replies, None, torch_replies, 0)}
        for artifact in manifest["artifacts"]:
            assistant = Assistant.from_build(build, artifact=artifact["file"], threads=args.threads,
                                             constrained=args.grammar)
            replies = respond_all(assistant, cases)
            backend = assistant.backend
            error = max(float(np.max(np.abs(backend.prompt_logits(backend.tokenize(p)) - ref)))
                        for p, ref in zip(prompts, torch_logits))
            rows[artifact["quant"]] = row_for(cases, replies, error, torch_replies, artifact["bytes"])
    settings = {"model": str(args.model), "cases": str(args.cases), "n_cases": len(cases),
                "threads": args.threads, "grammar": args.grammar}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))
    decoding = "calls under the call grammar (runtime default)" if args.grammar else "free greedy (no grammar)"
    print(f"{len(cases)} cases from {args.cases.name}, {args.threads} threads, decoding: {decoding}")
    print(f"{'artifact':14} {'MB':>6} {'max|dlogit|':>11} {'same reply':>10} {'fn match':>8} "
          f"{'arg match':>9} {'valid':>6} {'p50 ms':>7} {'decode tok/s':>12}")
    for name, row in rows.items():
        error = "-" if row["max_logit_error"] is None else f"{row['max_logit_error']:.2e}"
        print(f"{name:14} {row['bytes'] / 1e6:6.2f} {error:>11} {row['same_reply']:>10} "
              f"{percent(row['function_match']):>8} {percent(row['argument_match']):>9} "
              f"{percent(row['valid_calls']):>6} {row['latency_p50_ms']:7.1f} {row['decode_tok_s']:12.0f}")


def inline_tools(case: EvalCase) -> list[dict] | None:
    return case.tools.to_openai() if case.tools_inline else None


def respond_all(assistant: Assistant, cases: list[EvalCase]) -> list[Reply]:
    """Every case answered as `fnedge eval` answers it."""
    return [assistant.respond(case.messages, tools=inline_tools(case)) for case in cases]


def row_for(cases: list[EvalCase], replies: list[Reply], error: float | None, torch_replies: list[Reply],
            size: int) -> dict:
    scores = [score_case(case, reply.turn) for case, reply in zip(cases, replies)]
    summary = summarize(scores, [reply.latency_ms for reply in replies])
    runs = [reply.generation for reply in replies]
    speeds = [(len(r.tokens) - 1) / ((r.total_ms - r.ttft_ms) / 1000) for r in runs
              if len(r.tokens) > 1 and r.total_ms > r.ttft_ms]
    same = sum(r.generation.tokens == t.generation.tokens for r, t in zip(replies, torch_replies))
    return {"bytes": size, "max_logit_error": error, "same_reply": f"{same}/{len(replies)}",
            "function_match": summary["function_match"], "argument_match": summary["argument_match"],
            "valid_calls": summary["valid_calls"], "latency_p50_ms": summary["latency_p50_ms"],
            "decode_tok_s": statistics.median(speeds) if speeds else 0.0}


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


if __name__ == "__main__":
    main()
