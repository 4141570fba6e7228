"""Structured action heads: fixed maps from a policy's raw output to an env action, part of the policy.

A ClusterBudget-v0 policy that emits 64 independent caps must learn to keep their sum under a
budget it sees only as a fraction, and every step it misses costs a shield intervention. The
:class:`BudgetAllocationHead` removes that burden the way resource-allocation policies usually do:
the network says how much each node *wants* (a score per node), and a fixed, differentiable-free
layer turns the scores into caps that respect the guaranteed bases, the per-priority maxima, the
PDU limits and the facility budget minus the shield's reserve, so the shield has nothing to
correct. The head runs in the env during training (:class:`powerrl.agents.vec_env.PowerrlVecEnv`)
and inside the exported ONNX graph (:meth:`BudgetAllocationHead.torch_module`), with identical
arithmetic, so an exported policy still maps raw observations to env actions.

Pitfalls: the head reads the budget from the observation (``budget_frac``, float32), so it keeps a
relative ``margin`` below the budget; a budget cut becomes visible one step late (the shield
covers that step). An announced grid cut is not in the observation: while the shield ramps the
budget down ahead of it, the shield still trims the caps (those steps count as interventions).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Relative margin kept below every limit (float32 observations, float rounding): 0.1 %.
MARGIN = 1e-3
#: Distance kept from the base and maximum caps in action units (float32 resolution near 1 is 6e-8).
ACTION_EPS = 1e-5
#: The env each head drives.
HEAD_ENVS = {"budget_allocation": "powerrl/ClusterBudget-v0", "cooling_deferral": "powerrl/Datacenter-v0",
             "deferral": "powerrl/Datacenter-v0"}
HEADS = tuple(HEAD_ENVS)
#: CRAC supply setpoint the ``deferral`` head holds, degC: the tuned carbon baselines' (tuned.yaml).
DEFERRAL_SUPPLY_C = 18.0


class BudgetAllocationHead:
    """Scores in [-1, 1] per node -> ClusterBudget-v0 caps within bases, maxima, PDU limits and budget.

    Per node ``i`` the wanted share of its dynamic range (busy - idle power) is
    ``lo_i + (z_i + 1) / 2 * (hi_i - lo_i)``, where ``lo``/``hi`` are the shield's guaranteed base
    and maximum fractions for the node's priority. The power above the bases is then scaled down
    per PDU to fit its limit and per facility to fit ``budget_frac * busy_total * (1 - reserve)``,
    each with :data:`MARGIN`. The output is the env action (-1 = idle power, +1 = busy power).

    Args:
        params: the mapping of :meth:`from_core` (also stored in the policy metadata).
    """

    name = "budget_allocation"

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.idle_w = np.asarray(params["idle_w"], dtype=np.float64)
        self.dyn_w = np.asarray(params["busy_w"], dtype=np.float64) - self.idle_w
        self.lo = np.asarray(params["lo_frac"], dtype=np.float64)
        self.hi = np.asarray(params["hi_frac"], dtype=np.float64)
        self.pdu = np.asarray(params["pdu"], dtype=np.int64)
        self.pdu_limit_w = np.asarray(params["pdu_limit_w"], dtype=np.float64)
        self.busy_total_w = float(params["busy_total_w"])
        self.reserve_frac = float(params["reserve_frac"])
        self.budget_index = int(params["budget_index"])
        self.onehot = np.eye(self.pdu_limit_w.size)[self.pdu]  # [n, P]
        # Nudge inside [base, max] by ACTION_EPS, but never past the middle: with base == max (a
        # valid shield config) the nudged bounds would cross and land below the base.
        lo_a, hi_a = 2.0 * self.lo - 1.0, 2.0 * self.hi - 1.0
        mid = 0.5 * (lo_a + hi_a)
        self.lo_action = np.minimum(lo_a + ACTION_EPS, mid)
        self.hi_action = np.maximum(hi_a - ACTION_EPS, mid)
        #: The shield's own fixed budget (W, inf when it takes the env's): the head fits the smaller.
        self.shield_budget_w = float(params.get("shield_budget_w") or np.inf)

    @classmethod
    def from_core(cls, core: Any, shield_cfg: Any) -> BudgetAllocationHead:
        """The head of a ClusterBudget core under a shield config (bases, maxima and reserve from it)."""
        b = shield_cfg.budget
        prio = np.asarray(core.priority, dtype=np.int64)
        max_frac = np.broadcast_to(np.asarray(b.max_frac, dtype=np.float64), (5,))
        params = {"idle_w": np.asarray(core.idle_w, dtype=float).tolist(),
                  "busy_w": np.asarray(core.busy_w, dtype=float).tolist(),
                  "lo_frac": np.asarray(b.base_frac, dtype=float)[prio].tolist(),
                  "hi_frac": max_frac[prio].tolist(),
                  "pdu": np.asarray(core.pdu, dtype=int).tolist(),
                  "pdu_limit_w": np.asarray(core.pdu_limit_w, dtype=float).tolist(),
                  "busy_total_w": float(core.busy_total_w),
                  "reserve_frac": float(b.reserve_frac + b.critical_reserve_frac),
                  "shield_budget_w": None if b.budget_w is None else float(b.budget_w),
                  "budget_index": int(core.obs.shape[1] - 4)}
        return cls(params)

    def __call__(self, obs: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Env actions ``[B, n]`` (float32) for raw observations ``[B, obs_dim]`` and scores ``[B, n]``."""
        z = np.clip(np.asarray(scores, dtype=np.float64), -1.0, 1.0)
        lo_w = self.idle_w + self.lo * self.dyn_w
        want_w = self.idle_w + (self.lo + 0.5 * (z + 1.0) * (self.hi - self.lo)) * self.dyn_w
        extra = want_w - lo_w
        pdu_extra = extra @ self.onehot
        pdu_spare = np.maximum(self.pdu_limit_w * (1.0 - MARGIN) - lo_w @ self.onehot, 0.0)
        pdu_scale = np.minimum(1.0, pdu_spare / np.maximum(pdu_extra, 1e-9))
        extra = extra * (pdu_scale @ self.onehot.T)
        budget_w = np.minimum(np.asarray(obs, dtype=np.float64)[:, self.budget_index] * self.busy_total_w,
                              self.shield_budget_w)
        spare = np.maximum(budget_w * (1.0 - self.reserve_frac) * (1.0 - MARGIN) - lo_w.sum(), 0.0)
        scale = np.minimum(1.0, spare / np.maximum(extra.sum(axis=1), 1e-9))
        caps_w = lo_w + extra * scale[:, None]
        action = 2.0 * (caps_w - self.idle_w) / self.dyn_w - 1.0
        # float32 rounding must not put a cap a hair below its base: stay ACTION_EPS inside.
        return np.clip(action, self.lo_action, self.hi_action).astype(np.float32)

    def torch_module(self) -> Any:
        """The same map as a ``torch.nn.Module`` ``(obs, scores) -> action`` (for ONNX export)."""
        import torch

        head = self

        class _Head(torch.nn.Module):
            idle: torch.Tensor
            dyn: torch.Tensor
            lo: torch.Tensor
            hi: torch.Tensor
            onehot: torch.Tensor
            pdu_limit: torch.Tensor
            lo_action: torch.Tensor
            hi_action: torch.Tensor

            def __init__(self) -> None:
                super().__init__()
                f = torch.float64
                self.register_buffer("idle", torch.tensor(head.idle_w, dtype=f))
                self.register_buffer("dyn", torch.tensor(head.dyn_w, dtype=f))
                self.register_buffer("lo", torch.tensor(head.lo, dtype=f))
                self.register_buffer("hi", torch.tensor(head.hi, dtype=f))
                self.register_buffer("onehot", torch.tensor(head.onehot, dtype=f))
                self.register_buffer("pdu_limit", torch.tensor(head.pdu_limit_w, dtype=f))
                self.register_buffer("lo_action", torch.tensor(head.lo_action, dtype=f))
                self.register_buffer("hi_action", torch.tensor(head.hi_action, dtype=f))

            def forward(self, obs: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
                z = torch.clamp(scores.to(torch.float64), -1.0, 1.0)
                lo_w = self.idle + self.lo * self.dyn
                want_w = self.idle + (self.lo + 0.5 * (z + 1.0) * (self.hi - self.lo)) * self.dyn
                extra = want_w - lo_w
                pdu_extra = extra @ self.onehot
                pdu_spare = torch.clamp(self.pdu_limit * (1.0 - MARGIN) - lo_w @ self.onehot, min=0.0)
                pdu_scale = torch.clamp(pdu_spare / torch.clamp(pdu_extra, min=1e-9), max=1.0)
                extra = extra * (pdu_scale @ self.onehot.T)
                budget_w = obs[:, head.budget_index:head.budget_index + 1].to(torch.float64) * head.busy_total_w
                if np.isfinite(head.shield_budget_w):
                    budget_w = torch.clamp(budget_w, max=head.shield_budget_w)
                spare = torch.clamp(budget_w * (1.0 - head.reserve_frac) * (1.0 - MARGIN) - lo_w.sum(), min=0.0)
                scale = torch.clamp(spare / torch.clamp(extra.sum(dim=1, keepdim=True), min=1e-9), max=1.0)
                caps_w = lo_w + extra * scale
                action = 2.0 * (caps_w - self.idle) / self.dyn - 1.0
                action = torch.minimum(torch.maximum(action, self.lo_action), self.hi_action)
                return action.to(torch.float32)

        return _Head()


class CoolingDeferralHead:
    """Datacenter-v0 with the P-state ceilings left at f_max: the policy sets cooling and deferral only.

    The agent's action is ``[supply setpoint, defer share, release share]`` in [-1, 1] (the last three
    entries of the env action); the head puts every rack's ceiling at ``ceiling`` (+1 = f_max) in
    front. Lower ceilings save energy only by slowing interactive nodes (SLA violations), so a policy
    meant to cut carbon at no more SLA violations gains nothing from them, and three dimensions
    instead of ``n_racks + 3`` make deferral timing much easier to learn.

    With ``params["supply"]`` set (the ``deferral`` head), the supply setpoint is held there too (in
    action units) and the agent sets only ``[defer share, release share]``.

    Args:
        params: ``{"n_racks": R, "ceiling": 1.0, "supply": None}``.
    """

    name = "cooling_deferral"

    def __init__(self, params: dict[str, Any]) -> None:
        from gymnasium import spaces

        self.params = params
        self.n_racks = int(params["n_racks"])
        self.ceiling = float(params.get("ceiling", 1.0))
        supply = params.get("supply")
        self.supply = None if supply is None else float(supply)
        self.n_in = 3 if self.supply is None else 2
        if self.supply is not None:
            self.name = "deferral"
        self.input_space = spaces.Box(-1.0, 1.0, (self.n_in,), dtype=np.float32)
        self.env_action_space = spaces.Box(-1.0, 1.0, (self.n_racks + 3,), dtype=np.float32)

    def __call__(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Env actions ``[B, n_racks + 3]`` (float32)."""
        a = np.clip(np.asarray(action, dtype=np.float32).reshape(-1, self.n_in), -1.0, 1.0)
        fixed = [self.ceiling] * self.n_racks + ([] if self.supply is None else [self.supply])
        return np.concatenate([np.tile(np.asarray(fixed, dtype=np.float32), (a.shape[0], 1)), a], axis=1)

    def torch_module(self) -> Any:
        """The same map as a ``torch.nn.Module`` ``(obs, action) -> env action``."""
        import torch

        head = self

        class _Head(torch.nn.Module):
            def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
                a = torch.clamp(action, -1.0, 1.0)
                parts = [(a[:, :1] * 0.0 + head.ceiling).expand(-1, head.n_racks)]
                if head.supply is not None:
                    parts.append(a[:, :1] * 0.0 + head.supply)
                return torch.cat([*parts, a], dim=1)

        return _Head()


def make_head(name: str | None, core: Any, shield_cfg: Any) -> Any:
    """The head called ``name`` for an env core (None: no head)."""
    if name is None:
        return None
    if name not in HEAD_ENVS:
        raise ValueError(f"unknown action head {name!r}: one of {', '.join(HEADS)}")
    from powerrl.envs.config import ENV_CONFIGS

    env_id = HEAD_ENVS[name]
    if not isinstance(core.cfg, ENV_CONFIGS[env_id]):
        raise ValueError(f"the {name} head drives {env_id} only")
    if name == "budget_allocation":
        return BudgetAllocationHead.from_core(core, shield_cfg)
    params: dict[str, Any] = {"n_racks": int(core.n_racks), "ceiling": 1.0}
    if name == "deferral":
        cfg: Any = core.cfg  # a DatacenterConfig (checked above; ENV_CONFIGS' types are opaque to mypy)
        lo, hi = cfg.supply_min_c, cfg.supply_max_c
        params["supply"] = float(2.0 * (DEFERRAL_SUPPLY_C - lo) / (hi - lo) - 1.0)
    return CoolingDeferralHead(params)


def head_from_params(name: str, params: dict[str, Any]) -> Any:
    """Rebuild a head from the parameters stored in a run or a policy's metadata."""
    if name == "budget_allocation":
        return BudgetAllocationHead(params)
    if name in ("cooling_deferral", "deferral"):
        return CoolingDeferralHead(params)
    raise ValueError(f"unknown action head {name!r}: one of {', '.join(HEADS)}")
