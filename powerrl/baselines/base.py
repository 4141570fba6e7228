"""What every rule-based baseline shares: parameters with a tuning grid, and action conversions.

A baseline is a :class:`powerrl.control.Controller` that needs a :class:`powerrl.control.ControlTarget`
(the P-state table, node power ranges, priorities, forecasts). Its keyword parameters have the
defaults of the rule it copies (the kernel's defaults for governors) and are set from YAML;
:attr:`Baseline.param_grid` lists the values ``powerrl tune-baseline`` searches on training days.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from powerrl.control import Controller


class Baseline(Controller):
    """A rule-based controller with named parameters (``params``) and a tuning grid."""

    needs_target = True
    #: Parameter -> candidate values searched by ``powerrl tune-baseline`` (training days only).
    param_grid: ClassVar[dict[str, tuple[Any, ...]]] = {}

    #: Copies the per-copy state is sized for (set by :meth:`reset`).
    _batch: int = 1

    @property
    def params(self) -> dict[str, Any]:
        """The parameter values in force (for reports and tuned-parameter files)."""
        return {k: getattr(self, k) for k in self.param_grid}

    def reset(self, seed: int | None = None, batch: int = 1) -> None:
        """Start ``batch`` copies: per-copy state is sized by :meth:`_reset_state`."""
        if batch < 1:
            raise ValueError(f"{self.name}: batch must be >= 1, got {batch}")
        self._batch = int(batch)
        self._reset_state(self._batch)

    def _reset_state(self, batch: int) -> None:  # noqa: B027 - stateless baselines keep nothing
        """Size the per-copy state for ``batch`` copies."""

    def _check_batch(self, obs: np.ndarray) -> None:
        """Refuse a batch of another size than the last :meth:`reset`'s (rows are copies with state)."""
        if obs.shape[0] != self._batch:
            raise ValueError(f"{self.name}: got {obs.shape[0]} observation rows after reset(batch={self._batch}); "
                             f"call reset(batch={obs.shape[0]}) first")

    def _unit_slice(self, field: str) -> slice:
        """Basic slice of per-unit field ``field`` in an observation row (a view, no copy)."""
        t = self.target
        assert t is not None
        k = len(t.unit_fields)
        return slice(t.unit_fields.index(field), t.n_units * k, k)


def pstate_at_or_above(freqs_mhz: np.ndarray, target_mhz: np.ndarray) -> np.ndarray:
    """Lowest P-state whose frequency is >= ``target_mhz`` (f_max when none): the kernel's CPUFREQ_RELATION_L.

    Targets within 1 kHz (the kernel's unit) of a P-state count as on it, so float32 observations
    (0.6 stored as 0.60000002) do not push an exact target to the next P-state.
    """
    f = np.asarray(freqs_mhz, dtype=np.float64)
    idx = np.searchsorted(f, np.asarray(target_mhz, dtype=np.float64) - 1e-3, side="left")
    return np.minimum(idx, len(f) - 1).astype(np.int64)


def pstate_at_or_below(freqs_mhz: np.ndarray, target_mhz: np.ndarray) -> np.ndarray:
    """Highest P-state whose frequency is <= ``target_mhz`` (f_min when none): the kernel's CPUFREQ_RELATION_H."""
    f = np.asarray(freqs_mhz, dtype=np.float64)
    idx = np.searchsorted(f, np.asarray(target_mhz, dtype=np.float64) + 1e-3, side="right") - 1
    return np.maximum(idx, 0).astype(np.int64)


def caps_to_action(caps_w: np.ndarray, idle_w: np.ndarray, busy_w: np.ndarray) -> np.ndarray:
    """ClusterBudget-v0 action in [-1, 1] for caps in W (linear from idle = -1 to busy = +1), float32."""
    span = np.maximum(np.asarray(busy_w) - np.asarray(idle_w), 1e-9)
    return np.clip(2.0 * (np.asarray(caps_w) - idle_w) / span - 1.0, -1.0, 1.0).astype(np.float32)


def fit_to_budget(want_w: np.ndarray, lo_w: np.ndarray, hi_w: np.ndarray, budget_w: np.ndarray,
                  weight: np.ndarray | None = None) -> np.ndarray:
    """Caps in ``[lo, hi]`` summing to at most ``budget_w`` per row, as close to ``want_w`` as scaling allows.

    Rows of ``want_w`` (``[B, n]``) over budget are scaled down towards ``lo`` (the part above ``lo``
    shrinks in proportion to ``weight`` times that part; default weight 1), rows under budget keep
    ``want``. When even ``lo`` does not fit, ``lo`` is returned (the shield sheds the rest by priority).
    """
    want = np.clip(np.asarray(want_w, dtype=np.float64), lo_w, hi_w)
    lo = np.broadcast_to(np.asarray(lo_w, dtype=np.float64), want.shape)
    budget = np.asarray(budget_w, dtype=np.float64).reshape(-1)
    extra = want - lo
    spare = budget - lo.sum(axis=1)
    total_extra = extra.sum(axis=1)
    scale = np.where(total_extra > spare, np.maximum(spare, 0.0) / np.maximum(total_extra, 1e-12), 1.0)
    if weight is None:
        return lo + extra * scale[:, None]
    # Weighted shrink: a node's reduction is proportional to weight * extra, solved by bisection on a
    # multiplier k >= 0 with extra_i * max(0, 1 - k * w_i) summing to the spare power.
    w = np.broadcast_to(np.asarray(weight, dtype=np.float64), want.shape)
    out = want.copy()
    over = np.flatnonzero(total_extra > spare)
    for r in over:
        e, wr, s = extra[r], w[r], max(spare[r], 0.0)
        lo_k, hi_k = 0.0, 1.0 / max(float(wr[e > 0].min()) if (e > 0).any() else 1.0, 1e-12)
        for _ in range(60):
            k = 0.5 * (lo_k + hi_k)
            if (e * np.maximum(0.0, 1.0 - k * wr)).sum() > s:
                lo_k = k
            else:
                hi_k = k
        out[r] = lo[r] + e * np.maximum(0.0, 1.0 - hi_k * wr)
    return out
