"""The clairvoyant carbon oracle of ``powerrl/Datacenter-v0``: deferral on the recorded future intensity.

:class:`CarbonOracle` shifts batch work like :class:`powerrl.baselines.carbon.CarbonForecast` but
reads the *recorded* intensity of the coming steps (``target.carbon_actual``, never deployable)
and uses no margin. It is a reference for what carbon-aware deferral can reach on a held-out
day (not a proven bound: see below). It is not registered itself: it is one of the candidates of
:class:`powerrl.baselines.oracle_search.SearchCarbonOracle`, which the registered ``oracle`` uses
on Datacenter-v0.

What it guarantees, and what not:

* Each unit of new batch work is deferred unless its arrival step is the cleanest step of its
  deferral window (``defer_window_h``, exact future intensities).
* The pool is released in full at the cleanest step of its oldest work's remaining window. When
  batch capacity does not bind, power is linear in work, and all work in the pool shares that
  cleanest step (the common case for CAISO's single midday trough), every unit runs at the
  lowest-intensity step of its own window: the per-unit optimum, a lower bound on the carbon of
  any deferral schedule under those assumptions.
* It is *not* a proven optimum of the env: (a) a release frees the same share of every age in the
  pool, so when younger work's window reaches a cleaner step than the oldest work's, releasing
  together runs it early (at night, when the oldest work's window ends before the morning drop);
  (b) released work queues on the batch nodes, which serve at most their capacity per step, so a
  large pool runs over the steps after its release too; (c) power is not linear in work (idle and
  wake floors, ``docs/model.md``), which is why deferral also saves energy: it packs batch work
  into fewer, fully busy steps. Spreading the release over the cleanest steps at batch capacity
  (water-filling) was tried and emitted more on held-out day 22: it released during the flat
  night instead of waiting for its end.
* So it is no per-day bound on the baselines either: on held-out days 22-27 (shielded, 8 h drain)
  it emitted 7.4 % less than ``no_deferral`` in total and the least of all rules on four days,
  but the honest ``carbon_forecast`` rule was 0.9 % and 1.2 % lower on days 26 and 27.

Ceilings and CRAC setpoint are fixed like the baselines' (``supply_c``, ``ceiling_frac``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from powerrl.baselines.carbon import DEFAULT_SUPPLY_C, DeferralBaseline
from powerrl.control import ControlTarget
from powerrl.errors import ConfigError


class CarbonOracle(DeferralBaseline):
    """Clairvoyant batch deferral on the recorded carbon intensity (not deployable, not registered).

    Each step, with ``c[j]`` the recorded intensity ``j`` steps ahead (``c[0]`` = the next step):

    * defer all new batch work when ``min c[1..W] < c[0]`` (``W``: the env's deferral window);
    * release the whole pool when ``c[0] <= min c[1..i]``, with ``i`` the steps the oldest deferred
      work may still wait (from ``oldest_frac``). When the oldest work is forced in the next step
      (``i = 0``) the minimum is over no step and the whole pool is released with it: the batch
      nodes are busy then anyway, and the wake floor makes adding work to a busy step cheaper
      (on held-out days 22-27 this emitted 0-1.5 % less than judging the rest of the pool on
      the step after).

    Args:
        supply_c, ceiling_frac: see :class:`powerrl.baselines.carbon.DeferralBaseline`.

    ``act_batch`` needs ``time_s`` (trace time of each copy's next step) or a prior
    :meth:`bind` to the env, whose clock it then reads.
    """

    clairvoyant = True
    config_name = "oracle"  # a candidate of the registered ``oracle`` on Datacenter-v0 (oracle_search.py)

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, supply_c: float = DEFAULT_SUPPLY_C,
                 ceiling_frac: float = 1.0) -> None:
        super().__init__(action_space, observation_space, target, supply_c=supply_c, ceiling_frac=ceiling_frac)
        assert self.target is not None
        if self.target.carbon_actual is None:
            raise ConfigError("controller.oracle", None,
                              "a ControlTarget with carbon_actual (build it with powerrl.envs.target.control_target)")
        self._offsets_s = np.arange(self.window_steps_env + 1) * self.dt_s
        self._core: Any = None
        self._copies: np.ndarray | None = None

    def bind(self, env: Any, copies: np.ndarray) -> None:
        """Keep the env's core, for its clock when ``act_batch`` gets no ``time_s``."""
        self._core = getattr(env, "unwrapped", env).core
        self._copies = np.asarray(copies, dtype=np.int64)

    def act_batch(self, observations: np.ndarray, time_s: np.ndarray | None = None) -> np.ndarray:
        """Defer unless now is the cleanest step ahead; release at the cleanest step of the oldest's window."""
        assert self.target is not None and self.target.carbon_actual is not None
        obs = np.asarray(observations)
        if time_s is None:
            if self._core is None or self._copies is None:
                raise ValueError("CarbonOracle needs time_s (trace time of each copy's next step) or bind(env, copies)")
            time_s = self._core.time_s[self._copies]
        c = np.asarray(self.target.carbon_actual(np.asarray(time_s, dtype=np.float64), self._offsets_s))
        defer = c[:, 1:].min(axis=1) < c[:, 0]
        # Oldest work forced in the next step (i = 0): no step left in its window, so the pool goes with it.
        left = self._oldest_left_steps(obs)
        old_min = np.min(np.where(np.arange(c.shape[1])[None, :] <= left[:, None], c, np.inf)[:, 1:], axis=1)
        release = (self._pool_h(obs) > 0.0) & (c[:, 0] <= old_min)
        return self._actions(defer, release)
