"""The ``continual`` job kind: one strategy's whole task sequence (``strategies.run_continual``)
for the ``ContinualConfig`` in ``spec["config"]`` on base ``spec["base"]``, with the
optional joint reference ``spec["joint"]``. It stores the skills and the result as
in-process; the run's fields (R, b, metrics, refs) come back. The ``continual-joint`` kind
makes the sequence's joint reference."""

from __future__ import annotations

from dataclasses import asdict

from ..base import Base
from ..library import Library
from ..run import Job, QuietUi, register
from .joint import joint_reference
from .strategies import ContinualConfig, run_continual


def continual_job(base: Base, cfg: ContinualConfig, joint: list | None = None) -> Job:
    return CONTINUAL.job({"base": base.name, "config": asdict(cfg), "joint": joint},
                         f"continual {cfg.strategy}")


def _run(worker, lib: Library, spec: dict) -> dict:
    run = run_continual(lib, lib.base(spec["base"]), ContinualConfig(**spec["config"]),
                        QuietUi(), joint=spec.get("joint"))
    return asdict(run)


CONTINUAL = register("continual", _run)


def joint_job(base: Base, cfg: ContinualConfig) -> Job:
    """The joint reference of ``cfg``'s sequence (``joint.joint_reference``) as a job: its
    accuracy per task comes back as ``{"joint": [...]}``."""
    return JOINT.job({"base": base.name, "config": asdict(cfg)}, "continual joint reference")


def _run_joint(worker, lib: Library, spec: dict) -> dict:
    return {"joint": joint_reference(lib, lib.base(spec["base"]), ContinualConfig(**spec["config"]),
                                     QuietUi())}


JOINT = register("continual-joint", _run_joint)
