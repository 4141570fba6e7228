"""Policy inference latency: an exported ONNX policy (onnxruntime) vs SB3 predict, one observation per call.

What a node agent pays each control period to turn one observation into an action. Timed, in the same
run, over ``--calls`` single-observation calls (batch 1) after a warm-up, cycling through 1,024
observations sampled uniformly from the observation space:

* ``onnxruntime session.run``: the exported graph (normalisation + network + argmax/squash inside),
  one intra-op and one inter-op thread, input preallocated as float32 ``[1, obs_dim]``;
* ``PolicyFileController.act_batch``: the same plus the consumer's cast, rounding and clipping;
* ``SB3 predict``: VecNormalize's normalisation in NumPy, then ``model.predict(obs, deterministic=True)``
  (torch on 1 thread, CPU), i.e. what running the SB3 model directly would cost.

Sources, in order: ``--run RUN_DIR`` (its ``--checkpoint``, exported to a temporary file); ``--policy PATH``
(default ``powerrl/data/policies/nodedvfs-v0.onnx`` when it exists; the SB3 side is its metadata's run
folder when that still exists, else ONNX figures only); otherwise a tiny PPO (MultiDiscrete, net
[64, 64] like SB3's default MlpPolicy) trained in-process for 256 steps on NodeDVFS-v0 behind the
shield, so the script always runs (the weights are untrained, which does not change the latency).

Usage: python benchmarks/policy_inference.py [--policy PATH | --run RUN_DIR] [--calls 5000]
Goal: ONNX session.run p99 <= 50 us.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import powerrl  # noqa: E402, F401

GOAL_P99_US = 50.0
DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "powerrl" / "data" / "policies" / "nodedvfs-v0.onnx"


def _time_us(fn, obs: np.ndarray, calls: int, warmup: int) -> np.ndarray:
    n = len(obs)
    for k in range(warmup):
        fn(obs[k % n])
    out = np.empty(calls)
    for k in range(calls):
        x = obs[k % n]
        t0 = time.perf_counter_ns()
        fn(x)
        out[k] = (time.perf_counter_ns() - t0) / 1e3
    return out


def _line(name: str, t_us: np.ndarray, goal: bool = False) -> None:
    p50, p99, mean = (float(np.percentile(t_us, 50)), float(np.percentile(t_us, 99)), float(t_us.mean()))
    tail = f"  (goal p99 <= {GOAL_P99_US:.0f} us: {'met' if p99 <= GOAL_P99_US else 'MISSED'})" if goal else ""
    print(f"{name:40s} p50 {p50:8.1f} us  p99 {p99:8.1f} us  mean {mean:8.1f} us{tail}")


def _tiny_run(folder: Path) -> Path:
    """Train a tiny PPO on shielded NodeDVFS-v0 (256 steps) and save it as a run folder."""
    import yaml
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from powerrl.envs.node_dvfs import NodeDVFSEnv
    from powerrl.envs.shielded import ShieldedEnv

    venv = VecNormalize(DummyVecEnv([lambda: ShieldedEnv(NodeDVFSEnv(episode_s=60.0))]))
    model = PPO("MlpPolicy", venv, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(256)
    model.save(folder / "model.zip")
    venv.save(str(folder / "vecnormalize.pkl"))
    (folder / "run.yaml").write_text(yaml.safe_dump({"env_id": "powerrl/NodeDVFS-v0", "algo": "ppo", "seed": 0,
                                                     "total_timesteps": 256, "command": "benchmark tiny PPO"}))
    return folder


def _sb3_predict(run: Any):
    from powerrl.agents.export import normalise_like_vecnormalize

    model, rms, clip, eps = run.model, run.obs_rms, run.clip_obs, run.epsilon

    def predict(x: np.ndarray) -> None:
        model.predict(normalise_like_vecnormalize(x, rms, clip, eps), deterministic=True)

    return predict


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", type=Path, default=None, help=f"exported ONNX policy (default {DEFAULT_POLICY.name} "
                   "when shipped)")
    p.add_argument("--run", type=Path, default=None, help="powerrl train run folder: export it and compare with SB3")
    p.add_argument("--checkpoint", default="best", help="with --run: best, final or a model .zip")
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--warmup", type=int, default=500)
    args = p.parse_args()

    import onnxruntime as ort
    from gymnasium import spaces

    from powerrl.eval.policy_file import PolicyFileController, read_metadata

    tmp = tempfile.TemporaryDirectory(prefix="powerrl-bench-")
    run = None
    policy = args.policy if args.policy is not None else (DEFAULT_POLICY if DEFAULT_POLICY.is_file() else None)
    t0 = time.perf_counter()
    if args.run is not None or policy is None:
        import torch

        from powerrl.agents.export import export_loaded, load_run

        torch.set_num_threads(1)
        run_dir = args.run if args.run is not None else _tiny_run(Path(tmp.name))
        source = str(args.run) if args.run is not None else "tiny PPO trained here (256 steps, NodeDVFS-v0)"
        run = load_run(run_dir, args.checkpoint if args.run is not None else "final")
        policy = export_loaded(run, Path(tmp.name) / "policy.onnx")
    else:
        source = str(policy)
        meta = read_metadata(str(policy))
        run_dir = Path(str(meta.get("run") or ""))
        if meta.get("run") and (run_dir / "run.yaml").is_file():
            import torch

            from powerrl.agents.export import load_run

            torch.set_num_threads(1)
            run = load_run(run_dir, meta.get("checkpoint") or "best")
    meta = read_metadata(str(policy))
    setup_s = time.perf_counter() - t0

    low = np.asarray(meta["observation_space"]["low"], dtype=np.float32)
    high = np.asarray(meta["observation_space"]["high"], dtype=np.float32)
    obs = np.random.default_rng(0).uniform(low, high, (1024, low.size)).astype(np.float32)
    act = meta["action"]
    space: spaces.Space = (spaces.MultiDiscrete(np.asarray(act["nvec"])) if act["type"] == "multidiscrete"
                           else spaces.Box(np.asarray(act["low"], np.float32), np.asarray(act["high"], np.float32)))

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(policy), sess_options=opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    buf = np.empty((1, low.size), dtype=np.float32)

    def ort_run(x: np.ndarray) -> None:
        buf[0] = x
        sess.run(None, {name: buf})

    ctrl = PolicyFileController(Path(policy), space)

    print(f"policy: {source} ({meta.get('algo', '?')}, {meta['env_id']}, {low.size} observations); "
          f"onnxruntime {ort.__version__}, 1 thread; setup {setup_s:.1f} s")
    t_ort = _time_us(ort_run, obs, args.calls, args.warmup)
    _line("ONNX onnxruntime session.run", t_ort, goal=True)
    _line("ONNX PolicyFileController.act_batch", _time_us(lambda x: ctrl.act_batch(x[None]), obs, args.calls,
                                                          args.warmup))
    if run is None:
        print("SB3 predict: not measured (no run folder for this policy; pass --run RUN_DIR)")
        return
    import torch

    t_sb3 = _time_us(_sb3_predict(run), obs, args.calls, args.warmup)
    _line(f"SB3 predict (torch {torch.__version__}, 1 thread)", t_sb3)
    print(f"SB3 / ONNX: p50 {np.percentile(t_sb3, 50) / np.percentile(t_ort, 50):.1f}x, "
          f"p99 {np.percentile(t_sb3, 99) / np.percentile(t_ort, 99):.1f}x, mean {t_sb3.mean() / t_ort.mean():.1f}x")


if __name__ == "__main__":
    main()
