"""The ``powerrl`` command line.

Subcommands live next to the code they drive: each module listed in :data:`COMMAND_MODULES` has a
``register(subparsers)`` function adding its subcommand(s). Modules whose optional dependencies are
missing are skipped, so the CLI works without the training extra. Errors meant for the user
(:class:`powerrl.errors.PowerrlError`) print one line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from powerrl.errors import PowerrlError

#: Modules contributing subcommands, in ``--help`` order, with the command names each registers. A
#: command line naming one of them imports only that module: ``powerrl agent`` on a node never pays
#: for (or needs) torch, which ``train`` and ``export`` import.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "powerrl.config_cli": ("config",),
    "powerrl.model.cli": ("calibrate",),
    "powerrl.envs.cli": ("envs", "simulate", "docs"),
    "powerrl.hw.cli": ("hw",),
    "powerrl.shield_cli": ("shield",),
    "powerrl.eval.cli": ("compare", "tune-baseline"),
    "powerrl.agents.train": ("train",),
    "powerrl.agents.export": ("export",),
    "powerrl.runtime.cli": ("agent",),
    "powerrl.runtime.coordinator_cli": ("coordinator",),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser: every available subcommand, or only the module registering ``command``."""
    parser = argparse.ArgumentParser(
        prog="powerrl",
        description="Learn, compare and deploy datacenter power-management policies.",
        epilog="Run 'powerrl COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    only = [m for m, names in COMMAND_MODULES.items() if command in names]
    for name in only or COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (exc.name == "powerrl" or exc.name.startswith("powerrl.")):
                raise  # a broken powerrl module must not silently hide its commands
            if only:
                print(f"powerrl {command}: needs {exc.name}, which is not installed "
                      f"(pip install 'powerrl[train]' for train/export, 'powerrl[agent]' for agent)", file=sys.stderr)
                sys.exit(2)
            continue  # an optional dependency (e.g. torch) is missing: its commands are unavailable
        module.register(subparsers)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("powerrl")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``powerrl`` console script; returns the exit status."""
    argv_list = list(argv) if argv is not None else sys.argv[1:]
    parser = build_parser(argv_list[0] if argv_list else None)
    args = parser.parse_args(argv_list)
    args.argv = argv_list  # the command as typed, for run records
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PowerrlError as exc:
        print(f"powerrl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"powerrl {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `powerrl ... | head`): stop quietly, like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
