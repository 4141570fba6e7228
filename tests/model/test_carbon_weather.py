import json

import numpy as np
import pytest

from powerrl.config import from_dict
from powerrl.errors import ConfigError, DataFileError
from powerrl.model.carbon import CarbonIntensity, CarbonSpec, load_shipped_carbon
from powerrl.model.weather import (
    SolarSpec,
    Weather,
    WeatherSpec,
    clear_sky_ghi_w_m2,
    cloud_attenuation,
    load_shipped_weather,
    solar_cos_zenith,
)
from powerrl.model.workload import load_shipped_trace

JAN1_UTC_S = 1672531200.0  # 2023-01-01T00:00:00Z


def test_shipped_carbon_reads_utf8_header_and_all_hours():
    ci = load_shipped_carbon()
    assert len(ci.g_per_kwh) == 8760
    assert ci.t_utc_s[0] == JAN1_UTC_S and np.all(np.diff(ci.t_utc_s) == 3600.0)
    assert ci.g_per_kwh[0] == 238.69  # first row of the file
    assert ci.g_per_kwh.mean() == pytest.approx(194, abs=1)  # SOURCES.md


def test_carbon_step_and_linear_interpolation():
    step = load_shipped_carbon("step")
    lin = load_shipped_carbon("linear")
    # step: the hour containing t
    assert step.intensity_g_per_kwh(JAN1_UTC_S + 3599) == 238.69
    assert step.intensity_g_per_kwh(JAN1_UTC_S + 3600) == 220.25
    # linear between hour midpoints: exact at midpoints, halfway at the hour boundary
    assert lin.intensity_g_per_kwh(JAN1_UTC_S + 1800) == pytest.approx(238.69)
    assert lin.intensity_g_per_kwh(JAN1_UTC_S + 3600) == pytest.approx((238.69 + 220.25) / 2)
    t = JAN1_UTC_S + np.arange(0, 86400, 60.0)
    assert lin.intensity_g_per_kwh(t).shape == t.shape
    with pytest.raises(DataFileError, match="no data for 2024-01-01"):
        lin.intensity_g_per_kwh(JAN1_UTC_S + 365 * 86400 + 10)


def test_carbon_aligned_with_trace_days():
    trace = load_shipped_trace()
    ci = load_shipped_carbon("step")
    # trace day 1 starts at local midnight 2023-05-03 PDT = 07:00 UTC, i.e. hour index 122*24 + 7
    hour = int((trace.day_start_utc_s(1) - JAN1_UTC_S) // 3600)
    assert hour == 122 * 24 + 7
    assert ci.intensity_g_per_kwh(trace.utc_s(0.0)) == ci.g_per_kwh[hour]
    day = ci.hourly_between(trace.day_start_utc_s(22), trace.day_start_utc_s(22) + 86400)
    assert len(day) == 24


def _carbon_csv(tmp_path, rows: list[str]) -> str:
    p = tmp_path / "ci.csv"
    p.write_text("time,ci\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return str(p)


def test_user_carbon_file_with_local_timezone(tmp_path):
    path = _carbon_csv(tmp_path, ["2023-07-01 00:00,100", "2023-07-01 01:00,300"])
    spec = from_dict(CarbonSpec, {"path": path, "column": "ci", "time_column": "time",
                                  "timezone": "Europe/Berlin", "interpolation": "step"})
    ci = CarbonIntensity.load(spec)
    assert ci.t_utc_s[0] == 1688162400.0  # 2023-06-30T22:00Z (CEST = UTC+2)
    assert ci.intensity_g_per_kwh(1688162400.0 + 3700) == 300.0


@pytest.mark.parametrize("rows, row, column, problem", [
    (["2023-07-01 00:00,100", "2023-07-01 01:00,x"], 3, "ci", "not a number"),
    (["2023-07-01 00:00,100", "2023-07-01 01:00,-5"], 3, "ci", "below the allowed minimum"),
    (["2023-07-01 00:00,100", "yesterday,5"], 3, "time", "not an ISO 8601 time"),
    (["2023-07-01 01:00,100", "2023-07-01 00:00,5"], 3, "time", "not after the previous row"),
])
def test_bad_carbon_rows(tmp_path, rows, row, column, problem):
    path = _carbon_csv(tmp_path, rows)
    with pytest.raises(DataFileError) as err:
        CarbonIntensity.load(CarbonSpec(path=path, column="ci", time_column="time"))
    assert err.value.row == row and err.value.column == column
    assert problem in str(err.value) and path in str(err.value)


def test_carbon_spec_rejects_bad_keys():
    with pytest.raises(ConfigError, match="interpolation"):
        from_dict(CarbonSpec, {"interpolation": "cubic"})
    with pytest.raises(ConfigError, match="timezone"):
        from_dict(CarbonSpec, {"timezone": "PST"})


def test_weather_local_time_converted_to_utc():
    w = load_shipped_weather()
    assert len(w.t_utc_s) == 8760 and w.utc_offset_s == -25200
    # first entry 2023-01-01T00:00 at fixed UTC-7 = 07:00 UTC
    assert w.t_utc_s[0] == JAN1_UTC_S + 7 * 3600
    assert np.all(np.diff(w.t_utc_s) == 3600.0)  # fixed offset: no DST gap or repeat
    assert w.temp_c.min() == pytest.approx(0.2) and w.temp_c.max() == pytest.approx(36.5)
    assert w.temp_c_at(w.t_utc_s[5]) == w.temp_c[5]
    assert w.temp_c_at(w.t_utc_s[5] + 1800) == pytest.approx((w.temp_c[5] + w.temp_c[6]) / 2)
    assert 0.0 <= w.cloud_frac.min() and w.cloud_frac.max() <= 1.0


def _weather_json(tmp_path, temps, clouds, times=None) -> str:
    times = times or [f"2023-06-01T{h:02d}:00" for h in range(len(temps))]
    doc = {"latitude": 40.0, "longitude": 0.0, "utc_offset_seconds": 3600,
           "hourly": {"time": times, "temperature_2m": temps, "cloudcover": clouds}}
    p = tmp_path / "w.json"
    p.write_text(json.dumps(doc), encoding="utf-8")
    return str(p)


def test_bad_weather_entries(tmp_path):
    path = _weather_json(tmp_path, [10.0, None, 12.0], [0, 0, 0])
    with pytest.raises(DataFileError) as err:
        Weather.load(WeatherSpec(path=path))
    assert err.value.row == 2 and err.value.column == "temperature_2m"
    path = _weather_json(tmp_path, [10.0, 11.0, 12.0], [0, 150, 0])
    with pytest.raises(DataFileError, match="row 2, column 'cloudcover'"):
        Weather.load(WeatherSpec(path=path))
    path = _weather_json(tmp_path, [10.0, 11.0], [0, 0])
    with pytest.raises(DataFileError, match="column 'cloud_total'"):
        Weather.load(WeatherSpec(path=path, cloud_key="cloud_total"))
    w = Weather.load(WeatherSpec(path=path))
    assert w.t_utc_s[0] == 1685574000.0  # 2023-06-01T00:00 at UTC+1 = 2023-05-31T23:00Z


def test_solar_geometry_and_models():
    # June solstice at solar noon, lat 37.43: zenith = 37.43 - 23.44 deg
    lat, lon = 37.434093, -121.95479
    noon_utc = 1687305600.0 + (12 - lon / 15.0) * 3600 - 1.7 * 60  # 2023-06-21, EoT ~ -1.7 min
    cz = solar_cos_zenith(noon_utc, lat, lon)
    assert cz == pytest.approx(np.cos(np.deg2rad(37.434 - 23.44)), abs=0.003)
    assert clear_sky_ghi_w_m2(1.0) == pytest.approx(1098 * np.exp(-0.059))
    assert clear_sky_ghi_w_m2(-0.2) == 0.0
    # Kasten & Czeplak: overcast (8 oktas) keeps 25 %, 4 oktas keeps 1 - 0.75 * 0.5**3.4
    np.testing.assert_allclose(cloud_attenuation([0.0, 0.5, 1.0]), [1.0, 1 - 0.75 * 0.5**3.4, 0.25])


def test_solar_zero_at_night_and_peaks_near_local_noon():
    w = load_shipped_weather()
    solar = SolarSpec(kwp=100.0)
    day_start = 1687305600.0 + 7 * 3600  # 2023-06-21 00:00 local (UTC-7)
    t = day_start + np.arange(0, 86400, 60.0)
    p = w.solar_power_w(t, solar)
    local_h = (t - day_start) / 3600.0
    assert np.all(p[(local_h < 4.5) | (local_h > 21.0)] == 0.0)
    # solar noon at lon -121.95 in UTC-7: 12 + 1 + 1.95/15 h = 13:08 local (EoT ~ -2 min)
    clear = solar_cos_zenith(t, w.latitude_deg, w.longitude_deg)
    assert abs(local_h[np.argmax(clear)] - 13.16) < 0.1
    # with the day's real clouds the output peak stays near solar noon
    assert abs(local_h[np.argmax(p)] - 13.16) < 1.5
    # never above the clear-sky maximum (Haurwitz at zenith 0) through the 14 % losses
    assert 0.0 < p.max() <= 100.0 * 1098 * np.exp(-0.059) * (1 - 0.14)


def test_solar_scales_with_kwp_and_clouds():
    w = load_shipped_weather()
    t = 1687305600.0 + 20 * 3600.0
    assert w.solar_power_w(t, SolarSpec(kwp=0.0)) == 0.0
    p1 = w.solar_power_w(t, SolarSpec(kwp=10.0))
    assert w.solar_power_w(t, SolarSpec(kwp=20.0)) == pytest.approx(2 * p1)
    expected = 10.0 * clear_sky_ghi_w_m2(solar_cos_zenith(t, w.latitude_deg, w.longitude_deg)) * (
        cloud_attenuation(w.cloud_frac_at(t))) * 0.86
    assert p1 == pytest.approx(expected)


def test_weather_timezone_override_matches_the_files_fixed_offset_and_rejects_dst_gaps():
    import numpy as np
    import pytest

    from powerrl.errors import DataFileError
    from powerrl.model.weather import Weather, WeatherSpec, load_shipped_weather

    fixed = Weather.load(WeatherSpec(timezone="Etc/GMT+7"))  # IANA "GMT+7" is UTC-7, the file's offset
    assert np.array_equal(fixed.t_utc_s, load_shipped_weather().t_utc_s)
    # The file has no DST: read as Los Angeles local time its 2023-03-12 02:00 does not exist.
    with pytest.raises(DataFileError, match="2023-03-12"):
        Weather.load(WeatherSpec(timezone="America/Los_Angeles"))
