"""The ``continual`` job kind: one strategy's whole task sequence (``strategies.run_continual``)
for the ``ContinualConfig`` in ``spec["config"]`` on base ``spec["base"]``, with the
optional joint reference ``spec["joint"]``. It stores the skills and the result as
in-process; the run's fields (R, b, metrics, refs) come back."""

from __future__ import annotations

from dataclasses import asdict

from ..base import Base
from ..library import Library
from ..run import Job, QuietUi, register
from .strategies import ContinualConfig, run_continual


def continual_job(base: Base, cfg: ContinualConfig, joint: list | None = None) -> Job:
    return CONTINUAL.job({"base": base.name, "config": asdict(cfg), "joint": joint},
                         f"continual {cfg.strategy}")


def _run(worker, lib: Library, spec: dict) -> dict:
    run = run_continual(lib, lib.base(spec["base"]), ContinualConfig(**spec["config"]),
                        QuietUi(), joint=spec.get("joint"))
    return asdict(run)


CONTINUAL = register("continual", _run)
