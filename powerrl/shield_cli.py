"""``powerrl shield show`` and ``powerrl shield fuzz``: inspect a shield config and stress it.

``show`` prints a shipped or user shield config with every default filled in (a starting point for
your own). ``fuzz`` runs random and adversarial controllers through the emergency scenarios on the
shielded simulator envs (:mod:`powerrl.envs.stress`) and exits with status 1 if any guarantee broke.
"""

from __future__ import annotations

import argparse
import time

import yaml

from powerrl.config import to_dict
from powerrl.errors import ConfigError
from powerrl.shield.config import resolve_shield_config


def _show(args: argparse.Namespace) -> int:
    cfg = resolve_shield_config(args.shield)
    print(yaml.safe_dump({"kind": "shield", **to_dict(cfg)}, sort_keys=False), end="")
    return 0


def _fuzz(args: argparse.Namespace) -> int:
    from powerrl.envs import stress

    if not args.scale > 0:
        raise ConfigError("--scale", args.scale, "a number > 0 (copies per cell relative to the full matrix)")
    if args.steps is not None and args.steps < 1:
        raise ConfigError("--steps", args.steps, "an integer >= 1")
    cfg = resolve_shield_config(args.shield)  # fail on a bad config before any work starts
    for env_id in args.env or list(stress.FULL_MATRIX):
        stress.check_binds(env_id, args.shield)  # and on one the simulator cannot take (zones, floor P-state)
    envs = args.env or list(stress.FULL_MATRIX)
    sizes = {}
    for env_id in envs:
        copies, steps = stress.FULL_MATRIX[env_id]
        sizes[env_id] = (max(1, round(copies * args.scale)), args.steps or steps)
    print(f"fuzzing the shield {args.shield!r} on {', '.join(envs)} ...", flush=True)
    t0 = time.perf_counter()
    results = stress.run_matrix(sizes, seed=args.seed, shield=cfg, progress=not args.quiet,
                                scenarios=tuple(args.scenario or stress.SCENARIOS),
                                controllers=tuple(args.controller or stress.CONTROLLERS))
    wall = time.perf_counter() - t0
    print(stress.TABLE_HEADER)
    for r in results:
        print(stress.table_row(r))
    if not results:
        print("no cell applies (a grid cut needs powerrl/ClusterBudget-v0)")
        return 0
    print(stress.summary(results, wall))
    return 1 if any(r.violations for r in results) else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``powerrl shield ...``."""
    from powerrl.envs import stress

    p = subparsers.add_parser("shield", help="inspect and stress-test safety shield configs",
                              description="Inspect a safety shield config (show) and stress-test it with random "
                                          "and adversarial controllers in emergency scenarios (fuzz).")
    sub = p.add_subparsers(dest="shield_command", metavar="{show,fuzz}", required=True)
    show = sub.add_parser("show", help="print a shield config with every default filled in")
    show.add_argument("shield", nargs="?", default="default", help="shipped name (default, strict) or YAML path")
    show.set_defaults(func=_show)
    fuzz = sub.add_parser(
        "fuzz", help="run random and adversarial controllers through emergency scenarios; exit 1 on any violation",
        description="Drive the shielded simulator envs with stress controllers (random, all_max, oscillate, "
                    "invalid) through scenarios (normal, heat wave, cooling failure, grid cut, demand surge) and "
                    "count hot-trip exceedances, budget overshoot beyond one period and priority inversions.")
    fuzz.add_argument("--shield", default="default", help="shipped name (default, strict) or YAML path")
    fuzz.add_argument("--env", action="append", choices=list(stress.FULL_MATRIX), help="env id (repeatable; "
                      "default: all three)")
    fuzz.add_argument("--scenario", action="append", choices=list(stress.SCENARIOS), help="repeatable; default all")
    fuzz.add_argument("--controller", action="append", choices=list(stress.CONTROLLERS),
                      help="repeatable; default all")
    fuzz.add_argument("--scale", type=float, default=0.1,
                      help="copies per cell relative to the full matrix of benchmarks/shield_fuzz.py (default 0.1)")
    fuzz.add_argument("--steps", type=int, default=None, help="control periods per cell (default: one episode)")
    fuzz.add_argument("--seed", type=int, default=0)
    fuzz.add_argument("--quiet", action="store_true", help="no per-cell progress lines")
    fuzz.set_defaults(func=_fuzz)
