"""The built-in device profiles. Budgets and measured figures arrive with the benchmarks issue;
for now a profile says what an export for the device defaults to."""

from __future__ import annotations

from dataclasses import dataclass

from fnedge.errors import FnedgeError


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    cores: int
    ram_mb: int
    threads: int                 # decode threads the runtime uses there
    context_length: int
    default_quants: tuple[str, ...]
    allowed_quants: tuple[str, ...]
    latency_budget_ms: float     # p95, request -> validated call, single call


_ALL_GGUF = ("f32", "f16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k")  # K-quants by llama.cpp's quantizer
_ALL = _ALL_GGUF + ("onnx-fp32", "onnx-int8", "onnx-int4")

DEVICES: dict[str, DeviceProfile] = {d.name: d for d in [
    DeviceProfile("rpi4", "Raspberry Pi 4 Model B (4x Cortex-A72 @ 1.5-1.8 GHz, NEON)", 4, 4096,
                  threads=4, context_length=512, default_quants=("q8_0",), allowed_quants=_ALL,
                  latency_budget_ms=300),
    DeviceProfile("rpi5", "Raspberry Pi 5 (4x Cortex-A76 @ 2.4 GHz, NEON)", 4, 8192,
                  threads=4, context_length=1024, default_quants=("q8_0",), allowed_quants=_ALL,
                  latency_budget_ms=150),
    DeviceProfile("android-arm64", "Mid-range Android phone (arm64-v8a, big.LITTLE)", 8, 6144,
                  threads=4, context_length=1024, default_quants=("q8_0",), allowed_quants=_ALL,
                  latency_budget_ms=200),
    DeviceProfile("laptop-x86", "x86-64 laptop (AVX2)", 8, 16384,
                  threads=4, context_length=2048, default_quants=("f16",), allowed_quants=_ALL,
                  latency_budget_ms=100),
]}


def get_device(name: str) -> DeviceProfile:
    if name not in DEVICES:
        raise FnedgeError(f"unknown device '{name}' (choose from {', '.join(DEVICES)})")
    return DEVICES[name]


def list_devices() -> list[DeviceProfile]:
    return list(DEVICES.values())
