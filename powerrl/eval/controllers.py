"""Which controllers a comparison runs: names, sets, policy files and tuned parameters.

``--controllers`` takes registered names (``schedutil``), sets (``all`` = every baseline that drives
the scenario's env, the oracle and the shipped trained policies for it; ``baselines``), and policy
files (``policy.onnx`` with its ``.json`` metadata beside it). Baselines run with their tuned
parameters when the tuned file has an entry for the env (``powerrl tune-baseline``), so a
comparison never quotes a weak default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import powerrl.baselines  # noqa: F401 - registers the baselines
from powerrl.baselines.base import Baseline
from powerrl.baselines.oracle import searches_baselines
from powerrl.baselines.tuned import SHIPPED_TUNED, load_tuned, save_tuned  # noqa: F401 - re-exported
from powerrl.control import controller_class, controller_names
from powerrl.errors import ConfigError
from powerrl.eval.policy_file import SHIPPED_POLICIES
from powerrl.eval.runner import ControllerSpec

SETS = ("all", "baselines")
#: Trained policies shipped with the package are part of ``all`` (SHIPPED_POLICIES: powerrl/eval/policy_file.py).
POLICY_SUFFIXES = (".onnx",)


def kind_of(name: str) -> str:
    """``oracle``, ``baseline`` or ``other`` for a registered controller name."""
    cls = controller_class(name)
    if cls.clairvoyant:
        return "oracle"
    return "baseline" if issubclass(cls, Baseline) else "other"


def _is_policy(ref: str) -> bool:
    return ref.endswith(POLICY_SUFFIXES) or "/" in ref


def _fits(policy: str, observation_dim: int) -> bool:
    from powerrl.eval.policy_file import read_metadata

    return int(read_metadata(policy)["observation_dim"]) == observation_dim


def check_refs(refs: list[str]) -> None:
    """Fail before any work on a reference that is neither a set, a registered name nor a policy file."""
    for ref in refs:
        if ref in SETS:
            continue
        if _is_policy(ref):
            if not Path(ref).is_file():
                raise ConfigError("--controllers", ref, "an existing policy file (.onnx with its .json beside it)")
            continue
        if ref not in controller_names():
            raise ConfigError("--controllers", ref, "a registered controller (" + ", ".join(controller_names())
                              + "), a set (all, baselines) or a policy file")


def controllers_for(env_id: str, refs: list[str], tuned: dict[str, dict[str, Any]], untuned: bool = False,
                    params: dict[str, dict[str, Any]] | None = None, observation_dim: int | None = None
                    ) -> list[ControllerSpec]:
    """The controller specs of ``refs`` that drive ``env_id``, with tuned (or given) parameters.

    ``observation_dim`` (the scenario's): shipped policies that ``all`` brings in but that were
    trained on another env size are left out (a policy file named explicitly still fails loudly).
    """
    names: list[str] = []
    policies: list[str] = []
    shipped: set[str] = set()
    for ref in refs:
        if ref in SETS:
            for n in controller_names():
                k = kind_of(n)
                if k == "baseline" or (ref == "all" and k == "oracle"):
                    names.append(n)
            if ref == "all":
                found = [str(p) for p in sorted(SHIPPED_POLICIES.glob("*.onnx"))]
                policies.extend(found)
                shipped.update(found)
        elif _is_policy(ref):
            policies.append(ref)
        else:
            names.append(ref)
    named = {Path(r).resolve() for r in refs if r not in SETS and _is_policy(r)}
    shipped = {p for p in shipped if Path(p).resolve() not in named}  # named explicitly: must fit, or fail loudly
    specs: list[ControllerSpec] = []
    seen: set[str] = set()
    for n in names:
        if n in seen:
            continue
        seen.add(n)
        ids = controller_class(n).env_ids
        if ids and env_id not in ids:
            continue
        p: dict[str, Any] = {}
        if params and n in params:
            p = dict(params[n])
        elif not untuned and n in tuned.get(env_id, {}):
            p = dict(tuned[env_id][n].get("params", {}))
        specs.append(ControllerSpec(ref=n, params=p, label=n, kind=kind_of(n)))
    labels = {s.label for s in specs}
    seen_paths: set[Path] = set()
    for path in policies:
        resolved = Path(path).resolve()
        if resolved in seen_paths:
            continue
        seen_paths.add(resolved)
        label = Path(path).stem
        if label in labels:  # a registered name or another policy's stem: say it is a policy
            label = f"policy:{label}"
        if label in labels:
            label = str(path)
        spec = ControllerSpec(ref=path, label=label, kind="policy")
        if path in shipped and observation_dim is not None and not _fits(path, observation_dim):
            continue
        if spec.drives(env_id):
            specs.append(spec)
            labels.add(label)
    if any(s.kind == "oracle" for s in specs) and searches_baselines(env_id):
        # An oracle that searches over baselines gets the ones actually compared (with their
        # parameters), so it stays no worse than each of them whatever --tuned / --untuned says.
        run = {s.ref: s.params for s in specs if s.kind == "baseline"}
        specs = [ControllerSpec(s.ref, {"tuned": run, **s.params}, s.label, s.kind)
                 if s.kind == "oracle" and run and "tuned" not in s.params else s for s in specs]
    return specs
