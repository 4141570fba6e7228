"""Grid carbon intensity from hourly CSV files (shipped: CAISO 2023, Electricity Maps).

The shipped file ``powerrl/data/carbon/US-CAL-CISO_2023_hourly.csv`` has one row per UTC hour of 2023
(8,760 rows, no gaps). Each row's timestamp marks the start of the hour whose average it reports.
Its header contains U+2082 (the subscript in ``gCO₂eq``), so it is read as UTF-8.

Interpolation (``CarbonSpec.interpolation``):

- ``"linear"`` (default): each hourly average is placed at the middle of its hour and values in
  between are linearly interpolated (constant from the start of the first hour to its middle and
  from the middle of the last hour to its end). Smooth, so a controller acting every 5-60 min sees no
  artificial steps at hour boundaries.
- ``"step"``: the value of the hour containing ``t`` (exactly what the file publishes).

Alignment with the trace: carbon is indexed by UTC epoch seconds; a trace time ``t_s`` maps to
``trace.utc_s(t_s)`` (see :mod:`powerrl.model.workload`: by default day 1 of the trace is
2023-05-03 local time in America/Los_Angeles, so trace days 1-28 are 2023-05-03 .. 2023-05-30).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from powerrl.config import spec
from powerrl.errors import ConfigError, DataFileError
from powerrl.model.timeseries import column_index, iso_utc, numeric_column, read_csv, zone

SHIPPED_CARBON_PATH = "shipped:carbon/US-CAL-CISO_2023_hourly.csv"
SHIPPED_CARBON_COLUMN = "Carbon Intensity gCO\u2082eq/kWh (direct)"


@dataclass(frozen=True)
class CarbonSpec:
    """An hourly (or other fixed-period) carbon-intensity CSV (YAML-configurable).

    Attributes:
        path: CSV path, or ``shipped:carbon/<name>``.
        column: intensity column in gCO2eq/kWh (finite, >= 0).
        time_column: timestamp column (ISO 8601, e.g. ``2023-01-01 00:00:00``); a timestamp marks the
            start of the period it averages. Timestamps with an explicit offset keep it.
        timezone: IANA zone of timestamps without an offset (``UTC`` for Electricity Maps files).
        interval_s: seconds each row averages over.
        interpolation: ``"linear"`` between period midpoints, or ``"step"`` (hold each period's value).
    """

    path: str = SHIPPED_CARBON_PATH
    column: str = SHIPPED_CARBON_COLUMN
    time_column: str = "Datetime (UTC)"
    timezone: str = "UTC"
    interval_s: float = field(default=3600.0, metadata=spec(lo=1.0, unit="s"))
    interpolation: str = field(default="linear", metadata=spec(choices=("linear", "step")))

    def validate(self, path: str = "", source: str | None = None) -> None:
        """Check the time zone and interpolation (called by :func:`powerrl.config.from_dict`)."""
        prefix = f"{path}." if path else ""
        zone(self.timezone, prefix + "timezone", source)
        if self.interpolation not in ("linear", "step"):
            raise ConfigError(prefix + "interpolation", self.interpolation, "one of 'linear', 'step'", source)


def parse_times_utc_s(path: str, texts: list[str], column: str, tz_name: str) -> np.ndarray:
    """Parse ISO timestamps into UTC epoch seconds; naive ones are read in zone ``tz_name``.

    Ambiguous local times (the repeated hour when DST ends) take the first occurrence (``fold=0``).

    Raises:
        DataFileError: an unparsable timestamp, or timestamps not strictly increasing (row and column).
    """
    tz = zone(tz_name)
    out = np.empty(len(texts), dtype=np.float64)
    for i, text in enumerate(texts):
        try:
            t = dt.datetime.fromisoformat(text.strip())
        except ValueError:
            raise DataFileError(path, f"{text!r} is not an ISO 8601 time", row=i + 2, column=column) from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=tz)
        out[i] = t.timestamp()
        if i and out[i] <= out[i - 1]:
            raise DataFileError(path, f"time {text!r} is not after the previous row's", row=i + 2, column=column)
    return out


@dataclass(frozen=True, eq=False)
class CarbonIntensity:
    """A carbon-intensity series.

    Attributes:
        t_utc_s: start of each period, UTC epoch seconds (strictly increasing).
        g_per_kwh: average intensity over each period, gCO2eq/kWh.
        interval_s: period length, s.
        interpolation: ``"linear"`` or ``"step"`` (see module docstring).
        source: file the data came from.
    """

    t_utc_s: np.ndarray
    g_per_kwh: np.ndarray
    interval_s: float
    interpolation: str
    source: str

    @classmethod
    def load(cls, carbon_spec: CarbonSpec) -> CarbonIntensity:
        """Read and validate a carbon CSV.

        Raises:
            DataFileError: missing file or column, bad number or time (row and column named).
        """
        carbon_spec.validate()
        header, rows = read_csv(carbon_spec.path)
        values = numeric_column(carbon_spec.path, header, rows, carbon_spec.column, min_value=0.0)
        t_idx = column_index(carbon_spec.path, header, carbon_spec.time_column)
        texts = [r[t_idx] if t_idx < len(r) else "" for r in rows]
        t = parse_times_utc_s(carbon_spec.path, texts, carbon_spec.time_column, carbon_spec.timezone)
        t.setflags(write=False)
        values.setflags(write=False)
        return cls(t_utc_s=t, g_per_kwh=values, interval_s=float(carbon_spec.interval_s),
                   interpolation=carbon_spec.interpolation, source=carbon_spec.path)

    @property
    def start_utc_s(self) -> float:
        """First covered instant, UTC epoch seconds."""
        return float(self.t_utc_s[0])

    @property
    def end_utc_s(self) -> float:
        """End of the last period (exclusive), UTC epoch seconds."""
        return float(self.t_utc_s[-1]) + self.interval_s

    def _check_range(self, t: np.ndarray) -> None:
        if t.size and (t.min() < self.start_utc_s or t.max() >= self.end_utc_s):
            bad = t.min() if t.min() < self.start_utc_s else t.max()
            raise DataFileError(self.source, f"no data for {iso_utc(bad)}: the file covers "
                                f"{iso_utc(self.start_utc_s)} to {iso_utc(self.end_utc_s)} (pick a trace "
                                "start_date inside it)")

    def intensity_g_per_kwh(self, t_utc_s: float | np.ndarray) -> np.ndarray:
        """Carbon intensity at UTC epoch seconds ``t_utc_s`` (vectorised), gCO2eq/kWh.

        Raises:
            DataFileError: a time outside the file's coverage.
        """
        t = np.asarray(t_utc_s, dtype=np.float64)
        self._check_range(t)
        if self.interpolation == "step":
            idx = np.searchsorted(self.t_utc_s, t, side="right") - 1
            return self.g_per_kwh[idx]
        return np.interp(t, self.t_utc_s + 0.5 * self.interval_s, self.g_per_kwh)

    def hourly_between(self, start_utc_s: float, end_utc_s: float) -> np.ndarray:
        """The published period values whose periods start in ``[start_utc_s, end_utc_s)``."""
        self._check_range(np.array([start_utc_s, end_utc_s - 1e-6]))
        first = int(np.searchsorted(self.t_utc_s, start_utc_s, side="left"))
        end = int(np.searchsorted(self.t_utc_s, end_utc_s, side="left"))
        return self.g_per_kwh[first:end]


@lru_cache(maxsize=2)
def load_shipped_carbon(interpolation: str = "linear") -> CarbonIntensity:
    """The shipped CAISO 2023 hourly intensity (direct emissions), cached.

    Args:
        interpolation: ``"linear"`` or ``"step"`` (see module docstring).
    """
    return CarbonIntensity.load(CarbonSpec(interpolation=interpolation))
