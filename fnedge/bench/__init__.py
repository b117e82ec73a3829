"""Benchmarks: every artifact of a build and the baselines over the same cases, with accuracy,
latency, memory and size, plus roofline latency estimates for the device profiles.

    bench = run_bench(Path("builds/rpi4"), Path("dev.jsonl"), Path("bench"), devices=list_devices(),
                      baselines=BASELINES)

Modules: run (the orchestration), worker (one backend in its own process), router and smollm
(the baselines), replies (the reply shape baselines return), report and plots (the output).
"""

from fnedge.bench.run import BASELINES, ROW_KEYS, run_bench

__all__ = ["BASELINES", "ROW_KEYS", "run_bench"]
