"""Exogenous inputs of the envs, drawn ahead in chunks: request arrivals and memory-boundedness.

Arrivals follow the trace and never depend on actions, so each env draws them for ``chunk_len``
future steps of every copy in one vectorised NumPy call and then only indexes the chunk. A seed
therefore fixes an episode's work whatever the controller does, which is what a fair comparison
of controllers needs.

Model: the expected load of a unit in a step is ``u * scale``, with ``u`` the trace's utilisation
in the row covering the step and ``scale`` the unit's load scale (node heterogeneity); the
offered load is drawn by :func:`powerrl.model.workload.sample_offered_load` (Poisson requests
of exponential work with the class's mean service time).
Memory-boundedness is the class value moved by the trace's CPI-based proxy (``mem_gain``).
Demand surges (:mod:`powerrl.envs.events`) scale the drawn load of the steps they cover, so the
draws themselves, and every step outside the surge, stay those of the same seed without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from powerrl.envs import events as ev
from powerrl.envs.sources import TraceArrays
from powerrl.model.workload import sample_offered_load

#: Entries per chunk buffer (float64): 512 Ki entries = 4 MiB.
CHUNK_ENTRIES = 1 << 19
#: How strongly the trace's memory-boundedness proxy moves a class's memory-boundedness around its
#: class value (the proxy is normalised to [0, 1] with mean ~0.5; +-0.15 keeps classes distinct).
MEM_PROXY_GAIN = 0.3


class ArrivalChunks:
    """Chunked demand ``[chunk_len, n_copies, n_units]`` and memory-boundedness of the same shape.

    Args:
        trace: the trace the arrivals follow.
        service_s: mean service time per unit, ``[n_copies, n_units]`` s.
        mem_base: class memory-boundedness per unit, ``[n_copies, n_units]``.
        dt_s: step length, s.
        steps_per_episode: caps the chunk length (no point drawing past an episode).
        shared: common random numbers: every copy gets copy ``idx[0]``'s draws on refill (copies
            must then be reset together).
        events: scenario events; the demand of a step is multiplied by the demand surges active
            at its episode time (``step * dt_s``).
    """

    def __init__(self, trace: TraceArrays, service_s: np.ndarray, mem_base: np.ndarray, dt_s: float,
                 steps_per_episode: int, shared: bool = False, events: Sequence[ev.EventSpec] = ()) -> None:
        self.trace = trace
        self.service_s = np.asarray(service_s, dtype=np.float64)
        self.mem_base = np.asarray(mem_base, dtype=np.float64)
        b, n = self.service_s.shape
        self.dt_s = dt_s
        self.shared = shared
        self.surges = tuple(e for e in events if e.kind == "demand_surge")
        # Shared draws are sized by one copy's units, so the draws (and every copy's episode) do not
        # depend on how many copies share them.
        self.chunk_len = int(np.clip(CHUNK_ENTRIES // ((1 if shared else b) * n), 16, steps_per_episode + 1))
        self.demand = np.zeros((self.chunk_len, b, n))
        self.mem = np.zeros((self.chunk_len, b, n))
        self.pos = np.zeros(b, dtype=np.int64)
        self.copies = np.arange(b)
        self.steps_left = 0

    def refill(self, idx: np.ndarray, start_s: np.ndarray, step_count: np.ndarray, load_scale: np.ndarray,
               rng: np.random.Generator) -> None:
        """Draw the next ``chunk_len`` steps for copies ``idx`` from their clocks.

        Args:
            idx: copies to refill.
            start_s: per-copy episode start, s since trace row 0.
            step_count: per-copy steps taken (trace time of step ``j`` is ``start_s + j * dt_s``).
            load_scale: per-copy, per-unit load multiplier ``[n_copies, n_units]``.
            rng: the env's generator.
        """
        src = idx[:1] if self.shared else idx
        steps = step_count[src][None, :] + np.arange(self.chunk_len)[:, None]          # [L, c]
        rows = self.trace.rows_at(start_s[src][None, :] + steps * self.dt_s)
        util = self.trace.util[rows][:, :, None] * load_scale[src][None, :, :]            # [L, c, n]
        service_s = self.service_s[src][None, :, :]
        demand = sample_offered_load(util, service_s, self.dt_s, rng)
        if self.surges:
            demand *= ev.demand_factor(self.surges, steps * self.dt_s)[:, :, None]
        self.demand[:, idx, :] = demand
        self.mem[:, idx, :] = np.clip(
            self.mem_base[src][None, :, :] + MEM_PROXY_GAIN * (self.trace.mem_proxy[rows] - 0.5)[:, :, None],
            0.0, 1.0)
        self.pos[idx] = 0
        self.steps_left = int(self.chunk_len - self.pos.max())

    def peek(self) -> tuple[np.ndarray, np.ndarray]:
        """Demand and memory-boundedness of the next step, ``[n_copies, n_units]``, without advancing.

        Only valid when :attr:`steps_left` > 0 (the core's ``prefetch_arrivals`` makes sure).
        """
        return self.demand[self.pos, self.copies], self.mem[self.pos, self.copies]

    def due(self) -> np.ndarray:
        """Copies whose chunk is used up (refill them before the next step)."""
        return np.flatnonzero(self.pos >= self.chunk_len)

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """Demand and memory-boundedness of the current step, ``[n_copies, n_units]``; advances every copy."""
        d = self.demand[self.pos, self.copies]
        m = self.mem[self.pos, self.copies]
        self.pos += 1
        self.steps_left -= 1
        return d, m
