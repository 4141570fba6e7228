"""NodeAgent in-process over a fake tree stepped by an in-process FakeKernel: decisions, fallbacks, the shield,
caps, restores, status and metrics."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from powerrl.control import Controller, register
from powerrl.envs.hw_node import SENSOR_HOLD_READS
from powerrl.errors import PowerrlError
from powerrl.hw.fake import STATE_DIR, FakeKernel, make_fake_sysfs
from powerrl.hw.safety import JOURNAL_REL, SafeWriter, allowlisted_state
from powerrl.hw.sysfs import SysfsRoot
from powerrl.runtime.agent import PID_FILE, STATUS_FILE, NodeAgent, TickRecord
from powerrl.runtime.caps import write_cap_file
from powerrl.runtime.config import HostFile, load_host_file
from powerrl.runtime.metrics import AgentMetrics

REPO = Path(__file__).resolve().parents[2]
HOST = REPO / "configs" / "hosts" / "example.yaml"
POLICY = str(REPO / "powerrl" / "data" / "policies" / "nodedvfs-v0.onnx")
CPUFREQ = "sys/devices/system/cpu/cpufreq"
POWERCAP = "sys/class/powercap"
DT = 0.1
FLOOR_KHZ = 1_000_000
ORIGINAL_KHZ = 2_401_000
ORIGINAL_UW = 230_000_000


# -- controllers that misbehave (registered once, under names no other test uses) ------------------------
@register("test-agent-raises")
class _Raises(Controller):
    def act(self, observation: np.ndarray) -> Any:
        raise RuntimeError("policy crashed")


@register("test-agent-nan")
class _NaN(Controller):
    def act(self, observation: np.ndarray) -> Any:
        return np.array([np.nan, np.nan])


@register("test-agent-out-of-range")
class _OutOfRange(Controller):
    def act(self, observation: np.ndarray) -> Any:
        return np.array([99, -1])


@register("test-agent-slow")
class _Slow(Controller):
    def act(self, observation: np.ndarray) -> Any:
        time.sleep(0.06)  # past agent.controller_timeout_ms (20 ms)
        return np.array([5, 5])


@register("test-agent-fixed")
class _Fixed(Controller):
    """Always P-states 3 and 8: easy to find in the files."""

    def act(self, observation: np.ndarray) -> Any:
        return np.array([3, 8])


# -- fixtures and helpers -----------------------------------------------------------------------------
@pytest.fixture
def tree(tmp_path: Path) -> Path:
    d = tmp_path / "node"
    make_fake_sysfs(d, cpus=8, sockets=2, driver="acpi-cpufreq")
    return d


@pytest.fixture
def kernel(tree: Path) -> FakeKernel:
    return FakeKernel(tree, load=0.5)


@pytest.fixture
def host() -> HostFile:
    return load_host_file(HOST)


@pytest.fixture
def make_agent(tree: Path, host: HostFile) -> Iterator[Callable[..., NodeAgent]]:
    """Factory for agents on ``tree`` (closed at teardown unless the test closed them)."""
    made: list[NodeAgent] = []

    def make(controller: str = POLICY, *, apply: bool = False, hf: HostFile | None = None) -> NodeAgent:
        agent = NodeAgent(hf or host, controller, apply=apply, root=str(tree), log=io.StringIO(), metrics_port=0)
        agent.node.fixed_dt_s = DT  # the fake kernel runs faster than real time
        made.append(agent)
        return agent

    yield make
    for a in made:
        if not a._stop.is_set():
            a.close()


def _raw(tree: Path, rel: str) -> str:
    return (tree / rel).read_text(encoding="ascii").strip()


def max_freqs(tree: Path) -> list[int]:
    return [int(_raw(tree, f"{CPUFREQ}/policy{c}/scaling_max_freq")) for c in range(8)]


def limits(tree: Path) -> list[int]:
    return [int(_raw(tree, f"{POWERCAP}/intel-rapl:{z}/constraint_0_power_limit_uw")) for z in range(2)]


def writable(tree: Path) -> dict[str, str]:
    """Every allowlisted attribute of the tree (what a write could have changed)."""
    out = allowlisted_state(SysfsRoot(tree))
    assert len(out) > 40
    return out


def ticks(agent: NodeAgent, kernel: FakeKernel, n: int) -> list[TickRecord]:
    out = []
    for _ in range(n):
        out.append(agent.tick())
        kernel.step(DT)
    return out


def events(agent: NodeAgent, kind: str | None = None) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in agent.log.getvalue().splitlines()]  # type: ignore[attr-defined]
    return [e for e in lines if kind is None or e["event"] == kind]


def khz(agent: NodeAgent, pstate: int) -> int:
    return round(float(agent.layout.pstates_mhz[pstate]) * 1000)


# -- decisions ----------------------------------------------------------------------------------------
def test_dry_run_decides_and_writes_nothing(tree: Path, kernel: FakeKernel,
                                            make_agent: Callable[..., NodeAgent]) -> None:
    before = writable(tree)
    agent = make_agent(apply=False)
    assert agent.writer is None and agent.node.writer is None
    recs = ticks(agent, kernel, 4)
    assert recs[0].source == "fallback:stale_sensor"
    assert [r.source for r in recs[1:]] == ["policy"] * 3
    assert not any(r.written for r in recs)
    write_cap_file(agent.state, 100.0)
    assert agent.cap_tick() is not None
    assert events(agent, "cap_applied")[-1]["written"] is False
    agent.close()
    assert writable(tree) == before
    assert not (tree / JOURNAL_REL).exists()


def test_apply_writes_the_decided_pstates(tree: Path, kernel: FakeKernel,
                                          make_agent: Callable[..., NodeAgent]) -> None:
    agent = make_agent("test-agent-fixed", apply=True)
    recs = ticks(agent, kernel, 3)
    assert recs[-1].source == "policy" and recs[-1].proposed == [3, 8] and recs[-1].applied == [3, 8]
    assert recs[-1].written and recs[-1].errors == []
    assert max_freqs(tree) == [khz(agent, 3)] * 4 + [khz(agent, 8)] * 4
    assert (tree / JOURNAL_REL).exists()
    assert agent.writes == 3
    agent.close()
    assert max_freqs(tree) == [ORIGINAL_KHZ] * 8


def test_the_shipped_policy_decides_once_sensors_are_primed(tree: Path, kernel: FakeKernel,
                                                            make_agent: Callable[..., NodeAgent]) -> None:
    agent = make_agent(POLICY, apply=True)
    recs = ticks(agent, kernel, 5)
    assert recs[0].source == "fallback:stale_sensor" and recs[0].events == {"stale_sensor": 1}
    assert recs[0].util == [None, None] and recs[0].power_w == [None, None]
    for r in recs[1:]:
        assert r.source == "policy" and r.events == {}
        assert all(0 <= p <= 10 for p in r.applied) and r.applied == r.proposed  # cool node: no intervention
        assert all(30 < p < 300 for p in r.power_w) and all(0 <= u <= 1 for u in r.util)
    last = recs[-1].applied
    assert max_freqs(tree) == [khz(agent, last[0])] * 4 + [khz(agent, last[1])] * 4
    assert agent.fallbacks == {"stale_sensor": 1}
    assert agent.ticks == 5


@pytest.mark.parametrize(("controller", "reason"), [
    ("test-agent-raises", "controller_error"),
    ("test-agent-nan", "invalid_action"),
    ("test-agent-out-of-range", "invalid_action"),
    ("test-agent-slow", "controller_timeout"),
])
def test_a_failing_controller_hands_the_tick_to_the_fallback(tree: Path, kernel: FakeKernel,
                                                             make_agent: Callable[..., NodeAgent],
                                                             controller: str, reason: str) -> None:
    agent = make_agent(controller, apply=True)
    recs = ticks(agent, kernel, 3)
    # A slow policy times out; while that call still runs, the next period is "busy" (fallback at once).
    reasons = {reason, "controller_busy"} if reason == "controller_timeout" else {reason}
    for r in recs[1:]:
        assert r.source.removeprefix("fallback:") in reasons
        assert sum(r.events.get(k, 0) for k in reasons) == 1
        assert len(r.applied) == 2 and all(isinstance(p, int) and 0 <= p <= 10 for p in r.applied)
        assert r.written and r.errors == []
    assert recs[1].source == f"fallback:{reason}"
    assert max_freqs(tree) == [khz(agent, recs[-1].applied[0])] * 4 + [khz(agent, recs[-1].applied[1])] * 4
    assert agent.fallbacks.pop("stale_sensor") == 1 and set(agent.fallbacks) <= reasons
    assert sum(agent.fallbacks.values()) == 2
    logged = events(agent, "tick")
    assert [e["source"] for e in logged] == [r.source for r in recs]  # fallbacks are always logged


def test_a_failed_sensor_goes_to_the_fallback_and_the_shield_floors_the_domain(
        tree: Path, kernel: FakeKernel, make_agent: Callable[..., NodeAgent]) -> None:
    agent = make_agent("test-agent-fixed", apply=True)
    assert ticks(agent, kernel, 2)[-1].source == "policy"
    # The sampler keeps the file open (deleting it would not fail the read): make its content unreadable.
    (tree / "sys/class/thermal/thermal_zone1/temp").write_text("abc\n", encoding="ascii")
    for _ in range(SENSOR_HOLD_READS):  # a failed read or two keep the last good value: the policy decides
        held = agent.tick()
        assert held.source == "policy" and held.temp_c[0] is not None
    r = agent.tick()
    assert r.source == "fallback:stale_sensor"
    assert r.temp_c[0] is None and r.temp_c[1] is not None
    assert r.events.get("stale_sensor") == 1 and r.events.get("sensor") == 1 and "hot" in r.events
    assert r.applied[0] == agent.shield_cfg.floor_pstate == 0
    assert max_freqs(tree)[:4] == [FLOOR_KHZ] * 4
    assert agent.counters.as_dict()["by_reason"].get("sensor") == 1


def test_a_hot_inlet_drops_to_the_floor_in_the_same_tick(tree: Path, kernel: FakeKernel,
                                                         make_agent: Callable[..., NodeAgent]) -> None:
    agent = make_agent("test-agent-fixed", apply=True)
    ticks(agent, kernel, 2)
    assert max_freqs(tree) == [khz(agent, 3)] * 4 + [khz(agent, 8)] * 4
    (tree / STATE_DIR / "inlet").write_text("95\n", encoding="ascii")
    for _ in range(200):  # heat up without ticking: the next tick is the first to see it
        kernel.step(1.0)
        if min(int(_raw(tree, f"sys/class/thermal/thermal_zone{z}/temp")) for z in (1, 2)) >= 96_000:
            break
    else:
        pytest.fail("the fake node never reached the hot trip")
    r = agent.tick()
    assert r.source == "policy" and r.proposed == [3, 8]
    assert "hot" in r.events or "critical" in r.events
    assert r.applied == [0, 0]
    assert max_freqs(tree) == [FLOOR_KHZ] * 8
    assert all(t >= 95 for t in r.temp_c)
    # The thermal cap went to RAPL in the same tick (whole watts, under the original limit).
    assert all(c is not None and c < 230 for c in r.cap_w)
    assert limits(tree) == [int(math.floor(c)) * 1_000_000 for c in r.cap_w]
    assert agent.counters.as_dict()["interventions"] >= 1


# -- caps ---------------------------------------------------------------------------------------------
def test_a_cap_is_written_at_once_then_decays_after_its_lease(tree: Path, kernel: FakeKernel,
                                                              make_agent: Callable[..., NodeAgent],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    agent = make_agent("test-agent-fixed", apply=True)
    ticks(agent, kernel, 2)
    assert limits(tree) == [ORIGINAL_UW] * 2  # no cap, no thermal cap: never written
    busy = np.asarray(agent.target.busy_w)

    def split_uw(node_cap_w: float) -> list[int]:  # the cap split by busy power, floored to whole W
        return [int(math.floor(w)) * 1_000_000 for w in node_cap_w * busy / busy.sum()]

    assert float(np.sum(agent.target.idle_w)) < agent.base_w < 300.0  # so a 300 W cap decays to it
    t0 = 1_700_000_000.0
    now = [t0 + 1.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    write_cap_file(agent.state, 300.0, issued_s=t0, lease_s=5.0)
    assert agent.cap_tick() is not None
    assert limits(tree) == split_uw(300.0)
    assert abs(limits(tree)[0] - 150_000_000) <= 1_000_000  # equal packages: about half each
    assert events(agent, "cap")[-1]["cap_w"] == 300.0
    assert events(agent, "cap_applied")[-1]["written"] is True
    # Lease over, half-way through the 30 s decay: half-way from 300 W to the base.
    now[0] = t0 + 5.0 + 15.0
    r = agent.tick()
    kernel.step(DT)
    mid = 300.0 - (300.0 - agent.base_w) * 0.5
    assert sum(c for c in r.cap_w) == pytest.approx(mid, abs=0.1)
    assert limits(tree) == split_uw(agent.caps.value(now[0]))
    assert agent.caps.value(now[0]) == pytest.approx(mid)
    assert agent.summary()["cap"]["stale"] is True
    # Long after: at the guaranteed base.
    now[0] = t0 + 1000.0
    agent.tick()
    assert limits(tree) == split_uw(agent.base_w)
    # A clear restores the original limits.
    write_cap_file(agent.state, None, issued_s=now[0])
    os.utime(agent.state / "cap.json", (now[0] + 1, now[0] + 1))  # a distinct mtime (see the st_mtime bug below)
    agent.tick()
    assert limits(tree) == [ORIGINAL_UW] * 2


def test_a_bad_cap_file_is_rejected_and_logged(tree: Path, kernel: FakeKernel,
                                               make_agent: Callable[..., NodeAgent]) -> None:
    agent = make_agent("test-agent-fixed", apply=True)
    ticks(agent, kernel, 1)
    agent.state.mkdir(parents=True, exist_ok=True)
    (agent.state / "cap.json").write_text('{"cap_w": -3, "issued_s": 1}', encoding="utf-8")
    assert agent.cap_tick() is None
    assert "cap_rejected" in [e["event"] for e in events(agent)]
    assert math.isinf(agent.caps.cap_w)
    assert limits(tree) == [ORIGINAL_UW] * 2


def test_a_cap_replaced_within_one_timestamp_tick_is_taken(tree: Path, kernel: FakeKernel,
                                                           make_agent: Callable[..., NodeAgent]) -> None:
    """Regression: a new cap.json was detected by st_mtime alone (coarse: one jiffy on ext4/tmpfs)."""
    agent = make_agent("test-agent-fixed", apply=True)
    ticks(agent, kernel, 1)
    path = write_cap_file(agent.state, 200.0)
    assert agent.cap_tick() is not None
    st = os.stat(path)
    write_cap_file(agent.state, 120.0)  # os.replace: a new inode, but possibly the same coarse mtime
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert agent.cap_tick() is not None
    assert agent.caps.cap_w == 120.0


def test_a_write_the_kernel_rejects_is_logged_and_the_loop_goes_on(tree: Path, kernel: FakeKernel,
                                                                     make_agent: Callable[..., NodeAgent],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from powerrl.hw.errors import HwInvalidValueError

    agent = make_agent("test-agent-fixed", apply=True)
    ticks(agent, kernel, 2)
    assert agent.node._freq_act is not None

    def einval(values: Any, mask: Any = None, *, now_ns: int = 0) -> Any:
        raise HwInvalidValueError("policy0.scaling_max_freq: write '1' rejected with EINVAL")

    monkeypatch.setattr(agent.node._freq_act, "apply", einval)
    agent.node._pstate_written_s = -math.inf  # force the rewrite that meets the error
    rec = agent.tick()
    assert rec.written is False and rec.errors and "EINVAL" in rec.errors[0]
    assert "EINVAL" in events(agent, "tick")[-1]["errors"][0]
    assert agent.summary()["errors"] and agent.ticks == 3
    monkeypatch.undo()
    kernel.step(DT)
    assert agent.tick().written is True  # the next period writes again


# -- restores -----------------------------------------------------------------------------------------
def test_close_restores_every_setting_and_removes_the_pid_file(tree: Path, kernel: FakeKernel,
                                                               make_agent: Callable[..., NodeAgent]) -> None:
    before = writable(tree)
    agent = make_agent("test-agent-fixed", apply=True)
    ticks(agent, kernel, 2)
    write_cap_file(agent.state, 100.0)
    agent.cap_tick()
    assert max_freqs(tree) != [ORIGINAL_KHZ] * 8 and limits(tree) != [ORIGINAL_UW] * 2
    agent.state.mkdir(parents=True, exist_ok=True)
    (agent.state / PID_FILE).write_text(str(os.getpid()), encoding="ascii")
    agent.close()
    assert writable(tree) == before
    assert not (agent.state / PID_FILE).exists()
    assert not (tree / JOURNAL_REL).exists()
    stop = events(agent, "stop")[-1]
    assert stop["restored"] is True and stop["restore_failures"] == [] and stop["ticks"] == 2
    status = json.loads((agent.state / STATUS_FILE).read_text(encoding="utf-8"))
    assert status["running"] is False


def test_run_ticks_for_the_duration_then_restores(tree: Path, make_agent: Callable[..., NodeAgent]) -> None:
    before = writable(tree)
    kernel = FakeKernel(tree, load=0.5)
    stop = kernel.start_thread(0.02)  # a live node under the loop (in-process)
    try:
        agent = make_agent("test-agent-fixed", apply=True)
        agent.period_s = 0.05
        assert agent.run(duration_s=0.3) == 0
    finally:
        stop.set()
    got = [e["event"] for e in events(agent)]
    assert got[0] == "start" and got[-1] == "stop" and "tick" in got
    start = events(agent, "start")[0]
    assert start["mode"] == "apply" and start["domains"] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert 1 <= agent.ticks <= 12  # 0.3 s at 50 ms (a loaded machine misses deadlines)
    assert not (agent.state / PID_FILE).exists()
    time.sleep(0.05)  # let the fake kernel thread finish its last step
    assert writable(tree) == before


def test_the_hang_watchdog_restores_and_the_next_tick_writes_again(tree: Path, kernel: FakeKernel, host: HostFile,
                                                                   make_agent: Callable[..., NodeAgent]) -> None:
    hf = dataclasses.replace(host, agent=dataclasses.replace(host.agent, hang_s=0.2))
    agent = make_agent("test-agent-fixed", apply=True, hf=hf)
    ticks(agent, kernel, 2)
    written = [khz(agent, 3)] * 4 + [khz(agent, 8)] * 4
    assert max_freqs(tree) == written
    watchdog = threading.Thread(target=agent._hang_watchdog, daemon=True)
    watchdog.start()
    try:
        deadline = time.monotonic() + 5.0
        while not events(agent, "watchdog") and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        agent._stop.set()
        watchdog.join(timeout=5.0)
        agent._stop.clear()
    wd = events(agent, "watchdog")
    assert len(wd) == 1 and wd[0]["failed"] == [] and wd[0]["stalled_s"] >= 0.2
    assert max_freqs(tree) == [ORIGINAL_KHZ] * 8
    assert not (tree / JOURNAL_REL).exists()
    r = agent.tick()
    assert r.written and r.errors == []
    assert max_freqs(tree) == written
    assert (tree / JOURNAL_REL).exists()  # journaled afresh
    agent.close()
    assert max_freqs(tree) == [ORIGINAL_KHZ] * 8


def test_a_crashed_runs_journal_is_restored_before_the_first_tick(tree: Path,
                                                                  make_agent: Callable[..., NodeAgent]) -> None:
    rel = f"{CPUFREQ}/policy5/scaling_max_freq"
    crashed = SafeWriter(SysfsRoot(tree), install_handlers=False)
    crashed.write(rel, 1_200_000)
    assert int(_raw(tree, rel)) == 1_200_000
    del crashed  # SIGKILL: never closed, the journal stays
    assert (tree / JOURNAL_REL).exists()
    agent = make_agent("test-agent-fixed", apply=True)
    assert agent.recovered == [rel]
    assert int(_raw(tree, rel)) == ORIGINAL_KHZ
    assert agent.ticks == 0
    assert agent.summary()["recovered"] == [rel]


def test_a_dry_run_leaves_a_live_agents_settings_alone(tree: Path, kernel: FakeKernel,
                                                       make_agent: Callable[..., NodeAgent]) -> None:
    """A dry run beside a running --apply agent (another live powerrl process) must not restore its journal."""
    live = make_agent("test-agent-fixed", apply=True)
    ticks(live, kernel, 2)
    written = max_freqs(tree)
    assert written != [ORIGINAL_KHZ] * 8
    journal = tree / JOURNAL_REL
    # The service: another process, alive, running Python (its pid goes into the journal).
    service = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdin=subprocess.DEVNULL)
    try:
        data = json.loads(journal.read_text(encoding="utf-8"))
        data["pid"] = service.pid
        journal.write_text(json.dumps(data), encoding="utf-8")
        try:
            dry = make_agent("test-agent-fixed", apply=False)
        except PowerrlError as exc:
            assert str(service.pid) in str(exc)  # refusing to start beside it is fine too
        else:
            assert dry.recovered == []
        assert max_freqs(tree) == written and journal.exists()
    finally:
        service.kill()
        service.wait(timeout=10)


# -- outputs ------------------------------------------------------------------------------------------
def test_write_status_reports_ticks_latency_shield_and_cap(tree: Path, kernel: FakeKernel,
                                                           make_agent: Callable[..., NodeAgent]) -> None:
    agent = make_agent("test-agent-fixed", apply=False)
    ticks(agent, kernel, 3)
    agent.write_status()
    st = json.loads((agent.state / STATUS_FILE).read_text(encoding="utf-8"))
    assert st["running"] is True and st["mode"] == "dry-run" and st["controller"] == "test-agent-fixed"
    assert st["ticks"] == 3 and st["pid"] == os.getpid() and st["period_ms"] == pytest.approx(100.0)
    assert st["tick_ms"]["p50"] > 0 and st["tick_ms"]["p99"] >= st["tick_ms"]["p50"]
    assert st["tick_ms"]["max"] >= st["tick_ms"]["p99"]
    assert set(st["shield"]) >= {"decisions", "interventions", "by_reason"} and st["shield"]["decisions"] == 3
    assert st["cap"] == {"node_cap_w": None, "in_force_w": None, "stale": False, "base_w": round(agent.base_w, 1)}
    assert st["fallbacks"] == {"stale_sensor": 1}
    assert st["last"]["tick"] == 3 and st["last"]["applied"] == [3, 8]
    assert not list(agent.state.glob("*.tmp"))


def test_tick_lines_follow_log_every(tree: Path, kernel: FakeKernel, host: HostFile,
                                     make_agent: Callable[..., NodeAgent]) -> None:
    hf = dataclasses.replace(host, agent=dataclasses.replace(host.agent, log_every=3))
    agent = make_agent("test-agent-fixed", hf=hf)
    ticks(agent, kernel, 7)
    # Tick 1 (and its fallback), then every third; quiet policy ticks in between are not logged.
    assert [e["tick"] for e in events(agent, "tick")] == [1, 3, 6]


def test_metrics_expose_the_documented_names(tree: Path, kernel: FakeKernel,
                                             make_agent: Callable[..., NodeAgent]) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    agent = make_agent("test-agent-fixed")
    assert agent.metrics is None  # metrics_port=0: no endpoint, no metrics
    agent.metrics = AgentMetrics(agent.node.n, "test", port=0)
    assert agent.metrics.server is None
    ticks(agent, kernel, 3)
    text = prometheus_client.generate_latest(agent.metrics.registry).decode()
    for name in ("powerrl_agent_power_watts", "powerrl_agent_temperature_celsius", "powerrl_agent_pstate",
                 "powerrl_agent_cap_watts", "powerrl_agent_utilisation_ratio"):
        assert f'{name}{{domain="0",node="test"}}' in text and f'{name}{{domain="1",node="test"}}' in text
    assert 'powerrl_agent_pstate{domain="1",node="test"} 8.0' in text
    assert 'powerrl_agent_decisions_total{node="test",source="policy"} 2.0' in text
    assert 'powerrl_agent_decisions_total{node="test",source="fallback"} 1.0' in text
    assert 'powerrl_agent_fallbacks_total{node="test",reason="stale_sensor"} 1.0' in text
    assert 'powerrl_agent_tick_seconds_count{node="test"} 3.0' in text
    assert 'powerrl_agent_loop_lateness_seconds_count{node="test"} 3.0' in text
    for name in ("powerrl_agent_energy_joules", "powerrl_agent_shield_interventions_total",
                 "powerrl_agent_missed_deadlines_total", "powerrl_agent_tick_seconds_bucket"):
        assert f"{name}{{" in text
    agent.metrics.close()


def test_an_agent_running_a_policy_never_imports_torch(tmp_path: Path) -> None:
    """The node needs only the agent extra: onnxruntime, never torch or Stable-Baselines3."""
    import subprocess
    import sys

    code = f"""
import io, sys
from powerrl.hw.fake import make_fake_sysfs, FakeKernel
from powerrl.runtime.config import load_host_file
from powerrl.runtime.agent import NodeAgent
make_fake_sysfs({str(tmp_path / 'n')!r}, cpus=4, sockets=2)
k = FakeKernel({str(tmp_path / 'n')!r})
a = NodeAgent(load_host_file({str(HOST)!r}), {POLICY!r}, apply=True, root={str(tmp_path / 'n')!r}, log=io.StringIO(),
              metrics_port=0)
for _ in range(3):
    a.tick()
    k.step(0.1)
a.close()
print(a.last.source, 'torch' in sys.modules, 'stable_baselines3' in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["policy", "False", "False"]


@register("test-agent-stuck")
class _Stuck(Controller):
    """Hangs for a long time once (a stuck inference), then answers normally."""

    calls = 0

    def act(self, observation: np.ndarray) -> Any:
        type(self).calls += 1
        if type(self).calls == 1:  # the first call (tick 1 has no rates yet: the fallback decides it)
            time.sleep(1.0)
        return np.array([4, 4])


def test_a_stuck_policy_never_holds_the_loop(tree: Path, kernel: FakeKernel,
                                             make_agent: Callable[..., NodeAgent]) -> None:
    """The fallback decides within the period while the stuck call runs; the policy is back after it."""
    agent = make_agent("test-agent-stuck", apply=True)
    start = time.monotonic()
    recs = ticks(agent, kernel, 4)  # 1: stale sensors; 2: the call that hangs; 3-4: it still hangs
    assert time.monotonic() - start < 0.5  # four ticks, not one second
    assert recs[1].source == "fallback:controller_timeout"
    assert {r.source for r in recs[2:]} == {"fallback:controller_busy"}
    assert all(r.tick_ms < 100.0 for r in recs)  # every decision within the period
    time.sleep(1.1)
    kernel.step(DT)
    assert agent.tick().source == "policy"  # the late answer was discarded; the next one counts


def test_inline_policy_mode_still_replaces_a_late_answer(tree: Path, kernel: FakeKernel, host: HostFile,
                                                         make_agent: Callable[..., NodeAgent]) -> None:
    hf = dataclasses.replace(host, agent=dataclasses.replace(host.agent, policy_thread=False))
    agent = make_agent("test-agent-slow", apply=True, hf=hf)
    recs = ticks(agent, kernel, 3)
    assert [r.source for r in recs[1:]] == ["fallback:controller_timeout"] * 2


def test_a_log_that_cannot_be_written_is_counted_and_the_loop_goes_on(tree: Path, kernel: FakeKernel,
                                                                      make_agent: Callable[..., NodeAgent]) -> None:
    agent = make_agent("test-agent-fixed", apply=True)
    ticks(agent, kernel, 1)
    agent.log.close()  # as a full disk or a vanished stream would
    recs = ticks(agent, kernel, agent.host.agent.log_every)  # reaches a logged tick
    assert recs[-1].written and agent.log_failures >= 1
    assert agent.summary()["log_lines_lost"] == agent.log_failures
