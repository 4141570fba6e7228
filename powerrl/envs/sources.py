"""The real-data inputs of the simulator-backed envs, in the shapes the envs step over.

One place binds the envs to :mod:`powerrl.model` (profiles, workload trace, classes, carbon,
weather): the envs index plain NumPy arrays prepared here once per process and cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from powerrl.model import cooling as cooling_mod
from powerrl.model import power as power_model
from powerrl.model import workload as workload_mod
from powerrl.model.carbon import CarbonIntensity, CarbonSpec, load_shipped_carbon
from powerrl.model.classes import WORKLOAD_CLASSES as CLASS_TABLE
from powerrl.model.weather import SolarSpec, Weather, WeatherSpec, load_shipped_weather

DAY_S = 86_400.0


@dataclass(frozen=True, eq=False)
class TraceArrays:
    """A utilisation trace as arrays indexed by row, with its clock and its day split.

    Attributes:
        util: fraction of capacity in use per row, >= 0.
        mem_proxy: memory-boundedness proxy per row, [0, 1] (from cycles per instruction; 0.5
            when the trace has none).
        interval_s: seconds per row.
        train_rows, heldout_rows: half-open row ranges of the training and held-out days.
        trace: the loaded :class:`powerrl.model.workload.Trace` (clock, dates, source).
    """

    util: np.ndarray
    mem_proxy: np.ndarray
    interval_s: float
    train_rows: tuple[int, int]
    heldout_rows: tuple[int, int]
    trace: workload_mod.Trace

    @property
    def rows_per_day(self) -> int:
        """Rows in one day."""
        return int(round(DAY_S / self.interval_s))

    @property
    def duration_s(self) -> float:
        """Length of the trace, s."""
        return len(self.util) * self.interval_s

    def split_rows(self, split: str) -> tuple[int, int]:
        """Half-open row range ``[first, end)`` of ``split`` (train / heldout / all)."""
        if split == "train":
            return self.train_rows
        if split == "heldout":
            return self.heldout_rows
        if split == "all":
            return 0, len(self.util)
        raise ValueError(f"unknown split {split!r}: use 'train', 'heldout' or 'all'")

    def rows_at(self, t_s: np.ndarray) -> np.ndarray:
        """Row index of trace time ``t_s`` (s since row 0), clamped to the last row."""
        return np.minimum((np.asarray(t_s) / self.interval_s).astype(np.int64), len(self.util) - 1)

    def check_start_s(self, start_s: float, episode_s: float) -> float:
        """Validate an explicit episode start (s since row 0): the episode must fit in the trace."""
        start = float(start_s)
        if not 0.0 <= start <= self.duration_s - episode_s:
            raise ValueError(f"options['start_s'] = {start_s!r} is outside the trace: an episode of {episode_s:g} s "
                             f"must start in [0, {self.duration_s - episode_s:g}] s (day d starts at (d - 1) * 86400)")
        return start


@lru_cache(maxsize=8)
def trace_arrays(spec: workload_mod.TraceSpec | None = None) -> TraceArrays:
    """The trace described by ``spec`` (default: the shipped Google 2019 trace), read once per process."""
    trace = workload_mod.load_shipped_trace() if spec is None else workload_mod.Trace.load(spec)
    train = trace.day_numbers("train")
    held = trace.day_numbers("heldout")
    first = trace.row_range(train[0])[0] if train else 0
    train_rows = (first, trace.row_range(train[-1])[1]) if train else (0, 0)
    heldout_rows = (trace.row_range(held[0])[0], trace.row_range(held[-1])[1]) if held else train_rows
    if not train:
        train_rows = heldout_rows
    return TraceArrays(util=np.ascontiguousarray(trace.utilisation, dtype=np.float64),
                       mem_proxy=np.ascontiguousarray(trace.mem_bound_proxy, dtype=np.float64),
                       interval_s=float(trace.interval_s), train_rows=train_rows, heldout_rows=heldout_rows,
                       trace=trace)


@dataclass(frozen=True)
class ClassParams:
    """Per-class latency objective and memory-boundedness used to fill the kernel's buffers."""

    service_ms: float
    sla_ms: float
    mem_bound: float


def class_params(name: str) -> ClassParams:
    """Parameters of workload class ``name`` (compute, memory, interactive, batch)."""
    c = CLASS_TABLE[name]
    return ClassParams(service_ms=float(c.service_ms), sla_ms=float(c.sla_ms),
                       mem_bound=float(power_model.CLASS_MEM_BOUND[name]))


@dataclass(frozen=True)
class SiteSeries:
    """Site conditions per trace row (5 min), aligned through the trace clock (docs/data.md).

    ``carbon_g_per_kwh``: CAISO grid intensity (Electricity Maps, direct), interpolated to the row's
    midpoint; ``ambient_c``: San Jose air temperature; ``solar_frac``: PV output per kWp installed
    (W per 1,000 W), from clear-sky irradiance and cloud cover.
    """

    carbon_g_per_kwh: np.ndarray
    ambient_c: np.ndarray
    solar_frac: np.ndarray


@lru_cache(maxsize=8)
def site_series(trace_spec: workload_mod.TraceSpec | None = None, carbon_spec: CarbonSpec | None = None,
                weather_spec: WeatherSpec | None = None) -> SiteSeries:
    """Carbon, weather and solar at the midpoint of every row of the trace, computed once per process.

    Rows map to UTC through the trace's clock (row 0 = local midnight of its start date); the
    carbon file (default: CAISO 2023) and the weather file (default: San Jose 2023) must cover that span.
    """
    tr = trace_arrays(trace_spec)
    n = len(tr.util)
    t_utc = tr.trace.utc_s((np.arange(n) + 0.5) * tr.interval_s)
    weather = load_shipped_weather() if weather_spec is None else Weather.load(weather_spec)
    carbon = load_shipped_carbon() if carbon_spec is None else CarbonIntensity.load(carbon_spec)
    return SiteSeries(
        carbon_g_per_kwh=np.ascontiguousarray(carbon.intensity_g_per_kwh(t_utc), dtype=np.float64),
        ambient_c=np.ascontiguousarray(weather.temp_c_at(t_utc), dtype=np.float64),
        solar_frac=np.ascontiguousarray(weather.solar_power_w(t_utc, SolarSpec(kwp=1.0)) / 1000.0, dtype=np.float64),
    )


#: The cooling plant of Datacenter-v0: CRAC units with the Moore et al. COP curve, the default
#: overhead share, and an air-side economiser used when the outside air is cold enough.
DATACENTER_COOLING = cooling_mod.CoolingSpec(economiser=True)


def cooling_power_w(it_w: np.ndarray, supply_c: np.ndarray, ambient_c: np.ndarray) -> np.ndarray:
    """Cooling plant power of :data:`DATACENTER_COOLING` removing ``it_w`` of heat (W, vectorised)."""
    return cooling_mod.cooling_power_w(it_w, DATACENTER_COOLING, supply_c, ambient_c)
