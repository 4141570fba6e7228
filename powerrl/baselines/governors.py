"""Linux cpufreq governors for ``powerrl/NodeDVFS-v0``: the rules a stock server runs, as baselines.

Registered names: ``performance``, ``powersave``, ``userspace``, ``ondemand``, ``conservative``,
``schedutil``. Each frequency domain of the env is one cpufreq *policy*; the governor reads the
domain's observation fields and returns a P-state index (0 = f_min) per domain, like
``__cpufreq_driver_target`` picking an entry of the frequency table.

What maps to what:

* the kernel's *load* (busy share of the last sampling period, at the frequency then applied) is
  the ``util`` field; the kernel counts it in integer percent (``dbs_update`` in
  ``drivers/cpufreq/cpufreq_governor.c``), so ondemand and conservative truncate ``100 * util``;
* ``policy->cur`` is the *applied* P-state, the ``pstate`` field (after the shield: a P-state the
  shield lowered is what the kernel would read back too);
* one sampling period is one env step (``dt_s``, 0.1 s by default; the kernel's default
  ``sampling_rate`` is of the same order on server CPUs);
* frequencies are MHz here (the kernel counts kHz). Target frequencies are compared with the table
  to 1 kHz (:data:`FREQ_TOL_MHZ`), the kernel's resolution, so float32 noise in the observation
  never moves a target that sits exactly on a table entry to the next P-state.

``policy->max`` (a thermal governor's cooling limit) is passed to :meth:`CpufreqGovernor.decide` as
``ceiling``; the governors clamp to it the way ``__cpufreq_driver_target`` clamps to
``[policy->min, policy->max]``, and conservative uses it in its own bookkeeping like the kernel.

Pitfalls: the kernel's schedutil reads PELT utilisation (a 32 ms half-life average updated at every
scheduler event), not a per-period busy share; the per-step ``util`` is its closest observable.
Rate limits (``rate_limit_us``), iowait boosting, ``ignore_nice_load`` and ``io_is_busy`` have no
counterpart in the simulator and are left out.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from powerrl.baselines.base import Baseline
from powerrl.control import ControlTarget, register
from powerrl.errors import ConfigError

ENV_ID = "powerrl/NodeDVFS-v0"
#: Resolution of frequency comparisons, MHz: 1 kHz, the unit of the kernel's frequency tables.
FREQ_TOL_MHZ = 1e-3
#: Added to ``100 * util`` before truncating to the kernel's integer percent load, so a float32
#: busy share of exactly 0.29 (stored as 0.28999999) still counts as 29 %.
LOAD_EPS = 1e-4

# drivers/cpufreq/cpufreq_ondemand.c: DEF_FREQUENCY_UP_THRESHOLD, MIN_/MAX_FREQUENCY_UP_THRESHOLD,
# DEF_SAMPLING_DOWN_FACTOR, MAX_SAMPLING_DOWN_FACTOR; powersave_bias is per mille, clamped to 1000
# by store_powersave_bias.
OD_UP_THRESHOLD = 80
OD_UP_THRESHOLD_RANGE = (1, 100)
OD_SAMPLING_DOWN_FACTOR = 1
OD_MAX_SAMPLING_DOWN_FACTOR = 100000
OD_MAX_POWERSAVE_BIAS = 1000
# drivers/cpufreq/cpufreq_conservative.c: DEF_FREQUENCY_UP_THRESHOLD, DEF_FREQUENCY_DOWN_THRESHOLD,
# DEF_FREQUENCY_STEP (percent of policy->max), DEF_SAMPLING_DOWN_FACTOR, MAX_SAMPLING_DOWN_FACTOR;
# store_down_threshold refuses 0 ("otherwise freq will not fall") and anything >= up_threshold.
CS_UP_THRESHOLD = 80
CS_DOWN_THRESHOLD = 20
CS_FREQ_STEP = 5
CS_SAMPLING_DOWN_FACTOR = 1
CS_MAX_SAMPLING_DOWN_FACTOR = 10
# kernel/sched/cpufreq_schedutil.c + include/linux/sched/cpufreq.h: map_util_perf() adds
# util >> 2, i.e. a 1.25 headroom ("the frequency tipping point at util / max = 0.8").
SU_HEADROOM = 1.25


# -- parameter checks -----------------------------------------------------------------------------
def int_param(ctrl: str, key: str, value: Any, lo: int, hi: int, why: str = "") -> int:
    """``value`` as an int in ``[lo, hi]`` (int-valued floats accepted), else :class:`ConfigError`."""
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if ok and float(value) == int(value) and lo <= int(value) <= hi:
        return int(value)
    raise ConfigError(f"controller.{ctrl}.{key}", value, f"an integer in [{lo}, {hi}]{why}")


def float_param(ctrl: str, key: str, value: Any, lo: float, hi: float, why: str = "") -> float:
    """``value`` as a finite float in ``[lo, hi]``, else :class:`ConfigError`."""
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if ok and np.isfinite(value) and lo <= float(value) <= hi:
        return float(value)
    raise ConfigError(f"controller.{ctrl}.{key}", value, f"a number in [{lo}, {hi}]{why}")


# -- frequency-table relations (include/linux/cpufreq.h, cpufreq_table_find_index_*) -------------
def relation_l(freqs_mhz: np.ndarray, target_mhz: np.ndarray | float) -> np.ndarray:
    """CPUFREQ_RELATION_L: lowest P-state at or above the target (f_max when none), to 1 kHz."""
    idx = np.searchsorted(freqs_mhz + FREQ_TOL_MHZ, target_mhz, side="left")
    return np.minimum(idx, len(freqs_mhz) - 1).astype(np.int64)


def relation_h(freqs_mhz: np.ndarray, target_mhz: np.ndarray | float) -> np.ndarray:
    """CPUFREQ_RELATION_H: highest P-state at or below the target (f_min when none), to 1 kHz."""
    idx = np.searchsorted(freqs_mhz - FREQ_TOL_MHZ, target_mhz, side="right") - 1
    return np.maximum(idx, 0).astype(np.int64)


def relation_c(freqs_mhz: np.ndarray, target_mhz: np.ndarray | float) -> np.ndarray:
    """CPUFREQ_RELATION_C: closest P-state; a tie goes to the lower one (``cpufreq_table_find_index_ac``)."""
    lo = relation_h(freqs_mhz, target_mhz)
    hi = np.minimum(lo + 1, len(freqs_mhz) - 1)
    t = np.asarray(target_mhz, dtype=np.float64)
    return np.where(t - freqs_mhz[lo] > freqs_mhz[hi] - t + FREQ_TOL_MHZ, hi, lo).astype(np.int64)


class CpufreqGovernor(Baseline):
    """A cpufreq governor driving every frequency domain of NodeDVFS-v0 as one policy each.

    Subclasses implement :meth:`decide` (``ceiling`` = ``policy->max`` as a P-state per domain, or
    None); :meth:`act_batch` is ``decide(observations, None)``. Per-copy state is sized by
    :meth:`reset` (``batch`` rows); stateless governors accept any batch.
    """

    env_ids = (ENV_ID,)

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None) -> None:
        super().__init__(action_space, observation_space, target)
        t = self.target
        assert t is not None  # needs_target: checked by Controller.__init__
        if not isinstance(action_space, spaces.MultiDiscrete) or action_space.shape != (t.n_units,):
            raise ConfigError(f"controller.{self.name}", action_space,
                              f"the MultiDiscrete P-state space of {ENV_ID} ({t.n_units} domains)")
        self.freqs = np.asarray(t.freqs_mhz, dtype=np.float64)
        self.n_units = t.n_units
        self.top = t.n_pstates - 1
        # Basic slices of the unit-major layout: views, no copies (a fancy index costs ~1 us).
        self._util = self._unit_slice("util")
        self._pstate = self._unit_slice("pstate")
        # Look-up edges for ndarray.searchsorted (the method: np.searchsorted's wrapper costs ~0.7 us more).
        self._pedges = (np.arange(self.top) + 0.5) / max(self.top, 1)  # pstate field -> P-state index
        self._ledges = self.freqs[:-1] + FREQ_TOL_MHZ  # RELATION_L: .searchsorted(t)
        self._hedges = self.freqs[1:] - FREQ_TOL_MHZ  # RELATION_H: .searchsorted(t, "right")
        # Integer percent load as a count of edges <= util: load = floor(100 * util + LOAD_EPS).
        self._load_edges = (np.arange(1, 101) - LOAD_EPS) / 100.0
        # Each copy starts like a freshly started governor (cpufreq_governor_start).
        Baseline.reset(self, None, 1)

    def act_batch(self, observations: np.ndarray, time_s: np.ndarray | None = None) -> np.ndarray:
        """P-state per domain, int64 ``[B, n_domains]``."""
        return self.decide(np.asarray(observations), None)

    @abstractmethod
    def decide(self, obs: np.ndarray, ceiling: np.ndarray | None) -> np.ndarray:
        """P-states ``[B, n_domains]`` for observations ``obs``, at most ``ceiling`` (``policy->max``) if given."""

    # -- helpers for subclasses ----------------------------------------------------------------
    def _cur(self, obs: np.ndarray) -> np.ndarray:
        """Applied P-state (``policy->cur``) per domain, from the ``pstate`` field."""
        return self._pedges.searchsorted(obs[:, self._pstate])

    def _load(self, util: np.ndarray) -> np.ndarray:
        """The kernel's integer percent load (``dbs_update``: ``100 * busy / wall``, truncated), 0..100."""
        return self._load_edges.searchsorted(util, "right")


def _fixed(obs: np.ndarray, n: int, pstate: int, ceiling: np.ndarray | None) -> np.ndarray:
    out = np.full((obs.shape[0], n), pstate, dtype=np.int64)
    return out if ceiling is None else np.minimum(out, ceiling)


@register("performance")
class Performance(CpufreqGovernor):
    """``performance``: every domain at f_max (drivers/cpufreq/cpufreq_performance.c: ``policy->max``)."""

    def decide(self, obs: np.ndarray, ceiling: np.ndarray | None) -> np.ndarray:
        """f_max (``policy->max``) everywhere."""
        return _fixed(obs, self.n_units, self.top, ceiling)


@register("powersave")
class Powersave(CpufreqGovernor):
    """``powersave``: every domain at f_min (drivers/cpufreq/cpufreq_powersave.c: ``policy->min``)."""

    def decide(self, obs: np.ndarray, ceiling: np.ndarray | None) -> np.ndarray:
        """f_min everywhere."""
        return _fixed(obs, self.n_units, 0, ceiling)


@register("userspace")
class Userspace(CpufreqGovernor):
    """``userspace``: a fixed P-state set by the operator (``scaling_setspeed``).

    Args:
        pstate: P-state index; negative values count from the top like Python (``-1`` = f_max,
            the default: the userspace governor starts at ``policy->cur``, which is f_max after boot).
    """

    param_grid: ClassVar[dict[str, tuple[Any, ...]]] = {"pstate": tuple(range(11))}  # the EPYC 7502's 11 P-states

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, pstate: int = -1) -> None:
        super().__init__(action_space, observation_space, target)
        n = self.top + 1
        self.pstate = int_param(self.name, "pstate", pstate, -n, n - 1, f" (this profile has {n} P-states; -1 = f_max)")
        self._p = self.pstate % n

    def decide(self, obs: np.ndarray, ceiling: np.ndarray | None) -> np.ndarray:
        """The fixed P-state everywhere."""
        return _fixed(obs, self.n_units, self._p, ceiling)


@register("ondemand")
class Ondemand(CpufreqGovernor):
    """``ondemand`` (drivers/cpufreq/cpufreq_ondemand.c, ``od_update``).

    Each sampling period, with ``load`` the integer percent busy share since the last evaluation:

    * ``load > up_threshold``: f_max (``policy->max``); if the domain was below f_max, the next
      evaluation waits ``sampling_down_factor`` periods (``rate_mult``), holding f_max meanwhile,
      and the load is then averaged over that longer window like ``dbs_update`` does;
    * otherwise ``f = f_min + load * (f_max - f_min) / 100`` over the hardware range
      (``cpuinfo.min/max_freq``), mapped to the *closest* P-state (CPUFREQ_RELATION_C, ties down).

    ``powersave_bias`` (per mille) lowers the target: ``freq_avg = f_req * (1 - bias / 1000)`` with
    ``f_req`` the RELATION_L entry, and the kernel then alternates the table entries just below and
    above ``freq_avg`` within the period so the average is ``freq_avg`` (``powersave_bias_target``).
    A step cannot be split, so here the two alternate across steps (a deterministic error-carrying
    dither per copy) with the same time share.

    Args:
        up_threshold: percent, 1..100 (kernel default 80).
        sampling_down_factor: 1..100000 (kernel default 1 = off).
        powersave_bias: per mille, 0..1000 (kernel default 0 = off).
    """

    param_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        "up_threshold": (50, 60, 70, 80, 90, 95),
        "sampling_down_factor": (1, 10),
        "powersave_bias": (0, 100),
    }

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, up_threshold: int = OD_UP_THRESHOLD,
                 sampling_down_factor: int = OD_SAMPLING_DOWN_FACTOR, powersave_bias: int = 0) -> None:
        self.up_threshold = int_param("ondemand", "up_threshold", up_threshold, *OD_UP_THRESHOLD_RANGE,
                                      " (percent; the kernel's MIN/MAX_FREQUENCY_UP_THRESHOLD)")
        self.sampling_down_factor = int_param("ondemand", "sampling_down_factor", sampling_down_factor, 1,
                                              OD_MAX_SAMPLING_DOWN_FACTOR, " (the kernel's MAX_SAMPLING_DOWN_FACTOR)")
        self.powersave_bias = int_param("ondemand", "powersave_bias", powersave_bias, 0, OD_MAX_POWERSAVE_BIAS,
                                        " (per mille of the target frequency)")
        super().__init__(action_space, observation_space, target)
        self._tables()
        self._fast = self.sampling_down_factor == 1 and self.powersave_bias == 0

    def _tables(self) -> None:
        """Decision per integer load 0..100: (low P-state, high P-state, time share of the high one)."""
        f = self.freqs
        f_min_khz, f_max_khz = round(f[0] * 1000), round(f[-1] * 1000)
        load = np.arange(101)
        # freq_next = min_f + load * (max_f - min_f) / 100, unsigned integer kHz arithmetic.
        next_mhz = (f_min_khz + load * (f_max_khz - f_min_khz) // 100) / 1000.0
        if self.powersave_bias == 0:
            lo = hi = relation_c(f, next_mhz)
            share = np.zeros(101)
            up = (self.top, self.top, 0.0)  # dbs_freq_increase(policy, policy->max), RELATION_H
        else:
            lo, hi, share = self._bias(relation_l(f, next_mhz))
            ulo, uhi, ushare = self._bias(relation_h(f, np.array([f[-1]])))
            up = (int(ulo[0]), int(uhi[0]), float(ushare[0]))
        over = load > self.up_threshold
        self._lo = np.where(over, up[0], lo).astype(np.int64)
        self._hi = np.where(over, up[1], hi).astype(np.int64)
        self._share = np.where(over, up[2], share)

    def _bias(self, req: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``powersave_bias_target``: the entries around ``f_req * (1 - bias/1000)`` and the high one's share."""
        f = self.freqs
        req_khz = np.rint(f[req] * 1000).astype(np.int64)
        avg_khz = req_khz - req_khz * self.powersave_bias // 1000
        avg = avg_khz / 1000.0
        lo, hi = relation_h(f, avg), relation_l(f, avg)
        span = f[hi] - f[lo]
        share = np.where(span > 0, (avg - f[lo]) / np.where(span > 0, span, 1.0), 0.0)
        hi = np.where(span > 0, hi, lo)  # freq_hi == freq_lo: no sub-sampling
        return lo, hi, share

    def _reset_state(self, batch: int) -> None:
        shape = (batch, self.n_units)
        self._acc = np.zeros(shape)  # busy share summed since the last evaluation
        self._cnt = np.zeros(shape, dtype=np.int64)  # periods since the last evaluation
        self._wait = np.ones(shape, dtype=np.int64)  # rate_mult: periods between evaluations
        self._dlo = np.full(shape, self.top, dtype=np.int64)  # decision in force: low / high entry, share
        self._dhi = np.full(shape, self.top, dtype=np.int64)
        self._dshare = np.zeros(shape)
        self._carry = np.zeros(shape)  # dither error of the powersave_bias alternation

    def decide(self, obs: np.ndarray, ceiling: np.ndarray | None) -> np.ndarray:
        """The P-states ``od_update`` picks (class docstring)."""
        util = obs[:, self._util]
        if self._fast:  # one table look-up: the decision depends only on the integer load
            out = self._lo[self._load(util)]
            return out if ceiling is None else np.minimum(out, ceiling)
        self._check_batch(obs)
        self._acc += util
        self._cnt += 1
        due = self._cnt >= self._wait
        if due.any():
            load = self._load(self._acc / np.maximum(self._cnt, 1))
            over = load > self.up_threshold
            pmax = self.top if ceiling is None else ceiling
            # rate_mult: sampling_down_factor when jumping to max from below, back to 1 under the threshold.
            wait = np.where(over, np.where(self._cur(obs) < pmax, self.sampling_down_factor, self._wait), 1)
            lo, hi = self._lo[load], self._hi[load]
            wait = np.where(lo != hi, 1, wait)  # sub-sampling (powersave_bias) ignores rate_mult
            np.copyto(self._wait, wait, where=due)
            np.copyto(self._dlo, lo, where=due)
            np.copyto(self._dhi, hi, where=due)
            np.copyto(self._dshare, self._share[load], where=due)
            self._acc[due] = 0.0
            self._cnt[due] = 0
        if self.powersave_bias:
            c = self._carry + self._dshare
            use_hi = c >= 0.5
            self._carry = c - use_hi
            out = np.where(use_hi, self._dhi, self._dlo)
        else:
            out = self._dlo.copy()
        return out if ceiling is None else np.minimum(out, ceiling)


@register("conservative")
class Conservative(CpufreqGovernor):
    """``conservative`` (drivers/cpufreq/cpufreq_conservative.c, ``cs_dbs_update``).

    Keeps a requested frequency per domain (``requested_freq``, starting at the applied one) and
    moves it one ``freq_step`` (percent of f_max) per sampling period:

    * ``load > up_threshold``: ``req = min(req + step, policy->max)``, applied with
      CPUFREQ_RELATION_H (highest P-state at or below ``req``); nothing when already at max;
    * else, every ``sampling_down_factor``-th period, ``load < down_threshold``:
      ``req = req - step`` (``policy->min`` when ``req <= step``), applied with CPUFREQ_RELATION_L
      (lowest P-state at or above); nothing when already at ``policy->min``;
    * otherwise the applied frequency is kept. A ``req`` outside ``[policy->min, policy->max]``
      (a limit changed, or a step went below f_min) restarts from the applied frequency.

    Args:
        up_threshold: percent, ``down_threshold`` < it <= 100 (kernel default 80).
        down_threshold: percent, 1 <= it < ``up_threshold`` (kernel default 20).
        freq_step: percent of f_max per step, 0..100 (kernel default 5; 0 freezes the frequency).
        sampling_down_factor: 1..10 (kernel default 1).
    """

    param_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        "up_threshold": (60, 80, 95),
        "down_threshold": (10, 20, 40),
        "freq_step": (5, 10, 20),
    }

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, up_threshold: int = CS_UP_THRESHOLD,
                 down_threshold: int = CS_DOWN_THRESHOLD, freq_step: int = CS_FREQ_STEP,
                 sampling_down_factor: int = CS_SAMPLING_DOWN_FACTOR) -> None:
        self.up_threshold = int_param("conservative", "up_threshold", up_threshold, 2, 100, " (percent)")
        self.down_threshold = int_param("conservative", "down_threshold", down_threshold, 1, self.up_threshold - 1,
                                        f" (percent, below up_threshold = {self.up_threshold})")
        self.freq_step = int_param("conservative", "freq_step", freq_step, 0, 100, " (percent of f_max)")
        self.sampling_down_factor = int_param("conservative", "sampling_down_factor", sampling_down_factor, 1,
                                              CS_MAX_SAMPLING_DOWN_FACTOR, " (the kernel's MAX_SAMPLING_DOWN_FACTOR)")
        super().__init__(action_space, observation_space, target)
        # get_freq_step: policy->max * freq_step / 100 (integer kHz), DEF_FREQUENCY_STEP kHz when that is 0.
        step_khz = round(self.freqs[-1] * 1000) * self.freq_step // 100
        self._step = (step_khz if step_khz > 0 else CS_FREQ_STEP) / 1000.0
        # "requested_freq > freq_step ? requested_freq - freq_step : policy->min" only bites when a step
        # reaches below f_min from f_min itself, i.e. when the step is at least f_min.
        self._may_underflow = self._step >= self.freqs[0]
        # Integer-load thresholds as busy shares: load > up <=> util >= (up + 1 - eps) / 100, load < down
        # <=> util < (down - eps) / 100 (0-d arrays: comparisons with them skip a scalar conversion).
        self._up_u = np.array((self.up_threshold + 1 - LOAD_EPS) / 100.0)
        self._down_u = np.array((self.down_threshold - LOAD_EPS) / 100.0)
        self._fmax_lo = np.array(self.freqs[-1] - FREQ_TOL_MHZ)
        self._fmax_hi = np.array(self.freqs[-1] + FREQ_TOL_MHZ)
        self._fmin_lo = np.array(self.freqs[0] - FREQ_TOL_MHZ)
        self._fmin_tol = np.array(self.freqs[0] + FREQ_TOL_MHZ)

    def _reset_state(self, batch: int) -> None:
        shape = (batch, self.n_units)
        self._req = np.full(shape, -1.0)  # requested_freq, MHz; -1 = out of range: starts from policy->cur
        self._down_skip = np.zeros(shape, dtype=np.int64)

    def decide(self, obs: np.ndarray, ceiling: np.ndarray | None) -> np.ndarray:
        """The P-states ``cs_dbs_update`` applies (class docstring)."""
        self._check_batch(obs)
        f = self.freqs
        cur = self._cur(obs)
        if self.freq_step == 0:  # "break out if we 'cannot' reduce the speed"
            return cur if ceiling is None else np.minimum(cur, ceiling)
        util = obs[:, self._util].astype(np.float64)
        if ceiling is None:
            f_max, f_max_lo, f_max_hi = f[-1], self._fmax_lo, self._fmax_hi
        else:  # policy->max lowered by a cooling device
            f_max = f[ceiling]
            f_max_lo, f_max_hi = f_max - FREQ_TOL_MHZ, f_max + FREQ_TOL_MHZ
        req = self._req
        # Out of [policy->min, policy->max] (first period, a limit moved, a step under f_min): restart at cur.
        stale = (req > f_max_hi) | (req < self._fmin_lo)
        req = self._req = np.where(stale, f[cur], req)
        up = util >= self._up_u
        raise_ = up & (req < f_max_lo)
        lower = util < self._down_u  # implies not up
        if self.sampling_down_factor > 1:  # ++down_skip < sampling_down_factor: skip the decrease check
            skip = self._down_skip
            skip += 1
            skip[up] = 0
            due = skip >= self.sampling_down_factor
            skip[due] = 0
            lower &= due
        lower &= req > self._fmin_tol
        changed = raise_ | lower
        if not changed.any():  # the common case: load between the thresholds, or already at the bound
            return cur if ceiling is None else np.minimum(cur, ceiling)
        step: float | np.ndarray = self._step
        if ceiling is not None:
            # get_freq_step scales with policy->max, i.e. the cooling device's ceiling when one is set.
            step_khz = np.floor(np.round(f_max * 1000.0) * self.freq_step / 100.0)
            step = np.where(step_khz > 0, step_khz, CS_FREQ_STEP) / 1000.0
        req_down = req - step
        if self._may_underflow or ceiling is not None:
            req_down = np.where(req > step, req_down, f[0])
        # One target per domain (raise and lower exclusive); the stored request is not clamped to f_min,
        # the frequency is (__cpufreq_driver_target clamps to [policy->min, policy->max]).
        new_req = np.where(raise_, np.minimum(req + step, f_max), req_down)
        self._req = np.where(changed, new_req, req)
        t = np.maximum(new_req, f[0])
        out = np.where(raise_, self._hedges.searchsorted(t, "right"),
                       np.where(lower, self._ledges.searchsorted(t), cur))
        return out if ceiling is None else np.minimum(out, ceiling)


@register("schedutil")
class Schedutil(CpufreqGovernor):
    """``schedutil`` (kernel/sched/cpufreq_schedutil.c, ``get_next_freq``; ``map_util_freq``/``map_util_perf``).

    ``f = headroom * f_max * util_inv / max`` with the frequency-invariant utilisation
    ``util_inv = util * f_cur / f_max`` (``f_cur`` from the ``pstate`` field), i.e.
    ``f = headroom * f_cur * util``, resolved to the lowest P-state at or above ``f``
    (``cpufreq_driver_resolve_freq``: CPUFREQ_RELATION_L), at most ``policy->max``.

    Args:
        headroom: the kernel's fixed 1.25 (``util + (util >> 2)``: f_max is reached at 80 %
            invariant utilisation); 1.0..4.0.
    """

    param_grid: ClassVar[dict[str, tuple[Any, ...]]] = {"headroom": (1.0, 1.1, 1.25, 1.4, 1.6, 2.0, 2.5, 3.0, 3.5, 4.0)}

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, headroom: float = SU_HEADROOM) -> None:
        self.headroom = float_param("schedutil", "headroom", headroom, 1.0, 4.0,
                                    " (the kernel's is 1.25; below 1 f_max would be unreachable)")
        super().__init__(action_space, observation_space, target)
        self._scaled = self.headroom * self.freqs  # headroom * f_cur, by P-state

    def decide(self, obs: np.ndarray, ceiling: np.ndarray | None) -> np.ndarray:
        """``get_next_freq`` resolved with RELATION_L, per domain."""
        out = self._ledges.searchsorted(self._scaled[self._cur(obs)] * obs[:, self._util])
        return out if ceiling is None else np.minimum(out, ceiling)
