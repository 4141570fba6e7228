"""PNG plots of a comparison (matplotlib, non-interactive Agg backend).

Per scenario: power, hottest die and mean frequency over time per controller (first seed, first
day, bucket means); energy against SLA violation rate (one point per controller, 95 % CI bars);
carbon emitted against the grid's carbon intensity over time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_scenario(name: str, sc: dict[str, Any], out_dir: Path) -> list[str]:
    """Write the plots of one scenario into ``out_dir``; returns their file names."""
    plt = _plt()
    files = []
    series = sc.get("series") or {}
    day = sc["days"][0]
    xlabel = f"hour of day {day} (trace local time)"

    def hours(s: dict[str, Any]) -> list[float]:
        return [t - 24.0 * (day - 1) for t in s["time_h"]]

    if series:
        fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
        for label, s in series.items():
            for ax, key in zip(axes, ("power_w", "temp_c", "freq_mhz"), strict=True):
                ax.plot(hours(s), s[key], label=label, linewidth=1)
        axes[0].set_ylabel("IT power (W)")
        axes[1].set_ylabel("hottest die (degC)")
        axes[2].set_ylabel("mean frequency (MHz)")
        axes[2].set_xlabel(xlabel)
        axes[0].legend(fontsize=7, ncol=4)
        axes[0].set_title(f"{name}: power, temperature and frequency (first seed, first day)")
        fig.tight_layout()
        fn = f"{name}_timeseries.png"
        fig.savefig(out_dir / fn, dpi=110)
        plt.close(fig)
        files.append(fn)
    fig, ax = plt.subplots(figsize=(7, 5))
    for label, c in sc["controllers"].items():
        e, v = c["metrics"]["energy_kwh"], c["metrics"]["sla_violation_rate"]
        if e["mean"] is None or v["mean"] is None:
            continue
        ax.errorbar(100 * v["mean"], e["mean"], xerr=None if v["ci95"] is None else 100 * v["ci95"],
                    yerr=e["ci95"], fmt="o" if c["kind"] != "oracle" else "*", markersize=7, capsize=3, label=label)
    ax.set_xlabel("SLA violation rate (%)")
    ax.set_ylabel("energy, IT + cooling (kWh)")
    ax.set_title(f"{name}: energy vs SLA violations")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fn = f"{name}_energy_vs_sla.png"
    fig.savefig(out_dir / fn, dpi=110)
    plt.close(fig)
    files.append(fn)
    if series:
        fig, ax = plt.subplots(figsize=(10, 4))
        first = next(iter(series.values()))
        ax.plot(hours(first), first["carbon_g_per_kwh"], color="k", linewidth=1.5, label="grid intensity")
        ax.set_ylabel("grid intensity (gCO2/kWh)")
        ax.set_xlabel(xlabel)
        ax2 = ax.twinx()
        for label, s in series.items():
            rate = [p * ci / 1000.0 for p, ci in zip(s["power_w"], s["carbon_g_per_kwh"], strict=True)]
            ax2.plot(hours(s), rate, linewidth=1, label=label)
        ax2.set_ylabel("IT emissions rate (gCO2/h)")
        ax2.legend(fontsize=7, ncol=4, loc="upper right")
        ax.set_title(f"{name}: carbon vs intensity (first seed, first day)")
        fig.tight_layout()
        fn = f"{name}_carbon_vs_intensity.png"
        fig.savefig(out_dir / fn, dpi=110)
        plt.close(fig)
        files.append(fn)
    return files


def plot_all(doc: dict[str, Any], out_dir: Path) -> dict[str, list[str]]:
    """Every scenario's plots; ``{scenario: [file names]}``."""
    return {name: plot_scenario(name, sc, out_dir) for name, sc in doc["scenarios"].items()}
