"""``powerrl compare`` and ``powerrl tune-baseline``: the comparison harness on the command line."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

import yaml

from powerrl.errors import ConfigError


def observation_dim(sc: Any) -> int:
    """Length of the observation of a scenario's env."""
    from powerrl.eval.runner import VECTOR_ENVS

    env = VECTOR_ENVS[sc.env_id](1, **sc.env_kwargs())
    return int(env.single_observation_space.shape[0])


def seeds_arg(args: argparse.Namespace) -> list[int]:
    """The seeds of ``--seeds N --seed0 S``, checked."""
    if args.seeds < 1:
        raise ConfigError("--seeds", args.seeds, "an integer >= 1 (seeds per scenario)")
    if args.seed0 < 0:
        raise ConfigError("--seed0", args.seed0, "an integer >= 0")
    return list(range(args.seed0, args.seed0 + args.seeds))


def check_jobs(args: argparse.Namespace) -> None:
    """Refuse a negative ``--jobs``."""
    if args.jobs < 0:
        raise ConfigError("--jobs", args.jobs, "an integer >= 0 (0 = one process per CPU)")


def _command(args: argparse.Namespace) -> str:
    return "powerrl " + " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:]))


def _compare(args: argparse.Namespace) -> int:
    from powerrl.eval import compare, controllers, plots, report
    from powerrl.eval.runner import preflight
    from powerrl.eval.scenario import resolve_scenarios

    seeds = seeds_arg(args)
    check_jobs(args)
    refs = args.controllers or ["all"]
    controllers.check_refs(refs)
    scenarios = resolve_scenarios(args.scenarios or ["default"])  # every file read and checked before any work
    tuned = controllers.load_tuned(args.tuned)
    specs = {sc.name: controllers.controllers_for(sc.env_id, refs, tuned, untuned=args.untuned,
                                                  observation_dim=observation_dim(sc)) for sc in scenarios}
    for sc in scenarios:
        if not specs[sc.name]:
            raise ConfigError("--controllers", refs, f"at least one controller that drives {sc.env_id} "
                              f"(scenario {sc.name})")
        preflight(sc, specs[sc.name], str(args.tuned or controllers.SHIPPED_TUNED))
    out = compare.output_folder(args.out)
    doc = compare.run_comparison(scenarios, specs, seeds, _command(args), jobs=args.jobs, progress=not args.quiet)
    figs = {} if args.no_plots else plots.plot_all(doc, out)
    report.write_results(doc, out, figs)
    print(report.terminal_report(doc))
    print(f"wrote {out / 'results.json'}, results.csv, report.md" + ("" if args.no_plots else " and plots")
          + f" ({doc['wall_s']:.0f} s)")
    return 0


def _parse_grid(items: list[str] | None) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for item in items or []:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ConfigError("--grid", item, "KEY=V1,V2,... (e.g. --grid up_threshold=60,80,95)")
        grid[key] = [yaml.safe_load(v) for v in values.split(",")]
    return grid


def _tune(args: argparse.Namespace) -> int:
    from powerrl.eval import controllers, tune
    from powerrl.eval.scenario import load_scenario

    seeds = seeds_arg(args)
    check_jobs(args)
    scenario = load_scenario(args.scenario)
    days = tuple(args.days) if args.days else tune.training_days(scenario)
    overrides = _parse_grid(args.grid)
    entry = tune.tune(args.name, scenario, days, seeds, jobs=args.jobs, overrides=overrides, progress=not args.quiet)
    entry["command"] = _command(args)
    path = controllers.save_tuned(args.out, scenario.env_id, args.name, entry)
    print(f"{args.name} on {scenario.env_id} (days {', '.join(map(str, days))}, {len(seeds)} seed(s), "
          f"{len(entry['grid'])} grid points)")
    print(f"  best:    {entry['params']}  mean reward {entry['reward']:.5f}")
    print(f"  default: mean reward {entry['default_reward']:.5f}")
    print(f"wrote {path}; compare with it: powerrl compare --tuned {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``compare`` and ``tune-baseline``."""
    import powerrl.baselines  # noqa: F401 - registers the controllers listed below
    from powerrl.control import controller_names
    from powerrl.eval.scenario import SCENARIO_SETS, shipped_scenarios

    epilog = ("Shipped scenarios: " + ", ".join(shipped_scenarios()) + ". Sets: "
              + "; ".join(f"{k} = {' '.join(v)}" for k, v in SCENARIO_SETS.items())
              + ". Registered controllers: " + ", ".join(controller_names())
              + " (docs/baselines.md).")
    p = subparsers.add_parser(
        "compare", help="compare controllers (baselines, oracle, policy files) on held-out real-trace scenarios",
        epilog=epilog,
        description="Run every controller through every scenario behind the safety shield, on identical arrivals, "
                    "over several seeds in parallel processes; print the table and write results.json, results.csv, "
                    "report.md and PNG plots. Baselines use their tuned parameters (powerrl tune-baseline).")
    p.add_argument("--scenarios", nargs="+", metavar="S",
                   help="shipped scenario names, sets (default, heldout, events) or scenario YAML files "
                        "(default: the 'default' set; docs/scenarios.md)")
    p.add_argument("--controllers", nargs="+", metavar="C",
                   help="registered names, 'all' (every baseline of the env and the oracle), 'baselines', or "
                        "policy files (.onnx); default: all")
    p.add_argument("--seeds", type=int, default=3, help="seeds per scenario (default 3)")
    p.add_argument("--seed0", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--out", default="out/compare", help="output folder (default out/compare)")
    p.add_argument("--jobs", type=int, default=0, help="worker processes (default 0 = one per CPU)")
    p.add_argument("--tuned", default=None, help="tuned-parameter YAML (default: the shipped one)")
    p.add_argument("--untuned", action="store_true", help="run baselines with their default parameters")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_compare)

    t = subparsers.add_parser(
        "tune-baseline", help="grid-search a baseline's parameters on training days",
        description="Search the baseline's parameter grid on training days of a scenario (never held-out days), "
                    "scoring each point by the env's mean reward over days and seeds; write the best parameters "
                    "into a tuned-parameter YAML that powerrl compare reads.")
    t.add_argument("name", help="baseline name (powerrl compare --help lists sets; e.g. schedutil)")
    t.add_argument("--scenario", required=True, help="scenario name or YAML (its env, data and window are used)")
    t.add_argument("--days", type=int, nargs="+", help="training days (default: the last three training days)")
    t.add_argument("--seeds", type=int, default=2, help="seeds (default 2)")
    t.add_argument("--seed0", type=int, default=1000, help="first seed (default 1000, apart from compare's)")
    t.add_argument("--grid", action="append", metavar="KEY=V1,V2", help="replace one axis of the grid")
    t.add_argument("--out", default="out/tuned.yaml",
                   help="tuned-parameter YAML to merge into (default out/tuned.yaml)")
    t.add_argument("--jobs", type=int, default=0, help="worker processes (default: one per CPU)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_tune)
