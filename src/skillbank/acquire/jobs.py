"""The ``train`` job kind: one LoRA skill trained (resuming from its checkpoint if a worker
died) and stored; already stored when a version of its name has the same base and recipe."""

from __future__ import annotations

from dataclasses import asdict

from ..base import Base
from ..library import Library
from ..run import Job, register
from .lora import LoraRecipe, train_lora


def train_job(name: str, base: Base, recipe: LoraRecipe) -> Job:
    return TRAIN.job({"name": name, "base": base.name, "recipe": asdict(recipe)}, f"train {name}")


def _stored(lib: Library, spec: dict) -> dict | None:
    base = lib.base(spec["base"])
    ref = lib.find(spec["name"], base.fingerprint, LoraRecipe(**spec["recipe"]).as_dict())
    return {"ref": ref, "new": False} if ref else None


def _run(worker, lib: Library, spec: dict) -> dict:
    base = lib.base(spec["base"])
    made = train_lora(spec["name"], base, LoraRecipe(**spec["recipe"]), lib.home / "checkpoints")
    skill, new = lib.store(made)
    return {"ref": skill.ref, "new": new, "final_loss": skill.metrics["train"]["final_loss"]}


TRAIN = register("train", _run, _stored)
