"""HardwareNode over a fake tree: /proc/stat parsing, readings, the NodeDVFS observation, actuation."""

from __future__ import annotations

import os
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import powerrl.envs  # noqa: F401 - registers powerrl/NodeDVFS-v0
from powerrl.envs.hw_node import HardwareNode, hardware_target, node_shield, parse_proc_stat_cpus, unit_model
from powerrl.envs.node_dvfs import DOMAIN_FIELDS
from powerrl.errors import ConfigError
from powerrl.hw.errors import HwError
from powerrl.hw.fake import FakeKernel, make_fake_sysfs
from powerrl.hw.host import HostLayout, bind_host, host_config
from powerrl.hw.safety import JOURNAL_REL, SafeWriter
from powerrl.hw.sysfs import SysfsRoot
from powerrl.shield.config import resolve_shield_config

K = len(DOMAIN_FIELDS)
F = {name: j for j, (name, *_r) in enumerate(DOMAIN_FIELDS)}
CPUFREQ = "sys/devices/system/cpu/cpufreq"
POWERCAP = "sys/class/powercap"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    d = tmp_path / "node"
    make_fake_sysfs(d, cpus=8, sockets=2, energy_range_uj=20_000_000)  # a 20 J counter wraps every few steps
    return d


@pytest.fixture
def layout(tree: Path) -> HostLayout:
    return bind_host(host_config({}), SysfsRoot(tree))


@pytest.fixture
def kernel(tree: Path) -> FakeKernel:
    return FakeKernel(tree, load=0.6)


def _raw(tree: Path, rel: str) -> str:
    return (tree / rel).read_text(encoding="ascii").strip()


def _max_freqs(tree: Path) -> list[int]:
    return [int(_raw(tree, f"{CPUFREQ}/policy{c}/scaling_max_freq")) for c in range(8)]


def _limits(tree: Path) -> list[int]:
    return [int(_raw(tree, f"{POWERCAP}/intel-rapl:{z}/constraint_0_power_limit_uw")) for z in range(2)]


# -- /proc/stat -------------------------------------------------------------------------------------
def test_parse_real_proc_stat() -> None:
    text = Path("/proc/stat").read_text(encoding="ascii")
    ids = [int(line.split()[0][3:]) for line in text.splitlines() if line.startswith("cpu") and line[3].isdigit()]
    n = max(ids) + 2  # one CPU more than the kernel lists: it stays unknown
    busy, total, running = parse_proc_stat_cpus(text, n)
    assert busy.dtype == np.int64 and busy.shape == total.shape == (n,)
    assert (busy[ids] >= 0).all() and (total[ids] >= busy[ids]).all() and (total[ids] > 0).all()
    assert busy[n - 1] == -1 and total[n - 1] == -1
    assert running >= 1  # this process is running


def test_parse_crafted_proc_stat() -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice (guest time is in user already)
    text = ("cpu  100 100 100 100 100 100 100 100 0 0\n"
            "cpu0 1 2 3 40 5 6 7 8 90 91\n"
            "cpu2 10 0 10 100 20 1 1 1 0 0\n"
            "cpu9 1 1 1 1 1 1 1 1 0 0\n"
            "intr 123 4 5\nctxt 99\nprocs_running 7\nprocs_blocked 2\n")
    busy, total, running = parse_proc_stat_cpus(text, 4)
    assert busy.tolist() == [1 + 2 + 3 + 6 + 7 + 8, -1, 10 + 10 + 1 + 1 + 1, -1]
    assert total.tolist() == [27 + 40 + 5, -1, 23 + 100 + 20, -1]
    assert running == 7


def test_parse_short_lines_pad_missing_columns() -> None:
    # An old kernel's five columns (no irq/softirq/steal) still give busy and total.
    busy, total, _ = parse_proc_stat_cpus("cpu0 1 2 3 40 5\ncpu1 2 2 2 2 2\n", 2)
    assert busy.tolist() == [6, 6] and total.tolist() == [51, 10]


@pytest.mark.parametrize("text", [
    "cpu0 1 2 3 4\ncpu1 1 2 3 4\nprocs_running 3\n",  # four columns: not the format
    "cpu0 1 2 x 4 5 6 7 8\ncpu1 1 2 3 4 5 6 7 8\nprocs_running 3\n",  # garbage
    "cpu0 1 2 3 4 5 6 7 8 9\ncpu1 1 2 3 4 5 6 7 8\nprocs_running 3\n",  # ragged columns
])
def test_parse_bad_proc_stat_gives_unknown_cpus(text: str) -> None:
    busy, total, running = parse_proc_stat_cpus(text, 2)
    assert busy.tolist() == [-1, -1] and total.tolist() == [-1, -1]
    assert running == 3


def test_parse_ragged_rows_whose_total_divides_evenly_are_unknown() -> None:
    """Regression: ragged rows were once reshaped into a table whenever the total divided evenly."""
    # 10 + 8 = 18 numbers reshape into 2 x 9: cpu1 would get cpu0's last column as its 'user'.
    text = "cpu0 1 2 3 4 5 6 7 8 9 10\ncpu1 1 2 3 4 5 6 7 8\nprocs_running 3\n"
    busy, total, _ = parse_proc_stat_cpus(text, 2)
    assert busy.tolist() == [-1, -1] and total.tolist() == [-1, -1]


@pytest.mark.parametrize("text", ["", "garbage\n", "procs_running\n", "procs_running abc\n", "cpu0\n"])
def test_parse_degenerate_texts(text: str) -> None:
    busy, total, running = parse_proc_stat_cpus(text, 3)
    assert busy.tolist() == [-1, -1, -1] and total.tolist() == [-1, -1, -1] and running == 0


# -- sampling ---------------------------------------------------------------------------------------
def test_first_sample_has_no_rates_then_the_next_does(layout: HostLayout, kernel: FakeKernel) -> None:
    node = HardwareNode(layout, None, fixed_dt_s=0.1)
    try:
        r0 = node.sample()
        assert np.isnan(r0.util).all() and np.isnan(r0.power_w).all()
        assert np.isfinite(r0.temp_c).all() and np.isfinite(r0.freq_mhz).all()
        assert r0.errors == {}
        for _ in range(6):  # across energy counter wraps (20 J range, ~7 J per package per step)
            kernel.step(0.1)
            r = node.sample()
            assert ((r.util >= 0) & (r.util <= 1)).all()
            assert ((r.power_w > 30) & (r.power_w < 300)).all(), r.power_w
            assert ((r.temp_c > 20) & (r.temp_c < 110)).all()
            assert ((r.freq_mhz >= 1000) & (r.freq_mhz <= 2401)).all()
            assert r.procs_running == 1 and r.errors == {}
        assert r.energy_j > r0.energy_j
    finally:
        node.close()


def test_fixed_dt_power_is_energy_delta_over_fixed_dt(tree: Path, layout: HostLayout, kernel: FakeKernel) -> None:
    node = HardwareNode(layout, None, fixed_dt_s=0.25)
    try:
        e0 = [int(_raw(tree, f"{POWERCAP}/intel-rapl:{z}/energy_uj")) for z in range(2)]
        node.sample()
        kernel.step(0.1)
        time.sleep(0.03)  # the measured interval is neither 0.1 nor 0.25 s
        e1 = [int(_raw(tree, f"{POWERCAP}/intel-rapl:{z}/energy_uj")) for z in range(2)]
        r = node.sample()
        want = [(b - a) / 1e6 / 0.25 for a, b in zip(e0, e1, strict=True)]
        assert r.power_w.tolist() == pytest.approx(want, rel=1e-6)
    finally:
        node.close()


def test_observation_matches_nodedvfs_space_and_stays_in_bounds(tree: Path, layout: HostLayout,
                                                                 kernel: FakeKernel) -> None:
    env = gym.make("powerrl/NodeDVFS-v0")
    space = env.observation_space
    env.close()
    node = HardwareNode(layout, None, fixed_dt_s=0.1)
    try:
        assert node.observation_space.shape == space.shape == (2 * K + 2,)
        assert node.observation_space.dtype == space.dtype == np.float32
        assert np.array_equal(node.observation_space.low, space.low)
        assert np.array_equal(node.observation_space.high, space.high)
        assert node.action_space.nvec.tolist() == [11, 11]
        first = node.observation(node.sample())
        assert first.shape == space.shape and first.dtype == np.float32
        assert np.isnan(first[[F["util"], K + F["util"], F["power_w"], K + F["power_w"]]]).all()
        for load in (0.0, 0.3, 1.0):
            kernel.load[:] = load
            kernel.step(0.1)
            obs = node.observation(node.sample())
            assert obs.dtype == np.float32 and np.isfinite(obs).all()
            assert space.contains(obs), obs
            per = obs[:2 * K].reshape(2, K)
            assert per[:, F["mem_bound"]].tolist() == pytest.approx([0.4, 0.4])
            assert np.hypot(obs[-2], obs[-1]) == pytest.approx(1.0, abs=1e-6)
    finally:
        node.close()


def test_latency_file_sets_the_slack(tree: Path, kernel: FakeKernel) -> None:
    (tree / "app").mkdir()
    (tree / "app" / "p99").write_text("25\n", encoding="ascii")
    layout = bind_host(host_config({"latency_file": "app/p99", "sla_ms": 100.0}), SysfsRoot(tree))
    node = HardwareNode(layout, None, fixed_dt_s=0.1)
    try:
        node.sample()
        kernel.step(0.1)
        r = node.sample()
        assert r.latency_ms == 25.0
        obs = node.observation(r)
        assert obs[[F["latency_slack"], K + F["latency_slack"]]].tolist() == pytest.approx([0.75, 0.75])
        (tree / "app" / "p99").write_text("oops\n", encoding="ascii")
        assert np.isnan(node.sample().latency_ms)
    finally:
        node.close()


def test_pstate_feature_follows_the_running_frequency_before_any_write(layout: HostLayout,
                                                                        kernel: FakeKernel) -> None:
    node = HardwareNode(layout, None, fixed_dt_s=0.1)
    try:
        node.sample()
        for _ in range(3):
            kernel.step(0.1)
        r = node.sample()
        want = layout.pstate_of_mhz(r.freq_mhz) / 10.0
        assert (want > 0).all()  # the schedutil-like fake governor left the floor
        obs = node.observation(r)
        assert obs[[F["pstate"], K + F["pstate"]]].tolist() == pytest.approx(want.tolist())
    finally:
        node.close()


def test_missing_temperature_reads_nan_and_the_shield_floors_that_domain(tree: Path, layout: HostLayout) -> None:
    os.unlink(tree / "sys/class/thermal/thermal_zone1/temp")  # domain 0's package sensor
    node = HardwareNode(layout, None)
    try:
        r = node.sample()
        assert np.isnan(r.temp_c[0]) and np.isfinite(r.temp_c[1])
        assert r.errors.get("domain0.temp_c") == 1
        obs = node.observation(r)
        assert np.isnan(obs[F["temp_die_c"]]) and np.isfinite(obs[K + F["temp_die_c"]])
        tel = node.telemetry(r)
        assert tel.inlet_c.tolist() == [24.0, 24.0]
        assert np.isfinite(tel.unit_power_w).all()  # unknown power reads as 0 W for the shield
        cfg = resolve_shield_config("default")
        decision = node_shield(layout, cfg).filter(tel, np.array([10, 10]))
        assert decision.pstate.tolist() == [cfg.floor_pstate, 10]
        assert decision.events.get("sensor") == 1 and "hot" in decision.events
    finally:
        node.close()


# -- actuation --------------------------------------------------------------------------------------
def test_apply_pstates_writes_each_domains_table_frequency_and_journals(tree: Path, layout: HostLayout) -> None:
    root = SysfsRoot(tree)
    writer = SafeWriter(root, install_handlers=False)
    node = HardwareNode(layout, writer)
    before = _max_freqs(tree)
    try:
        node.apply_pstates(np.array([2, 7]))
        t = layout.pstates_mhz
        assert _max_freqs(tree) == [round(t[2] * 1000)] * 4 + [round(t[7] * 1000)] * 4
        assert node.pstate.tolist() == [2, 7]
        assert node.freqs_for(np.array([0, 10])).tolist() == [1000.0] * 4 + [2401.0] * 4
        saved = writer.saved
        for c in range(8):
            assert saved[f"{CPUFREQ}/policy{c}/scaling_max_freq"].strip() == "2401000"
        assert root.exists(JOURNAL_REL)
        node.apply_pstates(np.array([10, 0]))
        assert _max_freqs(tree) == [2401000] * 4 + [1000000] * 4
    finally:
        node.close()
        assert writer.close() == []
    assert _max_freqs(tree) == before
    assert not root.exists(JOURNAL_REL)


def test_apply_caps_writes_whole_watts_never_above_the_original(tree: Path, layout: HostLayout) -> None:
    root = SysfsRoot(tree)
    writer = SafeWriter(root, install_handlers=False)
    node = HardwareNode(layout, writer)
    original = _limits(tree)
    assert original == [230_000_000, 230_000_000]
    try:
        assert node.can_cap
        assert node.original_limits_w().tolist() == [230.0, 230.0]
        node.apply_caps(np.array([100.7, np.inf]))
        assert _limits(tree) == [100_000_000, 230_000_000]
        assert node.cap_w.tolist() == [100.7, np.inf]
        node.apply_caps(np.array([500.0, 50.2]))  # above the original limit: the original stays
        assert _limits(tree) == [230_000_000, 50_000_000]
        assert node.original_limits_w().tolist() == [230.0, 230.0]  # from the journal, not the current value
        node.apply_caps(np.array([0.0, 0.4]))  # an offline domain: the smallest limit, never 0
        assert _limits(tree) == [1_000_000, 1_000_000]
        node.apply_caps(np.array([np.inf, np.inf]))
        assert _limits(tree) == original
        node.apply_caps(np.array([80.0, 90.0]))
    finally:
        node.close()
        assert writer.close() == []
    assert _limits(tree) == original


def test_a_read_only_node_refuses_to_write(tree: Path, layout: HostLayout) -> None:
    node = HardwareNode(layout, None)
    before = (_max_freqs(tree), _limits(tree))
    try:
        with pytest.raises(HwError, match="read-only"):
            node.apply_pstates(np.array([0, 0]))
        with pytest.raises(HwError, match="read-only"):
            node.apply_caps(np.array([50.0, 50.0]))
        with pytest.raises(HwError, match="read-only"):
            node.prepare()
    finally:
        node.close()
    assert (_max_freqs(tree), _limits(tree)) == before
    assert not SysfsRoot(tree).exists(JOURNAL_REL)


def test_energy_only_rapl_cannot_cap(tmp_path: Path) -> None:
    root = make_fake_sysfs(tmp_path / "amd", cpus=4, sockets=2, driver="amd-pstate")
    node = HardwareNode(bind_host(host_config({}), root), None)
    try:
        assert not node.can_cap
        assert node.apply_caps(np.array([10.0, 10.0])) is None
    finally:
        node.close()


def test_unit_model_and_hardware_target_describe_the_host(layout: HostLayout) -> None:
    model = unit_model(layout)
    assert model.full_power_w.shape == (2, 11)
    assert (np.diff(model.full_power_w, axis=1) >= 0).all()  # P-states may share a table entry
    assert (model.full_power_w[:, -1] > model.full_power_w[:, 0]).all()
    assert np.allclose(model.full_power_w[0], model.full_power_w[1])
    cfg = resolve_shield_config("default")
    target = hardware_target(layout, 0.1, cfg)
    assert target.env_id == "powerrl/NodeDVFS-v0" and target.n_units == 2 and target.dt_s == 0.1
    assert target.freqs_mhz.tolist() == layout.pstates_mhz.tolist()
    assert target.unit_fields == tuple(f[0] for f in DOMAIN_FIELDS)
    assert (target.busy_w > target.idle_w).all()
    with pytest.raises(ValueError):
        target.freqs_mhz[0] = 1.0
    assert target.extras["shield"] is cfg and target.extras["sla_ms"] == 100.0


def test_a_package_zone_shared_by_domains_is_split_equally(tree: Path, kernel: FakeKernel) -> None:
    layout = bind_host(host_config({"n_domains": 4}), SysfsRoot(tree))
    node = HardwareNode(layout, None, fixed_dt_s=0.1)
    try:
        assert [z.id for z in node.zones] == ["intel-rapl:0", "intel-rapl:1"]
        e0 = [int(_raw(tree, f"{POWERCAP}/intel-rapl:{z}/energy_uj")) for z in range(2)]
        node.sample()
        kernel.step(0.1)
        e1 = [int(_raw(tree, f"{POWERCAP}/intel-rapl:{z}/energy_uj")) for z in range(2)]
        r = node.sample()
        zone_w = [(b - a) / 1e6 / 0.1 for a, b in zip(e0, e1, strict=True)]
        assert r.power_w.tolist() == pytest.approx([zone_w[0] / 2] * 2 + [zone_w[1] / 2] * 2, rel=1e-6)
        # A cap on domains 0 and 1 is their package's limit: the sum.
        assert node.zone_caps_w(np.array([40.0, 50.0, 60.0, np.inf])).tolist() == [90.0, np.inf]
    finally:
        node.close()


def test_a_domain_spanning_two_packages_sees_both(tree: Path, kernel: FakeKernel) -> None:
    try:
        layout = bind_host(host_config({"n_domains": 1}), SysfsRoot(tree))
    except ConfigError as exc:  # refusing such a layout is a correct answer too
        assert exc.key_path == "n_domains"
        return
    node = HardwareNode(layout, None, fixed_dt_s=0.1)
    try:
        e0 = [int(_raw(tree, f"{POWERCAP}/intel-rapl:{z}/energy_uj")) for z in range(2)]
        node.sample()
        kernel.step(0.1)
        e1 = [int(_raw(tree, f"{POWERCAP}/intel-rapl:{z}/energy_uj")) for z in range(2)]
        for rel in ("sys/class/thermal/thermal_zone2/temp", "sys/class/hwmon/hwmon1/temp1_input"):
            (tree / rel).write_text("99000\n", encoding="ascii")  # package 1 is past the hot trip
        r = node.sample()
        assert r.power_w[0] == pytest.approx(sum((b - a) / 1e6 / 0.1 for a, b in zip(e0, e1, strict=True)))
        cfg = resolve_shield_config("default")
        assert node_shield(layout, cfg).filter(node.telemetry(r), np.array([10])).pstate.tolist() == [cfg.floor_pstate]
    finally:
        node.close()


@pytest.mark.parametrize("text", [
    "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 2 3 4 5 6 7 8 9 10\ncpu3 9 9 9 9 9 9 9 9 9 9\nprocs_running 12\n",
    "cpu0 1 2 3 40 5\ncpu1 2 2 2 2 2\n", "cpu0 1 2 3 4\n", "cpu0 1 2 x 4 5\nprocs_running 3\n",
    "cpu0 1 2 3 4 5 6 7 8 9\ncpu1 1 2 3 4 5 6 7 8\nprocs_running 3\n", "cpu12345678 1 2 3 4 5\n",
    "procs_running 4 5\n", "procs_running\n", "", "cpu", "cpu0 1 2 3 4 5", "cpu0  1  2  3  4  5 \n",
])
def test_native_parser_matches_its_python_twin(text: str) -> None:
    from powerrl.envs.hw_node import parse_proc_stat_cpus_py

    got, want = parse_proc_stat_cpus(text, 5), parse_proc_stat_cpus_py(text, 5)
    assert [g.tolist() if isinstance(g, np.ndarray) else g for g in got] == \
        [w.tolist() if isinstance(w, np.ndarray) else w for w in want]


def test_native_parser_matches_its_twin_on_real_proc_stat() -> None:
    from powerrl.envs.hw_node import parse_proc_stat_cpus_py

    text = Path("/proc/stat").read_text(encoding="ascii")
    got, want = parse_proc_stat_cpus(text, 8), parse_proc_stat_cpus_py(text, 8)
    assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()


@pytest.mark.parametrize("text", [
    "cpu18446744073709551615 1 2 3 4 5\n", "cpu0 99999999999999999999 2 3 4 5\n", "cpu0 1 2 3 4 5\ncpu0x 1 2 3 4 5\n",
    "cpu0\t1 2 3 4 5\n", "cpu0 1 2 3 4 ²\n", "cpu1 1 2 3 4 5\ncpu0 5 4 3 2 1\nprocs_running 9\n",
])
def test_crafted_proc_stat_cannot_corrupt_the_native_parser(text: str) -> None:
    """Overlong ids and numbers are rejected as a foreign table, never written out of bounds."""
    from powerrl.envs.hw_node import parse_proc_stat_cpus_py

    got, want = parse_proc_stat_cpus(text, 4), parse_proc_stat_cpus_py(text, 4)
    assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist() and got[2] == want[2]


def test_a_proc_stat_larger_than_the_read_buffer_is_read_whole(layout: HostLayout, kernel: FakeKernel,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import powerrl.envs.hw_node as hw_node

    monkeypatch.setattr(hw_node, "PROC_STAT_BYTES", 64)  # far smaller than the 8-CPU text
    node = HardwareNode(layout, None, fixed_dt_s=0.1)
    try:
        node.sample()
        kernel.step(0.1)
        r = node.sample()
        assert np.isfinite(r.util).all() and "proc_stat" not in r.errors
        assert node._stat_bytes > 64
    finally:
        node.close()


def test_a_failing_gauge_holds_its_last_value_for_a_few_reads_counters_never(tree: Path, layout: HostLayout,
                                                                             kernel: FakeKernel) -> None:
    from powerrl.envs.hw_node import SENSOR_HOLD_READS

    node = HardwareNode(layout, None, fixed_dt_s=0.1)
    temp = tree / "sys/class/thermal/thermal_zone1/temp"  # domain 0's package sensor (kept open by the sampler)
    energy = tree / f"{POWERCAP}/intel-rapl:1/energy_uj"  # domain 1's package energy
    try:
        node.sample()
        kernel.step(0.1)
        good = node.sample()
        temp.write_text("abc\n", encoding="ascii")
        for _ in range(SENSOR_HOLD_READS):
            r = node.sample()
            assert r.temp_c[0] == good.temp_c[0] and r.errors.get("domain0.temp_c") == 1
        r = node.sample()
        assert np.isnan(r.temp_c[0])  # held no longer: unknown, and the shield reads it as hot
        kernel.step(0.1)  # the fake kernel rewrites the file: readable again, the count starts over
        node.sample()
        temp.write_text("abc\n", encoding="ascii")
        assert node.sample().temp_c[0] == pytest.approx(node._last_good[node._temp_index[0]])
        energy.write_text("zzz\n", encoding="ascii")
        assert np.isnan(node.sample().power_w[1])  # a counter is never held: no made-up 0 W period
    finally:
        node.close()
