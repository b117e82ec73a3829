"""`fnedge bench`: every artifact of a build (and the baselines) over the same cases, in one run.

For each backend a fresh worker process (fnedge.bench.worker) loads it, answers one unscored
request, then every case; we keep the evaluation metrics, the timings and its peak memory.
Then the roofline estimator is calibrated on this machine and carried to the device profiles.
Everything lands in OUT/bench.json, OUT/report.md and OUT/*.png.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from fnedge.bench.smollm import INSTALL_HINT, find_smollm_gguf
from fnedge.devices.estimate import (Calibration, Hardware, ModelCost, Sample, calibrate, cost_from_gguf,
                                     estimate_device)
from fnedge.devices.host import measure_host
from fnedge.devices.registry import DeviceProfile
from fnedge.errors import FnedgeError
from fnedge.eval.cases import load_cases
from fnedge.eval.report import METRIC_KEYS
from fnedge.io import write_json_atomic
from fnedge.runtime.build import Build, load_build

BASELINES = ("keyword-router", "smollm2-135m")
ROW_KEYS = METRIC_KEYS + ("ttft_ms", "decode_tok_s", "peak_rss_mb", "bytes")
RSS_METHOD = ("VmHWM (peak resident set) of a fresh worker process per backend, read from "
              "/proc/self/status: Python + libraries + model + KV cache")


def run_bench(build_dir: Path, cases_path: Path, out_dir: Path, devices: list[DeviceProfile],
              baselines: tuple[str, ...] = (), threads: int | None = None,
              log: Callable[[str], None] = lambda _: None, repeats: int = 5,
              baseline_repeats: int = 1) -> dict[str, Any]:
    """`repeats`: timed runs of every case per artifact (the median is kept); baselines get
    `baseline_repeats` (SmolLM2 takes seconds a request). Each row says its repeat count."""
    build = load_build(build_dir)  # checksums first: never benchmark a damaged build
    load_cases(cases_path)         # and a malformed case file fails before any model loads
    threads = threads or max(1, min(build.threads, len(os.sched_getaffinity(0))))
    out_dir.mkdir(parents=True, exist_ok=True)

    log(f"measuring this machine ({threads} threads)")
    host = measure_host(threads)
    artifacts: dict[str, dict[str, Any]] = {}
    for artifact in build.manifest["artifacts"]:
        log(f"benchmarking {artifact['file']}")
        result = _run_worker({"kind": "artifact", "build": str(build.root), "artifact": artifact["file"],
                              "cases": str(cases_path), "threads": threads, "repeats": repeats})
        artifacts[artifact["file"]] = backend_row(result, artifact["bytes"], quant=artifact["quant"])

    baseline_rows = {name: _run_baseline(name, build, cases_path, threads, log, baseline_repeats)
                     for name in baselines}
    costs = {a["file"]: _artifact_cost(build, a) for a in build.manifest["artifacts"]}
    estimator = _calibrate_all(costs, artifacts, host)
    bench = {
        "machine": {**host, "rss_method": RSS_METHOD, "cases": str(cases_path), "build": str(build.root),
                    "build_device": build.manifest.get("device"), "command": " ".join(sys.argv),
                    "commit": _commit(), "threads": threads, "repeats": repeats,
                    "baseline_repeats": baseline_repeats},
        "artifacts": artifacts,
        "baselines": baseline_rows,
        "devices": _estimate_devices(devices, build, costs, artifacts, estimator, host),
        "estimator": {"host": {"gflops": host["gflops"], "mem_bandwidth_gbs": host["mem_bandwidth_gbs"],
                               "clock_ghz": host["clock_ghz"]},
                      "calibration": {name: asdict(c) for name, c in estimator.items()}},
    }
    write_json_atomic(out_dir / "bench.json", bench)
    from fnedge.bench.plots import write_plots
    from fnedge.bench.report import write_report
    plots = write_plots(bench, out_dir)
    write_report(bench, out_dir, plots, primary=build.manifest["primary"])
    return bench


def backend_row(result: dict[str, Any], size: int | None, quant: str | None = None) -> dict[str, Any]:
    summary, samples = result["summary"], result["samples"]
    rates = [s["new_tokens"] / ((s["total_ms"] - s["ttft_ms"]) / 1000) for s in samples
             if s["new_tokens"] and s["total_ms"] > s["ttft_ms"]]
    row: dict[str, Any] = {key: summary[key] for key in METRIC_KEYS}
    row.update({
        "quant": quant,
        "ttft_ms": statistics.median(s["ttft_ms"] for s in samples),
        # Decode steps per second after the first token (each generated token is evaluated
        # once more to find the next; the last finds the end of the turn); None for no decoding.
        "decode_tok_s": statistics.median(rates) if rates else None,
        "peak_rss_mb": result["peak_rss_mb"],
        "bytes": size,
        "rss_before_load_mb": result["rss_before_load_mb"],
        "load_ms": result["load_ms"],
        "first_request_ms": result["first_request_ms"],
        "heavy_modules": result["heavy_modules"],
        "failures": summary["failures"],  # [{"id", "reason"}] of every failed case
        "by_type": summary["by_type"],
        "by_lang": summary["by_lang"],
        "samples": samples,
        "repeats": result.get("repeats", 1),
    })
    return row


def _run_baseline(name: str, build: Build, cases_path: Path, threads: int,
                  log: Callable[[str], None], repeats: int = 1) -> dict[str, Any]:
    spec: dict[str, Any] = {"kind": name, "build": str(build.root), "cases": str(cases_path), "threads": threads,
                            "repeats": repeats}
    size = None
    if name == "smollm2-135m":
        gguf = find_smollm_gguf()
        if gguf is None:
            log(f"baseline {name} skipped: not installed ({INSTALL_HINT})")
            return {**{key: None for key in ROW_KEYS}, "skipped": f"not installed: {INSTALL_HINT}"}
        spec["gguf"], size = str(gguf), gguf.stat().st_size
    log(f"benchmarking baseline {name}")
    return backend_row(_run_worker(spec), size)


def _commit() -> str | None:
    """The git commit of the code being measured (None outside a checkout)."""
    import subprocess

    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def _run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fnedge-bench-") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        done = subprocess.run([sys.executable, "-m", "fnedge.bench.worker", str(spec_path), str(result_path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise FnedgeError(f"benchmark of {spec.get('artifact') or spec['kind']} failed: {tail}")
        return json.loads(result_path.read_text())


def _artifact_cost(build: Build, artifact: dict[str, Any]) -> ModelCost | None:
    """The roofline cost of an artifact: from its own GGUF; for ONNX, the shape of a GGUF
    sibling with the ONNX file's size as the weight bytes; None when the build has no GGUF."""
    if artifact["format"] == "gguf":
        return cost_from_gguf(build.path(artifact["file"]))
    sibling = next((a for a in build.manifest["artifacts"] if a["format"] == "gguf"), None)
    if sibling is None:
        return None
    cost = cost_from_gguf(build.path(sibling["file"]))
    return ModelCost(cost.flops_per_token, float(artifact["bytes"]), cost.attn_flops_per_position,
                     cost.kv_bytes_per_position)


def _samples(row: dict[str, Any]) -> list[Sample]:
    return [Sample(s["prompt_tokens"], s["new_tokens"], s["ttft_ms"], s["total_ms"]) for s in row["samples"]]


def _calibrate_all(costs: dict[str, ModelCost | None], rows: dict[str, dict[str, Any]],
                   host: dict[str, Any]) -> dict[str, Calibration]:
    hardware = Hardware(host["gflops"], host["mem_bandwidth_gbs"])
    return {name: calibrate(cost, hardware, _samples(rows[name])) for name, cost in costs.items() if cost}


def _estimate_devices(devices: list[DeviceProfile], build: Build, costs: dict[str, ModelCost | None],
                      rows: dict[str, dict[str, Any]], estimator: dict[str, Calibration],
                      host: dict[str, Any]) -> dict[str, dict[str, Any]]:
    estimates = {}
    for device in devices:
        name = _artifact_for(device, build)
        entry: dict[str, Any] = {"artifact": name, "budget_ms": device.latency_budget_ms,
                                 "peak_memory_budget_mb": device.peak_memory_mb,
                                 "measured_peak_rss_mb": rows[name]["peak_rss_mb"],
                                 "memory_verdict": "meets" if rows[name]["peak_rss_mb"] <= device.peak_memory_mb
                                 else "misses"}
        cost = costs[name]
        if cost is None or name not in estimator:
            entry.update(est_latency_p95_ms=None, est_error=None, note="no GGUF in the build to read the shape from")
        else:
            entry.update(estimate_device(cost, device, estimator[name], _samples(rows[name]), host["clock_ghz"]))
        entry["threads"] = device.threads
        entry["figures"] = {"gflops": device.gflops, "mem_bandwidth_gbs": device.mem_bandwidth_gbs,
                            "clock_ghz": device.clock_ghz, "figure_uncertainty": device.figure_uncertainty,
                            "sources": list(device.sources)}
        estimates[device.name] = entry
    return estimates


def _artifact_for(device: DeviceProfile, build: Build) -> str:
    """The artifact the device would run: its default quant where the build has it, else the primary."""
    by_quant = {a["quant"]: a["file"] for a in build.manifest["artifacts"]}
    return next((by_quant[q] for q in device.default_quants if q in by_quant), build.manifest["primary"])
