"""Shared by the reproduction tests: the reproduction JSON's keys (docs/methods.md) and one quick run."""

from __future__ import annotations

from pathlib import Path

from skillbank.cli.core import Ui
from skillbank.library import Library
from skillbank.repro import run_repro

# the JSON object of docs/methods.md, "Reproductions", written out by hand
SCHEMA = {"name", "paper", "claim", "figures", "holds", "seed", "wall_seconds"}


def quick_run(name: str, root: Path):
    """``run_repro(name, quick=True, seed=0)`` in a new library at ``root/home`` with its
    report in ``root/out``; returns (the open library, the JSON object, the Outcome)."""
    lib = Library.open(root / "home")
    res, outcome = run_repro(name, lib, root / "out", Ui(True), seed=0, quick=True)
    return lib, res, outcome
