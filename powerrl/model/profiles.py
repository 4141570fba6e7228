"""Server power profiles: typed, validated, fitted to real SPECpower_ssj2008 results.

A :class:`ServerProfile` holds everything the simulator needs about one server model: the load curve
at ``f_max`` (``idle_w``, ``busy_w``, ``shape_r``, ``wake_share``, fitted per profile), the
frequency response (``static_share``, a P-state table with voltage ratios, derived from the
measured EPYC 7502 data) and the thermal RC constants. Profiles are YAML files with a top-level
``kind: profile``; loading validates every key with its path.

Fitting (``powerrl calibrate``): :func:`read_specpower` parses the shipped SPECpower results,
:func:`fit_profile` fits one result (bounded least squares on relative error, then a minimax
refinement) and reports the error per load level. :func:`epyc7502_profile` builds a profile from
the EPYC 7502 measurement file and :func:`derive_frequency_model` derives the V-f relation, the
static share and the memory-boundedness of memory copy from it. See docs/calibration.md.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from powerrl.config import from_dict, load_yaml, spec, to_dict
from powerrl.errors import ConfigError, DataFileError
from powerrl.model import power

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
PROFILES_DIR = DATA_DIR / "profiles"
SPECPOWER_CSV = DATA_DIR / "specpower" / "specpower_ssj2008_results.csv"
EPYC_CSV = DATA_DIR / "pstates" / "epyc7502_2s_power_vs_freq_threads_summary.csv"

#: SPECpower_ssj2008 target loads in %, ascending (the benchmark's 10 graduated levels; idle separate).
SPEC_LEVELS_PCT = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)

#: Lowest P-state as a share of ``f_max`` for SPECpower profiles. Intel server parts since Nehalem
#: bottom out at 1.0-1.2 GHz (e.g. Xeon Platinum 8180: 2.5 GHz base, 1.0 GHz minimum per Intel ARK)
#: and the EPYC 7502's lowest P-state is 1.5 GHz of 2.5 GHz (0.6, the measurement file); 0.5 is a
#: middle value that every shipped part reaches.
MIN_FREQ_RATIO = 0.5
#: P-state spacing: Intel cores change frequency in 100 MHz bus-ratio steps since Nehalem.
PSTATE_STEP_MHZ = 100.0
#: At most this many P-states per profile (coarser multiples of 100 MHz beyond): keeps DVFS action
#: spaces small; 11 states is the EPYC 7502 ladder 1.5-2.5 GHz in 100 MHz steps.
MAX_PSTATES = 11

#: Thermal defaults (docs/model.md, shared/ARCHITECTURE.md): die ~1 s, heatsink 15-20 s.
TAU_DIE_S = 1.0
TAU_SINK_S = 18.0
#: R values are chosen per profile so that at ``busy_w`` and a 25 degC inlet the die sits at 78 degC,
#: inside the 70-85 degC a loaded air-cooled server CPU typically runs at and below the 85-105 degC
#: throttling points of server parts; the die-to-heatsink stage takes 30 % of the 53 K rise (the
#: heatsink-to-air stage dominates in air-cooled servers).
REF_INLET_C = 25.0
REF_DIE_C = 78.0
DIE_SHARE_OF_RISE = 0.3

#: Fit bounds: r outside [0.25, 4] and w above 0.95 never fit a real SPECpower result better.
SHAPE_R_BOUNDS = (0.25, 4.0)
WAKE_SHARE_BOUNDS = (0.0, 0.95)

#: Accuracy goal of the calibration (max relative error over idle + 10 load levels).
GOAL_MAX_REL_ERROR = 0.05


@dataclass(frozen=True)
class ServerProfile:
    """One server model, fitted to a real measurement.

    Power at busy fraction ``u``, P-state frequency ``f`` and memory-boundedness ``m`` is
    :func:`powerrl.model.power.node_power_w` with this profile's parameters (docs/model.md).

    Attributes:
        name: profile name, a lowercase slug (``xeon-platinum-8180-2017``).
        source: URL of the measurement (the SPECpower result page, or the data set).
        result_id: SPECpower result id, or the measurement file's name.
        cpu: CPU model as published.
        year: year of the measurement.
        idle_w: active-idle wall power per node (W).
        busy_w: wall power at 100 % load and ``f_max`` (W).
        shape_r: exponent of the load-proportional part of the curve (> 0).
        wake_share: share of ``busy_w - idle_w`` drawn at any nonzero load, [0, 1).
        static_share: share of the load-proportional power not scaling with f and V, [0, 1].
        f_max_mhz: highest (nominal) frequency, the frequency SPECpower ran at (MHz).
        pstates_mhz: P-state frequencies, strictly ascending, the last equal to ``f_max_mhz`` (MHz).
        volt_ratio: ``V(f)/V(f_max)`` per P-state, non-decreasing, the last 1.0.
        r_die_c_per_w: die-to-heatsink thermal resistance (K/W of node power).
        r_sink_c_per_w: heatsink-to-inlet thermal resistance (K/W of node power).
        tau_die_s: die time constant (s).
        tau_sink_s: heatsink time constant (s).
        fit_max_rel_error: max relative error of the fit over the measured points.
        fit_mean_rel_error: mean relative error of the fit over the measured points.
    """

    name: str = field(metadata=spec(doc="profile name (lowercase slug)"))
    source: str = field(metadata=spec(doc="URL of the measurement"))
    result_id: str = field(metadata=spec(doc="SPECpower result id or measurement file"))
    cpu: str = field(metadata=spec(doc="CPU model"))
    year: int = field(metadata=spec(lo=2000, hi=2100))
    idle_w: float = field(metadata=spec(lo=0.0, lo_open=True, unit="W"))
    busy_w: float = field(metadata=spec(lo=0.0, lo_open=True, unit="W"))
    shape_r: float = field(metadata=spec(lo=SHAPE_R_BOUNDS[0], hi=SHAPE_R_BOUNDS[1]))
    wake_share: float = field(metadata=spec(lo=0.0, hi=1.0, hi_open=True))
    static_share: float = field(metadata=spec(lo=0.0, hi=1.0))
    f_max_mhz: float = field(metadata=spec(lo=100.0, hi=10000.0, unit="MHz"))
    pstates_mhz: tuple[float, ...] = field(metadata=spec(lo=100.0, hi=10000.0, unit="MHz"))
    volt_ratio: tuple[float, ...] = field(metadata=spec(lo=0.0, hi=1.0, lo_open=True))
    r_die_c_per_w: float = field(metadata=spec(lo=0.0, lo_open=True, unit="K/W"))
    r_sink_c_per_w: float = field(metadata=spec(lo=0.0, lo_open=True, unit="K/W"))
    tau_die_s: float = field(default=TAU_DIE_S, metadata=spec(lo=0.0, lo_open=True, unit="s"))
    tau_sink_s: float = field(default=TAU_SINK_S, metadata=spec(lo=0.0, lo_open=True, unit="s"))
    fit_max_rel_error: float = field(default=0.0, metadata=spec(lo=0.0))
    fit_mean_rel_error: float = field(default=0.0, metadata=spec(lo=0.0))

    def validate(self, path: str = "", source: str | None = None) -> None:
        """Cross-field checks; raises :class:`ConfigError` naming the key path and the bad value."""
        def key(name: str) -> str:
            return f"{path}.{name}" if path else name

        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", self.name):
            raise ConfigError(key("name"), self.name, "a lowercase slug of a-z, 0-9, '.', '_', '-'", source)
        if self.busy_w <= self.idle_w:
            raise ConfigError(key("busy_w"), self.busy_w, f"more than idle_w = {self.idle_w} W", source)
        if not self.pstates_mhz:
            raise ConfigError(key("pstates_mhz"), list(self.pstates_mhz), "at least one P-state", source)
        for i in range(1, len(self.pstates_mhz)):
            if self.pstates_mhz[i] <= self.pstates_mhz[i - 1]:
                raise ConfigError(key(f"pstates_mhz[{i}]"), self.pstates_mhz[i],
                                  f"more than the previous P-state {self.pstates_mhz[i - 1]} MHz "
                                  "(frequencies strictly ascending)", source)
        if not math.isclose(self.pstates_mhz[-1], self.f_max_mhz):
            raise ConfigError(key("pstates_mhz"), list(self.pstates_mhz),
                              f"a last (highest) P-state equal to f_max_mhz = {self.f_max_mhz}", source)
        if len(self.volt_ratio) != len(self.pstates_mhz):
            raise ConfigError(key("volt_ratio"), list(self.volt_ratio),
                              f"one voltage ratio per P-state ({len(self.pstates_mhz)} values)", source)
        for i in range(1, len(self.volt_ratio)):
            if self.volt_ratio[i] < self.volt_ratio[i - 1]:
                raise ConfigError(key(f"volt_ratio[{i}]"), self.volt_ratio[i],
                                  f"at least the previous ratio {self.volt_ratio[i - 1]} (non-decreasing)", source)
        if not math.isclose(self.volt_ratio[-1], 1.0):
            raise ConfigError(key(f"volt_ratio[{len(self.volt_ratio) - 1}]"), self.volt_ratio[-1],
                              "1.0 (the voltage ratio at f_max)", source)

    @property
    def freq_ratio(self) -> np.ndarray:
        """``f / f_max`` per P-state, ascending, last 1.0."""
        return np.asarray(self.pstates_mhz, dtype=np.float64) / self.f_max_mhz

    def power_w(self, u: Any, pstate: Any = -1, mem_bound: Any = 0.0) -> np.ndarray:
        """Node wall power (W) at busy fraction ``u``, P-state index ``pstate`` and memory-boundedness."""
        idx = np.asarray(pstate)
        fr = self.freq_ratio[idx]
        vr = np.asarray(self.volt_ratio, dtype=np.float64)[idx]
        return power.node_power_w(u, fr, vr, mem_bound, self.idle_w, self.busy_w, self.shape_r,
                                  self.static_share, self.wake_share)


@dataclass(frozen=True)
class SpecpowerRow:
    """One SPECpower_ssj2008 result, per node (multi-node totals divided by ``n_nodes``).

    Attributes:
        result_id: SPEC's result id.
        url: the result page (cite it under SPEC's fair-use rule).
        cpu_name: CPU model as published.
        cpu_mhz: nominal CPU frequency (MHz).
        n_nodes: nodes in the result.
        single_node: whether SPEC's test method is 'Single Node'.
        year: year of the test.
        load: achieved load per point, idle first then the 10 levels ascending (fraction of max ssj_ops).
        power_w: average wall power per node per point (W), same order.
    """

    result_id: str
    url: str
    cpu_name: str
    cpu_mhz: float
    n_nodes: int
    single_node: bool
    year: int
    load: tuple[float, ...]
    power_w: tuple[float, ...]


@dataclass(frozen=True)
class FitReport:
    """How well a fitted profile reproduces its measurement.

    Attributes:
        result_id: the measurement fitted.
        load: load per point (idle first).
        measured_w: measured power per point (W).
        model_w: model power per point (W).
        rel_error: ``model/measured - 1`` per point.
        max_rel_error: max of ``|rel_error|``.
        mean_rel_error: mean of ``|rel_error|``.
    """

    result_id: str
    load: tuple[float, ...]
    measured_w: tuple[float, ...]
    model_w: tuple[float, ...]
    rel_error: tuple[float, ...]
    max_rel_error: float
    mean_rel_error: float


# ----------------------------------------------------------------------------------------- YAML I/O

def load_profile(path: str | Path) -> ServerProfile:
    """Load and validate a profile YAML (top-level ``kind: profile``).

    Raises:
        ConfigError: bad YAML, wrong ``kind``, unknown key or bad value (message has the key path).
    """
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("", data, "a mapping with 'kind: profile' and the profile fields", str(path))
    body = dict(data)
    kind = body.pop("kind", None)
    if kind != "profile":
        raise ConfigError("kind", kind, "'profile'", str(path))
    return from_dict(ServerProfile, body, source=str(path))


def save_profile(profile: ServerProfile, path: str | Path) -> Path:
    """Write ``profile`` as YAML (``kind: profile`` first); returns the path written."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    body: dict[str, Any] = {"kind": "profile"}
    body.update(to_dict(profile))
    header = (f"# Server power profile '{profile.name}' (docs/calibration.md).\n"
              f"# Measured data: {profile.source}\n")
    with out.open("w", encoding="utf-8") as fh:
        fh.write(header)
        yaml.safe_dump(body, fh, sort_keys=False, default_flow_style=None, width=110)
    return out


@lru_cache(maxsize=1)
def _shipped() -> dict[str, ServerProfile]:
    profiles: dict[str, ServerProfile] = {}
    for path in sorted(PROFILES_DIR.glob("*.yaml")):
        prof = load_profile(path)
        if prof.name != path.stem:
            raise ConfigError("name", prof.name, f"the file name '{path.stem}'", str(path))
        profiles[prof.name] = prof
    return profiles


def shipped_profiles() -> dict[str, ServerProfile]:
    """Profiles shipped in ``powerrl/data/profiles``, by name."""
    return dict(_shipped())


def get_profile(name_or_path: str | Path) -> ServerProfile:
    """A shipped profile by name, or a profile YAML by path.

    Raises:
        ConfigError: neither a shipped name nor an existing file; lists the shipped names.
    """
    shipped = _shipped()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    path = Path(name_or_path)
    if path.is_file():
        return load_profile(path)
    raise ConfigError("profile", str(name_or_path),
                      "a shipped profile (" + ", ".join(sorted(shipped)) + ") or a profile YAML path")


# ------------------------------------------------------------------------------------ P-states etc.

def pstate_ladder(f_max_mhz: float, f_min_mhz: float | None = None) -> tuple[float, ...]:
    """P-state frequencies (MHz) ascending from ``f_min`` to ``f_max`` in multiples of 100 MHz.

    Args:
        f_max_mhz: highest frequency (MHz), the last entry.
        f_min_mhz: lowest frequency (MHz); default ``MIN_FREQ_RATIO * f_max_mhz`` rounded to 100 MHz.
    """
    if f_min_mhz is None:
        f_min_mhz = max(PSTATE_STEP_MHZ, round(MIN_FREQ_RATIO * f_max_mhz / PSTATE_STEP_MHZ) * PSTATE_STEP_MHZ)
    span = max(f_max_mhz - f_min_mhz, 0.0)
    n_steps = math.ceil(span / PSTATE_STEP_MHZ - 1e-9)
    step = PSTATE_STEP_MHZ * max(1, math.ceil(n_steps / (MAX_PSTATES - 1)))
    freqs = [f_max_mhz - k * step for k in range(MAX_PSTATES) if f_max_mhz - k * step >= f_min_mhz - 1e-9]
    return tuple(float(f) for f in sorted(freqs))


def thermal_resistances(busy_w: float) -> tuple[float, float]:
    """``(r_die_c_per_w, r_sink_c_per_w)`` putting the die at ``REF_DIE_C`` at ``busy_w`` and ``REF_INLET_C``."""
    total = (REF_DIE_C - REF_INLET_C) / busy_w
    return DIE_SHARE_OF_RISE * total, (1.0 - DIE_SHARE_OF_RISE) * total


def slug(text: str) -> str:
    """Lowercase profile-name slug of ``text`` (``Intel Xeon Platinum 8180`` -> ``intel-xeon-platinum-8180``)."""
    text = re.sub(r"\(.*?\)|@.*|\d+(\.\d+)?\s*[GM]Hz", " ", text, flags=re.IGNORECASE)
    text = re.sub(r"\b(processor|cpu)\b", " ", text, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "server"


# ------------------------------------------------------------------------------------- SPECpower CSV

_SPEC_COLUMNS = ("result_id", "url", "cpu_name", "cpu_mhz", "n_nodes", "test_method", "test_date",
                 "publication", "idle_w") + tuple(
    c for lvl in SPEC_LEVELS_PCT for c in (f"p{lvl}_w", f"actual{lvl}_pct"))


def _number(raw: dict[str, str], column: str, path: str, row: int, lo: float, hi: float) -> float:
    text = (raw.get(column) or "").strip()
    try:
        value = float(text)
    except ValueError:
        raise DataFileError(path, f"{text!r} is not a number", row, column) from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise DataFileError(path, f"{value!r} is outside [{lo}, {hi}]", row, column)
    return value


def _year(raw: dict[str, str]) -> int:
    for column in ("test_date", "publication", "hw_availability"):
        found = re.search(r"\b(19|20)\d\d\b", raw.get(column) or "")
        if found:
            return int(found.group(0))
    return 2000


def read_specpower(csv_path: str | Path = SPECPOWER_CSV) -> list[SpecpowerRow]:
    """Parse a SPECpower_ssj2008 results CSV into per-node rows.

    Args:
        csv_path: the CSV (default: the shipped one, 625 results).

    Raises:
        DataFileError: missing file or column, or a bad number; names the 1-based row (header = 1)
            and the column.
    """
    path = str(csv_path)
    if not Path(csv_path).is_file():
        raise DataFileError(path, "file not found")
    rows: list[SpecpowerRow] = []
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _SPEC_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataFileError(path, f"missing column(s): {', '.join(missing)}", 1, missing[0])
        for i, raw in enumerate(reader, start=2):
            n_nodes = int(_number(raw, "n_nodes", path, i, 1, 1e6))
            idle_w = _number(raw, "idle_w", path, i, 0.0, 1e7) / n_nodes
            loads = [0.0] + [_number(raw, f"actual{lvl}_pct", path, i, 0.0, 200.0) / 100.0
                             for lvl in SPEC_LEVELS_PCT]
            powers = [idle_w] + [_number(raw, f"p{lvl}_w", path, i, 1e-9, 1e7) / n_nodes
                                 for lvl in SPEC_LEVELS_PCT]
            rows.append(SpecpowerRow(
                result_id=raw["result_id"].strip(), url=raw["url"].strip(), cpu_name=" ".join(raw["cpu_name"].split()),
                cpu_mhz=_number(raw, "cpu_mhz", path, i, 1.0, 1e5), n_nodes=n_nodes,
                single_node=raw["test_method"].strip().lower() == "single node", year=_year(raw),
                load=tuple(loads), power_w=tuple(powers)))
    return rows


def find_row(rows: list[SpecpowerRow], result_id: str) -> SpecpowerRow:
    """The row with ``result_id``; raises :class:`ConfigError` naming it and how to list ids."""
    for row in rows:
        if row.result_id == result_id:
            return row
    raise ConfigError("--result-id", result_id,
                      "a result_id of the SPECpower CSV (list them with 'powerrl calibrate --list' or "
                      "the first column of the CSV)")


# -------------------------------------------------------------------------------------------- fitting

def _fit_curve(load: np.ndarray, power_w: np.ndarray, idle_w: float,
               fixed_busy_w: float | None = None) -> np.ndarray:
    """Fit ``(busy_w, shape_r, wake_share)`` to minimise the max relative error at ``idle_w`` fixed.

    The model is ``idle + (busy - idle)(w awake(u) + (1 - w) u^r)``. Bounded least squares on
    relative error (several starting exponents) gives a start; SLSQP then minimises the max
    relative error (the accuracy goal is stated as a max). The better of the two is returned.
    """
    from scipy.optimize import least_squares, minimize  # deferred: loading profiles must stay cheap

    p_max = float(power_w.max())

    def model(x: np.ndarray) -> np.ndarray:
        busy = fixed_busy_w if fixed_busy_w is not None else x[0]
        return power.node_power_w(load, 1.0, 1.0, 0.0, idle_w, busy, x[1], 0.0, x[2])

    def rel(x: np.ndarray) -> np.ndarray:
        return np.asarray(model(x) / power_w - 1.0)

    busy_lo = fixed_busy_w if fixed_busy_w is not None else max(idle_w * (1 + 1e-6), 1e-6)
    busy_hi = fixed_busy_w * (1 + 1e-9) if fixed_busy_w is not None else 3.0 * p_max
    lo = np.array([busy_lo, SHAPE_R_BOUNDS[0], WAKE_SHARE_BOUNDS[0]])
    hi = np.array([busy_hi, SHAPE_R_BOUNDS[1], WAKE_SHARE_BOUNDS[1]])
    best = np.clip([min(max(p_max, busy_lo), busy_hi), 1.0, 0.0], lo, hi)
    best_err = float(np.abs(rel(best)).max())
    for r0 in (0.7, 1.0, 1.5, 2.5):
        for w0 in (0.05, 0.3):
            x0 = np.clip([min(max(p_max, busy_lo), busy_hi), r0, w0], lo, hi)
            sol = least_squares(rel, x0, bounds=(lo, hi))
            err = float(np.abs(rel(sol.x)).max())
            if err < best_err:
                best, best_err = sol.x, err
    z0 = np.append(best, best_err)
    cons = [{"type": "ineq", "fun": lambda z: z[-1] - rel(z[:-1])},
            {"type": "ineq", "fun": lambda z: z[-1] + rel(z[:-1])}]
    bounds = list(zip(lo, hi, strict=True)) + [(0.0, None)]
    mm = minimize(lambda z: z[-1], z0, method="SLSQP", bounds=bounds, constraints=cons,
                  options={"maxiter": 300, "ftol": 1e-10})
    x_mm = np.clip(mm.x[:-1], lo, hi)
    if float(np.abs(rel(x_mm)).max()) < best_err:
        best = x_mm
    return np.array(best, dtype=np.float64)


def _report(result_id: str, load: np.ndarray, measured_w: np.ndarray, model_w: np.ndarray) -> FitReport:
    rel = model_w / measured_w - 1.0
    return FitReport(result_id=result_id, load=tuple(map(float, load)), measured_w=tuple(map(float, measured_w)),
                     model_w=tuple(map(float, model_w)), rel_error=tuple(map(float, rel)),
                     max_rel_error=float(np.abs(rel).max()), mean_rel_error=float(np.abs(rel).mean()))


def _pstate_fields(pstates_mhz: tuple[float, ...], f_max_mhz: float) -> dict[str, Any]:
    fr = np.asarray(pstates_mhz) / f_max_mhz
    vr = np.minimum(power.volt_ratio(fr), 1.0)
    return {"f_max_mhz": float(f_max_mhz), "pstates_mhz": tuple(pstates_mhz),
            "volt_ratio": tuple(round(float(v), 4) for v in vr)}


def fit_profile(row: SpecpowerRow, name: str | None = None) -> tuple[ServerProfile, FitReport]:
    """Fit a profile to one SPECpower result (per node).

    ``idle_w`` is the measured active idle (the model reproduces it exactly at ``u = 0``);
    ``busy_w``, ``shape_r`` and ``wake_share`` are fitted to the 10 load levels with ``u`` = achieved
    load (``actualNN_pct / 100``). ``static_share`` and the voltage ratios cannot be identified at
    ``f_max`` and come from the EPYC 7502 derivation (:data:`powerrl.model.power.STATIC_SHARE`,
    :data:`powerrl.model.power.VF_INTERCEPT`).

    Args:
        row: the result (see :func:`read_specpower`).
        name: profile name; default ``<cpu slug>-<year>``.

    Returns:
        ``(profile, report)``; the report's errors are over idle + the 10 load levels.
    """
    load = np.asarray(row.load, dtype=np.float64)
    measured = np.asarray(row.power_w, dtype=np.float64)
    idle_w = float(measured[0])
    busy_w, shape_r, wake_share = _fit_curve(load, measured, idle_w)
    model_w = power.node_power_w(load, 1.0, 1.0, 0.0, idle_w, busy_w, shape_r, power.STATIC_SHARE, wake_share)
    report = _report(row.result_id, load, measured, model_w)
    r_die, r_sink = thermal_resistances(float(busy_w))
    prof = ServerProfile(
        name=name or f"{slug(row.cpu_name)}-{row.year}", source=row.url, result_id=row.result_id,
        cpu=row.cpu_name, year=row.year, idle_w=round(idle_w, 4), busy_w=round(float(busy_w), 4),
        shape_r=round(float(shape_r), 6), wake_share=round(float(wake_share), 6),
        static_share=power.STATIC_SHARE, **_pstate_fields(pstate_ladder(row.cpu_mhz), row.cpu_mhz),
        r_die_c_per_w=round(r_die, 6), r_sink_c_per_w=round(r_sink, 6),
        fit_max_rel_error=round(report.max_rel_error, 6), fit_mean_rel_error=round(report.mean_rel_error, 6))
    prof.validate()
    return prof, report


def profile_report(profile: ServerProfile, row: SpecpowerRow) -> FitReport:
    """Errors of an existing ``profile`` (e.g. a shipped one, rounded) against its SPECpower ``row``."""
    load = np.asarray(row.load, dtype=np.float64)
    model_w = profile.power_w(load)
    return _report(row.result_id, load, np.asarray(row.power_w, dtype=np.float64), np.asarray(model_w))


# ------------------------------------------------------------------------------------ EPYC 7502 data

#: Idle-state setting used throughout: C2 allowed, the server's default deep idle state.
EPYC_CSTATE = "C2_enabled"
EPYC_FREQS_MHZ = (1500.0, 2200.0, 2500.0)
EPYC_THREADS = 128
EPYC_URL = "https://github.com/tud-zih-energy/2021-rome-ee"


@dataclass(frozen=True)
class EpycData:
    """AC and RAPL power of the 2-socket EPYC 7502 by ``(kernel, freq_mhz, threads)``, C2 allowed."""

    ac_w: dict[tuple[str, int, int], float]
    rapl_core_w: dict[tuple[str, int, int], float]
    rapl_pkg_w: dict[tuple[str, int, int], float]
    idle_w: float

    def ac(self, kernel: str, freq_mhz: float, threads: int = EPYC_THREADS) -> float:
        """Mean full-system AC power (W)."""
        return self.ac_w[(kernel, int(freq_mhz), threads)]


@lru_cache(maxsize=2)
def read_epyc(csv_path: str | Path = EPYC_CSV) -> EpycData:
    """Read the EPYC 7502 summary (C2-allowed rows); DataFileError names row and column on bad data."""
    path = str(csv_path)
    if not Path(csv_path).is_file():
        raise DataFileError(path, "file not found")
    ac, core, pkg = {}, {}, {}
    idle_w: float | None = None
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = ("kernel", "freq_mhz", "active_hw_threads", "cstate_setting", "ac_power_w_mean",
                "rapl_pkg_sum_w_mean", "rapl_core_sum_w_mean")
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise DataFileError(path, f"missing column(s): {', '.join(missing)}", 1, missing[0])
        for i, raw in enumerate(reader, start=2):
            if raw["cstate_setting"] != EPYC_CSTATE:
                continue
            k = (raw["kernel"], int(_number(raw, "freq_mhz", path, i, 1, 1e5)),
                 int(_number(raw, "active_hw_threads", path, i, 0, 1e5)))
            ac[k] = _number(raw, "ac_power_w_mean", path, i, 0.0, 1e6)
            core[k] = _number(raw, "rapl_core_sum_w_mean", path, i, 0.0, 1e6)
            pkg[k] = _number(raw, "rapl_pkg_sum_w_mean", path, i, 0.0, 1e6)
            if raw["kernel"] == "idle":
                idle_w = ac[k]
    if idle_w is None:
        raise DataFileError(path, f"no 'idle' kernel row with cstate_setting {EPYC_CSTATE}", None, "kernel")
    return EpycData(ac_w=ac, rapl_core_w=core, rapl_pkg_w=pkg, idle_w=idle_w)


@dataclass(frozen=True)
class FrequencyModel:
    """The frequency response derived from the EPYC 7502 measurements (docs/calibration.md).

    Attributes:
        static_share: share of the load-proportional power not scaling with f, V.
        vf_intercept: ``v0`` of ``V/V_max = v0 + (1 - v0) f/f_max`` fitted to AC power.
        vf_intercept_rapl: ``v0`` from the RAPL core-domain power ratios (independent check).
        mem_bound_memory: memory-boundedness ``m`` fitted to the memory-copy kernel.
    """

    static_share: float
    vf_intercept: float
    vf_intercept_rapl: float
    mem_bound_memory: float


def derive_frequency_model(csv_path: str | Path = EPYC_CSV) -> FrequencyModel:
    """Derive ``static_share``, the V-f intercept and memory copy's ``m`` from the EPYC 7502 file.

    1. static share: from 4 to 128 busy threads at 2.5 GHz the wall power rises less than the RAPL
       core-domain power, i.e. all of the load-proportional power is core power:
       ``s = clip(1 - d(core)/d(AC), 0, 1)``.
    2. V-f: with that ``s``, least squares on the compute kernel's AC power at 1.5 and 2.2 GHz
       (128 threads) for ``v0``; the RAPL core power ``~ f V^2`` gives an independent ``v0``.
    3. memory copy: least squares for ``m`` on the full-system ratios P(f)/P(2.5 GHz), 1.5 and 2.2 GHz.
    """
    from scipy.optimize import least_squares  # deferred: loading profiles must stay cheap

    d = read_epyc(csv_path)
    f_max = EPYC_FREQS_MHZ[-1]
    lo_thr, key_hi = 4, ("compute", int(f_max), EPYC_THREADS)
    key_lo = ("compute", int(f_max), lo_thr)
    d_ac = d.ac_w[key_hi] - d.ac_w[key_lo]
    d_core = d.rapl_core_w[key_hi] - d.rapl_core_w[key_lo]
    s = float(np.clip(1.0 - d_core / d_ac, 0.0, 1.0))
    epyc, _ = epyc7502_profile(csv_path, static_share=s)
    fr = np.asarray(EPYC_FREQS_MHZ[:-1]) / f_max
    meas = np.array([d.ac("compute", f) for f in EPYC_FREQS_MHZ[:-1]])

    def compute_w(v0: float) -> np.ndarray:
        return np.asarray(power.node_power_w(1.0, fr, power.volt_ratio(fr, v0), 0.0, epyc.idle_w, epyc.busy_w,
                                             epyc.shape_r, s, epyc.wake_share))

    v0 = float(least_squares(lambda x: compute_w(x[0]) / meas - 1.0, [0.5], bounds=([0.0], [1.0])).x[0])
    core_ratio = np.array([d.rapl_core_w[("compute", int(f), EPYC_THREADS)] for f in EPYC_FREQS_MHZ[:-1]])
    vr_core = np.sqrt(core_ratio / d.rapl_core_w[key_hi] / fr)
    v0_rapl = float(np.sum((1 - fr) * (vr_core - fr)) / np.sum((1 - fr) ** 2))
    ratio_mem = np.array([d.ac("memory_copy", f) for f in EPYC_FREQS_MHZ[:-1]]) / d.ac("memory_copy", f_max)

    def mem_ratio(m: float) -> np.ndarray:
        p = power.node_power_w(1.0, fr, power.volt_ratio(fr, v0), m, epyc.idle_w, epyc.busy_w, epyc.shape_r,
                               s, epyc.wake_share)
        return np.asarray(p / epyc.busy_w)

    m = float(least_squares(lambda x: mem_ratio(x[0]) - ratio_mem, [0.5], bounds=([0.0], [1.0])).x[0])
    return FrequencyModel(static_share=s, vf_intercept=v0, vf_intercept_rapl=v0_rapl, mem_bound_memory=m)


def epyc7502_profile(csv_path: str | Path = EPYC_CSV,
                     static_share: float = power.STATIC_SHARE) -> tuple[ServerProfile, FitReport]:
    """Profile of the 2-socket EPYC 7502 from its measurement file.

    ``idle_w`` = the idle kernel with C2 allowed; ``busy_w`` = the compute kernel at 128 threads and
    2.5 GHz; ``shape_r`` and ``wake_share`` fitted to the compute kernel's active-thread sweep
    (4..128 threads, load ``u = threads/128``) at 2.5 GHz. P-states 1.5-2.5 GHz in 100 MHz steps (the
    measured 1.5 / 2.2 / 2.5 GHz and the steps between).
    """
    d = read_epyc(csv_path)
    f_max = EPYC_FREQS_MHZ[-1]
    threads = sorted(t for (k, f, t) in d.ac_w if k == "compute" and f == int(f_max) and t > 0)
    load = np.array([0.0] + [t / EPYC_THREADS for t in threads])
    measured = np.array([d.idle_w] + [d.ac("compute", f_max, t) for t in threads])
    busy_w = d.ac("compute", f_max)
    _, shape_r, wake_share = _fit_curve(load, measured, d.idle_w, fixed_busy_w=busy_w)
    model_w = power.node_power_w(load, 1.0, 1.0, 0.0, d.idle_w, busy_w, shape_r, static_share, wake_share)
    report = _report("epyc7502_2s_power_vs_freq_threads_summary.csv", load, measured, model_w)
    r_die, r_sink = thermal_resistances(busy_w)
    prof = ServerProfile(
        name="epyc7502", source=EPYC_URL, result_id=report.result_id, cpu="2x AMD EPYC 7502 (32 cores, 2.5 GHz)",
        year=2021, idle_w=d.idle_w, busy_w=busy_w, shape_r=round(float(shape_r), 6),
        wake_share=round(float(wake_share), 6), static_share=static_share,
        **_pstate_fields(pstate_ladder(f_max, EPYC_FREQS_MHZ[0]), f_max),
        r_die_c_per_w=round(r_die, 6), r_sink_c_per_w=round(r_sink, 6),
        fit_max_rel_error=round(report.max_rel_error, 6), fit_mean_rel_error=round(report.mean_rel_error, 6))
    prof.validate()
    return prof, report


def profile_params(profile: ServerProfile) -> dict[str, float]:
    """The fitted parameters of ``profile`` as a plain dict (for JSON output)."""
    names = ("idle_w", "busy_w", "shape_r", "wake_share", "static_share")
    return {n: float(getattr(profile, n)) for n in names}

