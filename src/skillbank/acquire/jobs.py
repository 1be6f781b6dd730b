"""The ``train`` and ``pretrain`` job kinds.

``train``: one LoRA skill trained (resuming from its checkpoint if a worker
died) and stored; already stored when a version of its name has the same base and recipe.
A :class:`~skillbank.acquire.classify.ClassifierRecipe` makes a classification skill (give
its ``target_modules``, so the stored recipe is the one asked for).

``pretrain``: one embedded base trained from scratch and registered; already stored when a
base has the same recipe (``pretrain.find_base``)."""

from __future__ import annotations

from dataclasses import asdict

from ..base import Base
from ..library import Library
from ..run import Job, register
from .classify import ClassifierRecipe, train_classifier
from .lora import LoraRecipe, train_lora
from .pretrain import BaseRecipe, ensure_base, find_base


def train_job(name: str, base: Base, recipe: LoraRecipe | ClassifierRecipe) -> Job:
    classifier = isinstance(recipe, ClassifierRecipe)
    if classifier and recipe.target_modules is None and not recipe.full:
        raise ValueError("a classifier's train job names its target_modules")
    return TRAIN.job({"name": name, "base": base.name, "recipe": asdict(recipe),
                      **({"classifier": True} if classifier else {})}, f"train {name}")


def _recipe(spec: dict):
    return (ClassifierRecipe if spec.get("classifier") else LoraRecipe)(**spec["recipe"])


def _stored(lib: Library, spec: dict) -> dict | None:
    base = lib.base(spec["base"])
    ref = lib.find(spec["name"], base.fingerprint, _recipe(spec).as_dict())
    return {"ref": ref, "new": False} if ref else None


def _run(worker, lib: Library, spec: dict) -> dict:
    base = lib.base(spec["base"])
    trainer = train_classifier if spec.get("classifier") else train_lora
    made = trainer(spec["name"], base, _recipe(spec), lib.home / "checkpoints")
    skill, new = lib.store(made)
    return {"ref": skill.ref, "new": new, "final_loss": skill.metrics["train"]["final_loss"]}


TRAIN = register("train", _run, _stored)


def pretrain_job(name: str, recipe: BaseRecipe) -> Job:
    return PRETRAIN.job({"name": name, "recipe": asdict(recipe)}, f"base {name}")


def _base_stored(lib: Library, spec: dict) -> dict | None:
    found = find_base(lib, BaseRecipe(**spec["recipe"]))
    return None if found is None else {"base": found.name, "fingerprint": found.fingerprint,
                                       "new": False}


def _pretrain(worker, lib: Library, spec: dict) -> dict:
    base, log = ensure_base(lib, spec["name"], BaseRecipe(**spec["recipe"]))
    return {"base": base.name, "fingerprint": base.fingerprint, "new": log is not None,
            "seconds": None if log is None else log["seconds"]}


PRETRAIN = register("pretrain", _pretrain, _base_stored)
