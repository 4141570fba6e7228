"""Linux thermal governors for ``powerrl/NodeDVFS-v0``: ``step_wise`` and ``power_allocator`` (IPA).

A thermal governor does not pick frequencies itself: it limits the P-state an inner cpufreq
governor (``governor``, default ``schedutil``) picks, the way a cpufreq *cooling device* lowers
``policy->max``. Cooling state ``s`` of a domain is the ceiling P-state ``n_pstates - 1 - s``
(drivers/thermal/cpufreq_cooling.c: state 0 = no limit, ``max_level`` = the lowest frequency).
The ceiling is handed to the inner governor as ``policy->max`` when it is one of
:mod:`powerrl.baselines.governors`; any other registered NodeDVFS controller is clamped after it acts.

The thermal zone is polled once per env step (the kernel polls every ``passive_delay`` while
mitigating, typically 100-250 ms; the env's default step is 0.1 s). Units are SI throughout:
degC and W where the kernel counts millidegrees and mW. The PID gains keep the kernel's numbers
(mW/m degC = W/degC), so a ``k_po`` from a device tree carries over unchanged.

Pitfalls: the ``temp_die_c`` field is the simulator's die temperature per domain; ``step_wise``
runs one zone per domain, ``power_allocator`` one zone for the whole server (the hottest domain,
like a package sensor) with every domain as a power actor. Both act only once the die is near
their trips, so under the env's default 25 degC inlet they mostly pass the inner governor through.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from powerrl.baselines.base import Baseline
from powerrl.baselines.governors import ENV_ID, CpufreqGovernor, float_param
from powerrl.control import Controller, ControlTarget, controller_class, make_controller, register
from powerrl.errors import ConfigError

#: Default inner cpufreq governor (the kernel's default governor on current distributions).
DEFAULT_GOVERNOR = "schedutil"
# step_wise: a passive trip at 80 degC with 2 degC hysteresis (typical ACPI/DT passive trip values;
# the hysteresis semantics are drivers/thermal/thermal_core.c handle_thermal_trip: once crossed on
# the way up, the trip's threshold drops to temp - hyst until the zone cools below it).
SW_TRIP_C = 80.0
SW_HYST_C = 2.0
# power_allocator: the two passive trips of Documentation/driver-api/thermal/power_allocator.rst
# (switch-on, then the control temperature the PID holds); integral_cutoff and k_d default to 0
# in struct thermal_zone_params (the kernel estimates only k_po, k_pu, k_i).
IPA_SWITCH_ON_C = 75.0
IPA_CONTROL_C = 85.0
#: cpufreq_power2state: a zero load is taken as 1 % (``last_load ?: 1``) so the normalisation never divides by 0.
IPA_MIN_LOAD = 0.01


class ThermalGovernor(Baseline):
    """A thermal governor over an inner cpufreq governor: ``ceiling(obs)`` limits its P-states.

    Args:
        governor: registered name of the inner controller (any non-clairvoyant NodeDVFS controller
            that is not itself a thermal governor), default ``schedutil``.
        governor_params: keyword parameters of the inner controller (e.g. ``{"headroom": 1.4}``).
    """

    env_ids = (ENV_ID,)

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, governor: str = DEFAULT_GOVERNOR,
                 governor_params: dict[str, Any] | None = None) -> None:
        super().__init__(action_space, observation_space, target)
        t = self.target
        assert t is not None  # needs_target: checked by Controller.__init__
        key = f"controller.{self.name}.governor"
        if not isinstance(governor, str):
            raise ConfigError(key, governor, "the registered name of a cpufreq governor, e.g. schedutil")
        try:
            cls = controller_class(governor)
        except ConfigError as exc:  # say which parameter named it; keep the list of registered names
            raise ConfigError(key, governor, exc.expected) from None
        if issubclass(cls, ThermalGovernor) or cls.clairvoyant or (cls.env_ids and ENV_ID not in cls.env_ids):
            raise ConfigError(key, governor, f"a deployable {ENV_ID} controller that is not a thermal governor "
                              "(performance, powersave, userspace, ondemand, conservative, schedutil)")
        if governor_params is not None and not isinstance(governor_params, dict):
            raise ConfigError(f"controller.{self.name}.governor_params", governor_params,
                              f"a mapping of {governor}'s parameters, or null")
        self.governor = governor
        self.governor_params = dict(governor_params or {})
        self.inner: Controller = make_controller(governor, action_space, observation_space, target=t,
                                                 **self.governor_params)
        self.n_units = t.n_units
        self.top = t.n_pstates - 1
        self._util = self._unit_slice("util")
        self._pstate = self._unit_slice("pstate")
        self._temp = self._unit_slice("temp_die_c")
        Baseline.reset(self, None, 1)  # zones unthrottled (the inner governor reset itself when built)

    def reset(self, seed: int | None = None, batch: int = 1) -> None:
        """Start ``batch`` copies (zones unthrottled, controller state cleared) and reset the inner governor."""
        super().reset(seed, batch)
        self.inner.reset(seed, batch)

    @abstractmethod
    def _reset_state(self, batch: int) -> None:
        """Unthrottle every zone of ``batch`` copies and clear the controller state."""

    @abstractmethod
    def ceiling(self, obs: np.ndarray) -> np.ndarray:
        """Highest allowed P-state per domain, int64 ``[B, n_domains]``; advances the zone state one poll."""

    def act_batch(self, observations: np.ndarray, time_s: np.ndarray | None = None) -> np.ndarray:
        """The inner governor's P-states under this poll's ceiling, int64 ``[B, n_domains]``."""
        obs = np.asarray(observations)
        self._check_batch(obs)
        cap = self.ceiling(obs)
        if isinstance(self.inner, CpufreqGovernor):
            return self.inner.decide(obs, cap)
        return np.minimum(np.asarray(self.inner.act_batch(obs, time_s), dtype=np.int64), cap)


@register("step_wise")
class StepWise(ThermalGovernor):
    """``step_wise`` (drivers/thermal/gov_step_wise.c, ``get_target_state``), one zone per domain.

    Per poll, with ``throttle = temp >= threshold`` (the trip, or ``trip - hyst`` once it has been
    crossed on the way up and until the zone cools below that) and the trend the sign of
    ``temp - last_temp`` (``thermal_zone_get_trend`` without a driver trend):

    * throttling and rising: cooling state + 1 (ceiling one P-state lower), up to f_min;
    * throttling and falling: cooling state - 1, but at least 1 while the trip is active;
    * not throttling and falling: no limit (current mainline goes straight to the instance's lower
      state; ``full_release=False`` releases one state per poll instead, as kernels before 2024 did);
    * otherwise: unchanged.

    Args:
        trip_c: passive trip, degC (default 80).
        hyst_c: trip hysteresis, degC, 0 <= hyst_c < trip_c (default 2).
        full_release: release every state at once below the threshold (default True).
    """

    param_grid: ClassVar[dict[str, tuple[Any, ...]]] = {"trip_c": (70.0, 75.0, 80.0, 85.0, 90.0),
                                                        "hyst_c": (1.0, 2.0, 5.0)}

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, trip_c: float = SW_TRIP_C, hyst_c: float = SW_HYST_C,
                 full_release: bool = True, governor: str = DEFAULT_GOVERNOR,
                 governor_params: dict[str, Any] | None = None) -> None:
        self.trip_c = float_param("step_wise", "trip_c", trip_c, 1.0, 150.0, " (degC)")
        self.hyst_c = float_param("step_wise", "hyst_c", hyst_c, 0.0, self.trip_c - 1e-6,
                                  f" (degC, below trip_c = {self.trip_c})")
        if not isinstance(full_release, bool | np.bool_):
            raise ConfigError("controller.step_wise.full_release", full_release, "true or false")
        self.full_release = bool(full_release)
        self._trip = np.array(self.trip_c)
        self._release_c = np.array(self.trip_c - self.hyst_c)  # the threshold once the trip is crossed
        super().__init__(action_space, observation_space, target, governor, governor_params)
        self._floor = min(1, self.top)  # throttled and falling: min(instance->lower + 1, instance->upper), lower 0

    def _reset_state(self, batch: int) -> None:
        shape = (batch, self.n_units)
        self.state = np.zeros(shape, dtype=np.int64)  # cooling state: 0 = no limit .. top = f_min
        self._tripped = np.zeros(shape, dtype=bool)  # threshold lowered by the hysteresis
        # THERMAL_TEMP_INVALID before the first poll: the first reading counts as rising, so a zone
        # already above its trip gets one state at once (the !instance->initialized branch).
        self._last = np.full(shape, -np.inf)
        self._engaged = False  # any cooling state or lowered threshold: the full update must run
        self._free = np.full(shape, self.top, dtype=np.int64)  # the no-limit ceiling (never handed out mutable)
        self._free.setflags(write=False)

    def ceiling(self, obs: np.ndarray) -> np.ndarray:
        """One ``step_wise`` poll per domain; returns ``top - cooling state``."""
        temp = obs[:, self._temp].astype(np.float64)
        hot = temp >= self._release_c
        if not self._engaged and not hot.any():  # cool and unthrottled: nothing can change
            self._last = temp
            return self._free
        throttle = np.where(self._tripped, hot, temp >= self._trip)
        rising = temp > self._last
        falling = temp < self._last
        s = self.state
        # Signed arithmetic: the kernel's unsigned cur_state - 1 at state 0 would wrap to the upper state.
        release = 0 if self.full_release else np.maximum(s - 1, 0)
        s = np.where(throttle & rising, np.minimum(s + 1, self.top),
                     np.where(throttle & falling, np.maximum(s - 1, self._floor),
                              np.where(~throttle & falling, release, s)))
        self.state = s
        self._tripped = throttle
        self._last = temp
        self._engaged = bool(throttle.any() or s.any())
        return self.top - s


@register("power_allocator")
class PowerAllocator(ThermalGovernor):
    """``power_allocator`` / IPA (drivers/thermal/gov_power_allocator.c), one zone for the server.

    Zone temperature ``T`` = hottest domain. Below ``switch_on_c`` the PID is reset
    (``reset_pid_controller``) and every domain is unthrottled (``allow_maximum_power``). Above:

    * ``err = control_c - T``; ``p = (k_po if err < 0 else k_pu) * err``;
      ``i = k_i * sum(err)`` where ``err`` is accumulated only while ``err < integral_cutoff_c``
      and ``|i| < max power``; ``d = k_d * (err - prev_err) / dt_s`` (``pid_controller``);
    * budget ``= clamp(sustainable + p + i + d, 0, sum of the actors' max power)``;
    * each domain requests ``util * P(cur)`` (``cpufreq_get_requested_power``: power at the applied
      frequency times load) with ``P = target.busy_w_at_pstate``; the budget is split in proportion
      to the requests, capped at each domain's max power with the excess re-split by headroom
      (``divvy_up_power``);
    * a domain's grant becomes the highest P-state with ``P <= grant / util``
      (``cpufreq_power2state``; ``util`` at least 1 %), f_min when none fits.

    Gains not given are estimated like ``estimate_pid_constants``: ``k_po = sustainable / (control -
    switch_on)``, ``k_pu = 2 * sustainable / (control - switch_on)``, ``k_i = k_pu / 10``. The
    default sustainable power is the kernel's estimate (``estimate_sustainable_power``): the sum
    over actors of their power at the lowest OPP, times ``sustainable_scale``.

    Power here is whole-domain power (``busy_w_at_pstate`` includes the idle share) where the
    kernel's energy model holds dynamic power; the budget and the requests use the same table, so
    the allocation is consistent, but a sustainable power taken from a device tree (dynamic mW)
    must be converted before use.

    Args:
        switch_on_c: first passive trip, degC (default 75).
        control_c: control temperature (last passive trip), degC, above ``switch_on_c`` (default 85).
        sustainable_power_w: W, or None for the kernel's estimate.
        sustainable_scale: multiplies the sustainable power (default 1; the tuning axis).
        k_po, k_pu, k_i: W/degC (per poll for ``k_i``), or None to estimate.
        k_d: W s/degC (default 0). integral_cutoff_c: degC (default 0).
    """

    param_grid: ClassVar[dict[str, tuple[Any, ...]]] = {"control_c": (80.0, 85.0, 90.0, 95.0),
                                                        "sustainable_scale": (0.75, 1.0, 1.5, 2.0)}

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, switch_on_c: float = IPA_SWITCH_ON_C,
                 control_c: float = IPA_CONTROL_C, sustainable_power_w: float | None = None,
                 sustainable_scale: float = 1.0, k_po: float | None = None, k_pu: float | None = None,
                 k_i: float | None = None, k_d: float = 0.0, integral_cutoff_c: float = 0.0,
                 governor: str = DEFAULT_GOVERNOR, governor_params: dict[str, Any] | None = None) -> None:
        name = "power_allocator"
        self.switch_on_c = float_param(name, "switch_on_c", switch_on_c, 0.0, 149.0, " (degC)")
        self.control_c = float_param(name, "control_c", control_c, self.switch_on_c + 0.1, 150.0,
                                     f" (degC, above switch_on_c = {self.switch_on_c})")
        self.sustainable_scale = float_param(name, "sustainable_scale", sustainable_scale, 1e-3, 100.0)
        self.sustainable_power_w = (None if sustainable_power_w is None else
                                    float_param(name, "sustainable_power_w", sustainable_power_w, 1e-3, 1e7, " (W)"))
        gains = {}
        for key, val in (("k_po", k_po), ("k_pu", k_pu), ("k_i", k_i)):
            gains[key] = None if val is None else float_param(name, key, val, 0.0, 1e7, " (W/degC)")
        self.k_po, self.k_pu, self.k_i = gains["k_po"], gains["k_pu"], gains["k_i"]
        self.k_d = float_param(name, "k_d", k_d, 0.0, 1e7, " (W s/degC)")
        self.integral_cutoff_c = float_param(name, "integral_cutoff_c", integral_cutoff_c, -150.0, 150.0, " (degC)")
        super().__init__(action_space, observation_space, target, governor, governor_params)
        t = self.target
        assert t is not None
        self.dt_s = float(t.dt_s)
        self._power = np.asarray(t.busy_w_at_pstate, dtype=np.float64)  # [n_units, n_pstates], W
        self._max_w = self._power[:, -1].copy()  # each actor's max power (state2power of instance->lower)
        self.max_power_w = float(self._max_w.sum())
        base = float(self._power[:, 0].sum()) if self.sustainable_power_w is None else self.sustainable_power_w
        self.sustainable_w = base * self.sustainable_scale
        span = self.control_c - self.switch_on_c
        self.gains = {"k_po": self.k_po if self.k_po is not None else self.sustainable_w / span,
                      "k_pu": self.k_pu if self.k_pu is not None else 2.0 * self.sustainable_w / span}
        self.gains["k_i"] = self.k_i if self.k_i is not None else self.gains["k_pu"] / 10.0
        # 0-d arrays: NumPy compares and multiplies them without converting a Python scalar each call.
        self._k_po, self._k_pu, self._k_i = (np.array(self.gains[k]) for k in ("k_po", "k_pu", "k_i"))
        self._control = np.array(self.control_c)
        self._cutoff = np.array(self.integral_cutoff_c)
        self._max_power = np.array(self.max_power_w)
        self._rows = np.arange(self.n_units)
        self._power_tol = self._power[None, :, :] - 1e-9  # [1, n_units, n_pstates], for the fit test
        self._switch_on = np.array(self.switch_on_c)
        self._pedges = (np.arange(self.top) + 0.5) / max(self.top, 1)  # pstate field -> P-state index

    def _reset_state(self, batch: int) -> None:
        self.err_integral = np.zeros(batch)  # degC * polls
        self.prev_err = np.zeros(batch)
        self.budget_w = np.full(batch, np.inf)  # last granted total (inf = unthrottled), for reports/tests
        self._engaged = False  # some zone above switch-on since the last reset of its controller
        self._free = np.full((batch, self.n_units), self.top, dtype=np.int64)
        self._free.setflags(write=False)

    def power_budget(self, temp: np.ndarray) -> np.ndarray:
        """``pid_controller``: the zone's power budget ``[B]`` in W for zone temperatures ``temp`` (one poll)."""
        k_i = self._k_i
        err = self._control - temp
        p = np.where(err < 0.0, self._k_po, self._k_pu) * err
        i = k_i * self.err_integral
        i_next = i + k_i * err
        # Integrate only under the cutoff, and only while the integral term stays below the max power.
        grow = (err < self._cutoff) & (np.abs(i_next) < self._max_power)
        i = np.where(grow, i_next, i)
        self.err_integral = np.where(grow, self.err_integral + err, self.err_integral)
        total = self.sustainable_w + p + i
        if self.k_d:
            total = total + self.k_d * (err - self.prev_err) / self.dt_s
        self.prev_err = err
        return np.minimum(np.maximum(total, 0.0), self._max_power)

    def divvy(self, req_w: np.ndarray, budget_w: np.ndarray) -> np.ndarray:
        """``divvy_up_power``: ``budget`` ``[B]`` split over domains ``[B, n]`` by request, capped at max power."""
        total = np.maximum(req_w.sum(axis=1), 1e-9)  # "prevent division by 0 if none of the actors request power"
        granted = req_w * (budget_w / total)[:, None]
        over = granted > self._max_w
        if not over.any():
            return granted
        # Re-divvy the power above the actors' max among the others by their headroom to max.
        extra = np.where(over, granted - self._max_w, 0.0).sum(axis=1)
        granted = np.minimum(granted, self._max_w)
        head = self._max_w - granted
        cap_extra = head.sum(axis=1)
        share = np.minimum(extra, cap_extra) / np.maximum(cap_extra, 1e-12)
        return granted + head * share[:, None]

    def ceiling(self, obs: np.ndarray) -> np.ndarray:
        """One IPA poll of the server's zone; returns the P-state ceiling per domain."""
        temp = obs[:, self._temp].max(axis=1).astype(np.float64)
        below = temp < self._switch_on
        if below.all():  # the common case: reset the PID, allow maximum power
            if self._engaged:
                self.err_integral[:] = 0.0
                self.prev_err[:] = 0.0
                self.budget_w[:] = np.inf
                self._engaged = False
            return self._free
        self._engaged = True
        util = obs[:, self._util].astype(np.float64)
        cur = self._pedges.searchsorted(obs[:, self._pstate])
        budget = self.power_budget(temp)
        req = util * self._power[self._rows, cur]
        granted = self.divvy(req, budget)
        norm = granted / np.maximum(util, IPA_MIN_LOAD)
        # Highest P-state whose full-load power fits the normalised grant (lowest when none): power
        # rises with the P-state, so that is the count of fitting entries less one.
        cap = np.maximum((self._power_tol <= norm[:, :, None]).sum(axis=2) - 1, 0)
        if below.any():
            cap[below] = self.top
            self.err_integral[below] = 0.0
            self.prev_err[below] = 0.0
        self.budget_w = np.where(below, np.inf, budget)
        return cap
