"""The powerrl CLI: every subcommand explains itself; bad input is one clear line and exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from powerrl.cli import build_parser, main


def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_expected_subcommands_exist() -> None:
    assert {"config", "calibrate", "envs", "simulate", "docs", "hw"} <= set(subcommands())


@pytest.mark.parametrize("name", subcommands())
def test_every_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert len(capsys.readouterr().out) > 100


@pytest.mark.parametrize(("argv", "fragment"), [
    (["simulate", "--day", "40"], "--day = 40"),
    (["simulate", "--profile", "no-such-server"], "profile = 'no-such-server'"),
    (["calibrate", "--result-id", "nope"], "nope"),
])
def test_bad_arguments_give_one_line_and_status_2(argv: list[str], fragment: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err and err.count("\n") == 1


def test_console_script_runs_as_module() -> None:
    out = subprocess.run([sys.executable, "-m", "powerrl.cli", "envs", "list"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "powerrl/NodeDVFS-v0" in out.stdout and "powerrl/Datacenter-v0" in out.stdout
