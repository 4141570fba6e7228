"""``powerrl agent check``: whether this node is ready for the agent, and what exactly is missing.

Each item says what the agent needs, whether the node has it and, if not, why and how to fix it.
Items marked *needed* stop ``powerrl agent run --apply`` before anything is written; the others
degrade the agent in a stated way (e.g. no RAPL limit: thermal and coordinator caps cannot be
enforced, the P-state shield still is).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from powerrl.errors import PowerrlError
from powerrl.hw.host import HostLayout, bind_host
from powerrl.hw.procstat import PROC_STAT
from powerrl.hw.rapl import Rapl
from powerrl.hw.safety import JOURNAL_REL, RestoreJournal
from powerrl.hw.sysfs import SysfsRoot
from powerrl.runtime.config import HostFile


@dataclass(frozen=True)
class CheckItem:
    """One readiness check: ``needed`` items must pass for ``--apply``."""

    name: str
    ok: bool
    needed: bool
    detail: str = ""


def _policy_items(layout: HostLayout, root: SysfsRoot) -> list[CheckItem]:
    knob = layout.config.actuate
    out = []
    unreadable = [p.id for p in layout.policies if not root.access(p.attr("scaling_cur_freq"))[0]]
    out.append(CheckItem("sense cpu frequency (scaling_cur_freq)", not unreadable, True,
                         f"unreadable for policies {unreadable[:8]}" if unreadable else
                         f"{len(layout.policies)} policies, driver {layout.driver}"))
    blocked = [(p.id, root.access(p.attr(knob), write=True)[1]) for p in layout.policies]
    blocked = [(i, why) for i, why in blocked if why]
    if not blocked:
        detail = f"{knob} of every policy"
    elif blocked[0][1] == "missing":
        detail = (f"policy{blocked[0][0]}: no {knob} ({len(blocked)} policies): the cpufreq driver "
                  f"{layout.driver} does not offer it; choose the other actuate knob in the host file")
    else:
        detail = (f"policy{blocked[0][0]}: {blocked[0][1]} ({len(blocked)} policies); run the agent as root "
                  "(deploy/powerrl-agent.service)")
    out.append(CheckItem(f"actuate P-states ({knob})", not blocked, True, detail))
    if knob == "scaling_setspeed":
        missing = [p.id for p in layout.policies if "userspace" not in p.available_governors]
        out.append(CheckItem("userspace governor (for scaling_setspeed)", not missing, True,
                             f"driver {layout.driver} does not offer it (policies {missing[:8]}); use "
                             "actuate: scaling_max_freq" if missing else "offered by every policy"))
    return out


def _sensor_items(layout: HostLayout, root: SysfsRoot) -> list[CheckItem]:
    out = []
    ok, why = root.access(PROC_STAT)
    out.append(CheckItem("sense utilisation (/proc/stat)", ok, True, why or "per-CPU ticks"))
    for d in layout.domains:
        if d.temp_rel is None:
            out.append(CheckItem(f"domain {d.index}: package temperature", False, True,
                                 "no x86_pkg_temp zone or coretemp/k10temp sensor: load the driver or name one "
                                 "with domains[i].temp (the shield treats an unknown temperature as hot)"))
        else:
            ok, why = root.access(d.temp_rel)
            out.append(CheckItem(f"domain {d.index}: package temperature", ok, True, why or d.temp_label))
        if d.rapl is None:
            out.append(CheckItem(f"domain {d.index}: power (RAPL energy)", False, False,
                                 "no RAPL package zone for this domain: the power feature is unknown and the "
                                 "fallback governor decides (load intel_rapl_msr / the powercap driver)"))
        else:
            ok, why = root.access(d.rapl.energy_rel)
            out.append(CheckItem(f"domain {d.index}: power (RAPL energy {d.rapl.id})", ok, False,
                                 why + " (energy_uj is root-only since Linux 5.10)" if why else "readable"))
    return out


def _cap_items(layout: HostLayout, root: SysfsRoot) -> list[CheckItem]:
    if not layout.config.rapl_caps:
        return [CheckItem("power caps (RAPL limits)", True, False, "off in the host file (rapl_caps: false)")]
    rapl = Rapl(root)
    out = []
    for d in layout.domains:
        z = d.rapl
        if z is None or not any(c.name == "long_term" for c in z.constraints):
            out.append(CheckItem(f"domain {d.index}: power cap", False, False,
                                 "no RAPL long-term limit: thermal and coordinator caps are not enforced (set "
                                 "rapl_caps: false to silence this)"))
            continue
        c = rapl.constraint(z, "long_term")
        ok, why = root.access(c.attr(z.rel, "power_limit_uw"), write=True)
        out.append(CheckItem(f"domain {d.index}: power cap ({z.id} long_term)", ok, False,
                             why or "writable (a BIOS lock shows only on a write: powerrl hw probe --write-test)"))
    return out


def check_host(hf: HostFile, controller: str | None, root: str | None = None
               ) -> tuple[list[CheckItem], HostLayout | None]:
    """Every readiness item for ``hf`` on the node under ``root`` (default the file's ``root``)."""
    hcfg = hf.host if root is None else dataclasses.replace(hf.host, root=root)
    sroot = SysfsRoot(hcfg.root)
    items = [CheckItem("host file", True, True, hf.path or "")]
    try:
        layout = bind_host(hcfg, sroot, hf.path)
    except PowerrlError as exc:
        return items + [CheckItem("bind host to the node", False, True, str(exc))], None
    items.append(CheckItem("bind host to the node", True, True,
                           f"{len(layout.domains)} domains, P-states {layout.pstates_mhz[0]:g}-"
                           f"{layout.pstates_mhz[-1]:g} MHz x {len(layout.pstates_mhz)}"
                           + ("; " + "; ".join(layout.notes) if layout.notes else "")))
    items += _policy_items(layout, sroot) + _sensor_items(layout, sroot) + _cap_items(layout, sroot)
    journal = RestoreJournal(sroot.path(JOURNAL_REL)).load()
    items.append(CheckItem("restore journal", True, False,
                           f"{len(journal)} setting(s) left by a killed run: restored at the next start"
                           if journal else "none pending"))
    state = sroot.path(hf.agent.state_dir.strip("/"))
    existing = next(p for p in (state, *state.parents) if p.exists())
    ok = os.access(existing, os.W_OK)
    items.append(CheckItem(f"state directory ({state})", ok, True, "writable" if ok else
                           "not writable: the status, pid and cap files live here (run as root, or set "
                           "agent.state_dir)"))
    if controller is not None:
        items.append(_controller_item(layout, hf, controller))
    return items, layout


def _controller_item(layout: HostLayout, hf: HostFile, controller: str) -> CheckItem:
    from powerrl.envs.hw_node import HardwareNode, hardware_target
    from powerrl.runtime.agent import make_agent_controller
    from powerrl.shield.config import resolve_shield_config

    try:
        node = HardwareNode(layout, None, hf.agent.period_s)
        try:
            target = hardware_target(layout, hf.agent.period_s, resolve_shield_config(hf.agent.shield))
            make_agent_controller(controller, node, target)
        finally:
            node.close()
    except PowerrlError as exc:
        return CheckItem(f"controller {controller}", False, True, str(exc))
    return CheckItem(f"controller {controller}", True, True, "loads and matches the host's spaces")
