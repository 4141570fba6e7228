"""Honest short-horizon forecasts of demand, carbon intensity and temperature.

"Honest" is structural: a :class:`Forecaster` is only ever handed a *copy* of the history up to and
including the current step (``history[-1]`` is the value at the forecast origin ``t``); it never
receives the series, so it cannot read the future. :func:`forecast_path` and :func:`forecast_error`
are the only places that slice a series, and they slice strictly before the target.

Forecasters:

- :class:`Persistence`: ``y(t+k) = y(t)``, the baseline every other forecaster must beat.
- :class:`SeasonalNaive`: ``y(t+k) = y(t+k-P)``, the same time one period (a day) earlier.
- :class:`SeasonalBlend`: ``y(t+k) = w * L(t) + (1 - w) * y(t+k-P)`` with ``L`` the exponentially
  smoothed level (smoothing ``alpha``) of the history: a blend of persistence/exponential smoothing
  (``w = 1``; ``alpha = 1`` gives persistence) and seasonal naive (``w = 0``). ``alpha`` and ``w`` are
  fitted per horizon by grid search on training data only (:meth:`SeasonalBlend.fit`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

DEFAULT_ALPHAS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.85, 1.0)
DEFAULT_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))


class Forecaster(ABC):
    """Predicts the next ``horizon_steps`` values of a series from its past only."""

    name: str = "forecaster"

    @abstractmethod
    def predict(self, history: np.ndarray, horizon_steps: int) -> np.ndarray:
        """Forecast the values at ``t+1 .. t+horizon_steps``.

        Args:
            history: the series up to and including the origin ``t`` (``history[-1]`` is at ``t``),
                oldest first, at least one value. It is a read-only copy.
            horizon_steps: how many steps ahead (>= 1).

        Returns:
            Array of ``horizon_steps`` forecasts, element ``k-1`` for ``t+k``.
        """


class Persistence(Forecaster):
    """``y(t+k) = y(t)``: the last observed value."""

    name = "persistence"

    def predict(self, history: np.ndarray, horizon_steps: int) -> np.ndarray:
        """Repeat the last value ``horizon_steps`` times (see :meth:`Forecaster.predict`)."""
        return np.full(horizon_steps, float(history[-1]))


def _seasonal_index(t: int, k: np.ndarray, period_steps: int) -> np.ndarray:
    """Index of the same phase in the most recent observed period for target ``t + k``."""
    return t + k - period_steps * np.ceil(k / period_steps).astype(np.int64)


class SeasonalNaive(Forecaster):
    """``y(t+k) = y(t+k-P)``: the value one period earlier; persistence until a period is observed.

    Args:
        period_steps: season length in steps (288 for a day of 5-minute rows, 24 for hourly data).
    """

    def __init__(self, period_steps: int) -> None:
        if period_steps < 1:
            raise ValueError(f"period_steps must be >= 1, got {period_steps!r}")
        self.period_steps = period_steps
        self.name = f"seasonal-naive(P={period_steps})"

    def predict(self, history: np.ndarray, horizon_steps: int) -> np.ndarray:
        """Same-phase values of the last observed period (see :meth:`Forecaster.predict`)."""
        t = len(history) - 1
        idx = _seasonal_index(t, np.arange(1, horizon_steps + 1), self.period_steps)
        return np.where(idx >= 0, history[np.maximum(idx, 0)], history[-1]).astype(np.float64)


def ewma_level(series: np.ndarray, alpha: float) -> np.ndarray:
    """Exponentially smoothed level ``L_t = alpha*y_t + (1-alpha)*L_{t-1}``, ``L_0 = y_0`` (causal)."""
    y = np.asarray(series, dtype=np.float64)
    if alpha >= 1.0:
        return y.copy()
    level, _ = lfilter([alpha], [1.0, -(1.0 - alpha)], y, zi=[(1.0 - alpha) * y[0]])
    return level


class SeasonalBlend(Forecaster):
    """``y(t+k) = w * L(t) + (1 - w) * y(t+k-P)``: smoothed level blended with seasonal naive.

    Args:
        period_steps: season length in steps.
        alpha: smoothing of the level ``L`` in (0, 1]; 1 = the last value.
        weight: ``w`` in [0, 1]; 1 = pure exponential smoothing / persistence, 0 = seasonal naive.
    """

    def __init__(self, period_steps: int, alpha: float, weight: float) -> None:
        if period_steps < 1:
            raise ValueError(f"period_steps must be >= 1, got {period_steps!r}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must be in [0, 1], got {weight!r}")
        self.period_steps = period_steps
        self.alpha = alpha
        self.weight = weight
        self.name = f"seasonal-blend(P={period_steps}, alpha={alpha:g}, w={weight:g})"

    def predict(self, history: np.ndarray, horizon_steps: int) -> np.ndarray:
        """Blend of the current level and last period's same-phase value (see :meth:`Forecaster.predict`)."""
        t = len(history) - 1
        level = float(ewma_level(history, self.alpha)[-1])
        idx = _seasonal_index(t, np.arange(1, horizon_steps + 1), self.period_steps)
        seasonal = np.where(idx >= 0, history[np.maximum(idx, 0)], level)
        return self.weight * level + (1.0 - self.weight) * seasonal

    @classmethod
    def fit(cls, series: np.ndarray, period_steps: int, horizon_steps: int, first_target: int,
            end_target: int, alphas: tuple[float, ...] = DEFAULT_ALPHAS,
            weights: tuple[float, ...] = DEFAULT_WEIGHTS) -> SeasonalBlend:
        """Grid-search ``alpha`` and ``weight`` minimising MAE of ``horizon_steps``-ahead forecasts.

        Only ``series[:end_target]`` is read, so fitting on training rows cannot see held-out rows.
        The search is vectorised but gives exactly the forecasts :meth:`predict` would (the level is a
        causal filter, so its value at ``t`` over the whole prefix equals its value over ``history``).

        Args:
            series: the series (only the part before ``end_target`` is used).
            period_steps: season length in steps.
            horizon_steps: forecast horizon the parameters are chosen for.
            first_target: first index whose forecast is scored (>= ``horizon_steps``).
            end_target: one past the last scored index.
            alphas: candidate smoothing factors.
            weights: candidate blend weights.
        """
        if first_target < horizon_steps or end_target <= first_target:
            raise ValueError(f"need horizon_steps <= first_target < end_target, got {horizon_steps}, "
                             f"{first_target}, {end_target}")
        y = np.asarray(series[:end_target], dtype=np.float64)
        targets = np.arange(first_target, end_target)
        origins = targets - horizon_steps
        idx = _seasonal_index(0, np.full(1, horizon_steps), period_steps)[0] + origins
        w = np.asarray(weights, dtype=np.float64)[:, None]
        best: tuple[float, float, float] = (math.inf, 1.0, 1.0)
        for alpha in alphas:
            level = ewma_level(y, alpha)[origins]
            seasonal = np.where(idx >= 0, y[np.maximum(idx, 0)], level)
            pred = w * level + (1.0 - w) * seasonal
            mae = np.abs(pred - y[targets]).mean(axis=1)
            i = int(np.argmin(mae))
            if mae[i] < best[0]:
                best = (float(mae[i]), float(alpha), float(weights[i]))
        return cls(period_steps, alpha=best[1], weight=best[2])


@dataclass(frozen=True)
class ForecastError:
    """Error of one forecaster at one horizon.

    Attributes:
        mae: mean absolute error, in the series' unit.
        mape_pct: mean absolute percentage error over targets with a non-zero value, %.
        n: number of scored targets.
    """

    mae: float
    mape_pct: float
    n: int


def forecast_path(series: np.ndarray, forecaster: Forecaster, horizon_steps: int, first_target: int,
                  end_target: int | None = None) -> np.ndarray:
    """``horizon_steps``-ahead forecasts of targets ``first_target .. end_target-1``.

    The forecast of target ``j`` is made at origin ``j - horizon_steps`` from a read-only *copy* of
    ``series[:j - horizon_steps + 1]``: the forecaster never holds a reference to later values.

    Raises:
        ValueError: ``horizon_steps < 1``, or a target whose origin would precede the series.
    """
    y = np.asarray(series, dtype=np.float64)
    end = len(y) if end_target is None else end_target
    if horizon_steps < 1:
        raise ValueError(f"horizon_steps must be >= 1, got {horizon_steps!r}")
    if not horizon_steps <= first_target < end <= len(y):
        raise ValueError(f"need horizon_steps ({horizon_steps}) <= first_target ({first_target}) < "
                         f"end_target ({end}) <= len(series) ({len(y)})")
    out = np.empty(end - first_target, dtype=np.float64)
    for j in range(first_target, end):
        history = y[: j - horizon_steps + 1].copy()
        history.setflags(write=False)
        out[j - first_target] = forecaster.predict(history, horizon_steps)[horizon_steps - 1]
    return out


def forecast_error(series: np.ndarray, forecaster: Forecaster, horizon_steps: int, first_target: int | None = None,
                   end_target: int | None = None) -> ForecastError:
    """MAE and MAPE of ``horizon_steps``-ahead forecasts over targets ``[first_target, end_target)``.

    Args:
        series: the observed series.
        forecaster: the forecaster under test (sees only the past, see :func:`forecast_path`).
        horizon_steps: steps between origin and target (>= 1).
        first_target: first scored index; ``None`` = ``horizon_steps``.
        end_target: one past the last scored index; ``None`` = the end of the series.
    """
    y = np.asarray(series, dtype=np.float64)
    first = horizon_steps if first_target is None else first_target
    end = len(y) if end_target is None else end_target
    pred = forecast_path(y, forecaster, horizon_steps, first, end)
    actual = y[first:end]
    err = np.abs(pred - actual)
    nonzero = actual != 0
    mape = float(100.0 * np.mean(err[nonzero] / np.abs(actual[nonzero]))) if nonzero.any() else math.nan
    return ForecastError(mae=float(err.mean()), mape_pct=mape, n=int(err.size))
