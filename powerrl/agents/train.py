"""``powerrl train``: Stable-Baselines3 training through the shield, with records a run can be rebuilt from.

A run folder holds:

* ``run.yaml``: the resolved experiment (env config, shield, algorithm, every hyperparameter), the
  command as typed, the argv, the git revision and the library versions;
* ``model.zip`` + ``vecnormalize.pkl``: the final model and its observation/reward normaliser;
* ``best/``: the checkpoint with the highest mean env reward on the evaluation days;
* ``checkpoints/model_<steps>_steps.zip`` + ``vecnormalize_<steps>_steps.pkl``;
* ``eval.csv``: the evaluation metrics at every evaluation; ``tb/``: TensorBoard logs (reward, env
  telemetry, shield interventions by reason, evaluation metrics).

Pitfalls: the normaliser is part of the policy (a model without its ``vecnormalize.pkl`` sees
unscaled observations); evaluation days must not be the held-out test days 22-28 (the config
loader refuses them) because the best checkpoint is chosen on them.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from powerrl.agents.config import Experiment, algo_class, algo_kwargs
from powerrl.agents.vec_env import PowerrlVecEnv, decode_joint
from powerrl.control import Controller, ControlTarget
from powerrl.errors import ConfigError
from powerrl.eval.metrics import METRIC_KEYS

#: Seconds between progress lines on the terminal.
PROGRESS_EVERY_S = 15.0
#: Columns of ``eval.csv``: the step count and every comparison metric.
EVAL_COLUMNS = ["steps", *METRIC_KEYS]


def git_revision() -> str:
    """The repository's commit (``+dirty`` when it has uncommitted changes), or ``unknown``."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    """Versions of the libraries a run depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("powerrl", "torch", "stable-baselines3", "sb3-contrib", "gymnasium", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def make_vec_env(exp: Experiment, n_envs: int | None = None, seed: int | None = None) -> PowerrlVecEnv:
    """The experiment's batched env behind its shield (DQN gets the joint-discrete action space)."""
    return PowerrlVecEnv(exp.env_id, n_envs or exp.n_envs, exp.env_config_object(), exp.shield,
                         seed=exp.seed if seed is None else seed, joint_discrete=exp.algo == "dqn",
                         action_head=exp.action_head)


class LiveController(Controller):
    """A model under training as a :class:`Controller`: the training normaliser, deterministic actions.

    Used to evaluate with the same harness as ``powerrl compare`` (shield, common random numbers,
    metrics) without exporting.
    """

    def __init__(self, model: Any, vecnorm: Any, action_space: Any, observation_space: Any,
                 target: ControlTarget | None, nvec: np.ndarray | None, head: Any = None) -> None:
        super().__init__(action_space, observation_space, target)
        self.model = model
        self.vecnorm = vecnorm
        self.nvec = nvec
        self.head = head

    def act_batch(self, observations: np.ndarray, time_s: np.ndarray | None = None) -> np.ndarray:
        """Normalised observations -> the model's deterministic actions (joint indices decoded)."""
        raw = np.asarray(observations, dtype=np.float32)
        obs = self.vecnorm.normalize_obs(raw) if self.vecnorm is not None else raw
        action, _ = self.model.predict(obs, deterministic=True)
        if self.head is not None:
            action = self.head(raw, action)
        if self.nvec is not None:
            action = decode_joint(action, self.nvec)
        return np.asarray(action)


def eval_scenario(exp: Experiment) -> Any:
    """The evaluation scenario: the named scenario's data and shield, the experiment's env settings."""
    from powerrl.eval.scenario import load_scenario

    if exp.eval is None:
        return None
    ev = exp.eval
    sc = load_scenario(ev.scenario)
    if sc.env_id != exp.env_id:
        raise ConfigError("eval.scenario", ev.scenario, f"a scenario of {exp.env_id} (it runs {sc.env_id})",
                          exp.source)
    # The experiment's env settings (domains, nodes, reward, ...) with the scenario's data and window.
    own = {k: v for k, v in exp.env_config.items()
           if k not in ("trace", "carbon", "weather", "events", "split", "episode_s")}
    env_cfg = exp.env_config_object()
    cfg = dataclasses.replace(sc.env_config, **{k: getattr(env_cfg, k) for k in own})
    start_h = sc.start_h if ev.start_h is None else float(ev.start_h)
    duration_h = sc.duration_h if ev.duration_h is None else float(ev.duration_h)
    sc = dataclasses.replace(sc, env_config=cfg, start_h=start_h, duration_h=duration_h, name=f"{sc.name}-eval")
    return sc.with_days(tuple(ev.days))


def check_eval_env(exp: Experiment, venv: PowerrlVecEnv, sc: Any) -> None:
    """Fail before training when the evaluation scenario's env spaces differ from the training env's."""
    if sc is None or exp.eval is None:
        return
    from powerrl.eval.runner import VECTOR_ENVS

    ev = VECTOR_ENVS[sc.env_id](1, **sc.env_kwargs())
    if (ev.single_observation_space.shape != venv.observation_space.shape
            or ev.single_action_space != venv.env_action_space):
        raise ConfigError("eval.scenario", exp.eval.scenario, f"a scenario whose env has the training env's spaces "
                          f"(observations {ev.single_observation_space.shape} vs {venv.observation_space.shape}: set "
                          "the size keys such as n_nodes or n_domains in env_config)", exp.source)


def evaluate(model: Any, vecnorm: Any, exp: Experiment, scenario: Any, nvec: np.ndarray | None,
             head: Any = None) -> dict[str, float]:
    """Mean metrics of the model over the evaluation days and seeds (``powerrl compare``'s harness)."""
    from powerrl.eval.metrics import combine_days
    from powerrl.eval.runner import ControllerSpec, run_group

    def factory(action_space: Any, observation_space: Any, target: ControlTarget) -> Controller:
        return LiveController(model, vecnorm, action_space, observation_space, target, nvec, head)

    spec = ControllerSpec(ref="policy", label="policy", kind="policy", factory=factory)
    per_seed = []
    assert exp.eval is not None
    for seed in range(exp.eval.seeds):  # run seeds 0.. as in powerrl compare, so figures line up with it
        out = run_group(scenario, seed, [spec])["policy"]
        per_seed.append(combine_days(out["days"], out["hists"]))
    keys = [k for k, v in per_seed[0].items() if v is not None]
    return {k: float(np.mean([float(v) for s in per_seed if (v := s[k]) is not None])) for k in keys}


def _fmt_s(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _callback(exp: Experiment, run_dir: Path, venv: PowerrlVecEnv, vecnorm: Any, total: int, quiet: bool,
              scenario: Any) -> Any:
    """The trainer's SB3 callback (built here so that importing this module does not need SB3 at once)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class TrainCallback(BaseCallback):
        """Progress lines, TensorBoard telemetry, checkpoints and evaluation with best-model keeping."""

        def __init__(self) -> None:
            super().__init__(verbose=0)
            self.t0 = time.perf_counter()
            self.last_print = self.t0
            self.start_steps = 0
            self.next_ckpt: int | None = exp.checkpoint_every_steps
            self.next_eval: int | None = exp.eval.every_steps if exp.eval and exp.eval.every_steps else None
            self.best_reward = (previous_best(run_dir, exp.eval.select, exp.eval.max_shield_rate) if exp.eval
                                else -np.inf)
            self.last_stats: dict[str, float] = {}
            self.last_eval: tuple[int, dict[str, float]] | None = None
            self.stats_steps = 0

        def _on_training_start(self) -> None:
            self.start_steps = self.num_timesteps
            ckpt = exp.checkpoint_every_steps
            self.next_ckpt = (self.num_timesteps // ckpt + 1) * ckpt if ckpt else None
            if self.next_eval is not None:
                every = exp.eval.every_steps  # type: ignore[union-attr]
                self.next_eval = (self.num_timesteps // every + 1) * every

        def _on_step(self) -> bool:
            n = self.num_timesteps
            # The next multiple after n, not next + every: with more copies than the interval a step
            # passes several multiples at once, and adding one interval would fire on every step.
            if self.next_ckpt is not None and n >= self.next_ckpt:
                save_model(self.model, vecnorm, run_dir / "checkpoints", f"_{n}_steps")
                every = exp.checkpoint_every_steps
                self.next_ckpt = (n // every + 1) * every
            if self.next_eval is not None and n >= self.next_eval:
                self.run_eval()
                every = exp.eval.every_steps  # type: ignore[union-attr]
                self.next_eval = (n // every + 1) * every
            now = time.perf_counter()
            if not quiet and now - self.last_print >= PROGRESS_EVERY_S:
                self.last_print = now
                self.print_progress(now)
            return True

        def _on_rollout_end(self) -> None:
            self.stats_steps += 1
            stats = venv.pop_stats()
            if stats:
                self.last_stats = stats
                for k, v in stats.items():
                    self.logger.record(k, v)

        def print_progress(self, now: float) -> None:
            n = self.num_timesteps
            rate = (n - self.start_steps) / max(now - self.t0, 1e-9)
            eta = (total - n) / rate if rate > 0 else float("inf")
            buf = self.model.ep_info_buffer
            ep = f"ep_rew {np.mean([e['r'] for e in buf]):.4g}" if buf else "ep_rew -"
            shield = self.last_stats.get("shield/intervention_rate")
            sh = f"shield {100 * shield:.2f}%" if shield is not None else "shield -"
            print(f"[{100 * n / total:5.1f}%] {n:,}/{total:,} steps  {rate:,.0f} steps/s  {ep}  {sh}  "
                  f"eta {_fmt_s(eta)}", flush=True)

        def run_eval(self) -> dict[str, float]:
            if scenario is None:
                return {}
            if self.last_eval is not None and self.last_eval[0] == self.num_timesteps:
                return self.last_eval[1]  # the final evaluation fell on a periodic one
            t = time.perf_counter()
            m = evaluate(self.model, vecnorm, exp, scenario, venv.nvec, venv.head)
            for k, v in m.items():
                self.logger.record(f"eval/{k}", v)
            self.logger.dump(self.num_timesteps)
            row = {"steps": self.num_timesteps, **m}
            path = run_dir / "eval.csv"
            new = not path.exists()
            with path.open("a", newline="", encoding="utf-8") as fh:
                # Fixed columns: a metric that is None in one evaluation must not shift the others.
                w = csv.DictWriter(fh, fieldnames=EVAL_COLUMNS, restval="", extrasaction="ignore")
                if new:
                    w.writeheader()
                w.writerow(row)
            score = selection_score(m, exp.eval.select, exp.eval.max_shield_rate)  # type: ignore[union-attr]
            best = score > self.best_reward
            if best:
                self.best_reward = score
                save_model(self.model, vecnorm, run_dir / "best", "")
            if not quiet:
                shown = ("reward", "energy_kwh", "sla_violation_rate", "priority_weighted_work", "carbon_kg",
                         "shield_intervention_rate")
                parts = [f"{k} {m[k]:.4g}" for k in shown if k in m]
                print(f"  eval @ {self.num_timesteps:,} steps ({time.perf_counter() - t:.0f} s): "
                      + "  ".join(parts) + ("  (best so far)" if best else ""), flush=True)
            self.last_eval = (self.num_timesteps, m)
            return m

    return TrainCallback()


def set_initial_action(model: Any, action: tuple[float, ...]) -> None:
    """Start a PPO Gaussian policy's mean at ``action`` (the action net's bias; its weights start near 0).

    A policy whose mean starts in the middle of the range (P-state ceilings at half frequency) spends
    much of training walking to where a sensible controller starts; this places the start there.
    """
    import torch

    net = model.policy.action_net
    with torch.no_grad():
        net.bias.copy_(torch.as_tensor(action, dtype=net.bias.dtype))


def previous_best(run_dir: Path, key: str, max_shield_rate: float | None = None) -> float:
    """The best selection score in an existing ``eval.csv`` (a resumed run keeps its ``best/``)."""
    path = run_dir / "eval.csv"
    if not path.is_file() or not (run_dir / "best" / "model.zip").is_file():
        return -np.inf
    best = -np.inf
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                metrics = {k: float(row.get(k) or "nan") for k in (key, "shield_intervention_rate")}
                best = max(best, selection_score(metrics, key, max_shield_rate))
            except ValueError:
                continue
    return best


def selection_score(metrics: dict[str, float], key: str, max_shield_rate: float | None = None) -> float:
    """The evaluation's score for checkpoint selection: ``key``'s value, negated when lower is better.

    ``-inf`` (never the best) when the shield changed more than ``max_shield_rate`` of the steps.
    """
    from powerrl.eval.metrics import BY_KEY

    rate = metrics.get("shield_intervention_rate")
    if max_shield_rate is not None and (rate is None or not rate <= max_shield_rate):
        return -np.inf
    value = metrics.get(key)
    if value is None or not np.isfinite(value):
        return -np.inf
    return float(value) if BY_KEY[key].better == "higher" else -float(value)


def save_model(model: Any, vecnorm: Any, folder: Path, suffix: str) -> None:
    """``model<suffix>.zip`` and ``vecnormalize<suffix>.pkl`` in ``folder`` (each written atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".model{suffix}.tmp.zip"
    model.save(tmp)
    os.replace(tmp, folder / f"model{suffix}.zip")
    if vecnorm is not None:
        tmp_p = folder / f".vecnormalize{suffix}.tmp.pkl"
        vecnorm.save(tmp_p)
        os.replace(tmp_p, folder / f"vecnormalize{suffix}.pkl")


def default_run_dir(exp: Experiment) -> Path:
    """``runs/<experiment>/seed<S>-<UTC time>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path("runs") / exp.name / f"seed{exp.seed}-{stamp}"


def resume_paths(ckpt: str) -> tuple[Path, Path | None]:
    """The model and normaliser to resume from: a checkpoint ``.zip`` or a run folder (its final model)."""
    p = Path(ckpt)
    if p.is_dir():
        p = p / "model.zip"
    if not p.is_file() or p.suffix != ".zip":
        raise ConfigError("--resume", ckpt, "a checkpoint .zip or a run folder with model.zip (powerrl train --out)")
    name = p.name.replace("model", "vecnormalize", 1).replace(".zip", ".pkl")
    norm = p.with_name(name)
    return p, norm if norm.is_file() else None


def train(exp: Experiment, run_dir: Path, command: str, argv: list[str], resume: str | None = None,
          quiet: bool = False) -> Path:
    """Train ``exp`` into ``run_dir``; returns the run folder."""
    import torch
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)  # small MLPs: one thread is fastest and leaves the other core to the env
    if (run_dir / "model.zip").exists() and resume is None:
        raise ConfigError("--out", str(run_dir), "a new run folder (this one has a trained model.zip; "
                          "pass --resume to continue it, or another --out)")
    resume_from = resume_paths(resume) if resume is not None else None  # checked before anything is written
    venv = make_vec_env(exp)
    scenario = eval_scenario(exp)  # built once: the check and every evaluation use it
    check_eval_env(exp, venv, scenario)
    cls = algo_class(exp.algo)
    kwargs = algo_kwargs(exp.algo, exp.hyperparams, exp.hyperparams_file)
    vecnorm: VecNormalize | None
    if resume_from is not None:
        model_path, norm_path = resume_from
        try:
            if norm_path is not None:
                vecnorm = VecNormalize.load(str(norm_path), venv)
                vecnorm.training = True
            else:
                vecnorm = VecNormalize(venv, **exp.normalize) if exp.normalize else None
            env: Any = vecnorm if vecnorm is not None else venv
            model = cls.load(str(model_path), env=env, device="cpu", tensorboard_log=str(run_dir / "tb"))
        except (ValueError, AssertionError, KeyError, OSError) as exc:
            raise ConfigError("--resume", resume, f"a checkpoint of this experiment's env, algorithm and spaces "
                              f"({type(exc).__name__}: {exc})") from None
        # The checkpoint's own hyperparameters continue (SB3 keeps them); the seed is this run's, so a
        # resumed run with another --seed draws other episodes instead of replaying the first run's.
        model.set_random_seed(exp.seed)
        if exp.algo in ("sac", "dqn"):
            # SB3 does not save the replay buffer with the model: warm it up again before updating.
            model.learning_starts = model.num_timesteps + int(kwargs.get("learning_starts", 100))
            print(f"powerrl train: note: {exp.algo} resumes with an empty replay buffer; updates restart after "
                  f"{model.learning_starts:,} steps", file=sys.stderr)
        remaining = max(exp.total_timesteps - model.num_timesteps, 0)
        reset = False
    else:
        vecnorm = VecNormalize(venv, **exp.normalize) if exp.normalize else None
        env = vecnorm if vecnorm is not None else venv
        from powerrl.agents.policies import POLICIES

        model = cls(POLICIES.get(exp.policy, exp.policy), env, seed=exp.seed, device="cpu", verbose=0,
                    tensorboard_log=str(run_dir / "tb"), **kwargs)
        if exp.initial_action is not None:
            set_initial_action(model, exp.initial_action)
        remaining = exp.total_timesteps
        reset = True
    run_dir.mkdir(parents=True, exist_ok=True)
    nvec = None
    action_space = venv.env_action_space
    if hasattr(action_space, "nvec"):
        nvec = [int(x) for x in action_space.nvec]
    record = {**exp.record(), "command": command, "argv": argv, "git_revision": git_revision(),
              "versions": versions(), "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "action_nvec": nvec, "resumed_from": resume, "resumed_at_timesteps": None if reset else
              int(model.num_timesteps),
              "action_head_params": venv.head.params if venv.head is not None else None, "run_dir": str(run_dir)}
    if not reset:
        record["hyperparams_note"] = ("resumed: the checkpoint's saved hyperparameters continue; the values "
                                      "above are the experiment file's")
    # A resumed run in its own folder keeps the original record and adds one per resume.
    record_name = "run.yaml"
    if (run_dir / "run.yaml").exists():
        k = 1
        while (run_dir / f"run-resume{k}.yaml").exists():
            k += 1
        record_name = f"run-resume{k}.yaml"
    record_path = run_dir / record_name
    with record_path.open("w", encoding="utf-8") as fh:
        yaml.safe_dump(record, fh, sort_keys=False)
    if not quiet:
        print(f"powerrl train: {exp.algo} on {exp.env_id} x {exp.n_envs} copies behind the '{exp.shield}' shield, "
              f"{remaining:,} steps, seed {exp.seed} -> {run_dir}", flush=True)
    cb = _callback(exp, run_dir, venv, vecnorm, exp.total_timesteps, quiet, scenario)
    t0 = time.perf_counter()
    model.learn(total_timesteps=remaining, callback=cb, reset_num_timesteps=reset, tb_log_name="run",
                progress_bar=False)
    elapsed = time.perf_counter() - t0
    save_model(model, vecnorm, run_dir, "")
    final = cb.run_eval() if exp.eval is not None else {}
    if exp.eval is not None and not (run_dir / "best" / "model.zip").exists():
        save_model(model, vecnorm, run_dir / "best", "")
    done = {"finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "train_seconds": round(elapsed, 1),
            "timesteps": int(model.num_timesteps), "steps_per_second": round(remaining / max(elapsed, 1e-9), 1),
            "final_eval": final}
    with record_path.open("a", encoding="utf-8") as fh:
        yaml.safe_dump(done, fh, sort_keys=False)
    if not quiet:
        print(f"powerrl train: done in {_fmt_s(elapsed)} ({remaining / max(elapsed, 1e-9):,.0f} steps/s); "
              f"model {run_dir / 'model.zip'}; export with: powerrl export {run_dir} --out policy.onnx", flush=True)
    venv.close()
    return run_dir


def command_line(argv: list[str]) -> str:
    """The command as a user would retype it."""
    import shlex

    return "powerrl " + " ".join(shlex.quote(a) for a in argv)


def main_train(args: Any) -> int:
    """``powerrl train`` entry point."""
    from powerrl.agents.config import load_experiment

    exp = load_experiment(args.config, total_timesteps=args.total_timesteps, seed=args.seed)
    if args.n_envs is not None:
        if args.n_envs < 1:
            raise ConfigError("--n-envs", args.n_envs, "an integer >= 1 (env copies stepped together)")
        exp = dataclasses.replace(exp, n_envs=args.n_envs)
    if args.no_eval:
        exp = dataclasses.replace(exp, eval=None)
    run_dir = Path(args.out) if args.out else default_run_dir(exp)
    train(exp, run_dir, command_line(getattr(args, "argv", sys.argv[1:])), list(getattr(args, "argv", [])),
          resume=args.resume, quiet=args.quiet)
    return 0


def _shipped_experiments() -> list[str]:
    from powerrl.agents.config import CONFIG_ROOT

    return sorted(p.stem for p in (CONFIG_ROOT / "experiments").glob("*.yaml"))


def register(subparsers: Any) -> None:
    """Add ``powerrl train``."""
    p = subparsers.add_parser(
        "train", help="train an RL policy from an experiment YAML (Stable-Baselines3, through the shield)",
        description="Train a policy from an experiment config (configs/experiments/*.yaml or a name there). "
                    "The run folder keeps the resolved config, the command, the git revision, TensorBoard logs "
                    "(tensorboard --logdir RUN/tb), checkpoints and the best model on the evaluation days. "
                    "Shipped experiments: " + ", ".join(_shipped_experiments()) + ".")
    p.add_argument("config", help="experiment YAML path or name under configs/experiments/")
    p.add_argument("--total-timesteps", type=int, default=None, help="env steps to train (overrides the config)")
    p.add_argument("--seed", type=int, default=None, help="seed of the model and env (overrides the config)")
    p.add_argument("--n-envs", type=int, default=None, help="env copies stepped together (overrides the config)")
    p.add_argument("--out", default=None, help="run folder (default runs/<experiment>/seed<S>-<time>)")
    p.add_argument("--resume", default=None, metavar="CKPT",
                   help="continue from a checkpoint .zip (its vecnormalize .pkl beside it) or a run folder")
    p.add_argument("--no-eval", action="store_true", help="skip evaluation during training")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=main_train)
