"""Beam search over sequences of skills, scored by usefulness × affordance (SayCan).

Ahn et al. (2022), *Do As I Can, Not As I Say* (docs/methods.md §15), pick each next skill
by ``p(useful | instruction, history) · p(can succeed | state)``: a language model's
usefulness times a value function's affordance. Here the "instruction" is a handful of
input/target examples and the "state" is what the plan so far made of each input:

- a **candidate** is a plan (a tuple of skill indices) with each example's current output;
- one step expands every candidate of the beam by every skill, running each skill once
  on all the candidates' current outputs (:data:`Step`), and scores the extension by

      score(plan + s) = score(plan) + mean_e [ w_u · log u_e(s) + w_a · log a_e(s) ]

  with ``u_e(s)`` the usefulness of ``s`` as the next step from the current output toward
  example e's target (:data:`Usefulness`) and ``a_e(s)`` the probability that the skill's
  call on example e's current output succeeds (its affordance, from the :data:`Step`);
  ``(w_u, w_a)`` is (1, 1) for
  usefulness × affordance, (1, 0) or (0, 1) for either alone;
- the ``beam`` best extensions of each length are kept, up to ``depth`` steps;
- of every candidate seen, the one that **fits** the examples best is returned — the
  share of examples whose output equals the target — ties going to the shorter plan, then
  to the higher score.

Departure: SayCan stops when a "done" skill wins; here every length up to ``depth`` is a
candidate and the fit to the examples decides, since the examples are what the user gave.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# (skill index, inputs) -> (outputs, log affordance of each call)
Step = Callable[[int, list[str]], tuple[list[str], list[float]]]
# (current outputs, targets) -> [len(inputs), n_skills] probabilities of each next skill
Usefulness = Callable[[list[str], list[str]], np.ndarray]

WEIGHTS = {"both": (1.0, 1.0), "usefulness": (1.0, 0.0), "affordance": (0.0, 1.0)}
FLOOR = 1e-6  # usefulness probabilities are clipped here before the log


@dataclass(frozen=True)
class Candidate:
    plan: tuple[int, ...]
    outputs: tuple[str, ...]
    score: float
    fit: float


def fit_of(outputs: Sequence[str], targets: Sequence[str]) -> float:
    """Share of examples whose output is exactly the target."""
    return sum(o.strip() == t for o, t in zip(outputs, targets, strict=True)) / len(targets)


def best(candidates: Sequence[Candidate]) -> Candidate:
    """Highest fit, then shortest plan, then highest score."""
    return max(candidates, key=lambda c: (c.fit, -len(c.plan), c.score))


def beam_search(n_skills: int, inputs: Sequence[str], targets: Sequence[str], step: Step,
                usefulness: Usefulness | None, depth: int, beam: int, score: str = "both"
                ) -> tuple[Candidate, list[Candidate], int]:
    """``(best candidate, every candidate kept, skill calls made)``; see the module docstring.

    ``usefulness`` may be None only when ``score`` is ``"affordance"``."""
    if score not in WEIGHTS:
        raise ValueError(f"unknown plan score {score!r}; choose {', '.join(WEIGHTS)}")
    if not inputs or len(inputs) != len(targets):
        raise ValueError("the planner needs at least one example, each an input and a target")
    if depth < 1 or beam < 1 or n_skills < 1:
        raise ValueError("depth, beam and the number of skills must each be at least 1")
    w_u, w_a = WEIGHTS[score]
    if w_u and usefulness is None:
        raise ValueError(f"score {score!r} needs a usefulness model")
    n = len(inputs)
    frontier = [Candidate((), tuple(inputs), 0.0, fit_of(inputs, targets))]
    kept: list[Candidate] = []
    calls = 0
    for _ in range(depth):
        flat = [x for c in frontier for x in c.outputs]
        use = None
        if w_u:
            use = np.log(np.clip(np.asarray(usefulness(flat, [t for _ in frontier for t in targets]),
                                            dtype=np.float64), FLOOR, 1.0))
        grown: list[Candidate] = []
        for s in range(n_skills):
            outs, conf = step(s, flat)
            calls += len(flat)
            for b, cand in enumerate(frontier):
                part = slice(b * n, (b + 1) * n)
                gain = 0.0
                if w_u:
                    gain += w_u * float(use[part, s].mean())
                if w_a:
                    gain += w_a * float(np.mean(conf[part]))
                o = tuple(outs[part])
                grown.append(Candidate(cand.plan + (s,), o, cand.score + gain, fit_of(o, targets)))
        grown.sort(key=lambda c: (-c.score, c.plan))
        frontier = _distinct(grown, beam)
        kept.extend(frontier)
    return best(kept), kept, calls


def _distinct(cands: Sequence[Candidate], beam: int) -> list[Candidate]:
    """The ``beam`` best candidates, dropping any whose outputs repeat a better one's (two
    plans that made the same strings lead to the same futures)."""
    out, seen = [], set()
    for c in cands:
        if c.outputs in seen or not math.isfinite(c.score):
            continue
        seen.add(c.outputs)
        out.append(c)
        if len(out) == beam:
            break
    return out
