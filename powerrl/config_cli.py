"""``powerrl config check FILE...``: validate config files without running anything.

Every config file names what it is with a top-level ``kind:`` key; the loaders for each kind are
registered in :data:`CONFIG_KINDS` as ``"module:function"`` strings taking a path and returning the
validated object (raising :class:`~powerrl.errors.ConfigError` on a bad value).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from powerrl.config import load_yaml
from powerrl.errors import ConfigError, PowerrlError

#: kind -> "module:function" loading and validating a file of that kind.
CONFIG_KINDS: dict[str, str] = {
    "profile": "powerrl.model.profiles:load_profile",
    "env": "powerrl.envs.config:load_env_config",
    "shield": "powerrl.shield.config:load_shield_config",
    "scenario": "powerrl.eval.scenario:load_scenario",
    "experiment": "powerrl.agents.config:load_experiment",
    "host": "powerrl.runtime.config:load_host_file",
    "cluster": "powerrl.runtime.cluster:load_cluster",
}


def _loader(kind: str) -> Callable[[Path], Any]:
    module_name, func = CONFIG_KINDS[kind].split(":")
    return getattr(importlib.import_module(module_name), func)


def check_file(path: Path) -> Any:
    """Validate one config file by its ``kind``; returns the loaded object."""
    data = load_yaml(path)
    if not isinstance(data, dict) or "kind" not in data:
        raise ConfigError("kind", None if not isinstance(data, dict) else data.get("kind"),
                          "a top-level 'kind:' key, one of " + ", ".join(sorted(CONFIG_KINDS)), str(path))
    kind = data["kind"]
    if kind not in CONFIG_KINDS:
        raise ConfigError("kind", kind, "one of " + ", ".join(sorted(CONFIG_KINDS)), str(path))
    return _loader(kind)(path)


def _run(args: argparse.Namespace) -> int:
    failed = 0
    for name in args.files:
        try:
            check_file(Path(name))
            print(f"ok    {name}")
        except PowerrlError as exc:
            failed += 1
            print(f"FAIL  {exc}")
    return 1 if failed else 0


def register(subparsers: Any) -> None:
    """Add ``powerrl config check``."""
    p = subparsers.add_parser("config", help="validate configuration files",
                              description="Validate powerrl YAML configs (each names its 'kind:').")
    sub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    c = sub.add_parser("check", help="validate one or more config files",
                       description="Load each FILE with its kind's schema; print ok/FAIL per file. "
                                   "Exit status 1 if any file is invalid.")
    c.add_argument("files", nargs="+", metavar="FILE", help="YAML config file(s)")
    c.set_defaults(func=_run)
