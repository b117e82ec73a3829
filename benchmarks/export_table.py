"""Size, logit parity, dev-set accuracy and decode speed of every export type, in one run.

    python benchmarks/export_table.py --model fnedge/models/default --cases ../shared/eval/dev.jsonl

Each artifact is compared with the torch model it came from: max |logit difference| on the
next-token logits after each case's prompt, and whether the greedy reply's tokens are identical.
Speed is decode tokens/s over the dev replies (median per case), same threads for every backend.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

from fnedge.catalog import load_catalog
from fnedge.eval.cases import load_cases
from fnedge.eval.report import summarize
from fnedge.eval.scoring import score_case
from fnedge.chat_format import parse_assistant
from fnedge.export.build import export_build
from fnedge.runtime.build import load_build
from fnedge.runtime.engine import Assistant
from fnedge.runtime.torch_backend import TorchBackend

ALL = "f16,q8_0,q4_0,onnx-fp32,onnx-int8,onnx-int4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--cases", type=Path, required=True)
    parser.add_argument("--quants", default=ALL)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("builds/export_table.json"))
    args = parser.parse_args()

    cases = load_cases(args.cases)
    reference = Assistant(TorchBackend(args.model, n_threads=args.threads), load_catalog(None))
    prompts = [reference.prompt(case.messages) for case in cases]
    torch_runs = [reference.backend.generate(p, 256) for p in prompts]
    torch_logits = [reference.backend.prompt_logits(reference.backend.tokenize(p)) for p in prompts]

    with tempfile.TemporaryDirectory() as tmp:
        build = export_build("laptop-x86", model_dir=args.model, quants=args.quants, out_dir=Path(tmp) / "table")
        manifest = load_build(build).manifest
        rows = {"torch-fp32": row_for(cases, torch_runs, None, torch_runs, 0)}
        for artifact in manifest["artifacts"]:
            assistant = Assistant.from_build(build, artifact=artifact["file"], threads=args.threads)
            backend = assistant.backend
            runs = [backend.generate(p, 256) for p in prompts]
            error = max(float(np.max(np.abs(backend.prompt_logits(backend.tokenize(p)) - ref)))
                        for p, ref in zip(prompts, torch_logits))
            rows[artifact["quant"]] = row_for(cases, runs, error, torch_runs, artifact["bytes"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    print(f"{'artifact':12} {'MB':>6} {'max|dlogit|':>11} {'same greedy':>11} {'fn match':>8} {'arg match':>9} {'decode tok/s':>12}")
    for name, row in rows.items():
        error = "-" if row["max_logit_error"] is None else f"{row['max_logit_error']:.2e}"
        print(f"{name:12} {row['bytes'] / 1e6:6.2f} {error:>11} {row['same_greedy']:>11} "
              f"{row['function_match']:8.1%} {row['argument_match']:9.1%} {row['decode_tok_s']:12.0f}")


def row_for(cases, runs, error, torch_runs, size) -> dict:
    scores = [score_case(case, parse_assistant(run.text)) for case, run in zip(cases, runs)]
    summary = summarize(scores, [run.total_ms for run in runs])
    speeds = [(len(r.tokens) - 1) / ((r.total_ms - r.ttft_ms) / 1000) for r in runs
              if len(r.tokens) > 1 and r.total_ms > r.ttft_ms]
    same = sum(r.tokens == t.tokens for r, t in zip(runs, torch_runs))
    return {"bytes": size, "max_logit_error": error, "same_greedy": f"{same}/{len(runs)}",
            "function_match": summary["function_match"], "argument_match": summary["argument_match"],
            "decode_tok_s": statistics.median(speeds) if speeds else 0.0}


if __name__ == "__main__":
    main()
