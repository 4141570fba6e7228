"""``powerrl envs list`` and ``powerrl docs envs``: what the registered envs are, from their docstrings."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

import gymnasium as gym

from powerrl.envs import ENV_IDS, HW_ENV_IDS, register_envs


def env_docs_markdown() -> str:
    """Markdown of every registered env's docstring (its spec), for ``docs/envs.md``."""
    register_envs()
    parts = ["# Environments\n",
             "Generated from the env docstrings by `powerrl docs envs --out docs/envs.md`; do not edit by hand.\n"]
    for env_id in ENV_IDS + HW_ENV_IDS:
        spec = gym.spec(env_id)
        module_name, cls_name = str(spec.entry_point).split(":")
        module = __import__(module_name, fromlist=[cls_name])
        doc = inspect.cleandoc(getattr(module, cls_name).__doc__ or "")
        body = doc.replace("\n## ", "\n### ")
        parts.append(f"\n## `{env_id}`\n\n{body}\n")
        if spec.vector_entry_point is not None:
            parts.append(f"\nVector version: `gymnasium.make_vec(\"{env_id}\", num_envs=N, "
                         "vectorization_mode=\"vector_entry_point\")` (all copies in one C call).\n")
    return "".join(parts)


def _docs(args: argparse.Namespace) -> int:
    text = env_docs_markdown()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def _list(args: argparse.Namespace) -> int:
    register_envs()
    for env_id in ENV_IDS:
        env = gym.make(env_id)
        print(f"{env_id:28s} action {env.action_space}  observation shape {env.observation_space.shape}")
        env.close()
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from powerrl.config import from_dict, to_dict
    from powerrl.envs.config import NodeDVFSConfig, load_env_config
    from powerrl.envs.simulate import format_table, simulate_fixed_pstates
    from powerrl.errors import ConfigError

    if args.config:
        env_id, cfg = load_env_config(args.config)
        if env_id != "powerrl/NodeDVFS-v0":
            raise ConfigError("id", env_id, "'powerrl/NodeDVFS-v0' (simulate sweeps NodeDVFS P-states)", args.config)
    else:
        cfg = NodeDVFSConfig()
    overrides = {"dt_s": args.dt_s, "episode_s": 86400.0, "split": "all"}
    if args.profile:
        overrides["profile"] = args.profile
    cfg = from_dict(NodeDVFSConfig, {**to_dict(cfg), **overrides})
    results = simulate_fixed_pstates(cfg, args.day, seed=args.seed)  # validates the profile and the day
    print(f"NodeDVFS-v0, profile {cfg.profile}, {cfg.n_domains} domains, class {cfg.workload_class}, "
          f"day {args.day} of {'the shipped Google 2019 trace' if cfg.trace is None else cfg.trace.path}, "
          f"dt = {cfg.dt_s:g} s, every domain pinned to one P-state per row")
    print(format_table(results))
    return 0


def register(subparsers: Any) -> None:
    """Add ``powerrl envs`` and ``powerrl docs``."""
    p = subparsers.add_parser("envs", help="list the registered environments")
    sub = p.add_subparsers(dest="envs_command", metavar="SUBCOMMAND", required=True)
    sub.add_parser("list", help="ids with their action and observation spaces").set_defaults(func=_list)
    sim = subparsers.add_parser(
        "simulate", help="a held-out day of NodeDVFS-v0 at every fixed P-state",
        description="Simulate one day of the real trace with every frequency domain pinned to each "
                    "P-state in turn and print energy, SLA violations, p99 latency and temperature.")
    sim.add_argument("--day", type=int, default=22, help="trace day 1-28; 22-28 are held out (default 22)")
    sim.add_argument("--config", help="NodeDVFS env YAML (kind: env); default: the built-in defaults")
    sim.add_argument("--profile", help="server profile name or YAML path (overrides the config)")
    sim.add_argument("--dt-s", type=float, default=1.0, help="step length in s (default 1)")
    sim.add_argument("--seed", type=int, default=0, help="arrival-process seed (default 0)")
    sim.set_defaults(func=_simulate)
    d = subparsers.add_parser("docs", help="generate reference docs")
    dsub = d.add_subparsers(dest="docs_command", metavar="SUBCOMMAND", required=True)
    e = dsub.add_parser("envs", help="env reference (docs/envs.md) from the env docstrings")
    e.add_argument("--out", help="output Markdown file (default: print)")
    e.set_defaults(func=_docs)
