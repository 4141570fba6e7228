"""Hardware in the loop: a real ``powerrl agent run --apply`` process against the fake kernel process.

The fake kernel (``powerrl hw fake-kernel``) runs the simulator behind a fake sysfs tree (8 CPUs on
2 packages, acpi-cpufreq, Intel RAPL, 100 ms steps); the agent (100 ms period, every tick logged)
samples it, decides, passes the shield and writes ``scaling_max_freq`` and RAPL limits. Checked:
decisions reach the files; a forced thermal event (hot inlet air) makes the shield act within one
period, down to the floor P-state and a RAPL thermal cap; a broken policy hands every decision to
the fallback; every setting is restored after SIGTERM, and after SIGKILL by the next start's journal
recovery; ``powerrl agent cap`` reaches the RAPL limits within one period.

Timing assertions allow one period of slack between what the log says and what the files hold: each
tick writes, then logs, so a file read between two log reads may already show the next tick's write.
"""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from powerrl.cli import main
from powerrl.hw.host import HostLayout, bind_host, load_host_config
from powerrl.hw.safety import JOURNAL_REL, allowlisted_state
from powerrl.hw.sysfs import SysfsRoot
from powerrl.shield.config import resolve_shield_config

PERIOD_S = 0.1
START_S = 60.0  # a subprocess's imports, on a loaded CI box
ORIGINAL_LIMIT_UW = 230_000_000  # the fake tree's package PL1


# -- helpers ------------------------------------------------------------------------------------------
writable_snapshot = allowlisted_state  # what 'every setting restored' compares


def _layout(host_yaml: Path, root: SysfsRoot) -> HostLayout:
    """The host bound to the tree as the agent binds it (the P-state table: 11 entries of the driver's table)."""
    return bind_host(load_host_config(host_yaml), root)


def _khz(layout: HostLayout, pstate: int) -> int:
    return int(round(float(layout.pstates_mhz[int(pstate)]) * 1000))


def _max_freq_rels(layout: HostLayout) -> list[list[str]]:
    return [[p.attr("scaling_max_freq") for p in d.policies] for d in layout.domains]


def _max_freqs(root: SysfsRoot, layout: HostLayout) -> list[list[int]]:
    return [[root.read_int(rel) for rel in rels] for rels in _max_freq_rels(layout)]


def _limit_rels(layout: HostLayout) -> list[str]:
    out = []
    for d in layout.domains:
        assert d.rapl is not None
        c = next(c for c in d.rapl.constraints if c.name == "long_term")
        out.append(c.attr(d.rapl.rel, "power_limit_uw"))
    return out


def _limits_uw(root: SysfsRoot, layout: HostLayout) -> list[int]:
    return [root.read_int(rel) for rel in _limit_rels(layout)]


def _journal(root: SysfsRoot) -> list[str]:
    path = root.path(JOURNAL_REL)
    return [e["path"] for e in json.loads(path.read_text(encoding="utf-8"))["entries"]]


def _primed(ticks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ticks from the first one with every rate known (util and power need a previous sample)."""
    for i, t in enumerate(ticks):
        if None not in t["util"] and None not in t["power_w"]:
            return ticks[i:]
    return []


def _check_files_follow_decisions(agent: Any, root: SysfsRoot, layout: HostLayout) -> list[list[int]]:
    """The files hold the applied P-state of the last logged tick (or of the tick being written meanwhile)."""
    k = agent.last_tick()
    files = _max_freqs(root, layout)
    ticks = agent.wait_tick(k + 2)
    window = [t for t in ticks if k <= t["tick"] <= k + 2]
    assert [t["tick"] for t in window] == [k, k + 1, k + 2], f"ticks not all logged\n{agent.tail()}"
    for d, freqs in enumerate(files):
        allowed = {_khz(layout, t["applied"][d]) for t in window}
        assert set(freqs) <= allowed, (f"domain {d}: scaling_max_freq {freqs} kHz, but ticks {k}..{k + 2} applied "
                                       f"{[t['applied'][d] for t in window]} = {sorted(allowed)} kHz\n{agent.tail()}")
    assert all(t["written"] and not t["errors"] for t in window), agent.tail()
    return files


def _set_cap(root: SysfsRoot, watts: float, capsys: pytest.CaptureFixture[str]) -> None:
    """``powerrl agent cap --set W --root TREE`` in-process (the subprocess path is tested on its own)."""
    assert main(["agent", "cap", "--set", f"{watts:g}", "--root", str(root.root)]) == 0
    assert "the agent applies it now" in capsys.readouterr().out


def _start_writing(agent: Any, root: SysfsRoot, layout: HostLayout) -> None:
    """Wait until a powersave agent has the floor P-state in every scaling_max_freq."""
    floor = _khz(layout, 0)
    agent.wait(lambda: any(t["written"] and t["applied"] == [0, 0] for t in agent.ticks()), "a written tick")
    agent.wait(lambda: all(f == floor for fs in _max_freqs(root, layout) for f in fs),
               f"every scaling_max_freq at the floor {floor} kHz", timeout_s=2.0)


# -- 1. decisions reach the files -------------------------------------------------------------------
@pytest.mark.parametrize("tree_overrides", [{"load": 0.15}])  # a light load: the policy picks middle P-states
def test_decisions_reach_the_files(fake_tree: SysfsRoot, host_yaml: Path, start_agent: Any) -> None:
    layout = _layout(host_yaml, fake_tree)
    assert len(layout.pstates_mhz) == 11
    # acpi-cpufreq: the P-states are entries of the driver's table, spread evenly over it, every entry reachable.
    offered = fake_tree.read_text("sys/devices/system/cpu/cpufreq/policy0/scaling_available_frequencies").split()
    assert set(layout.pstates_mhz * 1000) == {float(f) for f in offered}
    original = _max_freqs(fake_tree, layout)
    agent = start_agent()  # the shipped policy
    start = agent.events("start")[0]
    assert start["mode"] == "apply" and start["knob"] == "scaling_max_freq"
    assert start["pstates_mhz"] == pytest.approx(layout.pstates_mhz.tolist())
    assert start["domains"] == [list(d.cpus) for d in layout.domains]
    agent.wait(lambda: len([t for t in _primed(agent.ticks()) if t["source"] == "policy" and t["written"]]) >= 3,
               "three written policy decisions")
    seen = [_check_files_follow_decisions(agent, fake_tree, layout) for _ in range(3)]
    assert any(files != original for files in seen), (
        f"the policy's decisions never moved scaling_max_freq off the kernel's {original}\n{agent.tail()}")
    assert agent.proc.poll() is None, agent.tail()


# -- 2. forced thermal event --------------------------------------------------------------------------
# A fast heat sink (tau 1 s instead of 18 s) so that hot inlet air reaches the trips in seconds.
@pytest.mark.parametrize("tree_overrides", [{"tau_sink_s": 1.0}])
def test_thermal_event_shield_acts_within_one_period(fake_tree: SysfsRoot, fake_kernel: Any, host_yaml: Path,
                                                     start_agent: Any) -> None:
    cfg = resolve_shield_config("default")
    trips = {t.type: t.temp_c for t in cfg.zones["package"].trips}
    passive_c, hot_c, floor = trips["passive"], trips["hot"], cfg.floor_pstate
    layout = _layout(host_yaml, fake_tree)
    agent = start_agent()  # the shipped policy: it asks for high P-states under load
    agent.wait(lambda: len(_primed(agent.ticks())) >= 3, "three primed ticks")
    assert all(c < passive_c - 5 for t in agent.ticks() for c in t["temp_c"] if c is not None), \
        f"too hot before the event\n{agent.tail()}"
    fake_kernel.set_inlet(90.0)  # cooling failure: 90 degC inlet air

    def first_at(ticks: list[dict[str, Any]], d: int, temp_c: float) -> int | None:
        return next((i for i, t in enumerate(ticks) if t["temp_c"][d] is not None and t["temp_c"][d] >= temp_c),
                    None)

    # Hot trip: floor P-state in the same tick (at the latest the next), and in the files right after.
    ticks = agent.wait(lambda: (t := agent.ticks()) and all(first_at(t, d, hot_c) is not None
                                                            and first_at(t, d, hot_c) + 1 < len(t) for d in (0, 1))
                       and t, f"both packages past the hot trip ({hot_c} degC)", timeout_s=30.0)
    for d in range(len(layout.domains)):
        rels = _max_freq_rels(layout)[d]
        agent.wait(lambda rels=rels: all(fake_tree.read_int(r) == _khz(layout, floor) for r in rels),
                   f"domain {d}: scaling_max_freq at the floor ({_khz(layout, floor)} kHz) after the hot trip",
                   3 * PERIOD_S, lambda rels=rels: f"files: {[fake_tree.read_int(r) for r in rels]}")
    assert [t["tick"] for t in ticks] == list(range(1, len(ticks) + 1)), "every tick must be logged (log_every: 1)"

    for d in range(len(layout.domains)):
        for trip, temp_c, reasons in (("passive", passive_c, {"passive", "hot", "critical"}),
                                      ("hot", hot_c, {"hot", "critical"})):
            i = first_at(ticks, d, temp_c)
            assert i is not None
            window = ticks[i:i + 2]  # the tick that saw the temperature, or the next one: within one period
            acted = [t for t in window if reasons & set(t["events"])
                     and (t["applied"][d] < t["proposed"][d] or t["applied"][d] == floor)
                     and (trip != "hot" or t["applied"][d] == floor)]
            assert acted, (f"domain {d}: tick {ticks[i]['tick']} read {ticks[i]['temp_c'][d]} degC >= the {trip} trip "
                           f"({temp_c} degC) but neither it nor the next tick shows {sorted(reasons)} with a lowered "
                           f"P-state: {[(t['tick'], t['proposed'], t['applied'], t['events']) for t in window]}\n"
                           f"{agent.tail(30)}")
            assert all(t["written"] for t in window), agent.tail()

    # The thermal power cap (finite cap_w) goes to the package's RAPL long-term limit.
    def capped() -> list[dict[str, Any]]:
        return [t for t in agent.ticks() if all(c is not None for c in t["cap_w"])]

    agent.wait(lambda: len(capped()) >= 2, "two ticks with a thermal cap", timeout_s=10.0)
    rels = _limit_rels(layout)
    for d, rel in enumerate(rels):
        def limit_matches(d: int = d, rel: str = rel) -> bool:
            want = {max(1, min(math.floor(t["cap_w"][d]), ORIGINAL_LIMIT_UW // 10**6)) for t in capped()}
            got = fake_tree.read_int(rel) / 1e6
            return got < ORIGINAL_LIMIT_UW / 1e6 and any(abs(got - w) <= 1 for w in want)

        agent.wait(limit_matches, f"domain {d}: RAPL limit {rel} at a logged thermal cap", 5 * PERIOD_S,
                   lambda rel=rel, d=d: f"limit {fake_tree.read_int(rel)} uW, caps "
                   f"{[t['cap_w'][d] for t in capped()][-5:]}")
    assert any("thermal_cap" in t["events"] for t in capped()), agent.tail()


# -- 3. a broken policy hands every decision to the fallback ------------------------------------------
@pytest.mark.parametrize("kind, reason", [
    ("nan", "invalid_action"),
    ("wrong_shape", "controller_error"),
])
def test_broken_policy_triggers_fallback(kind: str, reason: str, broken_policy: Any, fake_tree: SysfsRoot,
                                         host_yaml: Path, start_agent: Any) -> None:
    policy = broken_policy(kind)
    layout = _layout(host_yaml, fake_tree)
    agent = start_agent(policy=policy)
    assert agent.events("start")[0]["controller"] == str(policy)
    primed = agent.wait(lambda: len(p := _primed(agent.ticks())) >= 6 and p, "six primed ticks")
    # Every primed tick is the fallback's; a sensor read torn by the kernel's rewrite may make one stale.
    sources = [t["source"] for t in primed]
    assert "policy" not in sources, f"the broken policy decided: sources {sources}\n{agent.tail()}"
    assert set(sources) <= {f"fallback:{reason}", "fallback:stale_sensor"}, f"sources {sources}\n{agent.tail()}"
    assert sources.count(f"fallback:{reason}") >= len(sources) - 1, f"sources {sources}\n{agent.tail()}"
    for t in primed:
        if t["source"] == f"fallback:{reason}":
            assert t["events"].get(reason) == 1, t
        assert all(isinstance(a, int) and 0 <= a < len(layout.pstates_mhz) for a in t["applied"]), t
        assert t["written"] and not t["errors"], agent.tail()
    files = _check_files_follow_decisions(agent, fake_tree, layout)
    table = {_khz(layout, i) for i in range(len(layout.pstates_mhz))}
    assert {f for fs in files for f in fs} <= table
    assert agent.proc.poll() is None, agent.tail()


# -- 4. SIGTERM restores everything -------------------------------------------------------------------
def test_sigterm_restores_every_setting(fake_tree: SysfsRoot, host_yaml: Path, start_agent: Any,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    layout = _layout(host_yaml, fake_tree)
    original = writable_snapshot(fake_tree)
    agent = start_agent(controller="powersave")
    _start_writing(agent, fake_tree, layout)
    _set_cap(fake_tree, 200, capsys)  # so that the RAPL limits are written too
    agent.wait(lambda: _limits_uw(fake_tree, layout) == [100_000_000] * 2, "RAPL limits at the 200 W cap")
    touched = set(_journal(fake_tree))
    assert touched >= {r for rels in _max_freq_rels(layout) for r in rels} | set(_limit_rels(layout))

    agent.signal(signal.SIGTERM)
    assert agent.exit_code() == 0, agent.tail()
    stop = agent.events("stop")
    assert stop and stop[-1]["restored"] is True and stop[-1]["restore_failures"] == [], agent.tail()
    assert any(e.get("signal") == "SIGTERM" for e in agent.events("signal")), agent.tail()
    now = writable_snapshot(fake_tree)
    diff = {k: (original[k], now.get(k)) for k in original if now.get(k) != original[k]}
    assert not diff, f"not restored (original, now): {diff}\n{agent.tail()}"
    assert not fake_tree.path(JOURNAL_REL).exists()


# -- 5. SIGKILL, then the next start restores the journal ---------------------------------------------
def test_sigkill_then_restart_restores(fake_tree: SysfsRoot, host_yaml: Path, start_agent: Any,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    layout = _layout(host_yaml, fake_tree)
    original = writable_snapshot(fake_tree)
    agent = start_agent(controller="powersave")
    _start_writing(agent, fake_tree, layout)
    _set_cap(fake_tree, 200, capsys)
    agent.wait(lambda: _limits_uw(fake_tree, layout) == [100_000_000] * 2, "RAPL limits at the 200 W cap")

    agent.signal(signal.SIGKILL)
    assert agent.exit_code() == -signal.SIGKILL
    assert not agent.events("stop"), "a SIGKILLed agent cannot have restored anything"
    assert fake_tree.path(JOURNAL_REL).exists(), "the journal must survive a SIGKILL"
    journal = _journal(fake_tree)
    assert set(journal) >= {r for rels in _max_freq_rels(layout) for r in rels} | set(_limit_rels(layout))
    # Nothing ran at the kill: the files still hold the agent's settings (powersave's floor P-state, or what
    # the last logged ticks applied should a stale sensor have handed one to the fallback).
    last = agent.ticks()[-2:]
    for d, freqs in enumerate(_max_freqs(fake_tree, layout)):
        allowed = {_khz(layout, 0)} | {_khz(layout, t["applied"][d]) for t in last}
        assert set(freqs) <= allowed, f"domain {d}: {freqs} kHz after the kill\n{agent.tail()}"
    assert _limits_uw(fake_tree, layout) == [100_000_000] * 2

    again = start_agent(apply=False, controller="powersave", duration_s=1.0)  # a dry run never writes
    start = again.events("start")[0]
    now = writable_snapshot(fake_tree)  # right after its start event: recovery ran before it
    assert start["mode"] == "dry-run"
    assert sorted(start["recovered"]) == sorted(journal), again.tail()
    diff = {k: (original[k], now.get(k)) for k in original if now.get(k) != original[k]}
    assert not diff, f"not restored at the restart (original, now): {diff}\n{again.tail()}"
    assert not fake_tree.path(JOURNAL_REL).exists()
    assert again.exit_code() == 0, again.tail()
    assert len(again.ticks()) >= 5, again.tail()
    assert writable_snapshot(fake_tree) == original  # and the dry run wrote nothing


# -- 6. powerrl agent cap reaches the RAPL limits within one period -------------------------------------
def test_cap_command_reaches_rapl_within_one_period(fake_tree: SysfsRoot, host_yaml: Path, start_agent: Any,
                                                    procs: Any) -> None:
    layout = _layout(host_yaml, fake_tree)
    agent = start_agent(controller="powersave")
    _start_writing(agent, fake_tree, layout)
    rels = _limit_rels(layout)
    assert _limits_uw(fake_tree, layout) == [ORIGINAL_LIMIT_UW] * 2

    cli, out = procs.powerrl("agent", "cap", "--set", "200", "--root", str(fake_tree.root), name="agent-cap")
    changed: dict[str, float] = {}
    deadline = time.monotonic() + START_S
    while len(changed) < len(rels) and time.monotonic() < deadline:
        for rel in rels:
            if rel not in changed and fake_tree.read_int(rel) != ORIGINAL_LIMIT_UW:
                changed[rel] = time.time()
        time.sleep(0.001)
    assert cli.wait(timeout=START_S) == 0, out.read_text()
    assert "the agent applies it now" in out.read_text()
    assert len(changed) == len(rels), f"RAPL limits never changed\n{agent.tail()}"
    issued = json.loads(fake_tree.path("run/powerrl/cap.json").read_text())["issued_s"]
    latency = max(changed.values()) - issued
    slack_s = 0.1
    print(f"cap.json written -> both RAPL limits changed: {latency * 1e3:.1f} ms")
    assert latency < PERIOD_S + slack_s, f"{latency * 1e3:.1f} ms from cap.json to the RAPL limits\n{agent.tail()}"
    # Split by busy power over the two identical packages: 100 W each, written between ticks (SIGUSR1).
    assert _limits_uw(fake_tree, layout) == [100_000_000] * 2
    applied = agent.wait(lambda: agent.events("cap_applied"), "a cap_applied event")
    assert applied[0]["written"] and applied[0]["cap_w"] == [100.0, 100.0], agent.tail()
    assert applied[0]["ts"] - issued < PERIOD_S + slack_s, agent.tail()
    assert agent.events("cap")[0]["cap_w"] == 200.0

