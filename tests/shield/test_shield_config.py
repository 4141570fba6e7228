"""Shield configs: the shipped files load, invalid ones fail at load naming the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from powerrl.errors import ConfigError
from powerrl.shield.config import ShieldConfig, load_shield_config, make_shield_config, resolve_shield_config

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "powerrl" / "data" / "shields").glob("*.yaml"))


def test_shipped_configs_load_and_match_the_repo_copies() -> None:
    assert {p.name for p in SHIPPED} >= {"default.yaml", "strict.yaml"}
    for path in SHIPPED:
        cfg = load_shield_config(path)
        assert isinstance(cfg, ShieldConfig)
        assert (ROOT / "configs" / "shields" / path.name).read_bytes() == path.read_bytes(), (
            f"configs/shields/{path.name} and its packaged copy differ: copy one over the other")


def test_default_yaml_spells_out_the_code_defaults() -> None:
    assert load_shield_config(ROOT / "configs" / "shields" / "default.yaml") == ShieldConfig()


def test_resolve_by_name_path_mapping_and_object() -> None:
    assert resolve_shield_config("strict").penalty == 0.1
    assert resolve_shield_config(None) == ShieldConfig()
    assert resolve_shield_config({"penalty": 0.5}).penalty == 0.5
    with pytest.raises(ConfigError, match="shipped shield config"):
        resolve_shield_config("no-such-shield")


def _trips(*trips: tuple[str, float, float]) -> dict[str, object]:
    return {"zones": {"package": {"trips": [{"type": t, "temp_c": c, "hyst_c": h} for t, c, h in trips]}}}


@pytest.mark.parametrize(("overrides", "key", "fix"), [
    (_trips(("passive", 85, 2), ("hot", 80, 2)), "zones.package.trips[1].temp_c", "above the passive trip"),
    (_trips(("hot", 95, 2), ("critical", 90, 2)), "zones.package.trips[1].temp_c", "above the hot trip"),
    (_trips(("passive", 85, -1), ("hot", 95, 2)), "zones.package.trips[0].hyst_c", "[0.0, 50.0]"),
    (_trips(("passive", 85, 2)), "zones.package.trips", "a hot or critical trip"),
    (_trips(("hot", 95, 2), ("hot", 99, 2)), "zones.package.trips[1].type", "at most one"),
    (_trips(("boiling", 95, 2)), "zones.package.trips[0].type", "one of 'active'"),
    ({"budget": {"reserve_frac": 0.5, "critical_reserve_frac": 0.6}}, "budget.critical_reserve_frac", "leave some"),
    ({"budget": {"base_frac": [0.5, 0.3, 0.1, 0.0, 0.0], "max_frac": 0.4}}, "budget.base_frac", "at or below"),
    ({"budget": {"base_frac": [0.5, 0.3]}}, "budget.base_frac", "5 values"),
    ({"budget": {"emergency_cut": [0.1, 0.2, 0.5, 0.5, 0.5]}}, "budget.emergency_cut[0]", "never cut"),
    ({"budget": {"reserve_frac": 0.9}}, "budget.reserve_frac", "[0.0, 0.5]"),
    ({"watchdog": {"controller_timeout_s": 0.5}}, "watchdog.controller_timeout_s", "within one period"),
    ({"zones": {}}, "zones", "at least one thermal zone"),
    ({"predictive": {"horizon": 3}}, "predictive.horizon", "allowed keys here: horizon_s"),
    ({"zones": {"gpu0": {"trips": [{"type": "hot", "temp_c": 90}]}}}, "zones.gpu0", "a known zone: package"),
    ({"watchdog": {"fallback": "ondemandd"}}, "watchdog.fallback", "'hold' or a registered controller"),
])
def test_invalid_configs_fail_at_load_with_key_and_fix(overrides: dict[str, object], key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_shield_config(overrides)
    assert info.value.key_path == key
    assert fix in str(info.value)


def test_invalid_yaml_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"kind": "shield", **_trips(("passive", 85, 2), ("hot", 80, 2))}))
    with pytest.raises(ConfigError, match="bad.yaml: zones.package.trips"):
        load_shield_config(path)


def test_a_zone_the_target_lacks_fails_when_bound_to_it() -> None:
    cfg = make_shield_config({"zones": {"dimm": _trips(("hot", 90, 2))["zones"]["package"]}})  # type: ignore[index]
    with pytest.raises(ConfigError, match="zones.dimm = 'dimm'.*one of package"):
        cfg.check_zones(("package",), "powerrl/NodeDVFS-v0")


def test_floor_pstate_must_exist_on_the_target() -> None:
    with pytest.raises(ConfigError, match="floor_pstate = 12"):
        make_shield_config({"floor_pstate": 12}).check_pstates(11, "epyc7502")


def test_docs_explain_every_event_reason() -> None:
    from powerrl.shield.events import ALL_REASONS

    text = (ROOT / "docs" / "shield.md").read_text()
    missing = [r for r in ALL_REASONS if f"`{r}`" not in text]
    assert not missing, f"docs/shield.md's event table lacks {missing}"
