"""``powerrl simulate``: run NodeDVFS-v0 over a held-out day at every fixed P-state and print the table.

This is the simulator's own view of the frequency/energy/latency trade-off on real trace data: each
row pins every frequency domain to one P-state (the kernel's ``userspace`` governor setting) for
a whole day. All rows step together as copies of the batched env (one C call per step).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from powerrl.envs import sources
from powerrl.envs.config import NodeDVFSConfig
from powerrl.envs.node_dvfs import NodeDVFSVectorEnv
from powerrl.errors import ConfigError
from powerrl.model.profiles import get_profile


@dataclass(frozen=True)
class FixedPStateResult:
    """Outcome of one day pinned at one P-state."""

    pstate: int
    freq_mhz: float
    energy_kwh: float
    mean_power_w: float
    sla_violation_rate: float
    p99_latency_ms: float
    max_temp_c: float
    work_done: float


def check_day(cfg: NodeDVFSConfig, day: int) -> None:
    """Raise :class:`ConfigError` unless ``day`` (1-based) is a whole day of the config's trace."""
    trace = sources.trace_arrays(cfg.trace)
    n_days = len(trace.util) // trace.rows_per_day
    if not 1 <= day <= n_days:
        held = trace.heldout_rows[0] // trace.rows_per_day + 1
        raise ConfigError("--day", day, f"a day of the trace, 1-{n_days} (days {held}-{n_days} are held out)")


def simulate_fixed_pstates(cfg: NodeDVFSConfig, day: int, seed: int = 0, progress: bool | None = None
                           ) -> list[FixedPStateResult]:
    """Simulate trace ``day`` (1-based) once per P-state; returns one result per P-state.

    Args:
        cfg: NodeDVFS config (profile, domains, class, dt_s; ``episode_s`` is one day).
        day: 1-based trace day.
        seed: seed of the shared arrival process.
        progress: print a progress line on stderr; default: only when stderr is a terminal.

    Raises:
        ConfigError: ``day`` is not a whole day of the trace.
    """
    check_day(cfg, day)
    freqs = get_profile(cfg.profile).pstates_mhz  # before any work: an unknown profile fails here
    if progress is None:  # a live progress line only where someone watches it
        progress = sys.stderr.isatty()
    n_p = len(freqs)
    venv = NodeDVFSVectorEnv(n_p, config=cfg, shared_arrivals=True)
    venv.reset(seed=seed, options={"start_s": (day - 1) * 86400.0})
    core = venv.core
    actions = np.repeat(np.arange(n_p)[:, None], cfg.n_domains, axis=1)
    steps = core.steps_per_episode
    energy = np.zeros(n_p)
    viol = np.zeros(n_p)
    max_temp = np.zeros(n_p)
    lat_samples = np.zeros((steps, n_p))
    work = np.zeros(n_p)
    t0 = time.perf_counter()
    for i in range(steps):
        _, _, _, _, info = venv.step(actions)
        energy += info["energy_j"]
        viol += info["sla_violation"]
        lat_samples[i] = info["latency_ms"]
        a = core.arrays
        max_temp = np.maximum(max_temp, a.temp_die_c.reshape(n_p, -1).max(axis=1))
        work += a.served.reshape(n_p, -1).sum(axis=1)
        if progress and (i + 1) % max(1, steps // 50) == 0:
            print(f"\r  simulating day {day}: {100 * (i + 1) / steps:5.1f} %  ({time.perf_counter() - t0:5.1f} s)",
                  end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    duration_s = steps * cfg.dt_s
    return [FixedPStateResult(pstate=p, freq_mhz=float(freqs[p]), energy_kwh=float(energy[p] / 3.6e6),
                              mean_power_w=float(energy[p] / duration_s), sla_violation_rate=float(viol[p] / steps),
                              p99_latency_ms=float(np.percentile(lat_samples[:, p], 99)),
                              max_temp_c=float(max_temp[p]), work_done=float(work[p]))
            for p in range(n_p)]


def format_table(results: list[FixedPStateResult]) -> str:
    """Fixed-width text table of :func:`simulate_fixed_pstates` results."""
    head = f"{'P-state':>7} {'MHz':>6} {'energy kWh':>10} {'mean W':>8} {'SLA viol %':>10} {'p99 ms':>9} " \
           f"{'max degC':>8} {'work':>9}"
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.pstate:>7d} {r.freq_mhz:>6.0f} {r.energy_kwh:>10.3f} {r.mean_power_w:>8.1f} "
                     f"{100 * r.sla_violation_rate:>10.2f} {min(r.p99_latency_ms, 1e6):>9.1f} {r.max_temp_c:>8.1f} "
                     f"{r.work_done:>9.0f}")
    return "\n".join(lines)
