"""The ``policy-base``, ``policy-train`` and ``policy-eval`` job kinds.

``policy-base``: a policy base cloned and registered; already stored when a base has the
same recipe. ``policy-train``: one LoRA policy skill cloned and stored; already stored when
a version of its name has the same base and recipe. ``policy-eval``: one subject (a skill
ref, or ``base:NAME``) on one task — its held-out success rate (``evaluate.success_rate``),
returned, not stored: rollouts are deterministic in (subject, task, seed), so the same job
gives the same figures again. ``policy-route``: PSEC's α(s) over member skills (and a new
LoRA beside it when the recipe's ``new_rank`` > 0) trained and stored; already stored when
a version of its name has the same base, recipe and members. ``policy-verify``: one
fine-tune of ``transfer --verify`` on policy skills (``transfer.verify_policy``), returned.
"""

from __future__ import annotations

from dataclasses import asdict

from ..base import Base
from ..library import Library
from ..run import Job, register
from .bc import (
    PolicyBaseRecipe,
    PolicyLoraRecipe,
    demo_cache,
    ensure_policy_base,
    find_policy_base,
    train_policy_lora,
)
from .evaluate import load_policy, success_rate
from .routed import StateRouterRecipe, ensure_state_router


def policy_base_job(name: str, recipe: PolicyBaseRecipe) -> Job:
    return POLICY_BASE.job({"name": name, "recipe": {**asdict(recipe), "tasks": list(recipe.tasks)}},
                           f"policy base {name}")


def _base_stored(lib: Library, spec: dict) -> dict | None:
    found = find_policy_base(lib, PolicyBaseRecipe(**spec["recipe"]))
    return None if found is None else {"base": found.name, "fingerprint": found.fingerprint,
                                       "new": False}


def _base_run(worker, lib: Library, spec: dict) -> dict:
    base, log = ensure_policy_base(lib, spec["name"], PolicyBaseRecipe(**spec["recipe"]))
    return {"base": base.name, "fingerprint": base.fingerprint, "new": log is not None,
            "seconds": None if log is None else log["seconds"]}


POLICY_BASE = register("policy-base", _base_run, _base_stored)


def policy_train_job(name: str, base: Base, recipe: PolicyLoraRecipe) -> Job:
    return POLICY_TRAIN.job({"name": name, "base": base.name, "recipe": asdict(recipe)},
                            f"train {name}")


def _train_stored(lib: Library, spec: dict) -> dict | None:
    base = lib.base(spec["base"])
    ref = lib.find(spec["name"], base.fingerprint, PolicyLoraRecipe(**spec["recipe"]).as_dict())
    return {"ref": ref, "new": False} if ref else None


def _train_run(worker, lib: Library, spec: dict) -> dict:
    base = lib.base(spec["base"])
    made = train_policy_lora(spec["name"], base, PolicyLoraRecipe(**spec["recipe"]),
                             cache=demo_cache(lib))
    skill, new = lib.store(made)
    return {"ref": skill.ref, "new": new, "final_loss": skill.metrics["train"]["final_loss"]}


POLICY_TRAIN = register("policy-train", _train_run, _train_stored)


def policy_route_job(name: str, base: Base, members: list[str], recipe: StateRouterRecipe) -> Job:
    return POLICY_ROUTE.job({"name": name, "base": base.name, "members": list(members),
                             "recipe": asdict(recipe)}, f"route {name}")


def _route_stored(lib: Library, spec: dict) -> dict | None:
    base = lib.base(spec["base"])
    want = {**StateRouterRecipe(**spec["recipe"]).as_dict(), "members": spec["members"]}
    ref = lib.find(spec["name"], base.fingerprint, want)
    if ref is None:
        return None
    fixed = lib.get(ref).config["fixed"]
    return {"ref": ref, "new_lora": fixed[0] if fixed else None, "new": False}


def _route_run(worker, lib: Library, spec: dict) -> dict:
    base = lib.base(spec["base"])
    router, new = ensure_state_router(lib, spec["name"], base,
                                      [lib.get(r) for r in spec["members"]],
                                      StateRouterRecipe(**spec["recipe"]))
    return {"ref": router.ref, "new_lora": None if new is None else new.ref, "new": True}


POLICY_ROUTE = register("policy-route", _route_run, _route_stored)


def policy_eval_job(subject: str, base: Base, task: str, episodes: int, seed: int,
                    horizon: int, speed: float = 1.0) -> Job:
    return POLICY_EVAL.job({"subject": subject, "base": base.name, "task": task,
                            "episodes": episodes, "seed": seed, "horizon": horizon,
                            "speed": speed}, f"eval {subject} {task}")


def subject_policy(lib: Library, base: Base, subject: str):
    """The policy a subject names: ``base:NAME`` alone, or a stored skill with what it needs."""
    if subject.startswith("base:"):
        return load_policy(base)
    skill = lib.get(subject)
    if skill.kind == "router":
        from .routed import load_state_routed

        return load_state_routed(base, skill, [lib.get(r) for r in skill.config["members"]],
                                 [lib.get(r) for r in skill.config.get("fixed", [])])
    return load_policy(base, skill)


def _eval_run(worker, lib: Library, spec: dict) -> dict:
    base = lib.base(spec["base"])
    model = subject_policy(lib, base, spec["subject"])
    res = success_rate(model, spec["task"], spec["episodes"], spec["seed"], spec["horizon"],
                       spec["speed"])
    return {"subject": spec["subject"], "task": spec["task"], **res}


POLICY_EVAL = register("policy-eval", _eval_run)


def policy_verify_job(base: Base, source: str, scratch: bool, recipe: PolicyLoraRecipe,
                      episodes: int) -> Job:
    return POLICY_VERIFY.job({"base": base.name, "source": source, "scratch": scratch,
                              "recipe": asdict(recipe), "episodes": episodes},
                             f"verify {'scratch' if scratch else source}")


def _verify_run(worker, lib: Library, spec: dict) -> dict:
    from .transfer import verify_policy

    return verify_policy(lib.base(spec["base"]), lib.get(spec["source"]), spec["scratch"],
                         PolicyLoraRecipe(**spec["recipe"]), spec["episodes"], demo_cache(lib))


POLICY_VERIFY = register("policy-verify", _verify_run)


def success_matrix(ex, lib: Library, base: Base, subjects: list[str], tasks: list[str],
                   episodes: int, seed: int, horizon: int, speed: float = 1.0,
                   progress=None) -> dict[str, dict[str, dict]]:
    """``{subject: {task: success_rate's result}}``, one ``policy-eval`` job per cell on
    executor ``ex`` (subjects: skill refs or ``base:NAME``)."""
    from ..run import ensure

    jobs = [policy_eval_job(s, base, t, episodes, seed, horizon, speed) for s in subjects
            for t in tasks]
    matrix: dict[str, dict] = {s: {} for s in subjects}
    for r in ensure(ex, lib, jobs, progress, what="evaluation"):
        matrix[r.result["subject"]][r.result["task"]] = r.result
    return matrix
