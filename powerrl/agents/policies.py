"""Policy networks for many identical units: one small network shared by every node.

A ClusterBudget-v0 observation is ``n`` blocks of per-node fields followed by global fields, and
the action is one value per node. A flat MLP must learn the same "how much does this node want"
function ``n`` times from scratch and depends on the node order; :class:`NodeSharedPolicy`
applies one per-node MLP to ``[node fields, global fields, mean of all node fields]`` (a
permutation-equivariant, Deep-Sets-style actor) and a value network over the mean of the node
embeddings plus the global fields. With 64 nodes every sample teaches the shared actor 64 times.

The actor's per-node output is the action mean directly (``action_net`` is the identity), so the
exported graph is the shared MLP applied per node; it exports to ONNX with standard ops.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn


class NodeSharedExtractor(nn.Module):
    """Per-node actor outputs ``[B, n]`` and a pooled value latent ``[B, hidden]``.

    Args:
        n_units: number of nodes ``n``.
        unit_fields: fields per node (the first ``n * unit_fields`` observation values, node-major).
        global_fields: trailing global fields.
        hidden: widths of the shared per-node MLP and of the value MLP.
    """

    def __init__(self, n_units: int, unit_fields: int, global_fields: int, hidden: tuple[int, ...] = (64, 64),
                 activation: type[nn.Module] = nn.Tanh) -> None:
        super().__init__()
        self.n, self.f, self.g = n_units, unit_fields, global_fields
        width = list(hidden)
        layers: list[nn.Module] = []
        d = 2 * unit_fields + global_fields
        for w in width:
            layers += [nn.Linear(d, w), activation()]
            d = w
        self.node_net = nn.Sequential(*layers)
        self.node_out = nn.Linear(d, 1)
        nn.init.orthogonal_(self.node_out.weight, gain=0.01)
        nn.init.zeros_(self.node_out.bias)
        v_layers: list[nn.Module] = []
        dv = d + global_fields
        for w in width:
            v_layers += [nn.Linear(dv, w), activation()]
            dv = w
        self.value_net = nn.Sequential(*v_layers)
        self.latent_dim_pi = n_units
        self.latent_dim_vf = dv

    def _embed(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = obs.shape[0]
        nodes = obs[:, : self.n * self.f].reshape(b, self.n, self.f)
        glob = obs[:, self.n * self.f:]
        mean = nodes.mean(dim=1, keepdim=True).expand(b, self.n, self.f)
        x = torch.cat([nodes, mean, glob.unsqueeze(1).expand(b, self.n, self.g)], dim=2)
        return self.node_net(x), glob

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actor and critic latents."""
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        """One action mean per node, ``[B, n]``."""
        h, _ = self._embed(features)
        return self.node_out(h).squeeze(-1)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        """The value latent from the mean node embedding and the global fields."""
        h, glob = self._embed(features)
        return self.value_net(torch.cat([h.mean(dim=1), glob], dim=1))


class NodeSharedPolicy(ActorCriticPolicy):
    """PPO actor-critic with :class:`NodeSharedExtractor` (Box actions, one per node).

    Keyword args (``policy_kwargs``): ``unit_fields`` and ``global_fields`` (the env's layout,
    e.g. 6 and 4 for ClusterBudget-v0) and ``hidden`` (default ``[64, 64]``, the widths of both
    networks; SB3's ``net_arch`` is ignored); ``activation_fn`` (default Tanh), ``log_std_init`` etc.
    pass through to SB3.
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Any,
                 unit_fields: int = 6, global_fields: int = 4, hidden: list[int] | tuple[int, ...] = (64, 64),
                 **kwargs: Any) -> None:
        self.unit_fields = int(unit_fields)
        self.global_fields = int(global_fields)
        self.hidden = tuple(int(h) for h in hidden)
        n_obs = int(observation_space.shape[0])  # type: ignore[index]
        n_units, rest = divmod(n_obs - self.global_fields, self.unit_fields)
        if rest or n_units != int(action_space.shape[0]):  # type: ignore[index]
            raise ValueError(f"NodeSharedPolicy: {n_obs} observations are not {action_space.shape} units x "
                             f"{unit_fields} fields + {global_fields} global fields")
        self.n_units = n_units
        kwargs.setdefault("ortho_init", False)  # the extractor initialises its own output layer
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = NodeSharedExtractor(self.n_units, self.unit_fields, self.global_fields,
                                                 self.hidden, self.activation_fn)  # type: ignore[assignment]

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        # The shared actor already emits one mean per node: no dense layer mixing nodes after it.
        self.action_net = nn.Identity()
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1),  # type: ignore[call-arg]
                                              **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(unit_fields=self.unit_fields, global_fields=self.global_fields, hidden=self.hidden)
        return data


#: Policy classes that configs may name in ``policy:`` besides SB3's own strings.
POLICIES: dict[str, type] = {"NodeSharedPolicy": NodeSharedPolicy}
#: The envs each of them drives (their observation layout).
POLICY_ENVS: dict[str, tuple[str, ...]] = {"NodeSharedPolicy": ("powerrl/ClusterBudget-v0",)}


def policy_fits(name: str, env_id: str) -> bool:
    """Whether policy class ``name`` fits ``env_id``'s observation layout."""
    return env_id in POLICY_ENVS.get(name, ())
