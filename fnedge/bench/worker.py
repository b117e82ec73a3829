"""One backend over the cases, in a process of its own, so its peak memory is its own.

    python -m fnedge.bench.worker SPEC.json RESULT.json

SPEC names what to load: {"kind": "artifact" | "keyword-router" | "smollm2-135m", "build",
"artifact", "cases", "threads", "gguf"}. RESULT gets the evaluation summary, one timing sample
per case (the median of `repeats` runs of it, default 1), and the process's peak resident memory.

Peak memory is the kernel's high-water mark of this process's resident set (VmHWM in
/proc/self/status): Python, the libraries, the model and its KV cache. It is read from /proc
rather than getrusage because ru_maxrss survives exec and can report the parent's peak.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from fnedge.bench.replies import Responder
from fnedge.eval.cases import load_cases
from fnedge.eval.report import percentile
from fnedge.eval.runner import run_eval
from fnedge.io import write_json_atomic


# Libraries that weigh tens to hundreds of MB of resident memory: which ones the backend pulled
# in explains its peak RSS.
HEAVY_MODULES = ("torch", "transformers", "onnxruntime", "llama_cpp", "llguidance")


class RecordingResponder:
    """Passes requests through and keeps each reply's token counts and timings."""

    def __init__(self, inner: Responder) -> None:
        self.inner = inner
        self.generalist = getattr(inner, "generalist", False)  # the evaluator gives a generalist the tools
        self.samples: list[dict[str, Any]] = []

    def respond(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> Any:
        reply = self.inner.respond(messages, tools=tools)
        generation = reply.generation
        self.samples.append({"prompt_tokens": generation.prompt_tokens, "new_tokens": len(generation.tokens),
                             "ttft_ms": generation.ttft_ms, "total_ms": generation.total_ms})
        return reply


def load_responder(spec: dict[str, Any]) -> Responder:
    from fnedge.runtime.build import load_build

    kind = spec["kind"]
    if kind == "artifact":
        from fnedge.runtime.engine import Assistant
        return Assistant.from_build(spec["build"], artifact=spec["artifact"], threads=spec["threads"])
    catalog = load_build(spec["build"]).catalog  # the tools our model was built for
    if kind == "keyword-router":
        from fnedge.bench.router import KeywordRouter
        return KeywordRouter(catalog)
    if kind == "smollm2-135m":
        from fnedge.bench.smollm import SmolLMBaseline
        return SmolLMBaseline(Path(spec["gguf"]), catalog, threads=spec["threads"])
    raise ValueError(f"unknown backend kind {kind!r}")


def peak_rss_mb() -> float:
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run(spec: dict[str, Any]) -> dict[str, Any]:
    cases = load_cases(spec["cases"])
    rss_before_load = peak_rss_mb()
    started = time.perf_counter()
    responder = load_responder(spec)
    load_ms = (time.perf_counter() - started) * 1000
    # One unscored request first: page in the weights, warm the caches (and, for the
    # generalist, fill the cached tools prefix). Its time is reported, not scored.
    first = cases[0]
    started = time.perf_counter()
    responder.respond(first.messages, tools=first.tools.to_openai() if first.tools_inline else None)
    first_request_ms = (time.perf_counter() - started) * 1000
    recorder = RecordingResponder(responder)
    summary = run_eval(cases, recorder, show_progress=False)  # type: ignore[arg-type]
    samples = _median_of_repeats(recorder, cases, int(spec.get("repeats", 1)))
    latencies = [s["total_ms"] for s in samples]
    summary["latency_p50_ms"], summary["latency_p95_ms"] = percentile(latencies, 50), percentile(latencies, 95)
    return {"summary": summary, "samples": samples, "repeats": int(spec.get("repeats", 1)), "peak_rss_mb": peak_rss_mb(),
            "rss_before_load_mb": rss_before_load, "load_ms": load_ms, "first_request_ms": first_request_ms,
            "heavy_modules": [name for name in HEAVY_MODULES if name in sys.modules]}


def _median_of_repeats(recorder: RecordingResponder, cases: list, repeats: int) -> list[dict[str, Any]]:
    """Each case's timing as the median of `repeats` runs (the scored one and repeats - 1 more;
    greedy decoding gives the same reply each time, only the clock varies)."""
    runs = [recorder.samples]
    for _ in range(repeats - 1):
        recorder.samples = []
        for case in cases:
            recorder.respond(case.messages, tools=case.tools.to_openai() if case.tools_inline else None)
        runs.append(recorder.samples)
    return [{**first, "ttft_ms": statistics.median(r[i]["ttft_ms"] for r in runs),
             "total_ms": statistics.median(r[i]["total_ms"] for r in runs)}
            for i, first in enumerate(runs[0])]


def main() -> None:
    spec_path, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    write_json_atomic(result_path, run(json.loads(spec_path.read_text())))


if __name__ == "__main__":
    main()
