"""Reproductions: each seed paper's headline claim, re-run at CPU scale on skillbank's own
operations (``skillbank repro NAME``; docs/methods.md has one section per paper).

Every module in this package is one reproduction, named after the claim (``graft.py`` is
``skillbank repro graft``; underscores read as hyphens, so ``skill_it.py`` is
``skill-it``). A module defines

- ``PAPER`` and ``CLAIM`` (strings), and
- ``run(lib, ui, out_dir, seed, quick) -> Outcome``: measure everything, with baselines,
  on skills and data from ``lib``; write any chart (PNG) into ``out_dir`` and name it in
  a section's ``images``; ``quick`` shrinks every size for smoke tests (its figures are
  not comparable with a full run, and say so in ``Outcome.notes``);
- optionally ``prepare(lib, ui, seed, quick, executor)``: make, as jobs on a
  ``skillbank.run`` executor, the stored things ``run`` re-uses by recipe (skills,
  grafts), so ``skillbank repro NAME --workers N`` (or ``--executor``/``--address``) spreads
  the long part over workers and ``run`` then only reads and measures. Reproductions
  without it run in-process only.

``holds`` is computed from ``figures`` by a rule the module's docstring states. A claim
that does not hold at this scale is a result, reported as such, not an error.

Profiles. The modules here run on the embedded base (profile ``embedded``). A claim that
also has a module in ``repro/real/`` runs, with ``--profile real``, on a real pretrained
encoder and real text (``repro.real``); such a module's ``run`` takes the executor itself
(``run(lib, ui, out_dir, seed, quick, executor)``). ``profiles(name)`` says which exist.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..library import Library
from ..report.html import Section, write_report
from ..skill import SkillError


@dataclass
class Outcome:
    """What a reproduction measured: every figure, the verdict, and how to show it."""

    figures: dict[str, Any]
    holds: bool
    table: tuple[Sequence[str], Sequence[Sequence[Any]]]
    sections: list[Section] = field(default_factory=list)
    notes: str = ""


PROFILES = ("embedded", "real")


def available() -> list[str]:
    """Names of every reproduction, as ``skillbank repro`` spells them."""
    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(__path__) if not m.ispkg)


def profiles(name: str) -> list[str]:
    """The profiles reproduction ``name`` has: always ``embedded``, and ``real`` when
    ``repro/real/`` has a module of that name."""
    from . import real

    found = {m.name for m in pkgutil.iter_modules(real.__path__)}
    return ["embedded", *(["real"] if name.replace("-", "_") in found else [])]


def load(name: str, profile: str = "embedded"):
    if name not in available():
        raise SkillError(f"unknown reproduction {name!r}; choose from {', '.join(available())}")
    if profile not in PROFILES:
        raise SkillError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    if profile not in profiles(name):
        have = [n for n in available() if profile in profiles(n)]
        raise SkillError(f"repro {name} has no {profile} profile; these do: {', '.join(have)}")
    package = __name__ if profile == "embedded" else f"{__name__}.{profile}"
    return importlib.import_module(f"{package}.{name.replace('-', '_')}")


def require_prepare(name: str):
    """The module of reproduction ``name`` if it can make its long part on an executor (it
    has ``prepare``); a one-line ``SkillError`` naming those that can otherwise."""
    module = load(name)
    if not hasattr(module, "prepare"):
        can = [n for n in available() if hasattr(load(n), "prepare")]
        raise SkillError(f"repro {name} runs in-process only (no --executor, --address or "
                         f"--workers); these can: {', '.join(can)}")
    return module


def run_repro(name: str, lib: Library, out_dir: Path, ui, seed: int = 0, quick: bool = False,
              executor=None, profile: str = "embedded") -> tuple[dict[str, Any], Outcome]:
    """Run one reproduction; write ``report.html`` and ``NAME.json`` to ``out_dir``, store the
    result in the library (subject ``repro:NAME``), and return the JSON object of
    the contract (``name, paper, claim, figures, holds, seed, wall_seconds``) with the
    module's :class:`Outcome`. With ``executor`` the module's ``prepare`` runs first (a
    ``SkillError`` if it has none); a ``real`` profile's module takes the executor itself."""
    real = profile != "embedded"
    module = load(name, profile) if executor is None or real else require_prepare(name)
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    if real:
        outcome: Outcome = module.run(lib, ui, out_dir, seed=seed, quick=quick, executor=executor)
    else:
        if executor is not None:
            module.prepare(lib, ui, seed=seed, quick=quick, executor=executor)
        outcome = module.run(lib, ui, out_dir, seed=seed, quick=quick)
    result = {"name": name, "profile": profile, "paper": module.PAPER, "claim": module.CLAIM,
              "figures": outcome.figures, "holds": bool(outcome.holds), "seed": seed,
              "quick": quick, "notes": outcome.notes,
              "wall_seconds": round(time.perf_counter() - t0, 1)}
    verdict = "holds" if outcome.holds else "does not hold at this scale"
    head = Section(f"{name} ({profile}): {module.CLAIM}",
                   text=f"{module.PAPER}. Claim {verdict}. Seed {seed}, {result['wall_seconds']} s."
                        + (f" {outcome.notes}" if outcome.notes else ""),
                   table=outcome.table)
    write_report(out_dir, f"skillbank repro {name}", [head, *outcome.sections])
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    lib.add_result(f"repro:{name}", "", "", result, {"seed": seed, "quick": quick, "profile": profile})
    return result, outcome
