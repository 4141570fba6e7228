"""``powerrl compare``: every controller on every scenario and seed, in parallel processes.

Work is split into cells ``(scenario, seed, group)``: the clairvoyant oracle runs in a group of its
own (it is the slowest), every other controller of the scenario in one shared group. Copies share
arrivals drawn from the episode seed alone, so a cell's numbers never depend on the split or on the
number of processes (:mod:`powerrl.eval.runner`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from powerrl.eval.metrics import BY_KEY, METRIC_KEYS, combine_days, summarise
from powerrl.eval.runner import ControllerSpec, run_group
from powerrl.eval.scenario import Scenario

_counter: Any = None


@dataclass(frozen=True)
class Cell:
    """One unit of parallel work."""

    scenario: Scenario
    seed: int
    specs: tuple[ControllerSpec, ...]
    record_series: bool

    @property
    def steps(self) -> int:
        """Env steps this cell takes (for the progress bar)."""
        return self.scenario.steps_per_episode * len(self.scenario.days)


def make_cells(scenarios: list[Scenario], specs_by_scenario: dict[str, list[ControllerSpec]],
               seeds: list[int]) -> list[Cell]:
    """Cells of the comparison: the oracle alone, everything else together, per (scenario, seed)."""
    cells = []
    for sc in scenarios:
        specs = specs_by_scenario[sc.name]
        groups = [[s] for s in specs if s.kind == "oracle"] + [[s for s in specs if s.kind != "oracle"]]
        for seed in seeds:
            for g in groups:
                if g:
                    cells.append(Cell(sc, seed, tuple(g), record_series=seed == seeds[0]))
    # Longest first, so the pool finishes together.
    return sorted(cells, key=lambda c: -c.steps * (4 if c.specs[0].kind == "oracle" else len(c.specs)))


def _init(counter: Any) -> None:
    global _counter
    _counter = counter


def _progress(n: int) -> None:
    if _counter is not None:
        with _counter.get_lock():
            _counter.value += n


def _run_cell(cell: Cell) -> tuple[str, int, dict[str, dict[str, Any]]]:
    out = run_group(cell.scenario, cell.seed, list(cell.specs), record_series=cell.record_series,
                    progress=_progress)
    return cell.scenario.name, cell.seed, out


class ProgressBar:
    """A one-line progress bar on stderr: steps done, rate and time left (silent when not a TTY and quiet)."""

    def __init__(self, total: int, enabled: bool = True, label: str = "compare") -> None:
        self.total = max(total, 1)
        self.enabled = enabled
        self.label = label
        self.t0 = time.monotonic()
        self.last = -1.0
        self.tty = sys.stderr.isatty()

    def update(self, done: int, cells_done: int, cells: int, force: bool = False) -> None:
        """Redraw (at most twice a second on a terminal, every 10 % otherwise)."""
        if not self.enabled:
            return
        frac = min(done / self.total, 1.0)
        now = time.monotonic()
        if self.tty:
            if not force and now - self.last < 0.5:
                return
        elif not force and frac - self.last < 0.1:
            return
        self.last = now if self.tty else frac
        el = now - self.t0
        eta = el / frac - el if frac > 0 else float("nan")
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        line = (f"{self.label} [{bar}] {100 * frac:5.1f}%  cells {cells_done}/{cells}  "
                f"{done / max(el, 1e-9):,.0f} steps/s  elapsed {el:,.0f} s  left {eta:,.0f} s")
        if self.tty:
            sys.stderr.write("\r" + line)
            if force:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def run_cells(cells: list[Cell], jobs: int = 0, progress: bool = True, label: str = "compare"
              ) -> dict[tuple[str, int], dict[str, dict[str, Any]]]:
    """Run ``cells`` on ``jobs`` processes (0 = one per CPU; 1 = in this process)."""
    jobs = jobs or (os.cpu_count() or 1)
    jobs = max(1, min(jobs, len(cells)))
    bar = ProgressBar(sum(c.steps for c in cells), progress, label)
    results: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    if jobs == 1:
        done_steps = 0
        for i, cell in enumerate(cells):

            def tick(n: int, i: int = i) -> None:
                nonlocal done_steps
                done_steps += n
                bar.update(done_steps, i, len(cells))

            out = run_group(cell.scenario, cell.seed, list(cell.specs), record_series=cell.record_series,
                            progress=tick)
            results.setdefault((cell.scenario.name, cell.seed), {}).update(out)
        bar.update(bar.total, len(cells), len(cells), force=True)
        return results
    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init, initargs=(counter,))
    try:
        futures = [pool.submit(_run_cell, c) for c in cells]
        done = 0
        pending = set(futures)
        while pending:
            finished = {f for f in pending if f.done()}
            for f in finished:
                name, seed, out = f.result()  # re-raises a worker's error here, with its message
                results.setdefault((name, seed), {}).update(out)
                done += 1
            pending -= finished
            bar.update(counter.value, done, len(cells))
            if pending:
                time.sleep(0.2)
    except BaseException:
        # The first failure (or Ctrl-C) stops everything now rather than after every other cell.
        procs = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown clears them
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.terminate()
        raise
    pool.shutdown(wait=True)
    bar.update(bar.total, len(cells), len(cells), force=True)
    return results


def _rel(value: float | None, ref: float | None) -> float | None:
    """``value / ref``; None where a ratio misleads (a reference <= 0 or a negative value, e.g. rewards)."""
    if value is None or ref is None or ref <= 0 or value < 0:
        return None
    return value / ref


def _paired_ratio(values: list[dict[str, Any]], refs: list[dict[str, Any]], key: str
                  ) -> tuple[float | None, float | None]:
    """Mean over seeds of ``value / reference`` on the same seed (paired: same arrivals), and its 95 % CI.

    Pairing removes the seed-to-seed load variation that dominates the CI of each mean, so small
    differences between controllers are resolved. None where a ratio misleads (:func:`_rel`).
    """
    ratios = []
    for v, r in zip(values, refs, strict=True):
        q = _rel(v.get(key), r.get(key))
        if q is None:
            return None, None
        ratios.append(q)
    return float(np.mean(ratios)), _ci95(np.asarray(ratios))


def _ci95(x: np.ndarray) -> float | None:
    if x.size < 2:
        return None
    return float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))


def output_folder(path: str | os.PathLike[str]) -> Path:
    """``path`` as the comparison's output folder, created if needed (a file there is refused)."""
    from powerrl.errors import ConfigError

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", str(out), "a folder (this path is a file)")
    out.mkdir(parents=True, exist_ok=True)
    return out


def run_comparison(scenarios: list[Scenario], specs_by_scenario: dict[str, list[ControllerSpec]], seeds: list[int],
                   command: str, jobs: int = 0, progress: bool = True, label: str = "compare") -> dict[str, Any]:
    """Run every cell and assemble the results document, with its ``command`` and wall time (``wall_s``)."""
    t0 = time.monotonic()
    raw = run_cells(make_cells(scenarios, specs_by_scenario, seeds), jobs=jobs, progress=progress, label=label)
    doc = assemble(scenarios, specs_by_scenario, seeds, raw)
    doc["command"] = command
    doc["wall_s"] = round(time.monotonic() - t0, 1)
    return doc


def assemble(scenarios: list[Scenario], specs_by_scenario: dict[str, list[ControllerSpec]], seeds: list[int],
             raw: dict[tuple[str, int], dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The results document: per scenario and controller, metrics over seeds, relative to the best baseline/oracle."""
    doc: dict[str, Any] = {"metrics": {m.key: {"unit": m.unit, "doc": m.doc, "better": m.better} for m in
                                       BY_KEY.values()},
                           "seeds": seeds, "scenarios": {}}
    for sc in scenarios:
        ctrl_docs: dict[str, Any] = {}
        series: dict[str, Any] = {}
        for spec in specs_by_scenario[sc.name]:
            per_seed = [combine_days(raw[(sc.name, s)][spec.label]["days"], raw[(sc.name, s)][spec.label]["hists"])
                        for s in seeds]
            ctrl_docs[spec.label] = {"kind": spec.kind, "ref": spec.ref, "params": spec.params,
                                     "metrics": summarise(per_seed), "per_seed": per_seed}
            first = raw[(sc.name, seeds[0])][spec.label].get("series")
            if first is not None:
                series[spec.label] = first
        baselines = [k for k, v in ctrl_docs.items() if v["kind"] == "baseline"]
        best = max(baselines, key=lambda k: ctrl_docs[k]["metrics"]["reward"]["mean"], default=None)
        oracle = next((k for k, v in ctrl_docs.items() if v["kind"] == "oracle"), None)
        for v in ctrl_docs.values():
            for key in METRIC_KEYS:
                m = v["metrics"][key]
                for name, ref in (("best", best), ("oracle", oracle)):
                    m[f"rel_{name}"], m[f"rel_{name}_ci95"] = (
                        _paired_ratio(v["per_seed"], ctrl_docs[ref]["per_seed"], key) if ref else (None, None))
        doc["scenarios"][sc.name] = {
            "env_id": sc.env_id, "description": sc.description, "days": list(sc.days), "start_h": sc.start_h,
            "duration_h": sc.duration_h, "dt_s": sc.dt_s, "shield": sc.shield_name, "source": sc.source,
            "best_baseline": best, "oracle": oracle, "controllers": ctrl_docs, "series": series}
    return doc
