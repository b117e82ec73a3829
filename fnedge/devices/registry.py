"""The built-in device profiles: what an export for a device defaults to, what it must meet
(latency and memory budgets), and the hardware figures the latency estimator works from.

Hardware figures come from public spec sheets where a spec sheet states them (cores, clock,
memory type); bandwidth and GFLOPS are *sustained* figures, comparable to what a numpy copy and
a float32 matmul measure on the host, and are approximate: each profile says how it got them in
`sources` and how far off they may be in `figure_uncertainty`. Budgets are this project's
targets, not public figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fnedge.errors import FnedgeError

GGUF_QUANTS = ("f32", "f16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k")  # K-quants by llama.cpp's quantizer
ONNX_QUANTS = ("onnx-fp32", "onnx-int8", "onnx-int4")
ORT_QUANTS = tuple(f"{q}-ort" for q in ONNX_QUANTS)  # ORT format, for ONNX Runtime Mobile
KNOWN_QUANTS = GGUF_QUANTS + ONNX_QUANTS + ORT_QUANTS


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
    peak_memory_mb: float        # budget for the assistant process's peak RSS
    clock_ghz: float             # clock of the cores the runtime uses, under sustained load
    simd: str                    # vector extensions the kernels can use
    mem_bandwidth_gbs: float     # sustained memory bandwidth (copy), GB/s
    gflops: float                # sustained float32 GFLOPS with `threads` threads
    figure_uncertainty: float    # relative error of bandwidth/GFLOPS/clock (0.5 = +-50%)
    sources: tuple[str, ...]     # where each figure comes from


_ALL = KNOWN_QUANTS

DEVICES: dict[str, DeviceProfile] = {d.name: d for d in [
    DeviceProfile(
        name="rpi4", description="Raspberry Pi 4 Model B (4x Cortex-A72 @ 1.5-1.8 GHz, NEON)",
        cores=4, ram_mb=4096, threads=4, context_length=512,
        default_quants=("q8_0",), allowed_quants=_ALL,
        latency_budget_ms=300, peak_memory_mb=512,
        clock_ghz=1.5, simd="NEON (Armv8.0-A: no dot-product instructions)",
        mem_bandwidth_gbs=5.5, gflops=23.0, figure_uncertainty=0.5,
        sources=(
            "cores, clock, LPDDR4-3200: https://www.raspberrypi.com/products/raspberry-pi-4-model-b/specifications/"
            " (1.5 GHz on most boards in use; boards made since late 2023 run at 1.8 GHz)",
            "bandwidth: STREAM copy 5.5 GB/s on a Pi 4, https://www.sci-pi.org.uk/bench/stream.html "
            "(theory: LPDDR4-3200 x 32 bit = 12.8 GB/s)",
            "GFLOPS: HPL (float64) 11.4 GFLOPS on a CM4 at 1.5 GHz and 11.9 on a Pi 4 at 1.8 GHz, "
            "https://github.com/geerlingguy/top500-benchmark (results table); float32 runs twice the "
            "SIMD lanes, so ~23 sustained (approximate; peak: 4 cores x 1.5 GHz x 16 FLOP/cycle = 96)",
        )),
    DeviceProfile(
        name="rpi5", description="Raspberry Pi 5 (4x Cortex-A76 @ 2.4 GHz, NEON + dot product)",
        cores=4, ram_mb=8192, threads=4, context_length=1024,
        default_quants=("q8_0",), allowed_quants=_ALL,
        latency_budget_ms=150, peak_memory_mb=512,
        clock_ghz=2.4, simd="NEON + dot product (Armv8.2-A)",
        mem_bandwidth_gbs=7.5, gflops=60.0, figure_uncertainty=0.5,
        sources=(
            "cores, clock, LPDDR4X-4267: https://www.raspberrypi.com/products/raspberry-pi-5/",
            "bandwidth: theory LPDDR4X-4267 x 32 bit = 17 GB/s; at the Pi 4's measured share of theory "
            "(5.5 / 12.8) that is ~7.5 GB/s (approximate, not measured here)",
            "GFLOPS: HPL (float64) 30.2 GFLOPS on a Pi 5 at 2.4 GHz, "
            "https://github.com/geerlingguy/top500-benchmark (results table); ~60 sustained float32 "
            "(approximate; peak: 4 x 2.4 GHz x 16 FLOP/cycle = 154)",
        )),
    DeviceProfile(
        name="android-arm64",
        description="Mid-range Android phone (arm64-v8a, big.LITTLE; reference: Snapdragon 778G)",
        cores=8, ram_mb=6144, threads=4, context_length=1024,
        default_quants=("q8_0",), allowed_quants=_ALL,
        latency_budget_ms=200, peak_memory_mb=256,
        clock_ghz=2.2, simd="NEON + dot product (Armv8.2-A)",
        mem_bandwidth_gbs=15.0, gflops=50.0, figure_uncertainty=0.6,
        sources=(
            "cores, clock, memory: Qualcomm's Snapdragon 778G product page "
            "(1x Cortex-A78 @ 2.4 GHz + 3x A78 @ 2.2 GHz + 4x A55 @ 1.9 GHz; LPDDR5 up to 3200 MHz); "
            "threads = the four big cores",
            "bandwidth: LPDDR5-6400 on a 64-bit bus is 51 GB/s in theory; what one CPU cluster sustains "
            "is far lower: ~15 GB/s (approximate)",
            "GFLOPS: peak float32 = 4 big cores x ~2.25 GHz x 16 FLOP/cycle = 144; phones throttle under "
            "sustained load: ~50 (approximate, a representative phone rather than one model)",
        )),
    DeviceProfile(
        name="laptop-x86", description="x86-64 laptop (AVX2; reference: AMD Ryzen 7 5700U)",
        cores=8, ram_mb=16384, threads=4, context_length=2048,
        default_quants=("f16",), allowed_quants=_ALL,
        latency_budget_ms=100, peak_memory_mb=1024,
        clock_ghz=3.0, simd="AVX2 + FMA3",
        mem_bandwidth_gbs=25.0, gflops=200.0, figure_uncertainty=0.5,
        sources=(
            "cores, clock, memory: AMD's Ryzen 7 5700U product page (8 cores, 1.8 GHz base / 4.3 GHz "
            "boost, DDR4-3200 or LPDDR4X-4266); ~3 GHz all-core under sustained load (approximate)",
            "bandwidth: dual-channel DDR4-3200 is 51.2 GB/s in theory; ~25 GB/s sustained copy (approximate)",
            "GFLOPS: peak float32 = 4 threads x 3.0 GHz x 32 FLOP/cycle (two 256-bit FMA pipes, Zen 2) = 384; "
            "~200 sustained in float32 BLAS (approximate; for scale, HPL float64 on a 6-core desktop "
            "Ryzen 5 5600X is 229 GFLOPS, https://github.com/geerlingguy/top500-benchmark)",
        )),
]}


def get_device(name: str) -> DeviceProfile:
    """A built-in profile by name, or a user profile when `name` is a path to a YAML file."""
    if name.endswith((".yaml", ".yml")):
        from fnedge.devices.profile_file import load_device_file
        return load_device_file(Path(name))
    if name not in DEVICES:
        raise FnedgeError(f"unknown device '{name}' (choose from {', '.join(DEVICES)}, "
                          f"or give a device YAML file)")
    return DEVICES[name]


def list_devices() -> list[DeviceProfile]:
    return list(DEVICES.values())
