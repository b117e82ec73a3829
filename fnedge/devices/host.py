"""This machine's figures for the latency estimator, measured the way the device figures were:
sustained copy bandwidth (one thread, counted as STREAM counts copy: bytes read + bytes written)
and float32 matmul GFLOPS with the benchmark's thread count.

The measurement runs in a child process, because BLAS reads its thread count from the
environment once, when numpy is first imported.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

COPY_MB = 256       # per array: far past any last-level cache, so the copy streams from DRAM
MATMUL_N = 1024     # 2.1 GFLOP per product: long enough to time, short enough for a busy machine
REPEATS = 5         # best of: a shared machine only ever makes a run slower
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def measure_host(threads: int) -> dict[str, Any]:
    """Bandwidth (GB/s), GFLOPS and a description of this machine, measured in a child process."""
    env = {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES}}
    result = subprocess.run([sys.executable, "-m", "fnedge.devices.host", str(threads)], env=env,
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def describe_machine() -> dict[str, Any]:
    cpuinfo = _cpuinfo()
    return {
        "cpu": cpuinfo.get("model name") or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "cores_available": len(os.sched_getaffinity(0)),
        "clock_ghz": _clock_ghz(cpuinfo),
        "ram_mb": _ram_mb(),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }


def _measure(threads: int) -> dict[str, Any]:
    import numpy as np

    source = np.ones(COPY_MB * (1 << 20) // 4, dtype=np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)  # touch every page first: the first copy also pays page faults
    copy_s = _best_time(lambda: np.copyto(target, source))
    a = np.random.default_rng(0).standard_normal((MATMUL_N, MATMUL_N), dtype=np.float32)
    a @ a
    matmul_s = _best_time(lambda: a @ a)
    return {**describe_machine(), "threads": threads,
            "mem_bandwidth_gbs": 2 * source.nbytes / copy_s / 1e9,
            "gflops": 2 * MATMUL_N ** 3 / matmul_s / 1e9}


def _best_time(action) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def _cpuinfo() -> dict[str, str]:
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return {}
    fields: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first core speaks for all
    return fields


def _clock_ghz(cpuinfo: dict[str, str]) -> float | None:
    try:
        return round(float(cpuinfo["cpu MHz"]) / 1000, 2)
    except (KeyError, ValueError):
        return None


def _ram_mb() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (ValueError, OSError, AttributeError):
        return None


if __name__ == "__main__":
    print(json.dumps(_measure(int(sys.argv[1]))))
