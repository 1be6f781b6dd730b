"""The merge advisor: ``compose --method auto`` tries every merge (with a small grid of its
settings) on a few held-out inputs of each member's task and keeps the best.

PEFT's maintainers answer "which method and weights?" with "trial and error"; this is the
trial, measured. Each candidate is merged exactly as ``compose --method M`` would, scored by
its mean normalised accuracy (composed / member alone, ``compose.measure``) on ``k`` inputs
per member task, and the whole table (settings, score per task, seconds) goes into the
chosen skill's metrics. The selection inputs come from the eval split drawn with a seed of
their own (``SELECTION_SEED_OFFSET``), so a later ``--eval`` with the user's seed is mostly
fresh data; on a small eval split the two samples can overlap, which makes the reported
figure of the winner slightly optimistic. Ties go to the earlier (simpler) candidate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace

from ..base import Base
from ..skill import Skill, SkillError
from ..worlds import get_world
from .measure import member_tasks, normalised, score_by_task
from .ops import DATA_AWARE, MergeSpec, delta_params, member_statistics, merge_skills

SELECTION_SEED_OFFSET = 7919


def candidates(n: int, seed: int = 0) -> list[MergeSpec]:
    """The grid: sum and mean, TIES at two densities, DARE-TIES, KnOTS, RegMean, Fisher."""
    scales = dict.fromkeys([1.0 / n, 0.5])  # the mean, and half the sum (one when n = 2)
    return [
        MergeSpec("linear", seed=seed),
        *[MergeSpec("linear", weights=[w] * n, seed=seed) for w in scales],
        MergeSpec("ties", density=0.2, seed=seed),
        MergeSpec("ties", density=0.5, seed=seed),
        MergeSpec("dare_ties", density=0.5, seed=seed),
        MergeSpec("knots", density=0.2, seed=seed),
        MergeSpec("regmean", alpha=0.9, seed=seed),
        MergeSpec("fisher", seed=seed),
    ]


def settings(spec: MergeSpec) -> dict:
    """What distinguishes a candidate: its non-default fields."""
    default = asdict(MergeSpec(spec.method))
    return {k: v for k, v in asdict(spec).items() if k != "method" and v != default[k]}


def advise(name: str, base: Base, members: Sequence[Skill], world: str, k: int = 50,
           seed: int = 0, grid: Sequence[MergeSpec] | None = None,
           progress: Callable[[int, float | None], None] | None = None, lib=None,
           world_args: dict | None = None) -> Skill:
    """The best merge of ``members`` on ``k`` selection inputs per member task of ``world``
    (built with ``world_args``), unsaved, its metrics holding the table of every candidate
    tried."""
    tasks = member_tasks(members)
    if None in tasks:
        raise SkillError("--method auto scores merges on each member's task: "
                         + ", ".join(m.ref for m, t in zip(members, tasks, strict=True) if t is None)
                         + " record no task")
    sel = seed + SELECTION_SEED_OFFSET
    wargs = dict(world_args or {})
    w = get_world(world, **wargs)
    for t in tasks:
        have = len(w.examples(t, k, seed=sel, split="eval"))
        if have < k:
            raise SkillError(f"task {t} has {have} held-out inputs, fewer than the {k} asked "
                             f"for: use --examples {have} or fewer")
    alone = {t: score_by_task(base, [m], world, [t], k, sel, world_args=wargs)[t]
             for m, t in zip(members, tasks, strict=True)}
    grid = list(grid) if grid is not None else candidates(len(members), seed)
    params = list(delta_params(members))
    stats_cache: dict[str, list] = {}
    rows, best, best_score = [], None, -1.0
    for i, spec in enumerate(grid):
        t0 = time.perf_counter()
        kind = DATA_AWARE.get(spec.method)
        stats = None
        if kind is not None:
            key = f"{kind}-{spec.examples}-{spec.seed}"
            if key not in stats_cache:
                stats_cache[key] = member_statistics(base, members, spec, params, lib)
            stats = stats_cache[key]
        merged = merge_skills(name, members, spec, base, stats=stats)
        composed = score_by_task(base, [merged], world, tasks, k, sel, world_args=wargs)
        score = normalised(composed, alone)
        mean = sum(score.values()) / len(score)
        rows.append({"method": spec.method, "settings": settings(spec), "normalised": score,
                     "mean": mean, "seconds": round(time.perf_counter() - t0, 2)})
        if mean > best_score:
            best, best_score = merged, mean
        if progress is not None:
            progress(i + 1, None)
    chosen = rows[[r["mean"] for r in rows].index(best_score)]
    return replace(best, metrics={**best.metrics, "advisor": {
        "k": k, "selection_seed": sel, "alone": alone, "chosen": chosen, "tried": rows}})
