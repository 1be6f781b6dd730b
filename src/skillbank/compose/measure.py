"""How well a composed skill keeps its members: normalised accuracy per member task.

normalised accuracy on task t = score of the composed skill on t / score of the member
trained for t, alone (docs/methods.md §2–3), where the score is held-out exact match on a
generation task and accuracy on a classification task (the composed classifier answering
with that task's own head, ``compose.heads``). 1.0 means the merge lost nothing on that
task; a member that scores 0 alone gives ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..base import Base
from ..evaluate.suites import evaluate_model, load_subject
from ..skill import Skill, SkillError
from ..worlds import get_world


def normalised(composed: dict[str, float], alone: dict[str, float]) -> dict[str, float | None]:
    """Pure: ``{task: composed[task] / alone[task]}`` (None where the member scores 0)."""
    return {t: (composed[t] / alone[t] if alone[t] > 0 else None) for t in alone}


def member_tasks(members: Sequence[Skill]) -> list[str]:
    return [m.recipe.get("task") for m in members]


def score_by_task(base: Base, skills: Sequence[Skill], world_name: str, tasks: Sequence[str],
                  n: int, seed: int, lib=None, world_args: dict | None = None) -> dict[str, float]:
    """Exact match (generation) or accuracy (classification: one skill, its head for each
    task) of the base with ``skills`` applied (or a router, given ``lib``), per task, on the
    world built with ``world_args`` (a files world's data file, say)."""
    world = get_world(world_name, **(world_args or {}))
    if world.kind == "classification" and len(skills) != 1:
        raise SkillError("a classifier is scored one skill at a time")
    model = load_subject(lib, base, skills) if lib is not None else base.load_model(list(skills))
    tok = base.load_tokenizer()   # both loaded once for every task
    if world.kind == "classification":
        from ..evaluate.classify import evaluate_classifier

        return {t: evaluate_classifier(base, skills[0], world, t, n, seed, (model, tok))["accuracy"]
                for t in tasks}
    return {t: evaluate_model(model, tok, world, t, n, seed)["exact_match"] for t in tasks}


def normalised_accuracy(base: Base, composed: Skill, members: Sequence[Skill], world_name: str,
                        n: int = 200, seed: int = 0, alone: dict[str, float] | None = None,
                        lib=None, world_args: dict | None = None) -> dict:
    """Composed vs each member alone on the member's own task (``alone`` may be cached)."""
    tasks = member_tasks(members)
    if alone is None:
        alone = {t: score_by_task(base, [m], world_name, [t], n, seed, world_args=world_args)[t]
                 for m, t in zip(members, tasks, strict=True)}
    comp = score_by_task(base, [composed], world_name, tasks, n, seed, lib, world_args)
    return {"composed": comp, "alone": alone, "normalised": normalised(comp, alone)}
