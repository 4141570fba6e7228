import pytest
import yaml

from powerrl.cli import main
from powerrl.errors import ConfigError
from powerrl.eval import tune
from powerrl.eval.controllers import controllers_for, load_tuned
from powerrl.eval.scenario import load_scenario

TINY = "env: powerrl/NodeDVFS-v0\ndays: [22]\nstart_h: 10\nduration_h: 0.01\n"


def test_grid_points_and_overrides():
    assert len(tune.grid_points("schedutil")) == 10
    pts = tune.grid_points("ondemand", {"up_threshold": [70, 90], "sampling_down_factor": [1],
                                        "powersave_bias": [0]})
    assert pts == [{"up_threshold": 70, "sampling_down_factor": 1, "powersave_bias": 0},
                   {"up_threshold": 90, "sampling_down_factor": 1, "powersave_bias": 0}]
    with pytest.raises(ConfigError, match="--grid bogus"):
        tune.grid_points("schedutil", {"bogus": [1]})
    with pytest.raises(ConfigError, match="baseline"):
        tune.grid_points("oracle")


def test_tune_picks_the_best_point_on_training_days_and_compare_uses_it(scenario_file, tmp_path, capsys):
    sc_path = scenario_file(TINY)
    out = tmp_path / "tuned.yaml"
    code = main(["tune-baseline", "userspace", "--scenario", str(sc_path), "--days", "20", "--seeds", "1",
                 "--grid", "pstate=0,5,10", "--out", str(out), "--quiet", "--jobs", "1"])
    assert code == 0, capsys.readouterr().err
    entry = yaml.safe_load(out.read_text())["powerrl/NodeDVFS-v0"]["userspace"]
    rewards = {p["params"]["pstate"]: p["reward"] for p in entry["grid"]}
    assert set(rewards) == {0, 5, 10}
    assert entry["params"]["pstate"] == max(rewards, key=rewards.get)
    assert entry["reward"] == max(rewards.values()) and entry["days"] == [20]
    assert "tune-baseline userspace" in entry["command"]
    specs = controllers_for("powerrl/NodeDVFS-v0", ["userspace"], load_tuned(out))
    assert specs[0].params == entry["params"]
    assert controllers_for("powerrl/NodeDVFS-v0", ["userspace"], load_tuned(out), untuned=True)[0].params == {}


def test_tuning_on_held_out_days_is_refused(scenario_file):
    sc = load_scenario(scenario_file(TINY))
    with pytest.raises(ConfigError, match="training days only"):
        tune.tune("schedutil", sc, (21, 22), [0], progress=False)


def test_training_days_default_to_the_last_three():
    sc = load_scenario("nodedvfs-day22")
    assert tune.training_days(sc) == (19, 20, 21)


def test_shipped_tuned_parameters_are_valid_and_from_training_days():
    import gymnasium as gym

    import powerrl  # noqa: F401
    from powerrl.baselines.tuned import SHIPPED_TUNED
    from powerrl.control import make_controller
    from powerrl.envs.sources import trace_arrays
    from powerrl.envs.target import control_target

    tuned = load_tuned(SHIPPED_TUNED)
    assert set(tuned) == {"powerrl/NodeDVFS-v0", "powerrl/ClusterBudget-v0", "powerrl/Datacenter-v0"}
    held = set(trace_arrays(None).trace.day_numbers("heldout"))
    for env_id, entries in tuned.items():
        env = gym.make(env_id)
        target = control_target(env)
        for name, entry in entries.items():
            assert not set(entry["days"]) & held, (env_id, name)
            assert entry["command"].startswith("powerrl tune-baseline") and name in entry["command"]
            assert entry["reward"] >= entry["default_reward"] - 1e-9 or entry.get("shield_intervention_rate", 0) <= 0.01
            make_controller(name, env.action_space, env.observation_space, target=target, **entry["params"])
