"""Outputs of ``powerrl compare``: the terminal table, ``results.json``, ``results.csv`` and ``report.md``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from powerrl.eval.metrics import BY_KEY, METRIC_KEYS

#: Columns of the terminal and Markdown tables per env; the first is the headline metric that the
#: "vs best" and "vs oracle" columns quote.
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "powerrl/NodeDVFS-v0": ("energy_kwh", "sla_violation_rate", "p99_latency_ms", "max_temp_c", "carbon_kg",
                            "shield_intervention_rate", "reward"),
    "powerrl/ClusterBudget-v0": ("priority_weighted_work", "energy_kwh", "sla_violation_rate", "budget_overshoot_ws",
                                 "priority_inversions", "shield_intervention_rate", "reward"),
    "powerrl/Datacenter-v0": ("carbon_kg", "energy_kwh", "pue", "sla_violation_rate", "max_temp_c",
                              "shield_intervention_rate", "reward"),
}
_PERCENT = ("sla_violation_rate", "shield_intervention_rate")
#: Column titles of the tables (units included); results.json and results.csv keep the metric keys.
SHORT: dict[str, str] = {
    "energy_kwh": "energy kWh", "energy_it_kwh": "IT kWh", "energy_cooling_kwh": "cooling kWh", "pue": "PUE",
    "work_done": "work node-s", "priority_weighted_work": "prio work", "perf_per_watt": "node-s/kJ",
    "sla_violation_rate": "SLA viol", "p99_latency_ms": "p99 ms", "max_temp_c": "max degC",
    "time_above_passive_s": "s > passive", "hot_trip_exceedances": "hot trips", "budget_overshoot_ws": "over W*s",
    "priority_inversions": "inversions", "carbon_kg": "kgCO2", "deferred_left": "deferred left",
    "shield_interventions": "shield steps", "shield_intervention_rate": "shield", "reward": "reward",
}


def fmt(value: float | None, key: str = "", ci: float | None = None) -> str:
    """A metric value for tables (percentages for rates, None as n/a)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    scale, suffix = (100.0, "%") if key in _PERCENT else (1.0, "")
    text = _num(value * scale) + suffix
    if ci is not None:
        text += f" ±{_num(ci * scale)}"
    return text


def _num(v: float) -> str:
    """Three significant digits without exponents for table values (thousands separated)."""
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if v == 0 or abs(v) >= 0.001:
        return f"{v:.3g}"
    return f"{v:.2e}"


def _ratio(r: float | None, ci: float | None = None) -> str:
    if r is None:
        return "n/a"
    return f"{r:.3f}" + ("" if ci is None else f" ±{ci:.3f}")


def scenario_rows(sc_doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one scenario's table (means ± 95 % CI)."""
    cols = TABLE_COLUMNS[sc_doc["env_id"]]
    head = cols[0]
    header = ["controller", "kind"] + [SHORT[c] for c in cols]
    header += [f"{SHORT[head]} / best", f"{SHORT[head]} / oracle"]
    rows = []
    for label, c in sc_doc["controllers"].items():
        m = c["metrics"]
        kind = c["kind"] + (" *" if label == sc_doc.get("best_baseline") else "")
        row = [label, kind] + [fmt(m[k]["mean"], k, m[k]["ci95"]) for k in cols]
        row += [_ratio(m[head]["rel_best"], m[head].get("rel_best_ci95")),
                _ratio(m[head]["rel_oracle"], m[head].get("rel_oracle_ci95"))]
        rows.append(row)
    return header, rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """A fixed-width text table."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _window(sc: dict[str, Any]) -> str:
    days = sc["days"]
    d = f"day {days[0]}" if len(days) == 1 else f"days {days[0]}-{days[-1]}" if days == list(
        range(days[0], days[-1] + 1)) else "days " + ", ".join(map(str, days))
    end = sc["start_h"] + sc["duration_h"]
    return f"{d}, {sc['start_h']:05.2f} h to {end:05.2f} h, dt {sc['dt_s']:g} s"


def terminal_report(doc: dict[str, Any]) -> str:
    """Every scenario's table as text (what ``powerrl compare`` prints)."""
    parts = []
    n = len(doc["seeds"])
    for name, sc in doc["scenarios"].items():
        header, rows = scenario_rows(sc)
        parts.append(f"== {name}: {sc['env_id']}, {_window(sc)}, {n} seed{'s' * (n > 1)}, shield {sc['shield']}")
        parts.append(text_table(header, rows))
        parts.append("* best tuned baseline (highest mean reward); ± = 95 % CI over seeds; "
                     "/ best, / oracle = mean over seeds of the ratio to the best baseline or the oracle on "
                     "the same seed (paired); units and definitions in report.md")
        parts.append("")
    return "\n".join(parts)


def write_json(doc: dict[str, Any], path: Path) -> None:
    """``results.json`` (NaN written as null)."""

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        if hasattr(x, "item"):
            return clean(x.item())
        return x

    path.write_text(json.dumps(clean(doc), indent=1) + "\n", encoding="utf-8")


def write_csv(doc: dict[str, Any], path: Path) -> None:
    """``results.csv``: one row per (scenario, controller, metric)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["scenario", "env_id", "controller", "kind", "metric", "unit", "mean", "ci95", "n_seeds",
                    "rel_best", "rel_best_ci95", "rel_oracle", "rel_oracle_ci95"])
        for name, sc in doc["scenarios"].items():
            for label, c in sc["controllers"].items():
                for key in METRIC_KEYS:
                    m = c["metrics"][key]
                    w.writerow([name, sc["env_id"], label, c["kind"], key, BY_KEY[key].unit,
                                "" if m["mean"] is None else repr(float(m["mean"])),
                                "" if m["ci95"] is None else repr(float(m["ci95"])), m["n"],
                                *(_cell(m.get(k)) for k in ("rel_best", "rel_best_ci95", "rel_oracle",
                                                            "rel_oracle_ci95"))])


def _cell(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def write_results(doc: dict[str, Any], out: Path, plots: dict[str, list[str]] | None = None) -> None:
    """``results.json``, ``results.csv`` and ``report.md`` of a results document in folder ``out``."""
    write_json(doc, out / "results.json")
    write_csv(doc, out / "results.csv")
    write_markdown(doc, out / "report.md", plots or {}, doc["command"])


def write_markdown(doc: dict[str, Any], path: Path, plots: dict[str, list[str]], command: str) -> None:
    """``report.md``: the tables, the plots and how to reproduce them."""
    n = len(doc["seeds"])
    lines = ["# powerrl compare report", "", f"Command: `{command}`", "",
             f"Seeds: {', '.join(map(str, doc['seeds']))} ({n}); means ± 95 % CI (Student t over seeds). "
             "Every controller ran behind the shield on identical arrivals (common random numbers). "
             "`*` marks the best tuned baseline (highest mean env reward); `/ best` and `/ oracle` are the "
             "mean over seeds of the ratio to it or to the oracle on the same seed (paired), ± 95 % CI.", ""]
    for name, sc in doc["scenarios"].items():
        header, rows = scenario_rows(sc)
        lines += [f"## {name}", "", f"{sc['description']} ({sc['env_id']}, {_window(sc)}).", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
        params = [f"`{label}` {c['params']}" for label, c in sc["controllers"].items()
                  if c["kind"] == "baseline" and c["params"]]
        if params:
            lines += ["Parameters (tuned on training days unless --untuned): " + "; ".join(params) + ".", ""]
        for p in plots.get(name, []):
            lines += [f"![{Path(p).stem}]({p})", ""]
    lines += ["## Metrics", "", "| metric | unit | meaning | better |", "|---|---|---|---|"]
    lines += [f"| {k} | {m['unit']} | {m['doc']} | {m['better']} |" for k, m in doc["metrics"].items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
