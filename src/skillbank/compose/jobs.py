"""The ``compose`` and ``route`` job kinds: a merge of member skills, or a router trained
over them, stored as a new skill; already stored when a version of its name has the same
base, recipe and members."""

from __future__ import annotations

from dataclasses import asdict

from ..base import Base
from ..library import Library
from ..run import Job, register
from .ops import MergeSpec, merge_skills
from .route import RouterRecipe, train_router


def compose_job(name: str, members: list[str], merge: MergeSpec, base: Base | None = None) -> Job:
    spec = {"name": name, "members": list(members), "merge": asdict(merge)}
    if base is not None:
        spec["base"] = base.name
    return COMPOSE.job(spec, f"compose {name}")


def _compose_stored(lib: Library, spec: dict) -> dict | None:
    base = lib.base(spec["base"])
    ref = lib.find(spec["name"], base.fingerprint,
                   {"method": "merge", **spec["merge"], "members": spec["members"]})
    return {"ref": ref, "new": False} if ref else None


def _compose(worker, lib: Library, spec: dict) -> dict:
    members = [lib.get(r) for r in spec["members"]]
    base = lib.base(spec["base"]) if "base" in spec else lib.base_of(members[0])
    skill, new = lib.store(merge_skills(spec["name"], members, MergeSpec(**spec["merge"]), base,
                                        lib=lib))
    return {"ref": skill.ref, "new": new, "merge_error": skill.metrics["merge_error"]["max"]}


def route_job(name: str, base: Base, members: list[str], recipe: RouterRecipe) -> Job:
    return ROUTE.job({"name": name, "base": base.name, "members": list(members),
                      "recipe": recipe.as_dict()}, f"route {name}")


def _recipe(spec: dict) -> RouterRecipe:
    return RouterRecipe(**{k: v for k, v in spec["recipe"].items() if k != "method"})


def _route_stored(lib: Library, spec: dict) -> dict | None:
    base = lib.base(spec["base"])
    ref = lib.find(spec["name"], base.fingerprint, _recipe(spec).as_dict(),
                   where=lambda m: m["config"]["members"] == spec["members"])
    return {"ref": ref, "new": False} if ref else None


def _route(worker, lib: Library, spec: dict) -> dict:
    base = lib.base(spec["base"])
    members = [lib.get(r) for r in spec["members"]]
    skill, new = lib.store(train_router(spec["name"], base, members, _recipe(spec)))
    return {"ref": skill.ref, "new": new}


COMPOSE = register("compose", _compose, _compose_stored)
ROUTE = register("route", _route, _route_stored)
