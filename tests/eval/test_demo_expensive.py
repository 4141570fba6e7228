"""The default comparison end to end (what `make demo` runs), with its invariants. Slow: `-m expensive`."""

import json

import pytest

from powerrl.cli import main

pytestmark = pytest.mark.expensive


def test_default_comparison_invariants(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["compare", "--out", str(out), "--seeds", "2", "--quiet", "--no-plots"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["scenarios"]) == {"nodedvfs-day22", "clusterbudget-day22", "datacenter-day22"}
    for name, sc in doc["scenarios"].items():
        best, oracle = sc["best_baseline"], sc["oracle"]
        assert best and oracle, name
        for label, c in sc["controllers"].items():
            m = c["metrics"]
            assert m["hot_trip_exceedances"]["mean"] == 0, (name, label)
            if m["budget_overshoot_ws"]["mean"] is not None:
                assert m["budget_overshoot_ws"]["mean"] == 0 and m["priority_inversions"]["mean"] == 0, (name, label)
            if c["kind"] == "baseline":
                assert m["shield_intervention_rate"]["mean"] <= 0.01, (name, label)  # tuned baselines stand alone
        o = sc["controllers"][oracle]["metrics"]
        if sc["env_id"] == "powerrl/NodeDVFS-v0":
            assert o["energy_kwh"]["rel_best"] < 1.0
            assert o["sla_violation_rate"]["mean"] <= sc["controllers"][best]["metrics"]["sla_violation_rate"]["mean"]
        elif sc["env_id"] == "powerrl/ClusterBudget-v0":
            assert o["priority_weighted_work"]["rel_best"] > 1.0
        else:
            for label, c in sc["controllers"].items():
                if c["kind"] == "baseline":
                    assert o["carbon_kg"]["mean"] <= c["metrics"]["carbon_kg"]["mean"] + 1e-9, label
