"""Which controllers a comparison runs: names, sets, policy files and tuned parameters.

``--controllers`` takes registered names (``schedutil``), sets (``all`` = every baseline that drives
the scenario's env plus the oracle; ``baselines``), and policy files (``policy.onnx`` with its
``.json`` metadata beside it). Baselines run with their tuned parameters when the tuned file has
an entry for the env (``powerrl tune-baseline``), so a comparison never quotes a weak default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import powerrl.baselines  # noqa: F401 - registers the baselines
from powerrl.baselines.base import Baseline
from powerrl.baselines.tuned import SHIPPED_TUNED, load_tuned, save_tuned  # noqa: F401 - re-exported
from powerrl.control import controller_class, controller_names
from powerrl.errors import ConfigError
from powerrl.eval.runner import ControllerSpec

SETS = ("all", "baselines")
POLICY_SUFFIXES = (".onnx",)


def kind_of(name: str) -> str:
    """``oracle``, ``baseline`` or ``other`` for a registered controller name."""
    cls = controller_class(name)
    if cls.clairvoyant:
        return "oracle"
    return "baseline" if issubclass(cls, Baseline) else "other"


def _is_policy(ref: str) -> bool:
    return ref.endswith(POLICY_SUFFIXES) or "/" in ref


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
                    params: dict[str, dict[str, Any]] | None = None) -> list[ControllerSpec]:
    """The controller specs of ``refs`` that drive ``env_id``, with tuned (or given) parameters."""
    names: list[str] = []
    policies: list[str] = []
    for ref in refs:
        if ref in SETS:
            for n in controller_names():
                k = kind_of(n)
                if k == "baseline" or (ref == "all" and k == "oracle"):
                    names.append(n)
        elif _is_policy(ref):
            policies.append(ref)
        else:
            names.append(ref)
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
    for path in policies:
        spec = ControllerSpec(ref=path, label=Path(path).stem, kind="policy")
        if spec.drives(env_id):
            specs.append(spec)
    return specs
