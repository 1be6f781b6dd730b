"""Evaluation suites: the base alone and each skill on each task, stored in the library.

Subjects are named ``base:<base name>`` or a skill ref ``name@version``. Every result row
records the world, the task, the number of held-out examples, the seed and all metrics
of ``metrics.summarize_generation`` (or ``summarize_classification``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..base import Base
from ..library import Library
from ..skill import Skill, SkillError
from ..worlds import get_world
from ..worlds.base import World
from .generate import generation_records
from .metrics import summarize_generation


def evaluate_model(model, tokenizer, world: World, task: str, n: int, seed: int) -> dict[str, Any]:
    """Metrics of one model on ``n`` held-out examples of one task (``split='eval'``)."""
    examples = world.examples(task, n, seed=seed, split="eval")
    records = generation_records(model, tokenizer, examples, world.max_target_len(task) + 2)
    for rec, ex in zip(records, examples, strict=True):
        rec["pred"] = rec["pred"] if not world.grade(ex, rec["pred"]) else ex.target
    return summarize_generation(records, seed=seed)


def load_subject(lib: Library, base: Base, skills: Sequence[Skill]):
    """The base with static skills merged in, or a routed model for a ``router`` skill."""
    routers = [s for s in skills if s.kind == "router"]
    if not routers:
        return base.load_model(list(skills))
    if len(skills) > 1:
        raise SkillError("a router skill is evaluated on its own, not stacked with other skills")
    from ..compose.route import load_routed

    members = [lib.get(ref) for ref in routers[0].config["members"]]
    return load_routed(base, routers[0], members)


def eval_matrix(lib: Library, base: Base, skills: Sequence[Skill], world_name: str,
                tasks: Sequence[str], n: int = 200, seed: int = 0, world_args: dict | None = None,
                include_base: bool = True,
                progress: Callable[[str, str], None] | None = None) -> dict[str, dict[str, dict]]:
    """``{subject: {task: metrics}}`` for the base (optional) and every skill; each cell is
    also written to the library's results table."""
    world = get_world(world_name, **(world_args or {}))
    if base.kind == "encoder" or getattr(world, "kind", "") == "classification":
        from .classify import classification_matrix  # an encoder base: classification skills

        return classification_matrix(lib, base, skills, world_name, world, tasks, n, seed,
                                     world_args, include_base, progress)
    tokenizer = base.load_tokenizer()
    subjects: list[tuple[str, list[Skill]]] = [(f"base:{base.name}", [])] if include_base else []
    subjects += [(s.ref, [s]) for s in skills]
    out: dict[str, dict[str, dict]] = {}
    for subject, applied in subjects:
        model = load_subject(lib, base, applied)
        out[subject] = {}
        for task in tasks:
            metrics = evaluate_model(model, tokenizer, world, task, n, seed)
            out[subject][task] = metrics
            lib.add_result(subject, world_name, task, metrics,
                           {"n": n, "seed": seed, "base": base.fingerprint, "world_args": world_args or {}})
            if progress is not None:
                progress(subject, task)
    return out
