"""Evaluation suites: the base alone and each skill on each task, stored in the library.

Subjects are named ``base:<base name>`` or a skill ref ``name@version``. Every result row
records the world, the task, the number of held-out examples, the seed and all metrics
of ``metrics.summarize_generation`` (or ``summarize_classification``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..base import Base, check_base
from ..library import Library
from ..routed import load_routed
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
    if any(s.kind == "chain" for s in skills):
        raise SkillError("a chain skill is applied call by call; it is not a single model "
                         "(evaluate it with `skillbank eval`)")
    routers = [s for s in skills if s.kind == "router"]
    if not routers:
        return base.load_model(list(skills))
    if len(skills) > 1:
        raise SkillError("a router skill is evaluated on its own, not stacked with other skills")
    members = [lib.get(ref) for ref in routers[0].config["members"]]
    return load_routed(base, routers[0], members)


def result_spec(base: Base, n: int, seed: int, world_args: dict | None, **extra) -> dict:
    """The spec row every stored result has: how many held-out inputs, seed, base, data."""
    return {"n": n, "seed": seed, "base": base.fingerprint, "world_args": world_args or {},
            **extra}


def classifies(base: Base, world: World) -> bool:
    """Whether subjects on ``base`` in ``world`` are classifiers (else generators)."""
    return base.kind == "encoder" or world.kind == "classification"


def evaluate_cell(lib: Library, base: Base, subject: str, skills: Sequence[Skill],
                  world_name: str, world: World, task: str, n: int, seed: int,
                  world_args: dict | None = None, model=None, tokenizer=None
                  ) -> tuple[dict[str, Any] | None, int | None]:
    """``(metrics, result id)`` of one subject (``base:<name>`` or a skill ref, with
    ``skills`` applied) on one task, written to the library's results table. ``model`` and
    ``tokenizer``, if given, are the subject already loaded (a generator). A classifier
    with no head for ``task`` gives ``(None, None)``: not applicable, nothing stored."""
    if classifies(base, world):
        from .classify import NotApplicable, evaluate_classifier

        for s in skills:
            check_base(s, base)
        skill = skills[0] if skills else None
        try:
            metrics = evaluate_classifier(base, skill, world, task, n, seed)
        except NotApplicable:
            return None, None
        predictor = "majority-class baseline" if skill is None else "skill head"
        spec = result_spec(base, n, seed, world_args, predictor=predictor)
    elif skills and skills[0].kind == "chain":
        from .chain import evaluate_chain, load_chain

        if len(skills) > 1:
            raise SkillError("a chain skill is evaluated on its own, not stacked with other skills")
        metrics = evaluate_chain(load_chain(lib, base, skills[0], world), world, task, n, seed)
        spec = result_spec(base, n, seed, world_args)
    else:
        model = model if model is not None else load_subject(lib, base, skills)
        tokenizer = tokenizer if tokenizer is not None else base.load_tokenizer()
        metrics = evaluate_model(model, tokenizer, world, task, n, seed)
        spec = result_spec(base, n, seed, world_args)
    return metrics, lib.add_result(subject, world_name, task, metrics, spec)


def eval_matrix(lib: Library, base: Base, skills: Sequence[Skill], world_name: str,
                tasks: Sequence[str], n: int = 200, seed: int = 0, world_args: dict | None = None,
                include_base: bool = True,
                progress: Callable[[str, str], None] | None = None) -> dict[str, dict[str, dict]]:
    """``{subject: {task: metrics}}`` for the base (optional) and every skill; each cell is
    also written to the library's results table (``evaluate_cell``). A cell a classifier
    cannot answer (no head for the task) is None."""
    world = get_world(world_name, **(world_args or {}))
    subjects: list[tuple[str, list[Skill]]] = [(f"base:{base.name}", [])] if include_base else []
    subjects += [(s.ref, [s]) for s in skills]
    generator = not classifies(base, world)
    tokenizer = base.load_tokenizer() if generator else None
    out: dict[str, dict[str, dict]] = {}
    for subject, applied in subjects:
        static = all(s.kind != "chain" for s in applied)
        model = load_subject(lib, base, applied) if generator and static else None
        out[subject] = {}
        for task in tasks:
            out[subject][task], _ = evaluate_cell(lib, base, subject, applied, world_name, world,
                                                  task, n, seed, world_args, model, tokenizer)
            if progress is not None:
                progress(subject, task)
    return out
