"""``powerrl calibrate``: fit server power profiles to SPECpower results and report the fit error.

Examples::

    powerrl calibrate --result-id power_ssj2008-20170703-00767             # table: measured vs model
    powerrl calibrate --result-id power_ssj2008-20170703-00767 --json --out p.yaml
    powerrl calibrate --all [--json]                                       # error distribution
    powerrl calibrate --list                                               # result ids
    powerrl calibrate --epyc7502 --out epyc7502.yaml                       # from the EPYC 7502 file
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from powerrl.model import profiles as prof_mod
from powerrl.model.profiles import FitReport, ServerProfile, SpecpowerRow


def error_distribution(errors: list[float]) -> dict[str, float]:
    """Summary of max relative errors: count, p50/p90/p99/max and share within the 5 % goal."""
    e = np.asarray(errors, dtype=np.float64)
    if e.size == 0:
        return {"count": 0}
    return {"count": int(e.size), "p50": float(np.percentile(e, 50)), "p90": float(np.percentile(e, 90)),
            "p99": float(np.percentile(e, 99)), "max": float(e.max()),
            "share_within_goal": float(np.mean(e <= prof_mod.GOAL_MAX_REL_ERROR))}


def fit_all(rows: list[SpecpowerRow]) -> list[tuple[SpecpowerRow, FitReport]]:
    """Fit every row; returns ``(row, report)`` pairs in file order."""
    return [(row, prof_mod.fit_profile(row)[1]) for row in rows]


def distribution_table(results: list[tuple[SpecpowerRow, FitReport]]) -> dict[str, dict[str, float]]:
    """Error distributions for single-node results and for all results."""
    single = [rep.max_rel_error for row, rep in results if row.single_node]
    every = [rep.max_rel_error for _, rep in results]
    return {"single_node": error_distribution(single), "all": error_distribution(every)}


def format_distribution(table: dict[str, dict[str, float]]) -> str:
    """Plain-text table of :func:`distribution_table`."""
    lines = [f"{'results':<12} {'n':>5} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7} {'<=5%':>7}"]
    for label, d in table.items():
        if not d.get("count"):
            lines.append(f"{label:<12} {0:>5}")
            continue
        lines.append(f"{label:<12} {int(d['count']):>5} {d['p50']:>7.2%} {d['p90']:>7.2%} {d['p99']:>7.2%} "
                     f"{d['max']:>7.2%} {d['share_within_goal']:>7.1%}")
    return "\n".join(lines)


def format_fit(profile: ServerProfile, report: FitReport) -> str:
    """Readable table of measured vs model power per load level, then the fitted parameters."""
    lines = [f"{profile.name}: {profile.cpu} ({profile.result_id})", f"source: {profile.source}", "",
             f"{'load':>7} {'measured_w':>11} {'model_w':>9} {'rel_error':>10}"]
    for u, meas, mod, rel in zip(report.load, report.measured_w, report.model_w, report.rel_error, strict=True):
        label = "idle" if u == 0.0 else f"{u:.1%}"
        lines.append(f"{label:>7} {meas:>11.1f} {mod:>9.1f} {rel:>+10.2%}")
    lines += ["", f"max rel error {report.max_rel_error:.2%}, mean {report.mean_rel_error:.2%}",
              "params: " + ", ".join(f"{k}={v:g}" for k, v in prof_mod.profile_params(profile).items())]
    return "\n".join(lines)


def _fit_json(profile: ServerProfile, report: FitReport, out: Path | None) -> dict[str, Any]:
    return {"result_id": report.result_id, "name": profile.name, "cpu": profile.cpu, "source": profile.source,
            "max_rel_error": report.max_rel_error, "mean_rel_error": report.mean_rel_error,
            "params": prof_mod.profile_params(profile),
            "points": [{"load": u, "measured_w": m, "model_w": p, "rel_error": r}
                       for u, m, p, r in zip(report.load, report.measured_w, report.model_w, report.rel_error,
                                             strict=True)],
            "out": None if out is None else str(out)}


def _run(args: argparse.Namespace) -> int:
    if args.list:
        for row in prof_mod.read_specpower(args.specpower):
            kind = "single" if row.single_node else f"{row.n_nodes} nodes"
            print(f"{row.result_id}  {row.year}  {kind:<9} {row.cpu_name}")
        return 0
    if args.all:
        table = distribution_table(fit_all(prof_mod.read_specpower(args.specpower)))
        print(json.dumps(table, indent=2) if args.json else format_distribution(table))
        return 0
    if args.epyc7502:
        profile, report = prof_mod.epyc7502_profile()
    elif args.result_id:
        row = prof_mod.find_row(prof_mod.read_specpower(args.specpower), args.result_id)
        profile, report = prof_mod.fit_profile(row, name=args.name)
    else:
        raise prof_mod.ConfigError("--result-id", None, "one of --result-id ID, --all, --list or --epyc7502")
    out = prof_mod.save_profile(profile, args.out) if args.out else None
    if args.json:
        print(json.dumps(_fit_json(profile, report, out), indent=2))
    else:
        print(format_fit(profile, report))
        if out is not None:
            print(f"wrote {out}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``powerrl calibrate``."""
    p = subparsers.add_parser(
        "calibrate", help="fit server power profiles to SPECpower results",
        description="Fit a server power profile (idle_w, busy_w, shape_r, wake_share) to one SPECpower_ssj2008 "
                    "result and show measured vs model power per load level, or report the fit-error "
                    "distribution over every result (--all). See docs/calibration.md.")
    p.add_argument("--specpower", type=Path, default=prof_mod.SPECPOWER_CSV, metavar="CSV",
                   help="SPECpower results CSV (default: the shipped 625 results)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--result-id", metavar="ID", help="fit this result (see --list)")
    what.add_argument("--all", action="store_true", help="fit every result and print the error distribution")
    what.add_argument("--list", action="store_true", help="list the result ids in the CSV")
    what.add_argument("--epyc7502", action="store_true",
                      help="build the EPYC 7502 profile from the shipped measurement file")
    p.add_argument("--name", help="profile name (default: CPU slug and year)")
    p.add_argument("--out", type=Path, metavar="YAML", help="write the fitted profile here")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_run)
