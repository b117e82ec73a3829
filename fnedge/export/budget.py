"""Will the build meet its device's latency budget? The export's estimate, before anyone flashes it.

The roofline estimator of `fnedge/devices/estimate.py` needs overheads fitted on a machine that
ran the model; an export cannot run a benchmark, so it uses the overheads `fnedge bench` fitted
on this project's reference host (below), scaled by clock, and a single-call request the size
of the dev set's p95 (24 prompt tokens, 45 generated). `fnedge bench` gives the measured figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fnedge.devices.estimate import Calibration, Sample, cost_from_gguf, estimate_device
from fnedge.devices.registry import DeviceProfile

# Fitted by `fnedge bench builds/q --repeats 5` at commit 3b2eebe (2-core AMD EPYC at 2.6 GHz):
# per-request 1.4-3.3 ms and per-step 0.27-0.37 ms across f16/q8_0/q4_0/q4_k_m; the larger
# ones are kept, and the held-out error (median 5-9 %, p95 up to 17 %) rounded up to 20 %.
REFERENCE = Calibration(request_overhead_ms=3.3, token_overhead_ms=0.37, median_abs_error=0.2,
                        p95_error=0.2, held_out=120, in_sample=False)
REFERENCE_CLOCK_GHZ = 2.6
SINGLE_CALL = Sample(prompt_tokens=24, new_tokens=45, ttft_ms=0.0, total_ms=0.0)


def estimate_budget(device: DeviceProfile, build_dir: Path, artifacts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The estimate for the GGUF the device runs by default (its default quant, else the first
    GGUF); None for a build without GGUF (nothing to read the shape from)."""
    ggufs = [a for a in artifacts if a["format"] == "gguf"]
    if not ggufs:
        return None
    chosen = next((a for a in ggufs if a["quant"] in device.default_quants), ggufs[0])
    estimate = estimate_device(cost_from_gguf(build_dir / chosen["file"]), device, REFERENCE,
                               [SINGLE_CALL], REFERENCE_CLOCK_GHZ)
    return {"artifact": chosen["file"], "est_latency_p95_ms": round(estimate["est_latency_p95_ms"], 1),
            "est_range_ms": [round(x, 1) for x in estimate["est_range_ms"]],
            "budget_ms": device.latency_budget_ms, "verdict": estimate["budget_verdict"],
            "basis": "roofline on the device profile's figures, overheads from the reference host; "
                     "an estimate, not a measurement"}


def over_budget_advice(device: DeviceProfile, estimate: dict[str, Any]) -> str:
    return (f"device '{device.name}': estimated p95 {estimate['est_latency_p95_ms']:.0f} ms "
            f"({estimate['est_range_ms'][0]:.0f}-{estimate['est_range_ms'][1]:.0f}) for {estimate['artifact']} "
            f"breaks its {device.latency_budget_ms:.0f} ms budget. Try a smaller quant (--quant q4_k_m), "
            "a smaller model (fewer layers: --preset fc-nano) or a shorter context; or pass "
            "--allow-over-budget to export anyway")
