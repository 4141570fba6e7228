"""Ambient weather and on-site solar PV from Open-Meteo hourly JSON.

The shipped file ``powerrl/data/weather/US-CAL-CISO_2023.json`` (San Jose, CA, 2023) lists hourly
values at naive local timestamps with ``utc_offset_seconds = -25200``. That offset is *fixed* for the
whole file (``timezone_abbreviation`` "GMT-7", 8,760 consecutive hours with no DST gap or repeat):
timestamps are UTC-7 all year, i.e. Pacific daylight time even in winter. We therefore convert with
that fixed offset, ``t_utc = t_local - utc_offset_seconds`` (2023-01-01T00:00 -> 07:00 UTC), and never
apply DST rules to this file.

Temperature and cloud cover are instantaneous hourly values; between hours they are linearly
interpolated. In JSON error messages, "row" is the 1-based entry number in the ``hourly`` arrays.

Solar PV (horizontal panels, vectorised over time):

1. Solar position from the day of year and UTC time, with Spencer's (1971) Fourier series for the
   declination and the equation of time (J. W. Spencer, "Fourier series representation of the
   position of the Sun", Search 2(5), 1971): ``cos(zenith) = sin(lat) sin(decl) + cos(lat) cos(decl)
   cos(hour angle)``.
2. Clear-sky global horizontal irradiance, Haurwitz (1945), "Insolation in relation to cloud type",
   J. Meteorology 3: ``G_clear = 1098 * cos(z) * exp(-0.059 / cos(z))`` W/m^2 for ``cos(z) > 0``.
3. Cloud attenuation, Kasten & Czeplak (1980), "Solar and terrestrial radiation dependent on the
   amount and type of cloud", Solar Energy 24: ``G = G_clear * (1 - 0.75 * (C/8)^3.4)``, ``C`` in oktas
   (``C/8`` = cloud-cover fraction).
4. ``P_w = kwp * 1000 * (G / 1000 W/m^2) * (1 - system_losses_frac)``; kWp is the array's rating at
   standard test conditions (1000 W/m^2), i.e. panel area x module efficiency x 1 kW/m^2.
   Default losses 14 % are the PVWatts default (Dobos, "PVWatts Version 5 Manual", NREL/TP-6A20-62641,
   2014). Panel tilt, module temperature and inverter clipping are not modelled.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from powerrl.config import spec
from powerrl.errors import DataFileError
from powerrl.model.timeseries import iso_utc, resolve_path, zone

SHIPPED_WEATHER_PATH = "shipped:weather/US-CAL-CISO_2023.json"
HAURWITZ_A_W_M2 = 1098.0  # Haurwitz (1945) clear-sky GHI scale
HAURWITZ_B = 0.059  # Haurwitz (1945) air-mass attenuation coefficient
KASTEN_A = 0.75  # Kasten & Czeplak (1980): fraction of irradiance removed at full overcast
KASTEN_B = 3.4  # Kasten & Czeplak (1980): exponent on the cloud-cover fraction
STC_IRRADIANCE_W_M2 = 1000.0  # standard test conditions irradiance of a PV rating (IEC 61215)
PVWATTS_LOSSES_FRAC = 0.14  # Dobos (2014), PVWatts v5 default total system losses


@dataclass(frozen=True)
class WeatherSpec:
    """An Open-Meteo style hourly weather JSON (YAML-configurable).

    Attributes:
        path: JSON path, or ``shipped:weather/<name>``.
        temperature_key: key in ``hourly`` of the 2 m air temperature, degC.
        cloud_key: key in ``hourly`` of total cloud cover, percent (0-100).
        latitude_deg: site latitude override (degrees north); ``None`` = the file's ``latitude``.
        longitude_deg: site longitude override (degrees east); ``None`` = the file's ``longitude``.
        timezone: IANA zone of the naive local timestamps, DST rules applied (a repeated hour at
            the autumn change is an error naming the entry); ``None`` = the file's fixed
            ``utc_offset_seconds`` (Open-Meteo's convention).
    """

    path: str = SHIPPED_WEATHER_PATH
    temperature_key: str = "temperature_2m"
    cloud_key: str = "cloudcover"
    latitude_deg: float | None = field(default=None, metadata=spec(lo=-90.0, hi=90.0, unit="deg"))
    longitude_deg: float | None = field(default=None, metadata=spec(lo=-180.0, hi=180.0, unit="deg"))
    timezone: str | None = None

    def validate(self, path: str = "", source: str | None = None) -> None:
        """Check the time zone name (called by :func:`powerrl.config.from_dict`)."""
        if self.timezone is not None:
            zone(self.timezone, f"{path}.timezone" if path else "timezone", source)


@dataclass(frozen=True)
class SolarSpec:
    """On-site PV array (YAML-configurable).

    Attributes:
        kwp: array rating at standard test conditions, kW peak (panel area m^2 x efficiency x 1 kW/m^2).
        system_losses_frac: wiring, inverter, soiling and mismatch losses as a fraction of DC output.
    """

    kwp: float = field(default=0.0, metadata=spec(lo=0.0, unit="kW"))
    system_losses_frac: float = field(default=PVWATTS_LOSSES_FRAC, metadata=spec(lo=0.0, hi=1.0))


def _number_array(path: str, values: Any, key: str, lo: float | None = None,
                  hi: float | None = None) -> np.ndarray:
    if not isinstance(values, list):
        raise DataFileError(path, "expected a list of numbers under 'hourly'", column=key)
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise DataFileError(path, f"{v!r} is not a finite number", row=i + 1, column=key)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise DataFileError(path, f"{v!r} is outside [{lo}, {hi}]", row=i + 1, column=key)
        out[i] = v
    return out


def solar_cos_zenith(t_utc_s: float | np.ndarray, latitude_deg: float, longitude_deg: float) -> np.ndarray:
    """Cosine of the solar zenith angle at UTC epoch seconds ``t_utc_s`` (Spencer 1971); < 0 at night."""
    t = np.asarray(t_utc_s, dtype=np.float64)
    t64 = t.astype("datetime64[s]")
    year_start = t64.astype("datetime64[Y]").astype("datetime64[s]")
    day_of_year_f = (t64 - year_start).astype(np.float64) / 86_400.0  # 0 at Jan 1 00:00 UTC
    gamma = 2.0 * np.pi * day_of_year_f / 365.0
    decl = (0.006918 - 0.399912 * np.cos(gamma) + 0.070257 * np.sin(gamma) - 0.006758 * np.cos(2 * gamma)
            + 0.000907 * np.sin(2 * gamma) - 0.002697 * np.cos(3 * gamma) + 0.00148 * np.sin(3 * gamma))
    eot_min = 229.18 * (0.000075 + 0.001868 * np.cos(gamma) - 0.032077 * np.sin(gamma)
                        - 0.014615 * np.cos(2 * gamma) - 0.040849 * np.sin(2 * gamma))
    utc_hours = np.mod(t, 86_400.0) / 3600.0
    solar_time_h = utc_hours + longitude_deg / 15.0 + eot_min / 60.0
    hour_angle = np.deg2rad(15.0 * (solar_time_h - 12.0))
    lat = math.radians(latitude_deg)
    return math.sin(lat) * np.sin(decl) + math.cos(lat) * np.cos(decl) * np.cos(hour_angle)


def clear_sky_ghi_w_m2(cos_zenith: float | np.ndarray) -> np.ndarray:
    """Haurwitz (1945) clear-sky global horizontal irradiance, W/m^2 (0 when the sun is down)."""
    c = np.asarray(cos_zenith, dtype=np.float64)
    safe = np.maximum(c, 1e-6)
    return np.where(c > 0.0, HAURWITZ_A_W_M2 * safe * np.exp(-HAURWITZ_B / safe), 0.0)


def cloud_attenuation(cloud_frac: float | np.ndarray) -> np.ndarray:
    """Kasten & Czeplak (1980) factor ``1 - 0.75 * (C/8)^3.4`` for cloud-cover fraction ``C/8`` in [0, 1]."""
    c = np.clip(np.asarray(cloud_frac, dtype=np.float64), 0.0, 1.0)
    return 1.0 - KASTEN_A * c**KASTEN_B


def pv_power_w(ghi_w_m2: float | np.ndarray, solar: SolarSpec) -> np.ndarray:
    """AC output of a horizontal PV array of ``solar.kwp`` under irradiance ``ghi_w_m2``, W."""
    g = np.asarray(ghi_w_m2, dtype=np.float64)
    return solar.kwp * 1000.0 * (g / STC_IRRADIANCE_W_M2) * (1.0 - solar.system_losses_frac)


@dataclass(frozen=True, eq=False)
class Weather:
    """Hourly weather at one site.

    Attributes:
        t_utc_s: UTC epoch seconds of each entry (strictly increasing).
        temp_c: air temperature at 2 m, degC.
        cloud_frac: total cloud cover, fraction in [0, 1].
        latitude_deg: site latitude, degrees north.
        longitude_deg: site longitude, degrees east.
        utc_offset_s: the file's fixed offset of its local timestamps from UTC, s.
        source: file the data came from.
    """

    t_utc_s: np.ndarray
    temp_c: np.ndarray
    cloud_frac: np.ndarray
    latitude_deg: float
    longitude_deg: float
    utc_offset_s: float
    source: str

    @classmethod
    def load(cls, weather_spec: WeatherSpec) -> Weather:
        """Read and validate an Open-Meteo hourly JSON file.

        Raises:
            DataFileError: missing file or key, a bad or missing value (entry number and key named),
                timestamps not strictly increasing.
        """
        path = weather_spec.path
        p = resolve_path(path)
        if not p.is_file():
            raise DataFileError(path, "file not found (check the path; shipped files use 'shipped:<name>')")
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise DataFileError(path, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise DataFileError(path, f"invalid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("hourly"), dict):
            raise DataFileError(path, "expected an object with an 'hourly' object (Open-Meteo format)")
        hourly = doc["hourly"]
        for key in ("time", weather_spec.temperature_key, weather_spec.cloud_key):
            if key not in hourly:
                raise DataFileError(path, "key not found under 'hourly'; it has: " + ", ".join(map(repr, hourly)),
                                    column=key)
        offset = doc.get("utc_offset_seconds", 0)
        if isinstance(offset, bool) or not isinstance(offset, int | float):
            raise DataFileError(path, f"utc_offset_seconds = {offset!r} is not a number")
        lat = weather_spec.latitude_deg if weather_spec.latitude_deg is not None else doc.get("latitude")
        lon = weather_spec.longitude_deg if weather_spec.longitude_deg is not None else doc.get("longitude")
        site: list[float] = []
        for name, v in (("latitude", lat), ("longitude", lon)):
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise DataFileError(path, f"{name} = {v!r} is not a number (or set {name}_deg in the spec)")
            site.append(float(v))
        times = hourly["time"]
        if not isinstance(times, list):
            raise DataFileError(path, "expected a list of times under 'hourly'", column="time")
        t = np.empty(len(times), dtype=np.float64)
        tz = zone(weather_spec.timezone) if weather_spec.timezone is not None else None
        for i, text in enumerate(times):
            try:
                local = dt.datetime.fromisoformat(str(text))
            except ValueError:
                raise DataFileError(path, f"{text!r} is not an ISO 8601 time", row=i + 1, column="time") from None
            if local.tzinfo is not None:
                raise DataFileError(path, f"{text!r} carries an offset; expected naive local time", row=i + 1,
                                    column="time")
            if tz is None:
                t[i] = local.replace(tzinfo=dt.UTC).timestamp() - float(offset)
            else:
                t[i] = local.replace(tzinfo=tz).timestamp()
            if i and t[i] <= t[i - 1]:
                raise DataFileError(path, f"time {text!r} is not after the previous entry's", row=i + 1,
                                    column="time")
        temp = _number_array(path, hourly[weather_spec.temperature_key], weather_spec.temperature_key,
                             -90.0, 60.0)
        cloud = _number_array(path, hourly[weather_spec.cloud_key], weather_spec.cloud_key, 0.0, 100.0)
        for key, arr in ((weather_spec.temperature_key, temp), (weather_spec.cloud_key, cloud)):
            if len(arr) != len(t):
                raise DataFileError(path, f"{len(arr)} values but {len(t)} times", column=key)
        if len(t) < 2:
            raise DataFileError(path, "need at least two hourly entries", column="time")
        for arr in (t, temp, cloud):
            arr.setflags(write=False)
        cloud_frac = cloud / 100.0
        cloud_frac.setflags(write=False)
        return cls(t_utc_s=t, temp_c=temp, cloud_frac=cloud_frac, latitude_deg=site[0],
                   longitude_deg=site[1], utc_offset_s=float(offset), source=path)

    def _check_range(self, t: np.ndarray) -> None:
        lo, hi = float(self.t_utc_s[0]), float(self.t_utc_s[-1])
        if t.size and (t.min() < lo or t.max() > hi):
            bad = t.min() if t.min() < lo else t.max()
            raise DataFileError(self.source, f"no data for {iso_utc(bad)}: the file covers {iso_utc(lo)} "
                                f"to {iso_utc(hi)} (pick a trace start_date inside it)")

    def temp_c_at(self, t_utc_s: float | np.ndarray) -> np.ndarray:
        """Air temperature at UTC epoch seconds (linear between hourly values), degC."""
        t = np.asarray(t_utc_s, dtype=np.float64)
        self._check_range(t)
        return np.interp(t, self.t_utc_s, self.temp_c)

    def cloud_frac_at(self, t_utc_s: float | np.ndarray) -> np.ndarray:
        """Total cloud-cover fraction in [0, 1] at UTC epoch seconds (linear between hourly values)."""
        t = np.asarray(t_utc_s, dtype=np.float64)
        self._check_range(t)
        return np.interp(t, self.t_utc_s, self.cloud_frac)

    def ghi_w_m2(self, t_utc_s: float | np.ndarray) -> np.ndarray:
        """Global horizontal irradiance at the site (Haurwitz clear sky x Kasten-Czeplak clouds), W/m^2."""
        cos_z = solar_cos_zenith(t_utc_s, self.latitude_deg, self.longitude_deg)
        return clear_sky_ghi_w_m2(cos_z) * cloud_attenuation(self.cloud_frac_at(t_utc_s))

    def solar_power_w(self, t_utc_s: float | np.ndarray, solar: SolarSpec) -> np.ndarray:
        """On-site PV output at UTC epoch seconds ``t_utc_s``, W (0 at night)."""
        return pv_power_w(self.ghi_w_m2(t_utc_s), solar)


@lru_cache(maxsize=1)
def load_shipped_weather() -> Weather:
    """The shipped San Jose 2023 hourly weather (cached)."""
    return Weather.load(WeatherSpec())
