import numpy as np
import pytest

from powerrl.model.forecast import (
    Forecaster,
    Persistence,
    SeasonalBlend,
    SeasonalNaive,
    ewma_level,
    forecast_error,
    forecast_path,
)


class Spy(Forecaster):
    """Records every history it is given."""

    name = "spy"

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def predict(self, history, horizon_steps):
        self.seen.append(history)
        return np.full(horizon_steps, history.sum())


def test_no_peeking_structural():
    y = np.arange(50, dtype=float)
    spy = Spy()
    forecast_path(y, spy, 3, first_target=10, end_target=20)
    for i, h in enumerate(spy.seen):
        assert len(h) == 10 + i - 3 + 1  # history ends at the origin
        assert not h.flags.writeable
        assert h.base is None or h.base is not y  # a copy, not a view of the series


@pytest.mark.parametrize("forecaster", [Persistence(), SeasonalNaive(24), SeasonalBlend(24, 0.3, 0.5)])
def test_changing_future_does_not_change_forecast(forecaster):
    rng = np.random.default_rng(0)
    y = 100 + 10 * np.sin(np.arange(24 * 10) * 2 * np.pi / 24) + rng.normal(0, 1, 240)
    h = 6
    base = forecast_path(y, forecaster, h, first_target=100, end_target=240)
    z = y.copy()
    z[160:] = 1e6  # rewrite the future after index 159
    changed = forecast_path(z, forecaster, h, first_target=100, end_target=240)
    # targets whose origin (target - h) is before 160 are unaffected
    np.testing.assert_array_equal(base[: 160 + h - 100], changed[: 160 + h - 100])
    assert not np.array_equal(base, changed)


def test_forecasters_on_known_series():
    y = np.array([1.0, 2, 3, 4, 5, 6, 7, 8])
    assert Persistence().predict(y, 2).tolist() == [8.0, 8.0]
    # period 4: t+1..t+4 repeat the last period (5..8); t+5 wraps to the same phase again (5)
    np.testing.assert_array_equal(SeasonalNaive(4).predict(y, 5), [5, 6, 7, 8, 5])
    np.testing.assert_array_equal(SeasonalNaive(10).predict(y, 1), [8.0])  # no full period yet: persistence
    np.testing.assert_allclose(SeasonalBlend(4, 1.0, 0.5).predict(y, 1), [0.5 * 8 + 0.5 * 5])
    lvl = ewma_level(np.array([0.0, 10.0, 10.0]), 0.5)
    np.testing.assert_allclose(lvl, [0.0, 5.0, 7.5])


def test_forecast_error_values():
    y = np.array([10.0, 20.0, 10.0, 20.0])
    err = forecast_error(y, Persistence(), 1)
    assert err.n == 3 and err.mae == pytest.approx(10.0)
    assert err.mape_pct == pytest.approx(100 * (10 / 20 + 10 / 10 + 10 / 20) / 3)
    assert forecast_error(y, SeasonalNaive(2), 1, first_target=2).mae == 0.0


def test_fit_matches_predict_and_beats_persistence_on_seasonal_series():
    rng = np.random.default_rng(1)
    n = 24 * 30
    y = 200 + 80 * np.sin(np.arange(n) * 2 * np.pi / 24) + rng.normal(0, 3, n)
    blend = SeasonalBlend.fit(y, 24, 6, first_target=24, end_target=24 * 20)
    test = (24 * 20, n)
    assert forecast_error(y, blend, 6, *test).mae < 0.5 * forecast_error(y, Persistence(), 6, *test).mae
    # fitting reads only the training part
    z = y.copy()
    z[24 * 20:] = 0.0
    again = SeasonalBlend.fit(z, 24, 6, first_target=24, end_target=24 * 20)
    assert (again.alpha, again.weight) == (blend.alpha, blend.weight)


def test_bad_arguments():
    with pytest.raises(ValueError):
        forecast_path(np.ones(10), Persistence(), 0, first_target=1)
    with pytest.raises(ValueError):
        forecast_path(np.ones(10), Persistence(), 3, first_target=2)
    with pytest.raises(ValueError):
        SeasonalBlend(24, 0.0, 0.5)
