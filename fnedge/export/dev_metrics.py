"""Dev-set metrics of every artifact of a staged build, written into its manifest.

`fnedge export --eval-cases FILE` runs the same evaluation as `fnedge eval --build` on each
artifact, so a build says what its quantization cost on the cases it was checked against.
Accuracy figures are properties of the artifact; the latencies are measured on the machine that
ran the export (recorded as `dev_eval.measured_on`), not on the target device.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from fnedge.devices import DeviceProfile
from fnedge.io import sha256_file

HEADLINE_METRICS = ("n", "function_match", "argument_match", "valid_calls", "latency_p50_ms", "latency_p95_ms")


def add_dev_metrics(manifest: dict[str, Any], build_dir: Path, cases: list[Any], cases_path: Path,
                    device: DeviceProfile, show_progress: bool = False) -> None:
    """Score each artifact of the build in `build_dir` on `cases`; store the results in `manifest`.

    The build must already be on disk with its manifest (the runtime loads it from there).
    """
    from fnedge.eval.runner import run_eval
    from fnedge.runtime.engine import Assistant

    threads = eval_threads(device)
    load_before = os.getloadavg()[0]  # a busy machine inflates the latencies; say so in the record
    for artifact in manifest["artifacts"]:
        assistant = Assistant.from_build(build_dir, artifact=artifact["file"], threads=threads)
        summary = run_eval(cases, assistant, show_progress=show_progress)
        artifact["dev_metrics"] = headline(summary)
        del assistant  # free the model before the next one is loaded
    manifest["dev_eval"] = {
        "cases": cases_path.name,
        "cases_sha256": sha256_file(cases_path),
        "threads": threads,
        "measured_on": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "load_average_before": round(load_before, 2),
    }


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary's overall figures that the manifest keeps (fractions and milliseconds)."""
    return {key: _rounded(summary.get(key)) for key in HEADLINE_METRICS}


def format_headline(metrics: dict[str, Any]) -> str:
    """One line for the export command: the accuracy shares, then the latency percentiles."""
    def share(key: str) -> str:
        return "n/a" if metrics.get(key) is None else f"{metrics[key]:.3f}"

    def ms(key: str) -> str:
        return "n/a" if metrics.get(key) is None else f"{metrics[key]:.0f} ms"

    return (f"function {share('function_match')}  arguments {share('argument_match')}  "
            f"valid {share('valid_calls')}  p50 {ms('latency_p50_ms')}  p95 {ms('latency_p95_ms')}")


def eval_threads(device: DeviceProfile) -> int:
    """The device's thread count, capped at this machine's cores (an oversubscribed pool crawls)."""
    return max(1, min(device.threads, len(os.sched_getaffinity(0))))


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value
