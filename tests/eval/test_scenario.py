import filecmp
from pathlib import Path

import pytest

from powerrl.errors import ConfigError
from powerrl.eval.scenario import SCENARIO_SETS, SHIPPED_DIR, load_scenario, resolve_scenarios, shipped_scenarios

REPO = Path(__file__).resolve().parents[2]


def test_every_shipped_scenario_loads_and_sets_name_shipped_files():
    names = shipped_scenarios()
    for members in SCENARIO_SETS.values():
        assert set(members) <= set(names)
    for n in names:
        sc = load_scenario(n)
        assert sc.name == n and sc.steps_per_episode >= 1
        for d in sc.days:
            assert d >= 22, f"{n} evaluates on training day {d}"


def test_configs_copies_match_the_packaged_scenarios():
    for p in SHIPPED_DIR.glob("*.yaml"):
        assert filecmp.cmp(p, REPO / "configs" / "scenarios" / p.name, shallow=False), p.name


def test_sets_expand_and_deduplicate():
    scs = resolve_scenarios(["default", "nodedvfs-day22"])
    assert [s.name for s in scs] == list(SCENARIO_SETS["default"])


def test_window_and_start(scenario_file):
    sc = load_scenario(scenario_file("env: powerrl/NodeDVFS-v0\ndays: [22, 23]\nstart_h: 6\nduration_h: 0.5\n"))
    assert sc.days == (22, 23)
    assert sc.steps_per_episode == 18000
    assert sc.start_s(23) == 22 * 86400 + 6 * 3600


@pytest.mark.parametrize("body, key", [
    ("env: powerrl/NodeDVFS-v0\nbogus: 1\n", "bogus"),
    ("env: powerrl/Nope-v0\n", "env"),
    ("env: powerrl/NodeDVFS-v0\nenv_config: {n_domains: 0}\n", "env_config.n_domains"),
    ("env: powerrl/NodeDVFS-v0\nenv_config: {trace: {}}\n", "env_config.trace"),
    ("env: powerrl/NodeDVFS-v0\ndays: [40]\n", "days[0]"),
    ("env: powerrl/NodeDVFS-v0\ndays: [28]\nstart_h: 12\nduration_h: 13\n", "days[0]"),
    ("env: powerrl/NodeDVFS-v0\nduration_h: 0\n", "duration_h"),
    ("env: powerrl/NodeDVFS-v0\nstart_h: 25\n", "start_h"),
    ("env: powerrl/NodeDVFS-v0\nevents: [{kind: meteor, start_s: 0, duration_s: 1}]\n", "events[0].kind"),
    ("env: powerrl/NodeDVFS-v0\nevents: [{kind: grid_cut, start_s: 0, duration_s: 10}]\n", "events"),
    ("env: powerrl/NodeDVFS-v0\ntrace: {path: /no/such.csv, column: cpu}\n", ""),
    ("env: powerrl/Datacenter-v0\nweather: {timezone: Mars/Olympus}\n", "weather.timezone"),
    ("env: powerrl/Datacenter-v0\ncarbon: {timezone: Nowhere}\n", "carbon.timezone"),
    ("env: powerrl/NodeDVFS-v0\nshield: nope\n", "shield"),
])
def test_bad_scenarios_fail_naming_the_key(scenario_file, body, key):
    path = scenario_file(body)
    with pytest.raises(Exception) as info:
        load_scenario(path)
    err = info.value
    assert isinstance(err, (ConfigError,)) or "no/such.csv" in str(err), err
    assert key in str(err)
    if isinstance(err, ConfigError):
        assert err.source in (str(path), None) or str(path) in str(err)


def test_unknown_shipped_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="nodedvfs-day22"):
        load_scenario("no-such-scenario")


def test_carbon_file_not_covering_the_trace_fails_before_work(scenario_file, tmp_path):
    csv = tmp_path / "ci.csv"
    csv.write_text("Datetime (UTC),ci\n2020-01-01 00:00:00,100\n2020-01-01 01:00:00,120\n", encoding="utf-8")
    path = scenario_file(f"env: powerrl/Datacenter-v0\ncarbon: {{path: {csv}, column: ci}}\n")
    with pytest.raises(ConfigError, match="carbon"):
        load_scenario(path)


def test_the_every_key_example_in_the_docs_is_valid(tmp_path):
    text = (REPO / "docs" / "scenarios.md").read_text(encoding="utf-8")
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.yaml"
    path.write_text(block, encoding="utf-8")
    sc = load_scenario(path)
    assert sc.env_id == "powerrl/ClusterBudget-v0" and sc.env_config.n_nodes == 32
    assert [e.kind for e in sc.env_config.events] == ["heat_wave", "cooling_failure", "grid_cut", "demand_surge"]
    assert sc.days == (22, 23) and sc.duration_h == 2.0
    assert sc.weather is not None and sc.weather.timezone == "Etc/GMT+7"
