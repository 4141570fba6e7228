"""Coordinator caps: the lease, the decay to the guaranteed base, and the cap.json protocol."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from powerrl.errors import ConfigError
from powerrl.runtime.caps import CAP_FILE, CapLease, read_cap_file, write_cap_file


def _lease() -> CapLease:
    return CapLease(base_w=100.0, lease_s=5.0, decay_s=10.0)


def test_no_cap_until_one_is_set() -> None:
    c = _lease()
    assert c.value(0.0) == math.inf and c.value(1e12) == math.inf
    assert not c.stale(1e12)


def test_a_cap_holds_for_its_lease_then_falls_linearly_to_the_base() -> None:
    c = _lease()
    c.set(200.0, issued_s=1000.0)
    assert c.cap_lease_s == 5.0
    assert c.value(999.0) == 200.0  # issued in the future (clock skew): held
    assert c.value(1000.0) == 200.0 and c.value(1005.0) == 200.0
    assert not c.stale(1005.0) and c.stale(1005.001)
    assert c.value(1007.5) == pytest.approx(175.0)
    assert c.value(1010.0) == pytest.approx(150.0)
    assert c.value(1015.0) == 100.0 and c.value(1e9) == 100.0
    t = np.linspace(990.0, 1030.0, 401)
    v = np.array([c.value(x) for x in t])
    assert (np.diff(v) <= 1e-12).all()  # never rises
    assert v.min() == 100.0 and v.max() == 200.0


def test_no_decay_time_drops_to_the_base_at_once() -> None:
    c = CapLease(base_w=100.0, lease_s=5.0, decay_s=0.0)
    c.set(300.0, issued_s=0.0)
    assert c.value(5.0) == 300.0 and c.value(5.0001) == 100.0


@pytest.mark.parametrize("cap", [100.0, 60.0])
def test_a_cap_at_or_below_the_base_is_kept_as_it_is(cap: float) -> None:
    c = _lease()
    c.set(cap, issued_s=0.0)
    assert [c.value(t) for t in (0.0, 5.0, 6.0, 15.0, 1e9)] == [cap] * 5
    assert c.stale(6.0)  # the lease ran out, but an emergency cut is never raised


def test_per_cap_lease_overrides_the_default() -> None:
    c = _lease()
    c.set(200.0, issued_s=0.0, lease_s=1.0)
    assert c.cap_lease_s == 1.0
    assert c.value(1.0) == 200.0 and c.value(6.0) == pytest.approx(150.0)
    c.set(200.0, issued_s=0.0, lease_s=math.inf)  # an operator's cap: holds until replaced
    assert c.value(1e9) == 200.0 and not c.stale(1e9)
    c.set(200.0, issued_s=0.0)  # back to the default lease
    assert c.cap_lease_s == 5.0 and c.value(15.0) == 100.0


def test_a_new_cap_restarts_the_lease_and_none_clears() -> None:
    c = _lease()
    c.set(200.0, issued_s=0.0)
    assert c.value(20.0) == 100.0
    c.set(180.0, issued_s=20.0)
    assert c.value(20.0) == 180.0 and not c.stale(24.0)
    c.set(None, issued_s=30.0)
    assert c.value(1e9) == math.inf and not c.stale(1e9)


def test_cap_file_round_trip(tmp_path: Path) -> None:
    state = tmp_path / "run" / "powerrl"
    path = write_cap_file(state, 150.0, issued_s=123.5, lease_s=5.0)
    assert path == state / CAP_FILE
    assert read_cap_file(path) == (150.0, 123.5, 5.0)
    # No lease: the cap holds until replaced ('lease_s': null reads as inf).
    write_cap_file(state, 150.0, issued_s=1.0)
    assert json.loads(path.read_text())["lease_s"] is None
    assert read_cap_file(path) == (150.0, 1.0, math.inf)
    # A clear.
    write_cap_file(state, None, issued_s=2.0)
    assert read_cap_file(path) == (None, 2.0, math.inf)
    # issued_s defaults to now.
    t0 = time.time()
    write_cap_file(state, 99.0)
    got = read_cap_file(path)
    assert got is not None and got[0] == 99.0 and t0 - 1 <= got[1] <= time.time() + 1
    assert sorted(p.name for p in state.iterdir()) == [CAP_FILE]  # no temporary file left behind


def test_a_file_without_lease_means_the_agents_default(tmp_path: Path) -> None:
    path = tmp_path / CAP_FILE
    path.write_text('{"cap_w": 80, "issued_s": 10}')
    assert read_cap_file(path) == (80.0, 10.0, None)


def test_a_missing_cap_file_is_none(tmp_path: Path) -> None:
    assert read_cap_file(tmp_path / CAP_FILE) is None


@pytest.mark.parametrize("body", [
    "not json",
    "",
    "null",
    "[1, 2]",
    '{"cap_w": -5, "issued_s": 1}',
    '{"cap_w": 0, "issued_s": 1}',
    '{"cap_w": NaN, "issued_s": 1}',
    '{"cap_w": Infinity, "issued_s": 1}',
    '{"cap_w": "abc", "issued_s": 1}',
    '{"issued_s": 1}',
    '{"cap_w": 100}',
    '{"cap_w": 100, "issued_s": NaN}',
    '{"cap_w": 100, "issued_s": "x"}',
    '{"cap_w": 100, "issued_s": 1, "lease_s": 0}',
    '{"cap_w": 100, "issued_s": 1, "lease_s": -3}',
    '{"cap_w": 100, "issued_s": 1, "lease_s": NaN}',
])
def test_bad_cap_files_raise_config_error(tmp_path: Path, body: str) -> None:
    path = tmp_path / CAP_FILE
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        read_cap_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("cap", "lease", "key"), [
    (-5.0, None, "cap_w"), (0.0, None, "cap_w"), (math.nan, None, "cap_w"), (math.inf, None, "cap_w"),
    (100.0, 0.0, "lease_s"), (100.0, -1.0, "lease_s"), (100.0, math.nan, "lease_s"), (100.0, math.inf, "lease_s"),
])
def test_write_cap_file_rejects_bad_values(tmp_path: Path, cap: float, lease: float | None, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        write_cap_file(tmp_path, cap, lease_s=lease)
    assert info.value.key_path == key
    assert not (tmp_path / CAP_FILE).exists()


def test_a_boolean_or_unreadable_cap_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "cap.json"
    path.write_text('{"cap_w": true, "issued_s": 1}', encoding="utf-8")
    with pytest.raises(ConfigError):
        read_cap_file(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError):
        read_cap_file(path)
    path.unlink()
    path.mkdir()
    with pytest.raises(ConfigError):
        read_cap_file(path)
