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
    assert {"config", "calibrate", "envs", "simulate", "docs", "hw", "shield"} <= set(subcommands())


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
    (["shield", "show", "no-such-shield"], "shield = 'no-such-shield'"),
    (["shield", "fuzz", "--scale", "0"], "--scale = 0.0"),
    (["shield", "fuzz", "--steps", "0"], "--steps = 0"),
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


def test_shield_show_prints_a_config_that_loads(tmp_path: pytest.TempPathFactory,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from powerrl.shield.config import load_shield_config, resolve_shield_config

    assert main(["shield", "show", "strict"]) == 0
    path = tmp_path / "mine.yaml"  # type: ignore[operator]
    path.write_text(capsys.readouterr().out)
    assert load_shield_config(path) == resolve_shield_config("strict")


def test_shield_fuzz_runs_a_cell_and_reports_zero_violations(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["shield", "fuzz", "--env", "powerrl/NodeDVFS-v0", "--scenario", "cooling_failure",
            "--controller", "all_max", "--steps", "2000", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "cooling_failure  all_max" in out and "hot-trip exceedances 0" in out


def test_command_table_names_every_registered_command() -> None:
    """A command missing from COMMAND_MODULES would be importable only through the full parser."""
    from powerrl.cli import COMMAND_MODULES

    assert sorted(n for names in COMMAND_MODULES.values() for n in names) == subcommands()


def test_agent_command_never_imports_torch() -> None:
    code = ("import sys; from powerrl.cli import main; main(['agent', 'check', '--help'])")
    out = subprocess.run([sys.executable, "-c", code + "\n"], capture_output=True, text=True)
    assert out.returncode == 0
    probe = subprocess.run([sys.executable, "-c", "import sys\nfrom powerrl.cli import build_parser\n"
                            "build_parser('agent')\nprint('torch' in sys.modules)"], capture_output=True, text=True)
    assert probe.stdout.strip() == "False", probe.stderr
