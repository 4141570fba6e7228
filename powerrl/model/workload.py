"""Workload from real cluster utilisation traces, with seeded stochastic arrivals inside each interval.

The shipped trace is the Google ClusterData2019 datacentre-average instance usage aggregated into
5-minute rows (``powerrl/data/traces/instance_usage_grouped_300_seconds_month.csv``, 8,064 rows =
28 days, row order = time order, no timestamp column). ``avg_cpu`` is the utilisation series.

Split: days 1-21 (rows 0..6047) are for training, days 22-28 (rows 6048..8063) are held out for
evaluation and forecast scoring. Days are numbered from 1.

Clock: the trace has no clock. The ClusterData2019 documentation places it in May 2019; we assume
row 0 is local midnight in ``timezone`` (default America/Los_Angeles) and map it onto a 2023 date so
that the 2023 carbon and weather data can be joined: ``start_date`` (default 2023-05-03) is the local
date of day 1. Rows are contiguous in absolute time from there (``utc_s(t_s) = start_utc_s + t_s``),
so a DST change inside a trace shifts wall-clock time, not the trace. ``start_utc`` overrides both.

Memory-boundedness proxy: ``avg_cycles_per_instruction`` rises when cores stall on memory, so it is
min-max normalised over the whole trace to ``[0, 1]`` (0 = the least memory-stalled interval of the
month, 1 = the most). It is a relative, within-trace signal, not an absolute measure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from powerrl.config import spec
from powerrl.errors import ConfigError, DataFileError
from powerrl.model.classes import class_spec
from powerrl.model.timeseries import local_midnight_utc_s, numeric_column, read_csv, zone

SECONDS_PER_DAY = 86_400
SHIPPED_TRACE_PATH = "shipped:traces/instance_usage_grouped_300_seconds_month.csv"
DEFAULT_START_DATE = "2023-05-03"  # a Wednesday in May, like 2019-05-01 (ClusterData2019 covers May 2019)
DEFAULT_TIMEZONE = "America/Los_Angeles"
NEUTRAL_MEM_PROXY = 0.5  # used when a trace has no CPI column: the middle of the normalised range

# Mean request count per step above which the compound-Poisson work is drawn from its normal (CLT)
# approximation. At 20 the relative s.d. is sqrt(2/20) = 0.32 (a 3-sigma low draw stays positive, the
# clip at 0 acts with probability < 0.1 %) and the true skewness 2.12/sqrt(20) = 0.47 is the error
# of the normal shape; below it the exact draw costs ~5x more time per element.
NORMAL_APPROX_MIN_COUNT = 20.0

# Log-s.d. of per-node load around the datacentre average. The shipped trace is a datacentre-wide
# mean, so it cannot give the spread across machines; Tirmazi et al. ("Borg: the Next Generation",
# EuroSys 2020) show machine utilisations of the 2019 trace spread widely around the cell mean. We
# assume a lognormal with log-s.d. 0.25 (about +-28 % for one s.d.): an assumption, not a fit.
NODE_LOAD_LOG_SD = 0.25


def sample_offered_load(mean_load: np.ndarray, service_s: float | np.ndarray, dt_s: float,
                        rng: np.random.Generator) -> np.ndarray:
    """Offered load of one step per element: the work of Poisson request arrivals, per second.

    Requests arrive as a Poisson process of rate ``mean_load / service_s`` and each carries
    exponentially distributed work of mean ``service_s`` (node-seconds at f_max; M/M/1 service,
    consistent with the latency model in docs/model.md). The offered load is the work that arrived
    in the step divided by ``dt_s``: its mean is ``mean_load`` and its variance
    ``2 * mean_load * service_s / dt_s``. Below ``NORMAL_APPROX_MIN_COUNT`` expected requests the
    count and the work are drawn exactly (Poisson, then a gamma sum of exponentials); above, from
    the normal approximation (CLT), clipped at 0.

    Args:
        mean_load: expected offered load (fraction of one node at f_max), >= 0, any shape.
        service_s: mean work per request, s (broadcast against ``mean_load``).
        dt_s: step length, s.
        rng: generator to draw from.
    """
    mean = np.asarray(mean_load, dtype=np.float64)
    svc = np.broadcast_to(np.asarray(service_s, dtype=np.float64), mean.shape)
    counts = mean * dt_s / svc
    exact = counts < NORMAL_APPROX_MIN_COUNT
    n_exact = int(np.count_nonzero(exact))
    if n_exact == exact.size:  # every element small: skip the normal draws
        return rng.gamma(rng.poisson(counts).astype(np.float64), svc) / dt_s
    out = mean + rng.standard_normal(mean.shape) * np.sqrt(2.0 * mean * svc / dt_s)
    np.maximum(out, 0.0, out=out)
    if n_exact:
        n_req = rng.poisson(counts[exact])
        out[exact] = rng.gamma(n_req.astype(np.float64), svc[exact]) / dt_s
    return out


@dataclass(frozen=True)
class TraceSpec:
    """A utilisation trace in a CSV file (YAML-configurable).

    Attributes:
        path: CSV file path, or ``shipped:traces/<name>`` for a shipped trace.
        column: utilisation column; values must be finite and >= 0 (after ``scale``, a fraction of
            capacity, e.g. 0.47 = 47 %).
        interval_s: seconds each row covers; must divide a day (86,400 s) evenly.
        scale: multiplier applied to ``column`` (e.g. 0.01 for a column in percent).
        days: number of whole days to use from the start of the file; ``None`` = every whole day.
        heldout_days: last days held out for evaluation; ``None`` = a quarter of the days (7 of 28).
        timezone: IANA zone of the trace's local clock (row 0 = local midnight of ``start_date``).
        start_date: local date of day 1, ISO ``YYYY-MM-DD``.
        start_utc: UTC time of row 0 (ISO, e.g. ``2023-05-03T07:00:00Z``); overrides ``start_date``.
        cpi_column: cycles-per-instruction column for the memory-boundedness proxy, or ``None``.
    """

    path: str
    column: str
    interval_s: float = field(default=300.0, metadata=spec(lo=1.0, hi=86_400.0, unit="s"))
    scale: float = field(default=1.0, metadata=spec(lo=0.0, lo_open=True))
    days: int | None = field(default=None, metadata=spec(lo=1))
    heldout_days: int | None = field(default=None, metadata=spec(lo=0))
    timezone: str = DEFAULT_TIMEZONE
    start_date: str = DEFAULT_START_DATE
    start_utc: str | None = None
    cpi_column: str | None = None

    def validate(self, path: str = "", source: str | None = None) -> None:
        """Check cross-field rules (called by :func:`powerrl.config.from_dict`).

        Raises:
            ConfigError: ``interval_s`` does not divide a day, unknown time zone, bad date.
        """
        prefix = f"{path}." if path else ""
        per_day = SECONDS_PER_DAY / self.interval_s
        if abs(per_day - round(per_day)) > 1e-9:
            raise ConfigError(prefix + "interval_s", self.interval_s,
                              "a divisor of 86400 s (e.g. 60, 300, 900, 3600)", source)
        zone(self.timezone, prefix + "timezone", source)
        self.start_utc_s(path=path, source=source)

    def start_utc_s(self, path: str = "", source: str | None = None) -> float:
        """UTC epoch seconds of row 0 (from ``start_utc`` if set, else local midnight of ``start_date``)."""
        prefix = f"{path}." if path else ""
        if self.start_utc is not None:
            try:
                t = dt.datetime.fromisoformat(self.start_utc)
            except ValueError:
                raise ConfigError(prefix + "start_utc", self.start_utc,
                                  "an ISO UTC time such as '2023-05-03T07:00:00Z'", source) from None
            if t.tzinfo is None:
                t = t.replace(tzinfo=dt.UTC)
            return t.timestamp()
        return local_midnight_utc_s(self.start_date, self.timezone, prefix + "start_date", source)


SHIPPED_TRACE_SPEC = TraceSpec(path=SHIPPED_TRACE_PATH, column="avg_cpu",
                               cpi_column="avg_cycles_per_instruction")
"""The shipped Google 2019 trace: 5-minute rows, 28 days, 21 train + 7 held out."""


@dataclass(frozen=True, eq=False)
class Trace:
    """A loaded utilisation trace: per-row arrays plus its clock and train/held-out split.

    Attributes:
        utilisation: offered utilisation per row, fraction of cluster capacity at ``f_max`` (>= 0).
        mem_bound_proxy: memory-boundedness proxy per row in ``[0, 1]`` (see module docstring).
        interval_s: seconds per row.
        n_days: whole days in the trace.
        heldout_days: number of final days held out (days ``n_days - heldout_days + 1 .. n_days``).
        start_utc_s: UTC epoch seconds of row 0.
        timezone: IANA zone of the trace's local clock.
        source: file the trace came from.
    """

    utilisation: np.ndarray
    mem_bound_proxy: np.ndarray
    interval_s: float
    n_days: int
    heldout_days: int
    start_utc_s: float
    timezone: str
    source: str

    @classmethod
    def load(cls, trace_spec: TraceSpec) -> Trace:
        """Read and validate the trace described by ``trace_spec``.

        Raises:
            DataFileError: missing file or column; empty, non-numeric, NaN/inf or negative value (the
                message names the file, the 1-based row and the column); fewer rows than one day.
            ConfigError: ``days``/``heldout_days`` inconsistent with the file.
        """
        trace_spec.validate()
        header, rows = read_csv(trace_spec.path)
        util = numeric_column(trace_spec.path, header, rows, trace_spec.column, min_value=0.0)
        rows_per_day = round(SECONDS_PER_DAY / trace_spec.interval_s)
        n_days = len(util) // rows_per_day
        if n_days < 1:
            raise DataFileError(trace_spec.path, f"{len(util)} data rows is less than one day "
                                f"({rows_per_day} rows of {trace_spec.interval_s:g} s)")
        if trace_spec.days is not None:
            if trace_spec.days > n_days:
                raise ConfigError("days", trace_spec.days, f"at most {n_days} (whole days in the file)",
                                  trace_spec.path)
            n_days = trace_spec.days
        n_rows = n_days * rows_per_day
        util = util[:n_rows] * trace_spec.scale
        if trace_spec.cpi_column is not None:
            cpi = numeric_column(trace_spec.path, header, rows, trace_spec.cpi_column, min_value=0.0)[:n_rows]
            span = float(cpi.max() - cpi.min())
            mem = (cpi - cpi.min()) / span if span > 0 else np.full(n_rows, NEUTRAL_MEM_PROXY)
        else:
            mem = np.full(n_rows, NEUTRAL_MEM_PROXY)
        heldout = trace_spec.heldout_days if trace_spec.heldout_days is not None else n_days // 4
        if heldout >= n_days:
            raise ConfigError("heldout_days", heldout, f"fewer than the {n_days} days in the trace",
                              trace_spec.path)
        util.setflags(write=False)
        mem.setflags(write=False)
        return cls(utilisation=util, mem_bound_proxy=mem, interval_s=float(trace_spec.interval_s),
                   n_days=n_days, heldout_days=heldout, start_utc_s=trace_spec.start_utc_s(),
                   timezone=trace_spec.timezone, source=trace_spec.path)

    @property
    def rows_per_day(self) -> int:
        """Rows per day (288 for 5-minute rows)."""
        return round(SECONDS_PER_DAY / self.interval_s)

    @property
    def duration_s(self) -> float:
        """Length of the trace in seconds."""
        return len(self.utilisation) * self.interval_s

    def day_numbers(self, split: str | Sequence[int] = "all") -> list[int]:
        """1-based day numbers of a split.

        Args:
            split: ``"train"`` (days 1..n-heldout), ``"heldout"`` (the last ``heldout_days``), ``"all"``
                or an explicit list of 1-based day numbers.

        Raises:
            ValueError: unknown split name or a day outside ``1..n_days``.
        """
        first_heldout = self.n_days - self.heldout_days + 1
        if isinstance(split, str):
            if split == "train":
                return list(range(1, first_heldout))
            if split == "heldout":
                return list(range(first_heldout, self.n_days + 1))
            if split == "all":
                return list(range(1, self.n_days + 1))
            raise ValueError(f"unknown split {split!r}: use 'train', 'heldout', 'all' or a list of days")
        days = [int(d) for d in split]
        bad = [d for d in days if not 1 <= d <= self.n_days]
        if bad or not days:
            raise ValueError(f"days {days!r} must be a non-empty list of numbers in 1..{self.n_days}")
        return days

    def row_range(self, day: int) -> tuple[int, int]:
        """Half-open row range ``[first, end)`` of 1-based ``day``."""
        self.day_numbers([day])
        return (day - 1) * self.rows_per_day, day * self.rows_per_day

    def day(self, day: int) -> np.ndarray:
        """Utilisation rows of 1-based ``day`` (read-only view, ``rows_per_day`` values)."""
        first, end = self.row_range(day)
        return self.utilisation[first:end]

    def days(self, split: str | Sequence[int] = "all") -> np.ndarray:
        """Utilisation rows of the days of ``split``, concatenated in the given order."""
        return np.concatenate([self.day(d) for d in self.day_numbers(split)])

    def mem_proxy_days(self, split: str | Sequence[int] = "all") -> np.ndarray:
        """Memory-boundedness proxy rows of the days of ``split``, concatenated."""
        rows = [self.mem_bound_proxy[slice(*self.row_range(d))] for d in self.day_numbers(split)]
        return np.concatenate(rows)

    def utilisation_at(self, t_s: float | np.ndarray) -> np.ndarray:
        """Utilisation at trace time ``t_s`` (seconds since row 0), held constant over each row.

        Raises:
            ValueError: a time outside ``[0, duration_s)``.
        """
        t = np.asarray(t_s, dtype=np.float64)
        if np.any(t < 0) or np.any(t >= self.duration_s):
            raise ValueError(f"t_s must lie in [0, {self.duration_s:g}) s, got min {t.min():g}, max {t.max():g}")
        return self.utilisation[(t // self.interval_s).astype(np.int64)]

    def utc_s(self, t_s: float | np.ndarray) -> np.ndarray:
        """UTC epoch seconds of trace time ``t_s`` (seconds since row 0)."""
        return self.start_utc_s + np.asarray(t_s, dtype=np.float64)

    def day_start_utc_s(self, day: int) -> float:
        """UTC epoch seconds at which 1-based ``day`` starts."""
        first, _ = self.row_range(day)
        return self.start_utc_s + first * self.interval_s

    def day_date(self, day: int) -> dt.date:
        """Local calendar date (in ``timezone``) at the start of 1-based ``day``."""
        tz = zone(self.timezone)
        return dt.datetime.fromtimestamp(self.day_start_utc_s(day), tz=tz).date()

    def demand_series(self, days: str | Sequence[int], dt_s: float, n_nodes: int, seed: int, *,
                      workload_class: str = "interactive", node_sigma: float = NODE_LOAD_LOG_SD,
                      dtype: Any = np.float32) -> np.ndarray:
        """Per-node offered load with seeded Poisson arrivals inside each trace interval.

        Model: node ``n`` receives requests as a Poisson process of rate
        ``lambda = u(row) * h_n / service_s`` (``u`` the row's utilisation, ``h_n`` a per-node
        heterogeneity factor, lognormal with log-s.d. ``node_sigma``, normalised to mean 1 over nodes);
        each request carries exponentially distributed work of mean ``service_s`` (node-seconds at
        ``f_max``). The offered load of a step is the work that arrived in it divided by ``dt_s``, so its
        expectation is exactly ``u * h_n`` and its variance ``2 * u * h_n * service_s / dt_s``.
        Where the mean request count per step ``u * h_n * dt_s / service_s`` is below
        ``NORMAL_APPROX_MIN_COUNT`` the count and the work are drawn exactly (Poisson, then a gamma
        sum of exponentials); above it the compound-Poisson sum is drawn from its normal approximation
        (CLT), with normal quantiles taken from a 2**16-entry table for speed.

        Args:
            days: split name or 1-based day list (see :meth:`day_numbers`); days are concatenated.
            dt_s: step length in seconds (> 0); ``len(days) * 86400 / dt_s`` must be a whole number.
            n_nodes: number of nodes (>= 1).
            seed: seed; the same seed gives the same array. The heterogeneity factors depend on the seed
                and ``n_nodes`` only (not on ``dt_s`` or ``days``).
            workload_class: class whose ``service_ms`` sets the request size (see ``classes.py``).
            node_sigma: log-s.d. of the per-node heterogeneity (0 = identical nodes).
            dtype: output dtype. The default float32 (7 significant digits, ample for a load fraction)
                halves memory (a 1,000-node day at 1 s is 346 MB) and is ~4x faster to fill than float64.

        Returns:
            Array ``[steps, n_nodes]`` of offered load, fraction of one node's capacity at ``f_max``
            (>= 0; may exceed 1 when a node is offered more than it can serve).

        Raises:
            ValueError: non-positive ``dt_s``/``n_nodes``, negative ``node_sigma``, steps not whole.
        """
        if not dt_s > 0:
            raise ValueError(f"dt_s must be > 0 s, got {dt_s!r}")
        if n_nodes < 1:
            raise ValueError(f"n_nodes must be >= 1, got {n_nodes!r}")
        if not node_sigma >= 0:
            raise ValueError(f"node_sigma must be >= 0, got {node_sigma!r}")
        service_s = class_spec(workload_class).service_ms / 1000.0
        rows = self.days(days)
        total_s = len(rows) * self.interval_s
        steps_f = total_s / dt_s
        steps = round(steps_f)
        if steps < 1 or abs(steps_f - steps) > 1e-6 * max(1.0, steps_f):
            raise ValueError(f"dt_s = {dt_s!r} s does not divide the {total_s:g} s of the chosen days")

        hetero_rng, arrival_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        h = hetero_rng.lognormal(mean=0.0, sigma=node_sigma, size=n_nodes)
        h /= h.mean()

        step_row = np.minimum(((np.arange(steps) + 0.5) * dt_s // self.interval_s).astype(np.int64),
                              len(rows) - 1)
        u_step = rows[step_row]
        out = np.empty((steps, n_nodes), dtype=dtype)
        chunk = max(1, 65_536 // n_nodes)  # bounded temporaries
        for a in range(0, steps, chunk):
            b = min(steps, a + chunk)
            out[a:b] = sample_offered_load(u_step[a:b, None] * h[None, :], service_s, dt_s, arrival_rng)
        return out


@lru_cache(maxsize=1)
def _shipped() -> Trace:
    return Trace.load(SHIPPED_TRACE_SPEC)


def load_shipped_trace(start_utc_s: float | None = None) -> Trace:
    """The shipped Google 2019 trace (cached after the first read).

    Args:
        start_utc_s: UTC epoch seconds of row 0; ``None`` = local midnight of 2023-05-03 in
            America/Los_Angeles (07:00 UTC).
    """
    trace = _shipped()
    if start_utc_s is None:
        return trace
    return Trace(utilisation=trace.utilisation, mem_bound_proxy=trace.mem_bound_proxy,
                 interval_s=trace.interval_s, n_days=trace.n_days, heldout_days=trace.heldout_days,
                 start_utc_s=float(start_utc_s), timezone=trace.timezone, source=trace.source)
