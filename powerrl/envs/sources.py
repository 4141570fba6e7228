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
from powerrl.model import profiles as profiles_mod
from powerrl.model import workload as workload_mod
from powerrl.model.carbon import load_shipped_carbon
from powerrl.model.classes import WORKLOAD_CLASSES as CLASS_TABLE
from powerrl.model.weather import SolarSpec, load_shipped_weather

TRACE_INTERVAL_S = 300.0  # the Google 2019 trace is aggregated over 5-minute windows (SOURCES.md)
ROWS_PER_DAY = 288


@dataclass(frozen=True)
class TraceArrays:
    """The shipped trace as arrays indexed by 5-minute row: utilisation and memory-boundedness proxy."""

    util: np.ndarray          # fraction of capacity in use, [0, 1]
    mem_proxy: np.ndarray     # memory-boundedness proxy from cycles per instruction, [0, 1]


@lru_cache(maxsize=1)
def trace_arrays() -> TraceArrays:
    """Shipped Google 2019 trace, read once per process."""
    trace = workload_mod.load_shipped_trace()
    util = np.ascontiguousarray(trace.utilisation, dtype=np.float64)
    mem = np.ascontiguousarray(trace.mem_bound_proxy, dtype=np.float64)
    return TraceArrays(util=util, mem_proxy=mem)


def split_rows(split: str) -> tuple[int, int]:
    """Half-open row range ``[first, end)`` of a split: train = days 1-21, heldout = days 22-28."""
    n = len(trace_arrays().util)
    if split == "train":
        return 0, 21 * ROWS_PER_DAY
    if split == "heldout":
        return 21 * ROWS_PER_DAY, n
    if split == "all":
        return 0, n
    raise ValueError(f"unknown split {split!r}: use 'train', 'heldout' or 'all'")


@dataclass(frozen=True)
class ClassParams:
    """Per-class latency objective and memory-boundedness used to fill the kernel's buffers."""

    service_ms: float
    sla_ms: float
    mem_bound: float
    deferrable: bool


def class_params(name: str) -> ClassParams:
    """Parameters of workload class ``name`` (compute, memory, interactive, batch)."""
    c = CLASS_TABLE[name]
    return ClassParams(service_ms=float(c.service_ms), sla_ms=float(c.sla_ms),
                       mem_bound=float(power_model.CLASS_MEM_BOUND[name]), deferrable=bool(c.deferrable))


def profile(name: str) -> profiles_mod.ServerProfile:
    """A shipped profile by name, or a profile YAML by path."""
    return profiles_mod.get_profile(name)


def check_start_s(start_s: float, episode_s: float) -> float:
    """Validate an explicit episode start (s since trace row 0): the episode must fit in the trace."""
    total_s = len(trace_arrays().util) * TRACE_INTERVAL_S
    start = float(start_s)
    if not 0.0 <= start <= total_s - episode_s:
        raise ValueError(f"options['start_s'] = {start_s!r} is outside the trace: an episode of {episode_s:g} s "
                         f"must start in [0, {total_s - episode_s:g}] s (day d starts at (d - 1) * 86400)")
    return start


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


@lru_cache(maxsize=1)
def site_series() -> SiteSeries:
    """Carbon, weather and solar at the midpoint of every trace row, computed once per process."""
    trace = workload_mod.load_shipped_trace()
    n = len(trace.utilisation)
    t_utc = trace.utc_s((np.arange(n) + 0.5) * TRACE_INTERVAL_S)
    weather = load_shipped_weather()
    return SiteSeries(
        carbon_g_per_kwh=np.ascontiguousarray(load_shipped_carbon().intensity_g_per_kwh(t_utc), dtype=np.float64),
        ambient_c=np.ascontiguousarray(weather.temp_c_at(t_utc), dtype=np.float64),
        solar_frac=np.ascontiguousarray(weather.solar_power_w(t_utc, SolarSpec(kwp=1.0)) / 1000.0, dtype=np.float64),
    )


#: The cooling plant of Datacenter-v0: CRAC units with the Moore et al. COP curve, the default
#: overhead share, and an air-side economiser used when the outside air is cold enough.
DATACENTER_COOLING = cooling_mod.CoolingSpec(economiser=True)


def facility_power(it_w: np.ndarray, supply_c: np.ndarray, ambient_c: np.ndarray) -> cooling_mod.FacilityPower:
    """IT, cooling and overhead power and PUE of :data:`DATACENTER_COOLING` (W, vectorised)."""
    return cooling_mod.facility_power(it_w, DATACENTER_COOLING, supply_c, ambient_c)
