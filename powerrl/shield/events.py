"""Why the shield acted: reason names, the unit filter's event bits, and per-reason counters.

Every intervention is an event with a reason. Per decision the shield reports ``{reason: count}``
(the number of units or nodes the reason applied to); :class:`ShieldCounters` accumulates them
for logs and TensorBoard (``shield/<reason>``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

#: Event bits of ``powerrl/_core/shield_units.h`` (PR_SH_*), in bit order.
UNIT_REASONS: tuple[str, ...] = (
    "active",        # an active trip holds: more cooling requested (the action is unchanged)
    "passive",       # the passive (step_wise) ceiling lowered the P-state
    "hot",           # hot trip: forced to the floor P-state, alert
    "critical",      # critical trip: work taken offline, alert
    "predictive",    # the thermal model predicted a passive crossing within the horizon
    "rate_limit",    # the controller moved faster than the rate limit
    "out_of_range",  # the proposal was not a valid P-state
    "sensor",        # unreadable temperature, handled as hot
    "thermal_cap",   # a power cap keeps the die under the hot trip (work P-states cannot cool)
)
#: Reasons raised by the cap (budget) shield and the watchdog.
CAP_REASONS: tuple[str, ...] = (
    "cap_clipped",       # requested cap outside [guaranteed base, max] or not a number
    "cap_rate_limit",    # cap moved faster than the rate limit
    "budget",            # caps cut to fit the facility budget (lowest priority first)
    "critical_reserve",  # non-Critical caps cut to keep the Critical reserve free
    "group_limit",       # caps cut to fit a power group (PDU, rack)
    "emergency_floor",   # a scope needed emergency floors below the guaranteed bases
    "infeasible",        # a scope is over its limit even at emergency floors (alert)
    "overconsumption",   # measured power over the budget: emergency capping
    "grid_cut",          # an announced budget cut is being shed before its deadline
)
WATCHDOG_REASONS: tuple[str, ...] = (
    "invalid_action",     # NaN/inf or out-of-space action: the fallback decided
    "stale_telemetry",    # telemetry older than the watchdog limit: the fallback decided
    "controller_error",   # the controller raised: the fallback decided
    "controller_timeout",  # the controller answered after its deadline: the fallback decided
    "cooling_failure",    # a CRAC is down: prediction assumes a rising inlet
    "thermal_alert",      # an external thermal alert: units forced to the floor P-state
    "active_cooling",     # active trips lowered a CRAC supply setpoint (more cooling)
)
#: Reasons that are alerts for an operator, not just interventions.
ALERT_REASONS = frozenset({"hot", "critical", "sensor", "infeasible", "overconsumption", "thermal_alert"})
#: Reasons that do not change the action (so they are not interventions).
NON_INTERVENTIONS = frozenset({"active", "cooling_failure"})
ALL_REASONS: tuple[str, ...] = UNIT_REASONS + CAP_REASONS + WATCHDOG_REASONS


def decode_unit_events(bits: np.ndarray) -> dict[str, int]:
    """``{reason: number of units}`` from the unit filter's event bits (empty when none fired)."""
    present = int(np.bitwise_or.reduce(bits)) if bits.size else 0
    out: dict[str, int] = {}
    i = 0
    while present:  # only the bits that fired: a decision usually has none or one
        if present & 1:
            out[UNIT_REASONS[i]] = int(np.count_nonzero(bits & (1 << i)))
        present >>= 1
        i += 1
    return out


def merge(into: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """Add the counts of ``more`` into ``into`` (returns ``into``)."""
    for key, value in more.items():
        into[key] = into.get(key, 0) + value
    return into


class ShieldCounters:
    """Per-reason totals over a run.

    ``decisions`` counts env steps (every copy of a vector env is one decision per step),
    ``interventions`` the decisions the shield changed, ``units[reason]`` the units or nodes each
    reason applied to, summed over decisions.
    """

    def __init__(self) -> None:
        self.units: Counter[str] = Counter()
        self.decisions = 0
        self.interventions = 0

    def add(self, events: dict[str, int], intervened: bool | int, decisions: int = 1) -> None:
        """Count ``decisions`` decisions (one step of that many copies), ``intervened`` of them changed."""
        self.decisions += decisions
        self.interventions += int(intervened)
        for reason, count in events.items():
            self.units[reason] += count

    def intervention_rate(self) -> float:
        """Share of decisions where the shield changed the action."""
        return self.interventions / self.decisions if self.decisions else 0.0

    def scalars(self, prefix: str = "shield/") -> dict[str, float]:
        """Flat ``{tag: value}`` for TensorBoard: the intervention rate and units per decision by reason."""
        out = {f"{prefix}intervention_rate": self.intervention_rate()}
        for reason, units in sorted(self.units.items()):
            out[f"{prefix}{reason}"] = units / self.decisions if self.decisions else 0.0
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain data for logs: decisions, interventions, rate and units by reason."""
        return {"decisions": self.decisions, "interventions": self.interventions,
                "intervention_rate": self.intervention_rate(), "by_reason": dict(sorted(self.units.items()))}
