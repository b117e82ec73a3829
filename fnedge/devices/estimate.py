"""A roofline latency estimator: what a request costs on a device we cannot run on.

A request is a prefill of the prompt and one decode step per generated token (the step that
follows the last token finds the end-of-turn token). Each phase takes the longer of its compute
time (FLOPs / GFLOPS) and its memory time (bytes read / bandwidth), plus a fixed overhead the
roofline cannot see: tokenizing, graph setup, the sampling loop. Prefill is compute-bound (many
tokens share one read of the weights); decode is bandwidth-bound (every step reads all weights
and the KV cache for one token's worth of arithmetic).

The overheads are fitted on this machine, against its measured bandwidth and GFLOPS, on half
of the benchmark's requests; the other half measures how far off the model is. For a device,
the same model runs on the profile's figures, with the overheads scaled by clock, and the
error band combines that host error with the profile's own figure uncertainty.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fnedge.devices.registry import DeviceProfile
from fnedge.eval.report import percentile

KV_BYTES_F32 = 4  # the runtime keeps an F32 KV cache (greedy parity with torch)


@dataclass(frozen=True)
class ModelCost:
    """What one token's forward pass costs, independent of the hardware."""
    flops_per_token: float          # 2 x matmul parameters, output head included
    weight_bytes: float             # weight bytes one forward pass reads
    attn_flops_per_position: float  # QK^T and AV against one earlier position: 4 x layers x heads x head_dim
    kv_bytes_per_position: float    # K and V of one earlier position: 2 x layers x kv_heads x head_dim x dtype


@dataclass(frozen=True)
class Hardware:
    gflops: float
    bandwidth_gbs: float
    request_overhead_ms: float = 0.0  # once per request
    token_overhead_ms: float = 0.0    # once per decode step


@dataclass(frozen=True)
class Sample:
    """One measured request: its sizes and its timings."""
    prompt_tokens: int
    new_tokens: int
    ttft_ms: float
    total_ms: float


@dataclass(frozen=True)
class Calibration:
    request_overhead_ms: float
    token_overhead_ms: float
    median_abs_error: float  # median |predicted - measured| / measured over the held-out requests
    p95_error: float         # (predicted p95 - measured p95) / measured p95 over the held-out requests
    held_out: int            # requests the errors are measured on
    in_sample: bool          # too few requests to hold any out: the errors flatter the model

    @property
    def error(self) -> float:
        return max(self.median_abs_error, abs(self.p95_error))


def _ms(flops: float, gflops: float) -> float:
    return flops / (gflops * 1e6)  # GFLOPS = 1e9 FLOP/s = 1e6 FLOP/ms; GB/s alike for bytes


def prefill_ms(cost: ModelCost, hw: Hardware, prompt_tokens: int) -> float:
    # Token i attends to the i positions before it and itself.
    flops = (prompt_tokens * cost.flops_per_token
             + cost.attn_flops_per_position * prompt_tokens * (prompt_tokens + 1) / 2)
    memory = cost.weight_bytes + cost.kv_bytes_per_position * prompt_tokens
    return max(_ms(flops, hw.gflops), _ms(memory, hw.bandwidth_gbs)) + hw.request_overhead_ms


def decode_step_ms(cost: ModelCost, hw: Hardware, position: int) -> float:
    """One generated token at `position` (the tokens already in the cache)."""
    flops = cost.flops_per_token + cost.attn_flops_per_position * (position + 1)
    memory = cost.weight_bytes + cost.kv_bytes_per_position * (position + 1)
    return max(_ms(flops, hw.gflops), _ms(memory, hw.bandwidth_gbs)) + hw.token_overhead_ms


def decode_ms(cost: ModelCost, hw: Hardware, prompt_tokens: int, new_tokens: int) -> float:
    return sum(decode_step_ms(cost, hw, prompt_tokens + i) for i in range(new_tokens))


def request_ms(cost: ModelCost, hw: Hardware, prompt_tokens: int, new_tokens: int) -> float:
    return prefill_ms(cost, hw, prompt_tokens) + decode_ms(cost, hw, prompt_tokens, new_tokens)


def calibrate(cost: ModelCost, host: Hardware, samples: list[Sample]) -> Calibration:
    """Fit the two overheads on the even requests, measure the error on the odd ones."""
    if not samples:
        raise ValueError("calibration needs at least one measured request")
    in_sample = len(samples) < 4
    fit, test = (samples, samples) if in_sample else (samples[0::2], samples[1::2])
    bare = replace(host, request_overhead_ms=0.0, token_overhead_ms=0.0)
    request_overhead = statistics.median(s.ttft_ms - prefill_ms(cost, bare, s.prompt_tokens) for s in fit)
    steps = [(s.total_ms - s.ttft_ms - decode_ms(cost, bare, s.prompt_tokens, s.new_tokens)) / s.new_tokens
             for s in fit if s.new_tokens]
    token_overhead = statistics.median(steps) if steps else 0.0
    tuned = replace(bare, request_overhead_ms=max(0.0, request_overhead),
                    token_overhead_ms=max(0.0, token_overhead))
    predicted = [request_ms(cost, tuned, s.prompt_tokens, s.new_tokens) for s in test]
    measured = [s.total_ms for s in test]
    errors = [abs(p - m) / m for p, m in zip(predicted, measured) if m > 0]
    measured_p95 = percentile(measured, 95) or 0.0
    p95_error = (percentile(predicted, 95) - measured_p95) / measured_p95 if measured_p95 else 0.0
    return Calibration(tuned.request_overhead_ms, tuned.token_overhead_ms,
                       statistics.median(errors) if errors else 0.0, p95_error, len(test), in_sample)


def device_hardware(device: DeviceProfile, calibration: Calibration, host_clock_ghz: float | None) -> Hardware:
    """The device's figures; the host's overheads scaled by clock (per-clock speed is assumed
    equal, which it is not: that gap is part of the profile's uncertainty)."""
    scale = host_clock_ghz / device.clock_ghz if host_clock_ghz else 1.0
    return Hardware(device.gflops, device.mem_bandwidth_gbs,
                    calibration.request_overhead_ms * scale, calibration.token_overhead_ms * scale)


def estimate_device(cost: ModelCost, device: DeviceProfile, calibration: Calibration,
                    samples: list[Sample], host_clock_ghz: float | None) -> dict[str, Any]:
    """Estimated p50/p95 latency of the benchmark's requests on `device`, with a relative error band."""
    hw = device_hardware(device, calibration, host_clock_ghz)
    latencies = [request_ms(cost, hw, s.prompt_tokens, s.new_tokens) for s in samples]
    p95 = percentile(latencies, 95) or 0.0
    error = math.hypot(calibration.error, device.figure_uncertainty)
    low, high = p95 * max(0.0, 1 - error), p95 * (1 + error)
    budget = device.latency_budget_ms
    verdict = "meets" if high <= budget else "misses" if low > budget else "uncertain"  # the whole band decides
    return {"est_latency_p95_ms": p95, "est_latency_p50_ms": percentile(latencies, 50),
            "budget_ms": device.latency_budget_ms, "est_error": error, "est_range_ms": [low, high],
            "budget_verdict": verdict,
            "est_decode_tok_s": 1000 / decode_step_ms(cost, hw, 64),  # with 64 tokens in the cache
            "hardware": {"gflops": hw.gflops, "bandwidth_gbs": hw.bandwidth_gbs,
                         "request_overhead_ms": hw.request_overhead_ms,
                         "token_overhead_ms": hw.token_overhead_ms}}


def cost_from_gguf(path: Path, kv_bytes: int = KV_BYTES_F32) -> ModelCost:
    """Read the shape and tensor sizes of a llama-family GGUF."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    arch = _field(reader, "general.architecture")
    layers = int(_field(reader, f"{arch}.block_count"))
    hidden = int(_field(reader, f"{arch}.embedding_length"))
    heads = int(_field(reader, f"{arch}.attention.head_count"))
    kv_heads = int(_field(reader, f"{arch}.attention.head_count_kv", heads))
    head_dim = int(_field(reader, f"{arch}.attention.key_length", hidden // heads))
    tensors = {t.name: t for t in reader.tensors}
    head = tensors.get("output.weight", tensors["token_embd.weight"])  # tied: the embedding is the head
    matmul_params = sum(int(t.n_elements) for name, t in tensors.items()
                        if len(t.shape) == 2 and name not in ("token_embd.weight", "output.weight"))
    matmul_params += int(head.n_elements)
    weight_bytes = sum(int(t.n_bytes) for t in tensors.values())
    if "output.weight" in tensors:  # untied: the embedding contributes one row per token, not all
        weight_bytes -= int(tensors["token_embd.weight"].n_bytes)
    return ModelCost(flops_per_token=2.0 * matmul_params, weight_bytes=float(weight_bytes),
                     attn_flops_per_position=4.0 * layers * heads * head_dim,
                     kv_bytes_per_position=2.0 * layers * kv_heads * head_dim * kv_bytes)


def _field(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    if field is None:
        if default is None:
            raise KeyError(f"GGUF has no '{key}'")
        return default
    return field.contents()
