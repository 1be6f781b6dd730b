"""The ``policy-base``, ``policy-train`` and ``policy-eval`` job kinds.

``policy-base``: a policy base cloned and registered; already stored when a base has the
same recipe. ``policy-train``: one LoRA policy skill cloned and stored; already stored when
a version of its name has the same base and recipe. ``policy-eval``: one subject (a skill
ref, or ``base:NAME``) on one task — its held-out success rate (``evaluate.success_rate``),
returned, not stored: rollouts are deterministic in (subject, task, seed), so the same job
gives the same figures again.
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
