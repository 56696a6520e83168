"""The bench's PNG plots (matplotlib, Agg: no display needed).

- sweep_time.png, sweep_bytes.png: time and bytes received per worker against density, one line per mode,
  one panel per (workers, size);
- model_speedup.png: modelled speedup of omnireduce over the ring all-reduce against density at each link rate;
- switch_packets_per_s.png: packets/s of the softswitch's native and Python pipelines and of BMv2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .gloo import GLOO_DENSE, GLOO_SPARSE, GLOO_SPARSE_FLAT
from .sweep import DENSE, MODES, SPARSE, Row

STYLE = {SPARSE: ("tab:blue", "o"), DENSE: ("tab:orange", "s"), GLOO_DENSE: ("tab:green", "^"),
         GLOO_SPARSE: ("tab:red", "v"), GLOO_SPARSE_FLAT: ("tab:purple", "D"), "ideal": ("black", "")}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("plots need matplotlib: pip install -e '.[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panels(rows: Sequence[Row]) -> list[tuple[int, int]]:
    return sorted({(row.workers, row.size) for row in rows})


def _grid(plt, count: int):
    columns = min(count, 4)
    lines = -(-count // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.4 * lines), squeeze=False)
    for extra in axes.flat[count:]:
        extra.set_visible(False)
    return figure, list(axes.flat)


def plot_sweep(rows: Sequence[Row], directory: Path) -> list[Path]:
    plt = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    panels = _panels(rows)
    paths = []
    for name, what, label in (("sweep_time.png", "time", "all-reduce time (s), median; bars: min-max"),
                              ("sweep_bytes.png", "bytes", "bytes received per worker")):
        figure, axes = _grid(plt, len(panels))
        for axis, (workers, size) in zip(axes, panels):
            for mode in MODES:
                points = sorted((row.density, row) for row in rows
                                if row.workers == workers and row.size == size and row.mode == mode
                                and row.status == "ok")
                if not points:
                    continue
                color, marker = STYLE[mode]
                densities = [density for density, _ in points]
                if what == "time":
                    medians = [row.median_s for _, row in points]
                    low = [row.median_s - min(row.seconds) for _, row in points]
                    high = [max(row.seconds) - row.median_s for _, row in points]
                    axis.errorbar(densities, medians, yerr=[low, high], color=color, marker=marker, label=mode,
                                  capsize=2, linewidth=1.2, markersize=4)
                else:
                    axis.plot(densities, [row.received_bytes_per_worker for _, row in points], color=color,
                              marker=marker, label=mode, linewidth=1.2, markersize=4)
            if what == "bytes":
                ideal = sorted({(row.density, row.ideal_received_bytes_per_worker) for row in rows
                                if row.workers == workers and row.size == size and row.ideal_received_bytes_per_worker})
                if ideal:
                    axis.plot([d for d, _ in ideal], [b for _, b in ideal], color="black", linestyle="--",
                              linewidth=1, label="ideal sparse")
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_title(f"{workers} workers, {size:,} values ({size * 4 / 2**20:.2g} MiB)", fontsize=9)
            axis.set_xlabel("density (non-zero blocks per worker)", fontsize=8)
            axis.set_ylabel(label, fontsize=8)
            axis.tick_params(labelsize=7)
            axis.grid(True, which="major", alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels() if panels else ([], [])
        figure.legend(handles, labels, loc="upper center", ncol=len(labels) or 1, fontsize=8,
                      bbox_to_anchor=(0.5, 1.0))
        figure.tight_layout(rect=(0, 0, 1, 0.9))
        path = directory / name
        figure.savefig(path, dpi=80)
        plt.close(figure)
        paths.append(path)
    return paths


def plot_model(report: dict[str, Any], directory: Path) -> Path:
    plt = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    curve = report["density_curve"]
    rates = sorted({row["gbps"] for row in curve})
    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    for gbps, color in zip(rates, ("tab:blue", "tab:red", "tab:green", "tab:purple")):
        points = sorted((row["density"], row) for row in curve if row["gbps"] == gbps)
        densities = [density for density, _ in points]
        axis.plot(densities, [row["speedup_over_ring"] for _, row in points], color=color, marker="o",
                  markersize=3, label=f"{gbps:g} Gbit/s: over ring all-reduce")
        axis.plot(densities, [row["speedup_over_dense_switch"] for _, row in points], color=color, linestyle="--",
                  linewidth=1, label=f"{gbps:g} Gbit/s: over dense in-switch")
    workers = curve[0]["workers"] if curve else 0
    axis.axhline(1.0, color="grey", linewidth=0.8)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("density (non-zero blocks per worker)")
    axis.set_ylabel("modelled speedup of omnireduce-p4")
    axis.set_title(f"line-rate model: 100 MB all-reduce, {workers} workers", fontsize=10)
    axis.grid(True, which="major", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path = directory / "model_speedup.png"
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def plot_switch(result: dict[str, Any], directory: Path) -> Path:
    plt = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    labels, values, colors = [], [], []
    for label, run in result["softswitch"].items():
        if "pps_cpu" in run:
            labels.append(f"softswitch\n{label}")
            values.append(run["pps_cpu"])
            colors.append("tab:blue" if run["backend"] == "native" else "tab:orange")
    for run in result["bmv2"].get("runs", []):
        if run.get("pps_wall"):
            labels.append("BMv2" if run["log_level"] == "default" else f"BMv2\n-L {run['log_level']}")
            values.append(run["pps_wall"])
            colors.append("tab:grey")
    end_to_end = result.get("end_to_end") or {}
    if end_to_end.get("ok"):
        labels.append(f"all-reduce\nend to end\n({end_to_end['workers']} workers)")
        values.append(end_to_end["pps_in"])
        colors.append("tab:green")
    figure, axis = plt.subplots(figsize=(1.5 * max(len(labels), 3) + 1, 3.8))
    bars = axis.bar(range(len(values)), values, color=colors)
    axis.set_xticks(range(len(values)), labels, fontsize=7)
    axis.set_yscale("log")
    axis.set_ylabel("packets/s (softswitch: CPU time; others: wall)", fontsize=8)
    axis.set_title("omnireduce program, recorded all-reduce trace, one core", fontsize=9)
    for bar, value in zip(bars, values):
        axis.text(bar.get_x() + bar.get_width() / 2, value, f"{value:,.0f}", ha="center", va="bottom", fontsize=7)
    if not result["bmv2"].get("runs"):
        axis.text(0.99, 0.97, f"BMv2: {result['bmv2'].get('skipped', 'not run')}", transform=axis.transAxes,
                  ha="right", va="top", fontsize=7, wrap=True)
    axis.grid(True, axis="y", alpha=0.3)
    figure.tight_layout()
    path = directory / "switch_packets_per_s.png"
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
