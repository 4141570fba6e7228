"""The RL goals of issue 5: shipped trained policies against the best tuned baseline and the oracle.

Runs the ``powerrl compare`` machinery (imported, not shelled out) on held-out trace days 22-28 (the
``heldout`` scenario set by default), every controller behind the shield, >= 5 seeds paired by seed
(identical arrivals), then checks, per env, the shipped policy (``powerrl/data/policies/*.onnx``, or
``--policies DIR``; each policy's ``.json`` names its env) against the goals:

* **NodeDVFS-v0** -- facility energy (``energy_kwh``: IT plus cooling, compare's headline):
  ``policy / best`` is the mean over seeds of the per-seed ratio to the best tuned governor, ±95 % CI
  (reported, no goal). The **captured share of the oracle's saving** is
  ``capture = (E_best - E_policy) / (E_best - E_oracle)`` from the seed-mean energies (the goal
  figure, >= 70 %); it is also given per seed. It is n/a (not a division error) when the oracle saves
  nothing over the best governor (``E_best - E_oracle <= 1e-9 E_best``, ties included). The policy's SLA
  violation rate (seed mean) must be <= the best governor's and <= 1 %.
* **ClusterBudget-v0** -- priority-weighted work ``policy / best`` (paired per seed, mean) >= 1.05;
  zero priority inversions (compare's ``priority_inversions``, summed over days and seeds); and zero
  **budget breaches beyond one period**. compare only integrates the overshoot (``budget_overshoot_ws``,
  W*s above the facility budget and PDU limits) cannot tell one period of overshoot -- allowed: the
  shield measures power after the fact and clears any excess within one control period
  (docs/shield.md, "One period of reaction") -- from a lasting one. compare's ``budget_breach_steps``
  metric counts breaches as the shield fuzz does (:func:`powerrl.envs.cluster_budget.over_limits`): a
  copy-step is a breach when measured power exceeds the facility budget or a PDU limit for the second
  (or later) consecutive control period (``budget_overshoot_steps`` counts steps over at all). From an
  older results document without the count, 0 W*s overshoot implies 0 breaches; anything else is n/a.
  The integrated W*s is reported beside it.
* **Datacenter-v0** -- grid carbon ``policy / best`` (paired per seed, mean) <= 0.90, with an SLA
  violation rate no higher than that baseline's; capture of the oracle's saving over ``no_deferral``,
  ``(C_nodef - C_policy) / (C_nodef - C_oracle)`` from seed means (also per seed), >= 50 %.
* **Every policy** -- shield intervention rate (seed mean of interventions / steps) <= 1 %.

The "best tuned baseline" is compare's: the highest mean env reward among the baselines run (all
tuned baselines of the env by default), so policies and the oracle never compete for it. Ratio goals
are judged on the mean; the CI is printed beside it. A goal whose figure cannot be computed reads
``n/a``; an env without a policy reads ``SKIP`` (its baselines still run, so their figures are kept).
Exit status 0 unless an error stops the run; PASS/MISS is in the table, not in the exit status.

Outputs in ``--out`` (default ``out/bench-policy-goals``): ``goals.json`` (every figure below),
compare's ``results.json``, ``results.csv`` and ``report.md`` (the full table; the goal table is
appended).

Usage: python benchmarks/policy_goals.py [--seeds 5] [--jobs N] [--scenarios heldout] [--policies DIR]
       [--days 22 ...] [--duration-h H] [--controllers C ...] [--out DIR] [--allow-train-days] [--quiet]
Quick: python benchmarks/policy_goals.py --seeds 2 --days 22 --duration-h 0.25
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from powerrl.errors import ConfigError, PowerrlError
from powerrl.eval import compare
from powerrl.eval.cli import check_jobs, seeds_arg

NODE, CLUSTER, DATACENTER = "powerrl/NodeDVFS-v0", "powerrl/ClusterBudget-v0", "powerrl/Datacenter-v0"
GOAL_ENVS = (NODE, CLUSTER, DATACENTER)
#: Goals of issue 5.
NODE_CAPTURE_MIN = 0.70
NODE_SLA_MAX = 0.01
CLUSTER_WORK_RATIO_MIN = 1.05
DC_CARBON_RATIO_MAX = 0.90
DC_CAPTURE_MIN = 0.50
SHIELD_RATE_MAX = 0.01
#: Datacenter-v0's reference for the capture goal (always run on that env).
NO_DEFERRAL = "no_deferral"
#: compare's per-seed counts of budget breaches beyond one period and of steps over at all.
BREACH_KEY = "budget_breach_steps"
OVER_STEPS_KEY = "budget_overshoot_steps"
#: A capture's denominator at or below this share of the reference is degenerate (n/a).
DEGENERATE_REL = 1e-9
DEFAULT_OUT = "out/bench-policy-goals"


# --------------------------------------------------------------------------------------------------
# Goal figures from a compare results document (pure functions).


def _ci95(x: list[float]) -> float | None:
    if len(x) < 2:
        return None
    a = np.asarray(x, dtype=np.float64)
    return float(stats.t.ppf(0.975, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size))


def _seed_values(ctrl: dict[str, Any], key: str) -> list[float | None]:
    return [None if s.get(key) is None else float(s[key]) for s in ctrl["per_seed"]]


def _mean(vals: list[float | None]) -> float | None:
    """Mean over seeds; None when a seed lacks the value or the value is not finite."""
    if not vals or any(v is None or not math.isfinite(v) for v in vals):
        return None
    return float(np.mean([float(v) for v in vals if v is not None]))


def _ctrl(sc: dict[str, Any], label: str | None) -> dict[str, Any] | None:
    return sc["controllers"].get(label) if label else None


def paired_ratio(ctrl: dict[str, Any], ref: dict[str, Any] | None, key: str) -> dict[str, Any]:
    """``ctrl / ref`` on each seed (same arrivals), its mean and 95 % CI (None where a ratio misleads)."""
    out: dict[str, Any] = {"mean": None, "ci95": None, "per_seed": None}
    if ref is None:
        return out
    vals, refs = _seed_values(ctrl, key), _seed_values(ref, key)
    if len(vals) != len(refs) or not vals:
        return out
    ratios = []
    for v, r in zip(vals, refs, strict=True):
        if v is None or r is None or r <= 0 or v < 0:
            return out
        ratios.append(v / r)
    return {"mean": float(np.mean(ratios)), "ci95": _ci95(ratios), "per_seed": ratios}


def capture(hi: float | None, value: float | None, lo: float | None) -> tuple[float | None, str | None]:
    """``(hi - value) / (hi - lo)``: the share of the saving from ``hi`` (reference) to ``lo`` (oracle) captured.

    Returns ``(share, None)``, or ``(None, reason)`` when a figure is missing or the oracle saves
    nothing over the reference (``hi - lo <= 1e-9 |hi|``).
    """
    if hi is None or value is None or lo is None:
        return None, "a figure is missing"
    span = hi - lo
    if span <= DEGENERATE_REL * abs(hi):
        return None, f"degenerate: the oracle saves nothing over the reference ({lo:.6g} vs {hi:.6g})"
    return (hi - value) / span, None


def capture_figures(ctrl: dict[str, Any], ref: dict[str, Any] | None, oracle: dict[str, Any] | None,
                    key: str) -> dict[str, Any]:
    """Capture of the oracle's saving over ``ref``, from the seed means and per seed (mean ± CI of those)."""
    if ref is None or oracle is None:
        missing = "the reference" if ref is None else "the oracle"
        return {"value": None, "reason": f"{missing} was not run", "per_seed": None, "per_seed_mean": None,
                "per_seed_ci95": None}
    value, reason = capture(_mean(_seed_values(ref, key)), _mean(_seed_values(ctrl, key)),
                            _mean(_seed_values(oracle, key)))
    per_seed = [capture(h, v, lo)[0] for h, v, lo in zip(_seed_values(ref, key), _seed_values(ctrl, key),
                                                          _seed_values(oracle, key), strict=True)]
    valid = [c for c in per_seed if c is not None]
    return {"value": value, "reason": reason, "per_seed": per_seed,
            "per_seed_mean": float(np.mean(valid)) if valid else None, "per_seed_ci95": _ci95(valid)}


def breach_figures(ctrl: dict[str, Any]) -> dict[str, Any]:
    """Budget breaches beyond one period (counted, or inferred from zero overshoot), with the W*s overshoot."""
    counted = _seed_values(ctrl, BREACH_KEY)
    over_ws = _seed_values(ctrl, "budget_overshoot_ws")
    steps = _seed_values(ctrl, OVER_STEPS_KEY)
    out: dict[str, Any] = {"total": None, "per_seed": None, "source": None,
                           "overshoot_ws_total": None if any(v is None for v in over_ws) else float(sum(over_ws)),
                           "overshoot_steps_total": None if any(v is None for v in steps) else float(sum(steps))}
    if counted and all(v is not None for v in counted):
        out.update(total=float(sum(counted)), per_seed=counted, source="counted in the rollouts")
    elif over_ws and all(v == 0 for v in over_ws):
        out.update(total=0.0, per_seed=[0.0] * len(over_ws), source="inferred: no overshoot at all (0 W*s)")
    else:
        out["source"] = "not counted (results without the per-step count) and the overshoot is not 0 W*s"
    return out


def _total(ctrl: dict[str, Any], key: str) -> float | None:
    vals = _seed_values(ctrl, key)
    return None if not vals or any(v is None for v in vals) else float(sum(v for v in vals if v is not None))


def policy_figures(sc: dict[str, Any], label: str) -> dict[str, Any]:
    """Every goal figure of policy ``label`` in one scenario of a compare results document."""
    env = sc["env_id"]
    ctrl = sc["controllers"][label]
    best = _ctrl(sc, sc.get("best_baseline"))
    oracle = _ctrl(sc, sc.get("oracle"))
    sla = {"policy": _mean(_seed_values(ctrl, "sla_violation_rate")),
           "best": None if best is None else _mean(_seed_values(best, "sla_violation_rate"))}
    shield = _seed_values(ctrl, "shield_intervention_rate")
    figs: dict[str, Any] = {
        "sla_violation_rate": sla,
        "shield_intervention_rate": {"mean": _mean(shield), "max_seed": None if any(v is None for v in shield)
                                     else max(v for v in shield if v is not None), "per_seed": shield}}
    if env == NODE:
        figs["energy_kwh"] = {k: _mean(_seed_values(c, "energy_kwh")) if c is not None else None
                              for k, c in (("policy", ctrl), ("best", best), ("oracle", oracle))}
        figs["energy_ratio_best"] = paired_ratio(ctrl, best, "energy_kwh")
        figs["energy_ratio_oracle"] = paired_ratio(ctrl, oracle, "energy_kwh")
        figs["capture"] = capture_figures(ctrl, best, oracle, "energy_kwh")
    elif env == CLUSTER:
        figs["priority_weighted_work"] = {k: _mean(_seed_values(c, "priority_weighted_work")) if c else None
                                          for k, c in (("policy", ctrl), ("best", best), ("oracle", oracle))}
        figs["work_ratio_best"] = paired_ratio(ctrl, best, "priority_weighted_work")
        figs["breaches"] = breach_figures(ctrl)
        figs["priority_inversions"] = _total(ctrl, "priority_inversions")
    elif env == DATACENTER:
        nodef = _ctrl(sc, NO_DEFERRAL)
        figs["carbon_kg"] = {k: _mean(_seed_values(c, "carbon_kg")) if c is not None else None
                             for k, c in (("policy", ctrl), ("best", best), ("oracle", oracle),
                                          (NO_DEFERRAL, nodef))}
        figs["carbon_ratio_best"] = paired_ratio(ctrl, best, "carbon_kg")
        figs["capture"] = capture_figures(ctrl, nodef, oracle, "carbon_kg")
    return figs


def _status(ok: bool | None) -> str:
    return "n/a" if ok is None else "PASS" if ok else "MISS"


def _pct(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f} %"


def _pct_goal(op: str, v: float) -> str:
    return f"{op} {100 * v:g} %"


def _capture_note(cap: dict[str, Any], extra: str) -> str:
    seeds = ", ".join(_pct(v, 0) for v in cap["per_seed"] or [])
    return "; ".join(x for x in (f"per seed {seeds}" if seeds else "", extra) if x)


def _ratio(r: dict[str, Any]) -> str:
    if r["mean"] is None:
        return "n/a"
    return f"{r['mean']:.3f}" + ("" if r["ci95"] is None else f" ±{r['ci95']:.3f}")


def _le(a: float | None, b: float | None) -> bool | None:
    return None if a is None or b is None else a <= b + 1e-12


def _row(sc_name: str, env: str, policy: str | None, goal: str, measured: str, value: Any, target: str,
         status: str, note: str = "") -> dict[str, Any]:
    return {"scenario": sc_name, "env_id": env, "policy": policy, "goal": goal, "measured": measured,
            "value": value, "target": target, "status": status, "note": note}


def policy_goal_rows(sc_name: str, sc: dict[str, Any], label: str, figs: dict[str, Any]) -> list[dict[str, Any]]:
    """The goal rows of one policy (measured value, goal, PASS/MISS/n/a)."""
    env = sc["env_id"]
    best = sc.get("best_baseline") or "none"
    sla = figs["sla_violation_rate"]
    rows = []

    def add(goal: str, measured: str, value: Any, target: str, ok: bool | None, note: str = "") -> None:
        rows.append(_row(sc_name, env, label, goal, measured, value, target, _status(ok), note))

    sla_vs_best = f"{_pct(sla['policy'], 3)} vs {_pct(sla['best'], 3)} ({best})"
    if env == NODE:
        cap = figs["capture"]
        note = cap["reason"] or _capture_note(cap, f"energy/best {_ratio(figs['energy_ratio_best'])}")
        add("energy: captured share of the oracle's saving over the best governor", _pct(cap["value"]),
            cap["value"], _pct_goal(">=", NODE_CAPTURE_MIN),
            None if cap["value"] is None else cap["value"] >= NODE_CAPTURE_MIN, note)
        add("SLA violation rate <= best governor's", sla_vs_best, sla["policy"], f"<= {best}'s",
            _le(sla["policy"], sla["best"]))
        add("SLA violation rate <= 1 %", _pct(sla["policy"], 3), sla["policy"], _pct_goal("<=", NODE_SLA_MAX),
            _le(sla["policy"], NODE_SLA_MAX))
    elif env == CLUSTER:
        r = figs["work_ratio_best"]
        add("priority-weighted work / best allocation baseline", _ratio(r), r["mean"],
            f">= {CLUSTER_WORK_RATIO_MIN:.2f}", None if r["mean"] is None else r["mean"] >= CLUSTER_WORK_RATIO_MIN,
            f"best = {best}")
        b = figs["breaches"]
        add("budget breaches beyond one period (copy-steps)", "n/a" if b["total"] is None else f"{b['total']:.0f}",
            b["total"], "0", None if b["total"] is None else b["total"] == 0,
            f"{b['source']}; overshoot {b['overshoot_ws_total'] if b['overshoot_ws_total'] is not None else 'n/a'}"
            " W*s in all")
        inv = figs["priority_inversions"]
        add("priority inversions", "n/a" if inv is None else f"{inv:.0f}", inv, "0",
            None if inv is None else inv == 0)
    elif env == DATACENTER:
        r = figs["carbon_ratio_best"]
        add("carbon / best tuned baseline", _ratio(r), r["mean"], f"<= {DC_CARBON_RATIO_MAX:.2f}",
            None if r["mean"] is None else r["mean"] <= DC_CARBON_RATIO_MAX, f"best = {best}")
        add("SLA violation rate <= that baseline's", sla_vs_best, sla["policy"], f"<= {best}'s",
            _le(sla["policy"], sla["best"]))
        cap = figs["capture"]
        add(f"carbon: captured share of the oracle's saving over {NO_DEFERRAL}", _pct(cap["value"]), cap["value"],
            _pct_goal(">=", DC_CAPTURE_MIN), None if cap["value"] is None else cap["value"] >= DC_CAPTURE_MIN,
            cap["reason"] or _capture_note(cap, ""))
    sh = figs["shield_intervention_rate"]
    add("shield intervention rate", _pct(sh["mean"], 3), sh["mean"], _pct_goal("<=", SHIELD_RATE_MAX),
        _le(sh["mean"], SHIELD_RATE_MAX), "" if sh["max_seed"] is None else f"worst seed {_pct(sh['max_seed'], 3)}")
    return rows


def goal_figures(doc: dict[str, Any], policy_dir: str | None = None) -> dict[str, Any]:
    """Every goal figure and goal row of a compare results document (its policies are ``kind == "policy"``).

    Returns ``{"scenarios": {name: {..., "status": "checked" | "skipped", "policies": {label: figures}}},
    "goals": [rows]}``; a scenario of a goal env without a policy gives one ``SKIP`` row.
    """
    out: dict[str, Any] = {"seeds": list(doc.get("seeds", [])), "scenarios": {}, "goals": []}
    for name, sc in doc["scenarios"].items():
        env = sc["env_id"]
        if env not in GOAL_ENVS:
            continue
        policies = [k for k, c in sc["controllers"].items() if c["kind"] == "policy"]
        entry: dict[str, Any] = {
            "env_id": env, "days": sc.get("days"), "start_h": sc.get("start_h"), "duration_h": sc.get("duration_h"),
            "best_baseline": sc.get("best_baseline"), "oracle": sc.get("oracle"),
            "status": "checked" if policies else "skipped", "reason": None, "policies": {}}
        if not policies:
            where = f" in {policy_dir}" if policy_dir else ""
            entry["reason"] = f"no policy for {env}{where}"
            out["goals"].append(_row(name, env, None, "all goals of the env", "no policy", None, "-", "SKIP",
                                     entry["reason"]))
        for label in policies:
            figs = policy_figures(sc, label)
            entry["policies"][label] = figs
            out["goals"].extend(policy_goal_rows(name, sc, label, figs))
        out["scenarios"][name] = entry
    return out


# --------------------------------------------------------------------------------------------------
# Tables.


def _fmt(v: float | None, key: str, ci: float | None = None) -> str:
    from powerrl.eval.report import fmt

    return fmt(v, key, ci)


#: Per env: the columns of its table (metric keys) and the headline key of the ratio and capture.
ENV_TABLES: dict[str, tuple[tuple[str, ...], str]] = {
    NODE: (("energy_kwh", "sla_violation_rate", "p99_latency_ms", "shield_intervention_rate", "reward"),
           "energy_kwh"),
    CLUSTER: (("priority_weighted_work", "energy_kwh", "sla_violation_rate", "budget_overshoot_ws",
               "priority_inversions", "shield_intervention_rate", "reward"), "priority_weighted_work"),
    DATACENTER: (("carbon_kg", "energy_kwh", "sla_violation_rate", "shield_intervention_rate", "reward"),
                 "carbon_kg"),
}


def env_table(name: str, sc: dict[str, Any]) -> str:
    """The policies, the best tuned baseline, the oracle (and no_deferral) of one scenario, with the goal figures."""
    from powerrl.eval.report import SHORT, text_table

    env = sc["env_id"]
    cols, head = ENV_TABLES[env]
    best, oracle = sc.get("best_baseline"), sc.get("oracle")
    roles: list[tuple[str, str]] = [(k, "policy") for k, c in sc["controllers"].items() if c["kind"] == "policy"]
    roles += [(best, "best baseline")] if best else []
    roles += [(NO_DEFERRAL, "reference")] if env == DATACENTER and NO_DEFERRAL in sc["controllers"] else []
    roles += [(oracle, "oracle")] if oracle else []
    ref = _ctrl(sc, NO_DEFERRAL if env == DATACENTER else best)
    orc = _ctrl(sc, oracle)
    header = ["controller", "role", *(SHORT[c] for c in cols), f"{SHORT[head]} / best"]
    if env == CLUSTER:
        header.insert(2 + cols.index("budget_overshoot_ws") + 1, "breaches>1 period")
    else:
        header += ["capture (seed means)", "capture per seed"]
    rows = []
    for label, role in roles:
        c = sc["controllers"][label]
        row = [label, role]
        for k in cols:
            vals = [v for v in _seed_values(c, k) if v is not None]
            ci = _ci95(vals)
            row.append(_fmt(_mean(_seed_values(c, k)), k, ci))
            if k == "budget_overshoot_ws":
                b = breach_figures(c)["total"]
                row.append("n/a" if b is None else f"{b:.0f}")
        row.append(_ratio(paired_ratio(c, _ctrl(sc, best), head)))
        if env != CLUSTER:
            cap = capture_figures(c, ref, orc, head)
            row.append(_pct(cap["value"]))
            row.append(", ".join(_pct(v, 0) for v in cap["per_seed"]) if cap["per_seed"] else "n/a")
        rows.append(row)
    n = len(next(iter(sc["controllers"].values()))["per_seed"]) if sc["controllers"] else 0
    days = sc.get("days") or []
    title = (f"== {name}: {env}, days {', '.join(map(str, days))}, {sc['start_h']:05.2f} h + {sc['duration_h']:g} h, "
             f"{n} seed{'s' * (n != 1)}, shield {sc.get('shield')}")
    notes = ["best baseline = highest mean env reward among the tuned baselines; ± = 95 % CI over seeds; "
             "/ best = mean over seeds of the paired per-seed ratio"]
    if env == NODE:
        notes.append("capture = (E_best - E) / (E_best - E_oracle), facility energy")
    elif env == DATACENTER:
        notes.append(f"capture = (C_{NO_DEFERRAL} - C) / (C_{NO_DEFERRAL} - C_oracle), grid carbon")
    else:
        notes.append("breaches>1 period = copy-steps over the budget or a PDU limit for a 2nd consecutive period")
    return "\n".join([title, text_table(header, rows), *notes])


def goal_table(goals: list[dict[str, Any]]) -> str:
    """The final table: one row per goal with measured value, goal and PASS/MISS/n/a/SKIP."""
    from powerrl.eval.report import text_table

    header = ["env", "policy", "goal", "measured", "target", "result", "note"]
    rows = [[g["env_id"].removeprefix("powerrl/"), g["policy"] or "-", g["goal"], g["measured"], g["target"],
             g["status"], g["note"]] for g in goals]
    return text_table(header, rows) if rows else "(no goal env among the scenarios)"


# --------------------------------------------------------------------------------------------------
# The run.


def find_policies(folder: Path) -> dict[str, list[Path]]:
    """Policy files (``*.onnx`` with their ``.json``) in ``folder``, by the env their metadata names."""
    from powerrl.eval.policy_file import policy_env_id

    found: dict[str, list[Path]] = {}
    for p in sorted(folder.glob("*.onnx")):
        found.setdefault(policy_env_id(p), []).append(p)
    return found


def held_out_days(sc: Any) -> list[int]:
    """The held-out days of a scenario's trace (22-28 for the shipped Google 2019 trace)."""
    from powerrl.envs.sources import trace_arrays

    return list(trace_arrays(sc.env_config.trace).trace.day_numbers("heldout"))


def prepare_scenarios(args: argparse.Namespace) -> list[Any]:
    """The scenarios with ``--days`` and ``--duration-h`` applied, refused on training days unless allowed."""
    from powerrl.eval.scenario import resolve_scenarios

    scenarios = resolve_scenarios(args.scenarios)
    out = []
    for sc in scenarios:
        if args.duration_h is not None and sc.env_id in (NODE, CLUSTER):
            if not args.duration_h > 0 or args.duration_h * 3600.0 < sc.dt_s:
                raise ConfigError("--duration-h", args.duration_h,
                                  f"at least one control period of {sc.env_id} ({sc.dt_s:g} s)")
            sc = dataclasses.replace(sc, duration_h=float(args.duration_h)).with_days(sc.days)  # re-validated
        if args.days:
            sc = sc.with_days(tuple(args.days))
        held = held_out_days(sc)
        outside = [d for d in sc.days if d not in held]
        if outside and not args.allow_train_days:
            raise ConfigError("--days" if args.days else f"scenario {sc.name} days", outside,
                              f"held-out trace days only ({held[0]}-{held[-1]}): the goals are measured on "
                              "held-out days (--allow-train-days to override)", None if args.days else sc.source)
        out.append(sc)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5, help="seeds per scenario, paired (default 5; goals need >= 5)")
    p.add_argument("--seed0", type=int, default=0, help="first seed (default 0, as powerrl compare)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: one per CPU; 1 = in this process)")
    p.add_argument("--scenarios", nargs="+", default=["heldout"], metavar="S",
                   help="scenario names, sets or YAML files (default: heldout = days 22-28 of each env)")
    p.add_argument("--policies", default=None, metavar="DIR",
                   help="folder of policy files (*.onnx + .json; default: the shipped powerrl/data/policies)")
    p.add_argument("--days", type=int, nargs="+", metavar="D",
                   help="override every scenario's days (held-out days 22-28 only, unless --allow-train-days)")
    p.add_argument("--duration-h", type=float, default=None, metavar="H",
                   help="shorten the NodeDVFS-v0 and ClusterBudget-v0 windows to H hours (quick runs; "
                        "Datacenter-v0 keeps whole days, which its deferral needs)")
    p.add_argument("--controllers", nargs="+", metavar="C",
                   help="baselines to run (default: every tuned baseline of each env); the oracle, the policies "
                        f"and, on Datacenter-v0, {NO_DEFERRAL} (the capture reference) always run")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--allow-train-days", action="store_true", help="allow days outside the held-out days")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from powerrl.eval import controllers, report
    from powerrl.eval.controllers import SHIPPED_POLICIES
    from powerrl.eval.runner import preflight

    seeds = seeds_arg(args)
    check_jobs(args)
    base_refs = list(args.controllers or ["baselines"])
    if any(r == "all" or r.endswith(".onnx") or "/" in r for r in base_refs):
        raise ConfigError("--controllers", base_refs, "registered baseline names or 'baselines' (policies come "
                          "from --policies; the oracle always runs)")
    controllers.check_refs(base_refs)
    folder = Path(args.policies) if args.policies else SHIPPED_POLICIES
    if args.policies and not folder.is_dir():
        raise ConfigError("--policies", args.policies, "an existing folder of policy files (*.onnx + .json)")
    policies = find_policies(folder) if folder.is_dir() else {}
    scenarios = prepare_scenarios(args)
    tuned = controllers.load_tuned(None)
    specs = {}
    for sc in scenarios:
        refs = base_refs + ["oracle"] + ([NO_DEFERRAL] if sc.env_id == DATACENTER else [])
        refs += [str(p) for p in policies.get(sc.env_id, [])]
        specs[sc.name] = controllers.controllers_for(sc.env_id, refs, tuned)
        preflight(sc, specs[sc.name], str(controllers.SHIPPED_TUNED))
    if args.seeds < 5:
        print(f"note: {args.seeds} seed(s); the goals are stated for >= 5 seeds")
    if args.duration_h is not None and any(sc.env_id == DATACENTER for sc in scenarios):
        print("note: --duration-h leaves Datacenter-v0 on whole days (its deferral needs them)")
    for env in dict.fromkeys(sc.env_id for sc in scenarios if sc.env_id in GOAL_ENVS):
        found = policies.get(env)
        print(f"{env}: " + (", ".join(p.name for p in found) if found else
                            f"NO POLICY in {folder} -- its goals are skipped (baselines still run)"))
    out = compare.output_folder(args.out)
    command = "python benchmarks/policy_goals.py " + " ".join(shlex.quote(a) for a in argv)
    doc = compare.run_comparison(scenarios, specs, seeds, command, jobs=args.jobs, progress=not args.quiet,
                                 label="policy-goals")
    report.write_results(doc, out)
    goals = goal_figures(doc, str(folder))
    goals.update(command=command, wall_s=doc["wall_s"], policy_dir=str(folder),
                 goal_values={"node_capture_min": NODE_CAPTURE_MIN, "node_sla_max": NODE_SLA_MAX,
                              "cluster_work_ratio_min": CLUSTER_WORK_RATIO_MIN,
                              "dc_carbon_ratio_max": DC_CARBON_RATIO_MAX, "dc_capture_min": DC_CAPTURE_MIN,
                              "shield_rate_max": SHIELD_RATE_MAX})
    report.write_json(goals, out / "goals.json")
    print()
    for name, sc in doc["scenarios"].items():
        if sc["env_id"] in ENV_TABLES:
            print(env_table(name, sc))
            g = goals["scenarios"].get(name)
            if g and g["status"] == "skipped":
                print(f"SKIPPED: {g['reason']}")
            print()
    table = goal_table(goals["goals"])
    print("== goals (issue 5), " + f"{len(seeds)} seed{'s' * (len(seeds) != 1)}, wall {doc['wall_s']:.0f} s")
    print(table)
    with (out / "report.md").open("a", encoding="utf-8") as fh:
        fh.write("\n## Goals (issue 5)\n\n```\n" + table + "\n```\n")
    print(f"wrote {out / 'goals.json'}, results.json, results.csv, report.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        return run(args, argv)
    except PowerrlError as exc:
        print(f"policy_goals: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
