"""NumPy-owned buffers of the thermal shield's unit filter (``shield_units.h``), allocated once."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

#: Trip types, numbered as in ``shield_units.h`` (PR_TRIP_*).
TRIP_TYPES = ("active", "passive", "hot", "critical")


@dataclass(eq=False)
class ShieldBuffers:
    """Every buffer of the unit filter for ``n_units`` units with ``n_pstates`` P-states.

    Parameters: trip table (``trip_c``, ``hyst_c`` degC, ``trip_type`` index into
    :data:`TRIP_TYPES`), ``floor_pstate``, rate limits ``max_step_up``/``max_step_down``
    (P-states per period, <= 0 = none), ``predict_limit_c`` (degC), ``full_power_w``
    (``[n_units, n_pstates]`` full-load compute-bound W), ``max_power_w`` (W any work can draw),
    ``cap_limit_c`` (degC the thermal cap guarantees), ``r_die_c_per_w``, ``r_sink_c_per_w`` (degC/W),
    ``sink_decay`` (``exp(-horizon / tau_sink)``, 1 = no P-state prediction), ``cap_decay`` (the same
    for the thermal cap's horizon, 1 = no thermal cap).
    State: ``trip_on``, ``ceiling``, ``last_applied``, ``last_temp_c``.
    Inputs: ``proposed``, ``temp_c`` (NaN = unreadable), ``power_w``, ``inlet_c``, ``inlet_rise_c``
    (degC assumed over the horizon), ``emergency`` (1 lifts rate limits).
    Outputs: ``applied``, ``events`` (PR_SH_* bits), ``offline``, ``cap_w`` (thermal cap, W, inf = none).
    """

    n_units: int
    n_pstates: int
    floor_pstate: int
    max_step_up: int
    max_step_down: int
    predict_limit_c: float
    cap_limit_c: float
    trip_c: np.ndarray
    hyst_c: np.ndarray
    trip_type: np.ndarray
    full_power_w: np.ndarray
    max_power_w: np.ndarray
    r_die_c_per_w: np.ndarray
    r_sink_c_per_w: np.ndarray
    sink_decay: np.ndarray
    cap_decay: np.ndarray
    trip_on: np.ndarray
    ceiling: np.ndarray
    last_applied: np.ndarray
    last_temp_c: np.ndarray
    proposed: np.ndarray
    temp_c: np.ndarray
    power_w: np.ndarray
    inlet_c: np.ndarray
    inlet_rise_c: np.ndarray
    emergency: np.ndarray
    applied: np.ndarray
    events: np.ndarray
    offline: np.ndarray
    cap_w: np.ndarray

    @classmethod
    def allocate(cls, n_units: int, n_pstates: int, trips: list[tuple[str, float, float]], floor_pstate: int = 0,
                 max_step_up: int = 0, max_step_down: int = 0, predict_limit_c: float = np.inf,
                 cap_limit_c: float = np.inf) -> ShieldBuffers:
        """Buffers for ``trips`` = ``[(type, temp_c, hyst_c), ...]``; state fresh (see :meth:`reset_units`)."""
        if n_units < 1 or n_pstates < 1:
            raise ValueError(f"need n_units >= 1 and n_pstates >= 1, got {n_units} and {n_pstates}")
        # A step larger than the table is no limit at all; clamping keeps prev + step far from overflow.
        max_step_up, max_step_down = min(int(max_step_up), n_pstates), min(int(max_step_down), n_pstates)
        if not 0 <= floor_pstate < n_pstates:
            raise ValueError(f"floor_pstate = {floor_pstate} is not a P-state index in [0, {n_pstates - 1}]")
        t = len(trips)
        b = cls(
            n_units=n_units, n_pstates=n_pstates, floor_pstate=int(floor_pstate), max_step_up=int(max_step_up),
            max_step_down=int(max_step_down), predict_limit_c=float(predict_limit_c), cap_limit_c=float(cap_limit_c),
            trip_c=np.array([tr[1] for tr in trips], dtype=np.float64).reshape(t),
            hyst_c=np.array([tr[2] for tr in trips], dtype=np.float64).reshape(t),
            trip_type=np.array([TRIP_TYPES.index(tr[0]) for tr in trips], dtype=np.int32).reshape(t),
            full_power_w=np.zeros((n_units, n_pstates)), max_power_w=np.zeros(n_units), r_die_c_per_w=np.zeros(n_units),
            r_sink_c_per_w=np.zeros(n_units), sink_decay=np.ones(n_units), cap_decay=np.ones(n_units),
            trip_on=np.zeros((n_units, t), dtype=np.uint8), ceiling=np.zeros(n_units, dtype=np.int32),
            last_applied=np.zeros(n_units, dtype=np.int32), last_temp_c=np.zeros(n_units),
            proposed=np.zeros(n_units, dtype=np.int32), temp_c=np.zeros(n_units), power_w=np.zeros(n_units),
            inlet_c=np.zeros(n_units), inlet_rise_c=np.zeros(n_units), emergency=np.zeros(n_units, dtype=np.uint8),
            applied=np.zeros(n_units, dtype=np.int32),
            events=np.zeros(n_units, dtype=np.uint32), offline=np.zeros(n_units, dtype=np.uint8),
            cap_w=np.full(n_units, np.inf),
        )
        b.reset_units(np.arange(n_units))
        return b

    def reset_units(self, units: np.ndarray) -> None:
        """Fresh state for ``units``: no trip held, ceiling and last P-state at the top, no trend yet."""
        self.trip_on[units] = 0
        self.ceiling[units] = self.n_pstates - 1
        self.last_applied[units] = self.n_pstates - 1
        self.last_temp_c[units] = np.nan
        self.offline[units] = 0

    def copy(self) -> ShieldBuffers:
        """Deep copy (independent arrays), to run the C filter and its twin side by side."""
        kw: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            kw[f.name] = value.copy() if isinstance(value, np.ndarray) else value
        return ShieldBuffers(**kw)
