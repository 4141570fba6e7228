"""Experiment configs and zoo-style hyperparameter files for ``powerrl train``.

An experiment (``configs/experiments/*.yaml``, ``kind: experiment``) says what to train::

    kind: experiment
    env: powerrl/NodeDVFS-v0
    env_config: {episode_s: 300}        # overrides of the env's defaults, or a configs/envs/ YAML path
    shield: default                     # shipped shield name, YAML path or mapping of overrides
    algo: ppo                           # ppo | maskable_ppo | sac | dqn
    hyperparams: ppo                    # configs/agents/<name>.yaml, or a path
    overrides: {learning_rate: 1.0e-4}  # optional: on top of the hyperparameter file
    total_timesteps: 3000000            # optional: else the file's n_timesteps
    seed: 0
    eval: {scenario: nodedvfs-day22, days: [20, 21], start_h: 10, duration_h: 1, every_steps: 500000}
    checkpoint_every_steps: 1000000

A hyperparameter file follows rl-baselines3-zoo: a ``default`` block and per-env blocks (the env's
block is applied over ``default``), with ``n_envs``, ``n_timesteps``, ``normalize``, ``policy``,
``policy_kwargs`` and the algorithm's own keyword arguments. Schedules are explicit mappings,
never code to ``eval``: ``{schedule: linear, start: 3.0e-4, end: 0.0}`` or ``{schedule: constant,
value: 0.2}``. ``policy_kwargs.activation_fn`` is a name (``tanh``, ``relu``, ``elu``, ``gelu``,
``leaky_relu``). Every key is checked against the algorithm's signature, so a typo fails before
training starts, naming the key and the file.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from powerrl.agents.heads import HEAD_ENVS
from powerrl.config import load_kind, load_yaml
from powerrl.envs.config import ENV_CONFIGS, load_env_config, make_config
from powerrl.errors import ConfigError

#: The repository's config folders (configs/agents, configs/experiments); YAML names resolve there.
CONFIG_ROOT = Path(__file__).resolve().parents[2] / "configs"
ALGOS = ("ppo", "maskable_ppo", "sac", "dqn")
#: Algorithms each env's action space admits: P-states are MultiDiscrete (DQN through the joint
#: index), caps and setpoints are Box.
ALGOS_FOR: dict[str, tuple[str, ...]] = {
    "powerrl/NodeDVFS-v0": ("ppo", "maskable_ppo", "dqn"),
    "powerrl/ClusterBudget-v0": ("ppo", "sac"),
    "powerrl/Datacenter-v0": ("ppo", "sac"),
}
#: SB3's policy names for vector observations.
SB3_POLICIES = ("MlpPolicy",)
#: Keys of a hyperparameter block that are not algorithm arguments.
RUN_KEYS = ("n_envs", "n_timesteps", "normalize", "policy")
NORMALIZE_KEYS = ("norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon")
ACTIVATIONS = ("tanh", "relu", "elu", "gelu", "leaky_relu")
SCHEDULES = ("linear", "constant")
#: Algorithm arguments the trainer sets itself.
RESERVED = ("env", "seed", "device", "tensorboard_log", "verbose", "_init_setup_model")


@dataclass(frozen=True)
class EvalSpec:
    """Evaluation during training: a shipped scenario's window on chosen (training-split) days.

    Attributes:
        scenario: shipped scenario name or YAML path (its env must be the experiment's).
        days: trace days to evaluate on; days 22-28 are the held-out test days and are refused
            unless ``allow_heldout`` (selecting a checkpoint on them would tune on the test set).
        start_h, duration_h: the daily window, h (None: the scenario's).
        every_steps: env steps between evaluations (0 = only at the end).
        seeds: evaluation seeds (each a full pass over the days).
        allow_heldout: permit days 22-28 (monitoring only; documented as not for model selection).
        select: the comparison metric that picks the best checkpoint (``reward`` = mean env reward,
            or any key of :data:`powerrl.eval.metrics.METRICS`, in its better direction).
        max_shield_rate: only checkpoints whose shield intervention rate on the evaluation is at
            most this share of steps can become the best (None: no limit), so the kept policy stands
            on its own rather than leaning on the shield.
    """

    scenario: str
    days: tuple[int, ...] = (20, 21)
    start_h: float | None = None
    duration_h: float | None = None
    every_steps: int = 500_000
    seeds: int = 1
    allow_heldout: bool = False
    select: str = "reward"
    max_shield_rate: float | None = None


@dataclass(frozen=True)
class Experiment:
    """A resolved experiment: everything ``powerrl train`` needs, recorded in the run's ``run.yaml``."""

    name: str
    env_id: str
    env_config: dict[str, Any]
    shield: Any
    algo: str
    hyperparams_file: str
    hyperparams: dict[str, Any]
    n_envs: int
    total_timesteps: int
    normalize: dict[str, Any]
    policy: str
    seed: int
    eval: EvalSpec | None
    checkpoint_every_steps: int
    action_head: str | None = None
    initial_action: tuple[float, ...] | None = None
    source: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def env_config_object(self) -> Any:
        """The env's validated config object."""
        return make_config(self.env_id, self.env_config, source=self.source)

    def record(self) -> dict[str, Any]:
        """A plain mapping for ``run.yaml``."""
        ev = None if self.eval is None else {k: (list(v) if isinstance(v, tuple) else v)
                                             for k, v in self.eval.__dict__.items()}
        return {"name": self.name, "description": self.description, "env_id": self.env_id,
                "env_config": self.env_config, "shield": self.shield, "algo": self.algo,
                "hyperparams_file": self.hyperparams_file, "hyperparams": self.hyperparams,
                "n_envs": self.n_envs, "total_timesteps": self.total_timesteps, "normalize": self.normalize,
                "policy": self.policy, "seed": self.seed, "eval": ev,
                "checkpoint_every_steps": self.checkpoint_every_steps, "action_head": self.action_head,
                "initial_action": None if self.initial_action is None else list(self.initial_action),
                "experiment_file": self.source}


def resolve_yaml(ref: str, folder: str) -> Path:
    """A YAML path, or a name under ``configs/<folder>/`` (with or without ``.yaml``)."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    for cand in (CONFIG_ROOT / folder / ref, CONFIG_ROOT / folder / f"{ref}.yaml"):
        if cand.is_file():
            return cand
    names = sorted(x.stem for x in (CONFIG_ROOT / folder).glob("*.yaml")) if (CONFIG_ROOT / folder).is_dir() else []
    raise ConfigError(folder, ref, "an existing YAML file or one of: " + (", ".join(names) or "(none shipped)"))


def algo_classes() -> dict[str, Any]:
    """The Stable-Baselines3 (or sb3-contrib) class of every name in :data:`ALGOS` (imported on call)."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import DQN, PPO, SAC

    return {"ppo": PPO, "maskable_ppo": MaskablePPO, "sac": SAC, "dqn": DQN}


def algo_class(algo: str) -> Any:
    """The Stable-Baselines3 (or sb3-contrib) class of ``algo``."""
    if algo not in ALGOS:
        raise ConfigError("algo", algo, "one of " + ", ".join(ALGOS))
    return algo_classes()[algo]


def load_hyperparams(path: Path, env_id: str) -> dict[str, Any]:
    """The ``default`` block of a zoo-style file with ``env_id``'s block applied over it."""
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("", data, "a mapping with a 'default' block and per-env blocks", str(path))
    for key, block in data.items():
        if key != "default" and key not in ENV_CONFIGS:
            raise ConfigError(str(key), "...", "a block named 'default' or an env id (" + ", ".join(ENV_CONFIGS)
                              + "): a misspelled env block would silently fall back to 'default'", str(path))
        if not isinstance(block, dict):
            raise ConfigError(str(key), block, "a mapping of hyperparameters", str(path))
    merged = copy.deepcopy(data.get("default", {}))
    env_block = copy.deepcopy(data.get(env_id, {}))
    for key, value in env_block.items():
        if key == "policy_kwargs" and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def schedule(value: Any, key: str, source: str | None) -> Any:
    """A number, or a callable of SB3's ``progress_remaining`` (1 -> 0) for an explicit schedule mapping."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return value
    if not isinstance(value, dict) or value.get("schedule") not in SCHEDULES:
        raise ConfigError(key, value, "a number or {schedule: linear, start: X, end: Y} / {schedule: constant, "
                          "value: X}", source)
    try:
        if value["schedule"] == "constant":
            return _Constant(float(value["value"]))
        return _Linear(float(value["start"]), float(value.get("end", 0.0)))
    except (KeyError, TypeError, ValueError):
        raise ConfigError(key, value, "numbers for start/end (linear) or value (constant)", source) from None


class _Linear:
    """``start`` at the beginning of training to ``end`` at its end (picklable, unlike a lambda)."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end

    def __call__(self, progress_remaining: float) -> float:
        return self.end + (self.start - self.end) * progress_remaining

    def __repr__(self) -> str:
        return f"linear({self.start}, {self.end})"


class _Constant:
    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, progress_remaining: float) -> float:
        return self.value

    def __repr__(self) -> str:
        return f"constant({self.value})"


def policy_kwargs(raw: Any, source: str | None) -> dict[str, Any]:
    """``policy_kwargs`` with the activation name turned into the torch class."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("policy_kwargs", raw, "a mapping (net_arch, activation_fn, ...)", source)
    out = dict(raw)
    act = out.get("activation_fn")
    if act is not None:
        if act not in ACTIVATIONS:
            raise ConfigError("policy_kwargs.activation_fn", act, "one of " + ", ".join(ACTIVATIONS), source)
        import torch.nn as nn

        out["activation_fn"] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU,
                                "leaky_relu": nn.LeakyReLU}[act]
    return out


def algo_kwargs(algo: str, hp: dict[str, Any], source: str | None) -> dict[str, Any]:
    """The algorithm's keyword arguments from a merged hyperparameter block, each key checked."""
    cls = algo_class(algo)
    params = inspect.signature(cls.__init__).parameters
    allowed = set(params) - {"self", "policy", *RESERVED}
    kwargs: dict[str, Any] = {}
    for key, value in hp.items():
        if key in RUN_KEYS:
            continue
        if key in allowed:
            value = _numeric(key, value, params[key].default, source)
        if key not in allowed:
            raise ConfigError(key, value, f"a {cls.__name__} argument (one of {', '.join(sorted(allowed))}) "
                              f"or one of {', '.join(RUN_KEYS)}", source)
        if key == "policy_kwargs":
            kwargs[key] = policy_kwargs(value, source)
        elif key in ("learning_rate", "clip_range", "clip_range_vf"):
            kwargs[key] = schedule(value, key, source)
        elif key == "train_freq" and isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return kwargs


def _numeric(key: str, value: Any, default: Any, source: str | None) -> Any:
    """``value`` for an argument whose default is a number: numbers pass, numeric strings are read.

    PyYAML reads ``1e-3`` (no dot) as a string; SB3 would only fail on it mid-training.
    """
    if isinstance(default, bool) or not isinstance(default, (int, float)) or isinstance(value, (bool, dict)):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(key, value, f"a number like {default!r}", source) from None
        return int(number) if isinstance(default, int) and number.is_integer() else number
    if not isinstance(value, (int, float)):
        raise ConfigError(key, value, f"a number like {default!r}", source)
    return value


def _int(data: dict[str, Any], key: str, default: Any, lo: int, source: str) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < lo:
        raise ConfigError(key, value, f"an integer >= {lo}", source)
    return int(value)


def load_experiment(path: str | Path, total_timesteps: int | None = None, seed: int | None = None) -> Experiment:
    """Load and check an experiment YAML (and its hyperparameter file); CLI values override."""
    p = resolve_yaml(str(path), "experiments")
    src = str(p)
    data = load_kind(p, "experiment", "and 'env', 'algo'")
    known = {"env", "env_config", "shield", "algo", "hyperparams", "overrides", "total_timesteps", "seed", "eval",
             "checkpoint_every_steps", "description", "name", "action_head", "initial_action"}
    for key in data:
        if key not in known:
            raise ConfigError(key, data[key], "one of " + ", ".join(sorted(known)), src)
    env_id = data.get("env")
    if not isinstance(env_id, str) or env_id not in ENV_CONFIGS:
        raise ConfigError("env", env_id, "one of " + ", ".join(ENV_CONFIGS), src)
    env_cfg_raw = data.get("env_config", {})
    if isinstance(env_cfg_raw, str):
        cfg_path = resolve_yaml(env_cfg_raw, "envs")
        file_env, _ = load_env_config(cfg_path)
        if file_env != env_id:
            raise ConfigError("env_config", env_cfg_raw, f"a config of {env_id} (it is for {file_env})", src)
        env_cfg_raw = load_kind(cfg_path, "env")
        env_cfg_raw.pop("id", None)
    if not isinstance(env_cfg_raw, dict):
        raise ConfigError("env_config", env_cfg_raw, "a mapping of env settings or a configs/envs YAML path", src)
    make_config(env_id, env_cfg_raw, source=src)  # validate now: a typo fails before training
    algo = data.get("algo", "ppo")
    if not isinstance(algo, str) or algo not in ALGOS:
        raise ConfigError("algo", algo, "one of " + ", ".join(ALGOS), src)
    if algo not in ALGOS_FOR[env_id]:
        raise ConfigError("algo", algo, f"an algorithm for {env_id}'s action space: " + ", ".join(ALGOS_FOR[env_id]),
                          src)
    hp_path = resolve_yaml(str(data.get("hyperparams", algo)), "agents")
    hp = load_hyperparams(hp_path, env_id)
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError("overrides", overrides, "a mapping of hyperparameters", src)
    for key, value in overrides.items():
        if key == "policy_kwargs" and isinstance(value, dict) and isinstance(hp.get(key), dict):
            hp[key] = {**hp[key], **value}
        else:
            hp[key] = value
    algo_kwargs(algo, hp, f"{hp_path} (+ {src} overrides)")  # check every key now
    normalize = hp.get("normalize", {"norm_obs": True, "norm_reward": True})
    if normalize is True:
        normalize = {"norm_obs": True, "norm_reward": True}
    if normalize is False or normalize is None:
        normalize = {}
    if not isinstance(normalize, dict) or any(k not in NORMALIZE_KEYS for k in normalize):
        raise ConfigError("normalize", normalize, "true/false or a mapping of " + ", ".join(NORMALIZE_KEYS),
                          str(hp_path))
    normalize = dict(normalize)
    for key in ("norm_obs", "norm_reward"):
        if key in normalize and not isinstance(normalize[key], bool):
            raise ConfigError(f"normalize.{key}", normalize[key], "true or false", str(hp_path))
    for key in ("clip_obs", "clip_reward", "gamma", "epsilon"):
        if key in normalize:
            v = _numeric(f"normalize.{key}", normalize[key], 1.0, str(hp_path))
            if not isinstance(v, (int, float)) or v <= 0:
                raise ConfigError(f"normalize.{key}", normalize[key], "a positive number", str(hp_path))
            normalize[key] = float(v)
    if normalize.get("norm_reward") and "gamma" not in normalize and "gamma" in hp:
        # Like rl-baselines3-zoo: the return normaliser discounts with the algorithm's gamma.
        normalize["gamma"] = float(_numeric("gamma", hp["gamma"], 0.99, str(hp_path)))
    policy = hp.get("policy", "MlpPolicy")
    from powerrl.agents.policies import POLICIES, policy_fits

    if not isinstance(policy, str) or (policy not in POLICIES and policy not in SB3_POLICIES):
        raise ConfigError("policy", policy, "one of " + ", ".join([*SB3_POLICIES, *POLICIES]), str(hp_path))
    if policy in POLICIES and not policy_fits(policy, env_id):
        raise ConfigError("policy", policy, f"a policy for {env_id} (NodeSharedPolicy drives "
                          "powerrl/ClusterBudget-v0 with ppo)", str(hp_path))
    n_envs = _int(hp, "n_envs", 1, 1, str(hp_path))
    steps = total_timesteps if total_timesteps is not None else data.get("total_timesteps", hp.get("n_timesteps"))
    if steps is None:
        raise ConfigError("total_timesteps", None, "total_timesteps in the experiment, n_timesteps in the "
                          "hyperparameters, or --total-timesteps", src)
    total = _int({"total_timesteps": steps}, "total_timesteps", None, 1, src)
    run_seed = seed if seed is not None else data.get("seed", 0)
    run_seed = _int({"seed": run_seed}, "seed", 0, 0, src)
    ev = _eval_spec(data.get("eval"), env_id, src)
    ckpt = _int(data, "checkpoint_every_steps", 1_000_000, 0, src)
    shield = data.get("shield", "default")
    head = data.get("action_head")
    if head is not None and (not isinstance(head, str) or HEAD_ENVS.get(head) != env_id or algo not in ("ppo", "sac")):
        raise ConfigError("action_head", head, "null, or with ppo/sac: " + ", ".join(
            f"{h} on {e}" for h, e in HEAD_ENVS.items()), src)
    init = data.get("initial_action")
    if init is not None:
        n_act = {"cooling_deferral": 3, "deferral": 2}.get(str(head), 0) or _action_dim(
            env_id, make_config(env_id, env_cfg_raw, source=src))
        if (algo != "ppo" or not isinstance(init, list) or len(init) != n_act
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and -1 <= v <= 1 for v in init)):
            raise ConfigError("initial_action", init, f"with ppo on a Box action, a list of {n_act} numbers in "
                              "[-1, 1]: the Gaussian policy's starting mean", src)
        init = tuple(float(v) for v in init)
    exp = Experiment(name=str(data.get("name", p.stem)), env_id=env_id, env_config=env_cfg_raw, shield=shield,
                      algo=algo, hyperparams_file=str(hp_path), hyperparams=hp, n_envs=n_envs, total_timesteps=total,
                      normalize=normalize, policy=policy, seed=run_seed, eval=ev,
                      checkpoint_every_steps=ckpt, action_head=head, initial_action=init, source=src,
                      description=str(data.get("description", "")))
    if exp.eval is not None:
        from powerrl.agents.train import eval_scenario
        from powerrl.errors import PowerrlError

        try:
            eval_scenario(exp)  # days inside the trace, a window that fits: before anything runs
        except PowerrlError as exc:
            raise ConfigError("eval", data.get("eval"), f"an evaluation window on the trace ({exc})", src) from None
    return exp


HELDOUT_DAYS = range(22, 29)


def _action_dim(env_id: str, cfg: Any) -> int:
    """Length of a Box action of ``env_id`` under ``cfg`` (0 for the discrete NodeDVFS-v0)."""
    if env_id == "powerrl/ClusterBudget-v0":
        return int(cfg.n_nodes)
    if env_id == "powerrl/Datacenter-v0":
        return int(cfg.n_racks) + 3
    return 0


def _eval_spec(raw: Any, env_id: str, src: str) -> EvalSpec | None:
    if raw is None or raw is False:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("scenario"), str):
        raise ConfigError("eval", raw, "a mapping with 'scenario' (and days, start_h, duration_h, every_steps)", src)
    keys = set(EvalSpec.__dataclass_fields__)
    for key in raw:
        if key not in keys:
            raise ConfigError(f"eval.{key}", raw[key], "one of " + ", ".join(sorted(keys)), src)
    days = raw.get("days", [20, 21])
    if not isinstance(days, list) or not days or not all(isinstance(d, int) and 1 <= d <= 28 for d in days):
        raise ConfigError("eval.days", days, "a list of trace days 1-28", src)
    allow = raw.get("allow_heldout", False)
    if not isinstance(allow, bool):
        raise ConfigError("eval.allow_heldout", allow, "true or false", src)
    if not allow and any(d in HELDOUT_DAYS for d in days):
        raise ConfigError("eval.days", days, "training-split days (1-21): days 22-28 are the held-out test days; "
                          "choosing a checkpoint on them tunes on the test set (set allow_heldout: true to "
                          "monitor them anyway)", src)
    for key in ("start_h", "duration_h"):
        v = raw.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v > 24):
            raise ConfigError(f"eval.{key}", v, "hours in [0, 24]", src)
    every = _int(raw, "every_steps", 500_000, 0, src)
    seeds = _int(raw, "seeds", 1, 1, src)
    from powerrl.eval.metrics import BY_KEY

    select = raw.get("select", "reward")
    if not isinstance(select, str) or select not in BY_KEY or BY_KEY[select].better not in ("higher", "lower"):
        raise ConfigError("eval.select", select, "a metric with a better direction: " + ", ".join(
            k for k, m in BY_KEY.items() if m.better in ("higher", "lower")), src)
    cap = raw.get("max_shield_rate")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float)) or not 0 <= cap <= 1):
        raise ConfigError("eval.max_shield_rate", cap, "a share of steps in [0, 1], or null for no limit", src)
    spec = EvalSpec(scenario=str(raw["scenario"]), days=tuple(days), start_h=raw.get("start_h"),
                    duration_h=raw.get("duration_h"), every_steps=every, seeds=seeds, allow_heldout=allow,
                    select=str(select), max_shield_rate=None if cap is None else float(cap))
    return spec  # the scenario itself is loaded and checked once, by load_experiment (train.eval_scenario)
