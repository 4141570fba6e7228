"""Helpers shared by the governor tests (fixtures are in conftest.py)."""

import numpy as np

from powerrl.control import make_controller

HELDOUT_2PM_S = 21 * 86400 + 14 * 3600  # day 22 (first held-out day), 14:00


def make(name, env, target, **params):
    """A registered controller for ``env`` with ``target``."""
    return make_controller(name, env.action_space, env.observation_space, target=target, **params)


def observations(target, util, pstate, temp, batch):
    """NodeDVFS observations: every domain at ``util``, P-state index ``pstate``, ``temp`` (scalars or [B, n])."""
    n, k = target.n_units, len(target.unit_fields)
    obs = np.zeros((batch, n * k + len(target.global_fields)), dtype=np.float32)
    view = obs[:, : n * k].reshape(batch, n, k)
    view[:, :, target.unit_fields.index("util")] = util
    view[:, :, target.unit_fields.index("pstate")] = np.asarray(pstate) / (target.n_pstates - 1)
    view[:, :, target.unit_fields.index("temp_die_c")] = temp
    return obs
