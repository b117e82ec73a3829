"""User-defined device profiles from YAML, checked field by field.

    name: jetson-nano
    description: Jetson Nano CPU (4x Cortex-A57)
    cores: 4
    ram_mb: 4096
    threads: 4
    clock_ghz: 1.43
    mem_bandwidth_gbs: 8
    gflops: 15
    latency_budget_ms: 400
    peak_memory_mb: 512
    # optional: context_length, default_quants, allowed_quants, simd, figure_uncertainty, sources

Every problem is a FnedgeError that names the file and the field, so a typo in a profile fails
at load time instead of producing an estimate for a device nobody has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fnedge.devices.registry import KNOWN_QUANTS, DeviceProfile
from fnedge.errors import FnedgeError

REQUIRED = ("name", "cores", "ram_mb", "threads", "clock_ghz", "mem_bandwidth_gbs", "gflops",
            "latency_budget_ms", "peak_memory_mb")
DEFAULTS: dict[str, Any] = {"description": "", "context_length": 1024, "default_quants": ["q8_0"],
                            "allowed_quants": list(KNOWN_QUANTS), "simd": "unknown",
                            "figure_uncertainty": 0.5, "sources": []}
INTEGER_FIELDS = ("cores", "ram_mb", "threads", "context_length")
NUMBER_FIELDS = ("clock_ghz", "mem_bandwidth_gbs", "gflops", "latency_budget_ms", "peak_memory_mb")


def load_device_file(path: Path) -> DeviceProfile:
    path = Path(path)
    if not path.is_file():
        raise FnedgeError(f"{path}: device file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise FnedgeError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    return parse_device(data, source=str(path))


def parse_device(data: Any, source: str) -> DeviceProfile:
    if not isinstance(data, dict):
        raise FnedgeError(f"{source}: a device profile must be a mapping of fields")
    known = set(REQUIRED) | set(DEFAULTS)
    for key in data:
        if key not in known:
            raise FnedgeError(f"{source}: unknown field '{key}' (known: {', '.join(sorted(known))})")
    for key in REQUIRED:
        if key not in data:
            raise FnedgeError(f"{source}: missing field '{key}'")
    fields = {**DEFAULTS, **data}

    def fail(key: str, wanted: str) -> FnedgeError:
        return FnedgeError(f"{source}: field '{key}' must be {wanted}, got {fields[key]!r}")

    for key in ("name", "description", "simd"):
        if not isinstance(fields[key], str) or (key == "name" and not fields[key].strip()):
            raise fail(key, "a non-empty string" if key == "name" else "a string")
    for key in INTEGER_FIELDS:
        if isinstance(fields[key], bool) or not isinstance(fields[key], int) or fields[key] <= 0:
            raise fail(key, "a positive integer")
    for key in NUMBER_FIELDS:
        if isinstance(fields[key], bool) or not isinstance(fields[key], (int, float)) or fields[key] <= 0:
            raise fail(key, "a positive number")
    uncertainty = fields["figure_uncertainty"]
    if isinstance(uncertainty, bool) or not isinstance(uncertainty, (int, float)) or not 0 <= uncertainty <= 5:
        raise fail("figure_uncertainty", "a number from 0 to 5 (0.5 means +-50%)")
    if fields["threads"] > fields["cores"]:
        raise fail("threads", f"at most cores ({fields['cores']})")
    for key in ("default_quants", "allowed_quants"):
        quants = fields[key]
        if not isinstance(quants, list) or not quants or not all(q in KNOWN_QUANTS for q in quants):
            raise fail(key, f"a non-empty list of quant types from {', '.join(KNOWN_QUANTS)}")
    outside = [q for q in fields["default_quants"] if q not in fields["allowed_quants"]]
    if outside:
        raise fail("default_quants", f"within allowed_quants (not allowed: {', '.join(outside)})")
    if not isinstance(fields["sources"], list) or not all(isinstance(s, str) for s in fields["sources"]):
        raise fail("sources", "a list of strings")
    return DeviceProfile(
        name=fields["name"].strip(), description=fields["description"] or f"user profile {source}",
        cores=fields["cores"], ram_mb=fields["ram_mb"], threads=fields["threads"],
        context_length=fields["context_length"], default_quants=tuple(fields["default_quants"]),
        allowed_quants=tuple(fields["allowed_quants"]), latency_budget_ms=float(fields["latency_budget_ms"]),
        peak_memory_mb=float(fields["peak_memory_mb"]), clock_ghz=float(fields["clock_ghz"]),
        simd=fields["simd"], mem_bandwidth_gbs=float(fields["mem_bandwidth_gbs"]),
        gflops=float(fields["gflops"]), figure_uncertainty=float(uncertainty),
        sources=tuple(fields["sources"]) or (f"user profile {source}",))
