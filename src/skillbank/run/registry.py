"""Job kinds by name: the one place the engine learns what a job does.

Each operation package owns its job kinds (``acquire/jobs.py``, ``evaluate/jobs.py``, …): it
builds their specs, says whether a job's output is already stored, and runs them. A kind
registers itself when its module is imported; a :class:`~skillbank.run.Job` carries the
module's name, so a fresh worker process imports it before looking the kind up. The
engine (this package) imports no operation.

A kind that is not registered may still be named ``package.module:function``: any function
``(worker, library, spec) -> dict`` importable on every worker.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..skill import SkillError

RunFn = Callable[[Any, Any, dict], dict]  # (Worker, Library, spec) -> small JSON-able dict
StoredFn = Callable[[Any, dict], "dict | None"]  # (Library, spec) -> result already stored


@dataclass(frozen=True)
class JobKind:
    """A named kind of job: ``run`` does it in a worker; ``stored`` (optional) says, in the
    driver, whether its output is already in the library: the result a run would return
    (``{"ref": …}`` or ``{"result_id": …}``, with ``"new": False``), or None."""

    name: str
    module: str
    run: RunFn
    stored: StoredFn | None = None

    def job(self, spec: dict[str, Any], label: str = ""):
        from . import Job

        return Job(self.name, spec, label or self.name, module=self.module)


_KINDS: dict[str, JobKind] = {}


def register(name: str, run: RunFn, stored: StoredFn | None = None) -> JobKind:
    """Register the kind ``name`` (its module is ``run``'s); returns it for building jobs."""
    kind = JobKind(name, run.__module__, run, stored)
    old = _KINDS.get(name)
    if old is not None and old.module != kind.module:
        raise SkillError(f"job kind {name!r} is registered twice ({old.module}, {kind.module})")
    _KINDS[name] = kind
    return kind


def target(kind: str, module: str = "") -> str:
    """What a worker is sent: ``module:kind`` when the kind's module is known."""
    return f"{module}:{kind}" if module and ":" not in kind else kind


def resolve(target_: str) -> RunFn:
    """The function for a target from :func:`target` (importing its module if needed)."""
    module, sep, name = target_.rpartition(":")
    if not sep:
        name = target_
    if name in _KINDS:
        return _KINDS[name].run
    if not sep:
        raise SkillError(f"unknown job kind {name!r}; known: {', '.join(sorted(_KINDS))} "
                         "or package.module:function")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise SkillError(f"job kind {target_!r}: cannot import {module} ({e})") from None
    if name in _KINDS:
        return _KINDS[name].run
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise SkillError(f"job kind {target_!r}: {module} has no kind or function {name!r}")
    return fn


def kind_of(name: str, module: str = "") -> JobKind | None:
    """The registered kind ``name`` (importing ``module`` first if it is not yet), or None
    for a ``package.module:function`` kind."""
    if name not in _KINDS and module:
        importlib.import_module(module)
    return _KINDS.get(name)


def kinds() -> dict[str, JobKind]:
    return dict(_KINDS)
