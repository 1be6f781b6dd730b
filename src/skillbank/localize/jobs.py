"""Grafts made once and re-used: the ``localize`` job kind and its find-or-make.

A graft of skill S at sparsity p is stored as ``S-graft-p`` (a ``sparse`` skill); it is
the same graft when its recipe (source ref included) and held-out size ``n_eval`` match.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..base import Base
from ..fields import build
from ..library import Library
from ..run import Job, register
from ..skill import Skill, SkillError, check_name
from .ops import GraftRecipe, localize


def graft_name(skill: Skill, sparsity: float) -> str:
    return f"{skill.name}-graft-{sparsity:g}"


def recipe_for(skill: Skill, sparsity: float, seed: int, **overrides) -> GraftRecipe:
    """The recipe for ``skill`` with its world and task filled in (as ``localize`` stores it)."""
    return GraftRecipe(sparsity=sparsity, seed=seed, world=skill.recipe.get("world"),
                       task=skill.recipe.get("task"),
                       world_args=dict(skill.recipe.get("world_args") or {}), **overrides)


def graft_n_eval(manifest: dict) -> int | None:
    """How many held-out inputs a stored graft was asked to be evaluated on (part of its
    identity): a classifier's task may hold fewer rows than asked, and the rows it used are
    recorded apart (``n_eval``), so the request is what a re-run matches."""
    m = manifest.get("metrics", {}).get("localization", {})
    return m.get("n_eval_requested", m.get("n_eval"))


def find_graft(lib: Library, base: Base, source: str, recipe: GraftRecipe, n_eval: int,
               name: str) -> str | None:
    return lib.find(name, base.fingerprint, recipe.as_dict() | {"source": source},
                    where=lambda m: graft_n_eval(m) == n_eval)


def ensure_graft(lib: Library, base: Base, skill: Skill, recipe: GraftRecipe, n_eval: int,
                 progress=None, name: str | None = None) -> tuple[Skill, bool]:
    """``(graft, made now)``: the stored graft of ``skill`` made by exactly ``recipe`` and
    ``n_eval`` (named ``name``, default :func:`graft_name`), or a new one localized and
    stored now (``progress(step, loss)``)."""
    name = name or graft_name(skill, recipe.sparsity)
    ref = find_graft(lib, base, skill.ref, recipe, n_eval, name)
    if ref:
        return lib.get(ref), False
    return lib.store(localize(base, skill, recipe, name=name, n_eval=n_eval, progress=progress))


def graft_recipe(skill: Skill, sparsity: float, **given: Any) -> GraftRecipe:
    """``recipe_for(skill, sparsity)`` with ``given`` (any other ``GraftRecipe`` field) on
    top; a one-line SkillError for an unknown field or a bad value."""
    what = f"localize {skill.ref}"
    build(GraftRecipe, what, given)  # unknown fields first, named
    start = recipe_for(skill, float(sparsity), int(given.get("seed", 0)))
    recipe = build(GraftRecipe, what, {**asdict(start), **given, "sparsity": float(sparsity)})
    try:
        recipe.check()
    except (TypeError, ValueError) as e:
        raise SkillError(f"{what}: {e}") from None
    return recipe


def localize_job(base: Base, skill: Skill, sparsity: float, n_eval: int = 200,
                 name: str | None = None, **given: Any) -> Job:
    """The job grafting ``skill`` at ``sparsity`` on ``base`` (recipe: :func:`graft_recipe`),
    stored as ``name`` (default :func:`graft_name`)."""
    recipe = graft_recipe(skill, sparsity, **given)
    if int(n_eval) < 1:
        raise SkillError(f"localize {skill.ref}: n_eval must be ≥ 1")
    name = check_name(name or graft_name(skill, recipe.sparsity), "graft name")
    return LOCALIZE.job({"source": skill.ref, "base": base.name, "recipe": asdict(recipe),
                         "n_eval": int(n_eval), "name": name}, f"localize {name}")


def _stored(lib: Library, spec: dict) -> dict | None:
    base, skill = lib.base(spec["base"]), lib.get(spec["source"])
    recipe = GraftRecipe(**spec["recipe"])
    ref = find_graft(lib, base, skill.ref, recipe, int(spec["n_eval"]),
                     spec.get("name") or graft_name(skill, recipe.sparsity))
    return {"ref": ref, "new": False} if ref else None


def _run(worker, lib: Library, spec: dict) -> dict:
    g, new = ensure_graft(lib, lib.base(spec["base"]), lib.get(spec["source"]),
                          GraftRecipe(**spec["recipe"]), int(spec["n_eval"]),
                          name=spec.get("name"))
    m = g.metrics["localization"]
    return {"ref": g.ref, "new": new, "size": m["size"], "fraction": m["fraction"],
            "relative_gain": m["relative_gain"]}


LOCALIZE = register("localize", _run, _stored)
