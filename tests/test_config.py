"""Config loading: typed objects, unknown keys and bad values rejected with the key path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from powerrl.cli import main
from powerrl.config import from_dict, load, spec
from powerrl.envs.config import load_env_config
from powerrl.errors import ConfigError

CONFIGS = Path(__file__).parents[1] / "configs"


@dataclass(frozen=True)
class Inner:
    temp_c: float = field(default=25.0, metadata=spec(lo=-20.0, hi=60.0, unit="degC"))
    mode: str = field(default="rc", metadata=spec(choices=("rc", "fixed")))


@dataclass(frozen=True)
class Outer:
    count: int = field(default=1, metadata=spec(lo=1, hi=10))
    inner: Inner = field(default_factory=Inner)
    items: list[Inner] = field(default_factory=list)


def test_defaults_and_nested_values() -> None:
    cfg = from_dict(Outer, {"count": 3, "inner": {"temp_c": 30}, "items": [{"mode": "fixed"}]})
    assert cfg.count == 3 and cfg.inner.temp_c == 30.0 and cfg.items[0].mode == "fixed"


@pytest.mark.parametrize(("data", "path", "fragment"), [
    ({"cuont": 3}, "cuont", "allowed keys here: count, inner, items"),
    ({"count": 11}, "count", "[1, 10]"),
    ({"count": 2.5}, "count", "an integer"),
    ({"count": True}, "count", "an integer"),
    ({"inner": {"temp_c": 99}}, "inner.temp_c", "[-20.0, 60.0] degC"),
    ({"inner": {"temp_c": ".nan"}}, "inner.temp_c", "a number"),
    ({"inner": {"mode": "lumped"}}, "inner.mode", "one of 'rc', 'fixed'"),
    ({"items": [{}, {"bogus": 1}]}, "items[1].bogus", "a known key"),
    ({"inner": [1, 2]}, "inner", "a mapping"),
])
def test_bad_values_name_the_key_path_and_the_allowed_range(data: dict, path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        from_dict(Outer, data)
    assert exc.value.key_path == path
    assert fragment in str(exc.value)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("count: 3\ninner: {temp_c: 30\n")
    with pytest.raises(ConfigError, match="line"):
        load(Outer, bad)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("count: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError):
        load(Outer, evil)


def test_shipped_env_configs_are_valid() -> None:
    files = sorted((CONFIGS / "envs").glob("*.yaml"))
    assert len(files) >= 3
    ids = {load_env_config(f)[0] for f in files}
    assert ids == {"powerrl/NodeDVFS-v0", "powerrl/ClusterBudget-v0", "powerrl/Datacenter-v0"}


def test_env_config_cross_field_check(tmp_path: Path) -> None:
    f = tmp_path / "dc.yaml"
    f.write_text("kind: env\nid: powerrl/Datacenter-v0\nsupply_min_c: 25\nsupply_max_c: 20\n")
    with pytest.raises(ConfigError, match="supply_max_c"):
        load_env_config(f)


def test_config_check_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = CONFIGS / "envs" / "nodedvfs.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: env\nid: powerrl/NodeDVFS-v0\nn_domains: 0\n")
    assert main(["config", "check", str(good)]) == 0
    assert main(["config", "check", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "ok    " in out and "n_domains = 0" in out and "[1, 64]" in out


def test_config_check_unknown_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "x.yaml"
    f.write_text("kind: spaceship\n")
    assert main(["config", "check", str(f)]) == 1
    assert "kind = 'spaceship'" in capsys.readouterr().out


def test_the_grid_cut_example_env_config_schedules_its_cut() -> None:
    env_id, cfg = load_env_config(CONFIGS / "envs" / "clusterbudget-gridcut.yaml")
    assert env_id == "powerrl/ClusterBudget-v0"
    assert [(e.kind, e.percent, e.within_s) for e in cfg.events] == [("grid_cut", 30.0, 5.0)]
