"""Forecast error on held-out trace days 22-28: demand (5/15/60 min) and carbon (1/3/6 h) vs persistence.

Run: PYTHONPATH=. .venv/bin/python benchmarks/forecast_error.py   (or without PYTHONPATH once installed)

The seasonal blend's alpha and weight are fitted per horizon on training days only (targets in days
2-21 for demand; the carbon hours of trace days 1-21); the error is then scored on days 22-28.
Forecasts see only the past (powerrl.model.forecast); days before the scored window are valid history.
"""

from __future__ import annotations

import time

from powerrl.model.carbon import load_shipped_carbon
from powerrl.model.forecast import Persistence, SeasonalBlend, SeasonalNaive, forecast_error
from powerrl.model.weather import load_shipped_weather
from powerrl.model.workload import load_shipped_trace


def report(title: str, series, period: int, train: tuple[int, int], test: tuple[int, int],
           horizons: list[tuple[str, int]], unit: str) -> None:
    print(f"\n{title}")
    print(f"| horizon | persistence MAE ({unit}) | MAPE % | seasonal naive MAE | MAPE % "
          f"| seasonal blend MAE | MAPE % | blend vs persistence MAE | fitted (alpha, w) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, h in horizons:
        blend = SeasonalBlend.fit(series, period, h, max(train[0], h), train[1])
        p = forecast_error(series, Persistence(), h, *test)
        s = forecast_error(series, SeasonalNaive(period), h, *test)
        b = forecast_error(series, blend, h, *test)
        print(f"| {label} | {p.mae:.4g} | {p.mape_pct:.2f} | {s.mae:.4g} | {s.mape_pct:.2f} | {b.mae:.4g} "
              f"| {b.mape_pct:.2f} | {100 * (b.mae / p.mae - 1):+.1f} % | ({blend.alpha:g}, {blend.weight:g}) |")


def main() -> None:
    t0 = time.perf_counter()
    trace = load_shipped_trace()
    rpd = trace.rows_per_day
    first_heldout_day = trace.day_numbers("heldout")[0]
    util = trace.utilisation
    report("Demand (cluster utilisation, fraction; 5-min rows, held-out days 22-28)", util, rpd,
           (rpd, (first_heldout_day - 1) * rpd), ((first_heldout_day - 1) * rpd, len(util)),
           [("5 min", 1), ("15 min", 3), ("60 min", 12)], "fraction")

    carbon = load_shipped_carbon()
    weather = load_shipped_weather()
    day1 = trace.day_start_utc_s(1)
    heldout_start = trace.day_start_utc_s(first_heldout_day)
    end = trace.day_start_utc_s(trace.n_days) + 86_400
    # Hourly values from 2023-01-01 up to the end of the trace's last mapped day: all before the
    # scored window is legitimate history.
    year_start = float(carbon.t_utc_s[0])
    ci = carbon.hourly_between(year_start, end)
    i_day1 = int((day1 - year_start) // 3600)
    i_held = int((heldout_start - year_start) // 3600)
    report(f"Carbon intensity (gCO2eq/kWh, CAISO hourly; trace days 22-28 = "
           f"{trace.day_date(first_heldout_day)} .. {trace.day_date(trace.n_days)} local)", ci, 24,
           (i_day1, i_held), (i_held, len(ci)), [("1 h", 1), ("3 h", 3), ("6 h", 6)], "g/kWh")

    w_start = float(weather.t_utc_s[0])
    mask = weather.t_utc_s < end
    temp = weather.temp_c[mask]
    j_day1 = int((day1 - w_start) // 3600)
    j_held = int((heldout_start - w_start) // 3600)
    report("Ambient temperature (degC, San Jose hourly, same days)", temp, 24, (j_day1, j_held),
           (j_held, len(temp)), [("1 h", 1), ("3 h", 3)], "degC")
    print(f"\n(elapsed {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
