"""The :class:`powerrl.control.ControlTarget` of a simulator env: what its controllers may know.

A rule-based controller needs facts an observation does not carry: the P-state table and the
power at each P-state (governors, the kernel's power allocator), node priorities, power ranges and
power groups (allocation baselines), a carbon forecast (carbon deferral). :func:`control_target`
reads them from an env's core once; the node agent builds the same object from the hardware.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from powerrl.control import ControlTarget
from powerrl.envs import cluster_budget, datacenter, node_dvfs
from powerrl.envs.sources import DAY_S
from powerrl.model import power as power_model
from powerrl.model.profiles import get_profile
from powerrl.shield.config import ShieldConfig, resolve_shield_config


def _core(env: Any) -> Any:
    """The batched core behind a single env, a vector env, a wrapper, or the core itself."""
    if hasattr(env, "steps_per_episode") and hasattr(env, "obs"):
        return env
    unwrapped = getattr(env, "unwrapped", env)
    core = getattr(unwrapped, "core", None)
    if core is None:
        raise TypeError(f"{type(env).__name__} is not a powerrl simulator env (no .core)")
    return core


def readonly_copy(x: np.ndarray) -> np.ndarray:
    """A read-only copy (floats as float64) for a :class:`ControlTarget`: controllers cannot change the facts."""
    out = np.array(x, dtype=np.float64 if np.asarray(x).dtype.kind == "f" else np.asarray(x).dtype)
    out.setflags(write=False)
    return out


def _busy_at_pstate(arrays: Any, n: int) -> np.ndarray:
    """Compute-bound full-load power of the first ``n`` units at every P-state, W ``[n, n_pstates]``."""
    a = arrays
    return power_model.node_power_w(1.0, a.freq_ratio[:n], a.volt_ratio[:n], 0.0, a.idle_w[:n, None],
                                    a.busy_w[:n, None], a.shape_r[:n, None], a.static_share[:n, None],
                                    a.wake_share[:n, None])


def carbon_forecasts(core: Any) -> tuple[Any, Any]:
    """``(forecast, actual)`` carbon look-ups over the core's trace clock (gCO2/kWh).

    The forecast is seasonal-naive: the intensity recorded one day before the target time (two
    days for targets more than a day ahead), so it never reads the future. ``actual`` reads the
    record at the target time: for the clairvoyant oracle only.
    """
    site = core.site
    trace = core.trace
    ci = site.carbon_g_per_kwh

    def actual(time_s: np.ndarray, offsets_s: np.ndarray) -> np.ndarray:
        t = np.asarray(time_s, dtype=np.float64)[:, None] + np.asarray(offsets_s, dtype=np.float64)[None, :]
        return ci[trace.rows_at(np.maximum(t, 0.0))]

    def forecast(time_s: np.ndarray, offsets_s: np.ndarray) -> np.ndarray:
        off = np.asarray(offsets_s, dtype=np.float64)
        lag = DAY_S * np.ceil(np.maximum(off, 1e-9) / DAY_S)  # whole days back, so the target is in the past
        t = np.asarray(time_s, dtype=np.float64)[:, None] + (off - lag)[None, :]
        return ci[trace.rows_at(np.maximum(t, 0.0))]

    return forecast, actual


def budget_target(dt_s: float, idle_w: np.ndarray, busy_w: np.ndarray, priority: np.ndarray,
                  group: np.ndarray | None, group_limit_w: np.ndarray | None, shield_cfg: ShieldConfig, *,
                  freqs_mhz: np.ndarray | None = None, busy_w_at_pstate: np.ndarray | None = None,
                  config: Any = None, rack: np.ndarray | None = None) -> ControlTarget:
    """A ClusterBudget-v0 target: nodes' power ranges (W), priorities, one level of groups and their limits (W).

    Built for the simulator by :func:`control_target` and for a real cluster by the coordinator
    (:mod:`powerrl.runtime.allocator`). Without a P-state table (a real cluster), one P-state at busy
    power stands in: the allocation baselines read only power ranges.
    """
    busy = readonly_copy(np.asarray(busy_w, dtype=np.float64))
    extras: dict[str, Any] = {
        "shield": shield_cfg, "busy_total_w": float(busy.sum()),
        "priority_weight": readonly_copy(cluster_budget.PRIORITY_WEIGHT),
        "max_frac": readonly_copy(np.asarray(shield_cfg.budget.max_frac, dtype=np.float64))}
    if rack is not None:
        extras["rack"] = readonly_copy(rack)
    n = int(busy.size)
    return ControlTarget(
        env_id=cluster_budget.ENV_ID, dt_s=dt_s, n_units=n, config=config,
        unit_fields=tuple(f[0] for f in cluster_budget.NODE_FIELDS),
        global_fields=tuple(f[0] for f in cluster_budget.GLOBAL_FIELDS),
        freqs_mhz=readonly_copy(np.asarray(freqs_mhz if freqs_mhz is not None else [1.0], dtype=np.float64)),
        idle_w=readonly_copy(np.asarray(idle_w, dtype=np.float64)), busy_w=busy,
        busy_w_at_pstate=readonly_copy(busy_w_at_pstate if busy_w_at_pstate is not None else busy[:, None]),
        priority=readonly_copy(priority), group=None if group is None else readonly_copy(group),
        group_limit_w=None if group_limit_w is None else readonly_copy(group_limit_w),
        base_frac=readonly_copy(np.asarray(shield_cfg.budget.base_frac, dtype=np.float64)), extras=extras)


def control_target(env: Any, shield: Any = None) -> ControlTarget:
    """The :class:`ControlTarget` of a powerrl simulator env (single, vector, wrapped, or its core).

    Args:
        env: the env.
        shield: shield config (name, path, mapping or object) whose guaranteed bases the target
            quotes (``base_frac``); default: the shipped ``default`` shield.
    """
    core = _core(env)
    cfg = core.cfg
    a = core.arrays
    prof = get_profile(cfg.profile)
    freqs = np.asarray(prof.pstates_mhz, dtype=np.float64)
    shield_cfg = resolve_shield_config(shield if shield is not None else "default")
    def common(env_id: str, n_units: int, unit_fields: Any, global_fields: Any) -> dict[str, Any]:
        # What every env's target states alike: the env, clock, layout, P-state table and shield.
        return {"env_id": env_id, "dt_s": cfg.dt_s, "n_units": n_units, "config": cfg,
                "unit_fields": tuple(f[0] for f in unit_fields), "global_fields": tuple(f[0] for f in global_fields),
                "freqs_mhz": readonly_copy(freqs)}

    if isinstance(core, node_dvfs.NodeDVFSCore):
        k = core.k
        return ControlTarget(
            **common(node_dvfs.ENV_ID, k, node_dvfs.DOMAIN_FIELDS, node_dvfs.GLOBAL_FIELDS),
            idle_w=readonly_copy(a.idle_w[:k]), busy_w=readonly_copy(a.busy_w[:k]),
            busy_w_at_pstate=readonly_copy(_busy_at_pstate(a, k)),
            extras={"shield": shield_cfg, "sla_ms": float(a.sla_ms[0]), "service_ms": float(a.service_ms[0])})
    if isinstance(core, cluster_budget.ClusterBudgetCore):
        return budget_target(cfg.dt_s, core.idle_w, core.busy_w, core.priority, core.pdu, core.pdu_limit_w,
                             shield_cfg, freqs_mhz=freqs, busy_w_at_pstate=_busy_at_pstate(a, core.n), config=cfg,
                             rack=core.rack)
    if isinstance(core, datacenter.DatacenterCore):
        r = core.n_racks
        forecast, actual = carbon_forecasts(core)
        rack_idle = np.bincount(core.rack, weights=a.idle_w[: core.n], minlength=r)
        rack_busy_at = np.zeros((r, len(freqs)))
        np.add.at(rack_busy_at, core.rack, _busy_at_pstate(a, core.n))
        return ControlTarget(
            **common(datacenter.ENV_ID, r, datacenter.RACK_FIELDS, datacenter.GLOBAL_FIELDS),
            idle_w=readonly_copy(rack_idle), busy_w=readonly_copy(core.rack_busy_w),
            busy_w_at_pstate=readonly_copy(rack_busy_at),
            carbon_forecast=forecast, carbon_actual=actual,
            extras={"shield": shield_cfg, "nodes_per_rack": cfg.nodes_per_rack, "batch_capacity": core.batch_capacity,
                    "defer_bins": core.n_bins})
    raise TypeError(f"no control target for {type(core).__name__}")
