"""The benchmark's three pictures, drawn from bench.json alone (so they can be redrawn).

- latency.png: per-request latency distribution of every backend;
- accuracy_size.png: function and argument match against size, one point per quant type;
- devices.png: estimated p95 latency per device with its error band, against the budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_plots(bench: dict[str, Any], out_dir: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on a build machine
    import matplotlib.pyplot as plt

    written = []
    for name, draw in (("latency.png", _latency), ("accuracy_size.png", _accuracy_size), ("devices.png", _devices)):
        figure = plt.figure(figsize=(7, 4.2))
        if draw(figure.add_subplot(), bench):
            figure.tight_layout()
            figure.savefig(out_dir / name, dpi=110)
            written.append(name)
        plt.close(figure)
    return written


def _measured(bench: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rows = dict(bench["artifacts"])
    rows.update({f"baseline {name}": row for name, row in bench["baselines"].items() if row.get("samples")})
    return rows


def _latency(ax: Any, bench: dict[str, Any]) -> bool:
    rows = _measured(bench)
    if not rows:
        return False
    data = [[s["total_ms"] for s in row["samples"]] for row in rows.values()]
    ax.boxplot(data, orientation="horizontal", showfliers=True)
    ax.set_yticks(range(1, len(rows) + 1), list(rows))
    ax.set_xscale("log")  # the router answers in microseconds, a generalist in seconds
    ax.set_xlabel("latency per request, ms (request -> parsed turn)")
    ax.set_title("Latency distribution per backend (this machine)")
    return True


def _accuracy_size(ax: Any, bench: dict[str, Any]) -> bool:
    points = [(row.get("quant") or name, row) for name, row in _measured(bench).items() if row.get("bytes")]
    if not points:
        return False
    for label, row in points:
        size_mb = row["bytes"] / 1e6
        for key, marker in (("function_match", "o"), ("argument_match", "s")):
            if row[key] is not None:
                ax.scatter(size_mb, 100 * row[key], marker=marker, color="C0" if marker == "o" else "C1")
        ax.annotate(label, (size_mb, 100 * (row["function_match"] or 0)), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.scatter([], [], marker="o", color="C0", label="function match")
    ax.scatter([], [], marker="s", color="C1", label="argument match")
    ax.set_xscale("log")
    ax.margins(x=0.3)  # room for the labels of the largest and smallest points
    ax.set_xlabel("size, MB (log)")
    ax.set_ylabel("%")
    ax.set_ylim(-5, 105)
    ax.legend(loc="best", fontsize=8)
    ax.set_title("Accuracy vs size across quant types")
    return True


def _devices(ax: Any, bench: dict[str, Any]) -> bool:
    devices = {name: d for name, d in bench["devices"].items() if d.get("est_latency_p95_ms") is not None}
    if not devices:
        return False
    names = list(devices)
    estimates = [devices[n]["est_latency_p95_ms"] for n in names]
    low = [e - devices[n]["est_range_ms"][0] for n, e in zip(names, estimates)]
    high = [devices[n]["est_range_ms"][1] - e for n, e in zip(names, estimates)]
    positions = range(len(names))
    ax.bar(positions, estimates, yerr=[low, high], capsize=4, color="C0", label="estimated p95 (error band)")
    ax.scatter(positions, [devices[n]["budget_ms"] for n in names], marker="_", s=900, color="C3",
               linewidths=2, label="p95 budget", zorder=3)
    ax.set_xticks(list(positions), [f"{n}\n({devices[n]['artifact']})" for n in names], fontsize=8)
    ax.set_ylabel("ms")
    ax.set_title("Estimated p95 latency per device vs budget (roofline estimate)")
    ax.legend(fontsize=8)
    return True
