"""Host files (kind: host) bound to fake nodes: domains, sensors, the P-state table and every config error."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from powerrl.cli import main
from powerrl.errors import ConfigError
from powerrl.hw.fake import make_fake_sysfs
from powerrl.hw.host import HostConfig, bind_host, host_config, load_host_config
from powerrl.hw.sysfs import SysfsRoot
from powerrl.runtime.config import load_host_file

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "hosts" / "example.yaml"
THERMAL = "sys/class/thermal"


def _bind(root: SysfsRoot, data: dict[str, Any] | None = None):
    return bind_host(host_config(data or {}), root)


def test_defaults_bind_one_domain_per_package(fake: SysfsRoot) -> None:
    layout = _bind(fake)
    assert len(layout.domains) == 2
    assert [d.index for d in layout.domains] == [0, 1]
    assert [d.cpus for d in layout.domains] == [(0, 1, 2, 3), (4, 5, 6, 7)]
    assert [[p.id for p in d.policies] for d in layout.domains] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert layout.policy_domain.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [p.id for p in layout.policies] == list(range(8))
    # RAPL: the package zones, in package order.
    assert [d.rapl.id for d in layout.domains] == ["intel-rapl:0", "intel-rapl:1"]
    assert [d.rapl.name for d in layout.domains] == ["package-0", "package-1"]
    # Temperatures: the x86_pkg_temp zones (thermal_zone0 is acpitz and must not be chosen).
    assert [d.temp_label for d in layout.domains] == ["thermal_zone1", "thermal_zone2"]
    for d in layout.domains:
        assert d.temp_rel == f"{THERMAL}/{d.temp_label}/temp"
        assert fake.read_str(f"{THERMAL}/{d.temp_label}/type") == "x86_pkg_temp"
    assert layout.driver == "acpi-cpufreq"
    assert not [n for n in layout.notes if n.startswith(("domains:", "power:", "temperature:"))]


def test_explicit_domains_take_the_named_cpus_and_sensors(fake: SysfsRoot) -> None:
    layout = _bind(fake, {"domains": [
        {"cpus": "0-1", "rapl_zone": "intel-rapl:1", "temp": "thermal_zone2"},
        {"cpus": "2-3", "rapl_zone": "intel-rapl:0", "temp": "hwmon0/temp1_input"},
    ]})
    assert [d.cpus for d in layout.domains] == [(0, 1), (2, 3)]
    assert layout.policy_domain.tolist() == [0, 0, 1, 1]
    assert [d.rapl.id for d in layout.domains] == ["intel-rapl:1", "intel-rapl:0"]
    assert layout.domains[0].temp_rel == f"{THERMAL}/thermal_zone2/temp"
    assert layout.domains[1].temp_rel == "sys/class/hwmon/hwmon0/temp1_input"
    assert [d.temp_label for d in layout.domains] == ["thermal_zone2", "hwmon0/temp1_input"]
    # Explicit domains win over n_domains.
    assert HostConfig(n_domains=7, domains=layout.config.domains).domain_count == 2


def test_explicit_domains_without_sensors_get_them_by_package_order(fake: SysfsRoot) -> None:
    layout = _bind(fake, {"domains": [{"cpus": "0-3"}, {"cpus": "4-7"}]})
    assert [d.rapl.id for d in layout.domains] == ["intel-rapl:0", "intel-rapl:1"]
    assert [d.temp_label for d in layout.domains] == ["thermal_zone1", "thermal_zone2"]


@pytest.mark.parametrize(("data", "key", "says"), [
    ({"n_domains": 9}, "n_domains", "at most 8"),
    ({"domains": [{"cpus": "0-3", "rapl_zone": "intel-rapl:9"}]}, "domains[0].rapl_zone", "intel-rapl:0"),
    ({"domains": [{"cpus": "0-3"}, {"cpus": "4-7", "temp": "cpu_temp"}]}, "domains[1].temp", "thermal_zone1"),
    ({"domains": [{"cpus": "0-3", "temp": "thermal_zone9"}]}, "domains[0].temp", "thermal_zone9"),
    ({"domains": [{"cpus": "0-3", "temp": "hwmon7/temp1_input"}]}, "domains[0].temp", "hwmon7"),
    ({"domains": [{"cpus": "40-47"}]}, "domains[0].cpus", "policies cover CPUs 0-7"),
    ({"domains": [{"cpus": "abc"}]}, "domains[0].cpus", "kernel CPU list"),
    ({"pstates_mhz": [1000.0, 1200.0]}, "pstates_mhz", "11 frequencies"),
    ({"n_pstates": 3, "pstates_mhz": [1000.0, 1400.0, 1200.0]}, "pstates_mhz", "ascending"),
    ({"n_pstates": 3, "pstates_mhz": [1000.0, 1000.0, 1200.0]}, "pstates_mhz", "ascending"),
    ({"n_pstates": 3, "pstates_mhz": [900.0, 1200.0, 1400.0]}, "pstates_mhz", "1000-2401 MHz"),
    ({"n_pstates": 3, "pstates_mhz": [1000.0, 1200.0, 2500.0]}, "pstates_mhz", "1000-2401 MHz"),
    ({"n_pstates": 1}, "n_pstates", ""),
    ({"actuate": "scaling_min_freq"}, "actuate", "scaling_max_freq"),
    ({"bogus": 1}, "bogus", "allowed keys"),
    ({"domains": [{"cpus": "0-3", "sensor": "x"}]}, "domains[0].sensor", "rapl_zone"),
])
def test_bad_host_configs_name_the_key(fake: SysfsRoot, data: dict[str, Any], key: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        _bind(fake, data)
    assert info.value.key_path == key
    assert says in str(info.value)


def test_a_root_without_cpufreq_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as info:
        bind_host(host_config({}), SysfsRoot(tmp_path / "empty"))
    assert info.value.key_path == "root"


def test_default_pstate_table_is_evenly_spaced_over_cpuinfo(tmp_path: Path) -> None:
    # intel_pstate (HWP) has no frequency table: any frequency in cpuinfo_min..max runs.
    root = make_fake_sysfs(tmp_path / "hwp", cpus=4, sockets=2, driver="intel_pstate")
    t = _bind(root).pstates_mhz
    assert len(t) == 11
    assert t[0] == pytest.approx(800.0) and t[-1] == pytest.approx(3500.0)
    assert np.allclose(np.diff(t), (3500.0 - 800.0) / 10, atol=1e-3)
    five = _bind(root, {"n_pstates": 5}).pstates_mhz
    assert five.tolist() == pytest.approx([800.0, 1475.0, 2150.0, 2825.0, 3500.0], abs=1e-3)


def test_default_pstate_table_uses_the_drivers_table_entries(fake: SysfsRoot) -> None:
    # acpi-cpufreq runs only its table: 1000..2400 MHz by 200, and turbo listed as base + 1 MHz.
    offered = sorted(int(f) / 1000 for f in fake.read_words(
        "sys/devices/system/cpu/cpufreq/policy0/scaling_available_frequencies"))
    assert offered == [1000.0, 1200.0, 1400.0, 1600.0, 1800.0, 2000.0, 2200.0, 2400.0, 2401.0]
    layout = _bind(fake)
    t = layout.pstates_mhz
    assert len(t) == 11 and t[0] == 1000.0 and t[-1] == 2401.0
    assert set(t.tolist()) <= set(offered) and (np.diff(t) >= 0).all()
    assert any(n.startswith("pstates:") for n in layout.notes)  # 11 indices over 9 entries share some
    every = _bind(fake, {"n_pstates": 9})
    assert every.pstates_mhz.tolist() == offered and not any(n.startswith("pstates:") for n in every.notes)
    assert _bind(fake, {"n_pstates": 5}).pstates_mhz.tolist() == [1000.0, 1400.0, 1800.0, 2200.0, 2401.0]


def test_explicit_pstate_table_is_used_as_given(fake: SysfsRoot) -> None:
    table = [1000.0, 1200.0, 1800.0, 2401.0]
    layout = _bind(fake, {"n_pstates": 4, "pstates_mhz": table})
    assert layout.pstates_mhz.tolist() == table


def test_pstate_of_mhz_picks_the_nearest_entry(fake: SysfsRoot) -> None:
    layout = _bind(fake, {"n_pstates": 4, "pstates_mhz": [1000.0, 1200.0, 1800.0, 2400.0]})
    mhz = np.array([0.0, 1000.0, 1099.0, 1101.0, 1200.0, 1400.0, 1600.0, 2399.0, 5000.0])
    assert layout.pstate_of_mhz(mhz).tolist() == [0, 0, 0, 1, 1, 1, 2, 3, 3]
    assert layout.pstate_of_mhz(np.array([1100.0])).tolist() == [0]  # a tie goes to the lower entry
    out = layout.pstate_of_mhz(np.array([[1000.0, 2400.0], [1800.0, 1200.0]]))
    assert out.dtype == np.int64 and out.tolist() == [[0, 3], [2, 1]]


@pytest.mark.parametrize(("driver", "driver_name", "lo", "hi", "temps", "limits"), [
    ("intel_pstate", "intel_pstate", 800.0, 3500.0, ["thermal_zone1", "thermal_zone2"], True),
    ("amd-pstate", "amd-pstate-epp", 400.0, 3400.0, ["hwmon0/temp1_input", "hwmon1/temp1_input"], False),
])
def test_other_drivers_bind(tmp_path: Path, driver: str, driver_name: str, lo: float, hi: float,
                            temps: list[str], limits: bool) -> None:
    root = make_fake_sysfs(tmp_path / driver, cpus=8, sockets=2, driver=driver)
    layout = _bind(root)
    assert layout.driver == driver_name
    assert [d.cpus for d in layout.domains] == [(0, 1, 2, 3), (4, 5, 6, 7)]
    assert layout.pstates_mhz[0] == pytest.approx(lo) and layout.pstates_mhz[-1] == pytest.approx(hi)
    assert [d.temp_label for d in layout.domains] == temps
    for d in layout.domains:
        assert root.exists(d.temp_rel)
    assert [d.rapl.name for d in layout.domains] == ["package-0", "package-1"]
    # Intel RAPL zones have limits; AMD's are energy-only.
    assert all(any(c.name == "long_term" for c in d.rapl.constraints) == limits for d in layout.domains)


def test_more_domains_than_packages_use_their_own_packages_sensors(fake: SysfsRoot) -> None:
    layout = _bind(fake, {"n_domains": 4})
    assert [d.cpus for d in layout.domains] == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert any("4 groups of consecutive CPUs" in n and "2 packages" in n for n in layout.notes)
    assert any(n.startswith("power: 2 RAPL package zone(s) for 4 domains") for n in layout.notes)
    # CPUs 4-7 sit on package 1 (topology/physical_package_id): its zone and its sensor, never package 0's.
    assert [d.rapl.id for d in layout.domains] == ["intel-rapl:0", "intel-rapl:0", "intel-rapl:1", "intel-rapl:1"]
    assert [d.temp_label for d in layout.domains] == ["thermal_zone1", "thermal_zone1",
                                                      "thermal_zone2", "thermal_zone2"]


def test_no_package_sensor_leaves_temperature_unbound_with_a_note(fake: SysfsRoot) -> None:
    for rel in (f"{THERMAL}/thermal_zone1", f"{THERMAL}/thermal_zone2", "sys/class/hwmon/hwmon0",
                "sys/class/hwmon/hwmon1"):
        shutil.rmtree(fake.path(rel))
    layout = _bind(fake)
    assert [(d.temp_rel, d.temp_label) for d in layout.domains] == [(None, "none"), (None, "none")]
    assert any("no package sensor" in n for n in layout.notes)


def test_host_config_skips_the_agent_section_and_load_host_file_reads_both() -> None:
    cfg = load_host_config(EXAMPLE)
    assert cfg.n_domains == 2 and cfg.n_pstates == 11 and cfg.pstates_mhz == ()
    hf = load_host_file(EXAMPLE)
    assert hf.host == cfg
    assert hf.agent.period_ms == 100 and hf.agent.controller_timeout_ms == 20 and hf.agent.hang_s == 2.0
    assert hf.agent.caps.lease_s == 5.0 and hf.agent.caps.decay_s == 30.0
    assert host_config({"n_domains": 1, "agent": {"anything": "goes here"}}).n_domains == 1


def test_config_check_accepts_the_example_and_rejects_a_broken_host_file(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(EXAMPLE)]) == 0
    assert "ok" in capsys.readouterr().out
    text = EXAMPLE.read_text(encoding="utf-8")
    cases = {
        "pstates.yaml": text.replace("n_pstates: 11", "n_pstates: 1"),
        "unknown.yaml": text.replace("mem_bound: 0.4", "mem_bound: 0.4\nmem_bonud: 0.3"),
        "agent.yaml": text.replace("period_ms: 100", "period_ms: 1"),
    }
    for name, body in cases.items():
        assert body != text
        (tmp_path / name).write_text(body, encoding="utf-8")
    assert main(["config", "check", *(str(tmp_path / n) for n in cases)]) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL") == 3
    assert "n_pstates" in out and "mem_bonud" in out and "agent.period_ms" in out


def test_an_explicit_domain_across_packages_is_refused(fake: SysfsRoot) -> None:
    """One package's heat and power would be invisible to the shield: refused even when listed by hand."""
    with pytest.raises(ConfigError, match=r"domains\[1\]\.cpus.*spans packages \[0, 1\]"):
        _bind(fake, {"domains": [{"cpus": "0-1"}, {"cpus": "2-3,6"}]})


def test_coretemp_sensors_are_mapped_by_their_package_label(fake: SysfsRoot) -> None:
    """Without x86_pkg_temp zones, hwmon directories in any order map to the package their label names."""
    import shutil

    root = Path(fake.root)
    for z in (1, 2):
        shutil.rmtree(root / f"sys/class/thermal/thermal_zone{z}")
    hw = root / "sys/class/hwmon"
    (hw / "hwmon0").rename(hw / "hwmon10")  # package 0's chip now sorts after package 1's as a string
    (hw / "hwmon1").rename(hw / "hwmon9")
    layout = _bind(fake)
    labels = [(hw / d.temp_rel.split("/", 3)[3]).parent.joinpath("temp1_label").read_text().strip()
              for d in layout.domains]
    assert labels == ["Package id 0", "Package id 1"]


def test_overlapping_explicit_domains_are_refused(fake: SysfsRoot) -> None:
    with pytest.raises(ConfigError, match=r"domains\[1\]\.cpus.*policy4 is already in domains\[0\]"):
        _bind(fake, {"domains": [{"cpus": "0-7"}, {"cpus": "4-7"}]})
