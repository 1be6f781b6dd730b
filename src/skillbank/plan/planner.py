"""Plan a new composite task from a few examples, and store the plan as a chain skill.

``plan`` runs :func:`search.beam_search` with the library skills as steps: each skill is
asked its own task (``recipe["task"]``, e.g. ``rot``) of every current output, greedily;
its affordance is its confidence in what it answered (``evaluate.chain.step_confidence``)
calibrated into a success probability (:class:`affordance.Affordance`); usefulness is
:class:`usefulness.UsefulnessModel`.
The best-fitting plan becomes a ``chain`` skill (``evaluate.chain``), stored with its fit,
score and search cost; if no plan up to ``depth`` fits at least ``min_fit`` of the
examples, nothing is stored (docs/methods.md §15).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import torch

from ..base import Base, check_base
from ..evaluate.chain import chain_skill, check_chain_world, step_confidence
from ..evaluate.generate import greedy
from ..skill import Skill, SkillError
from ..worlds import get_world
from .affordance import Affordance
from .search import WEIGHTS, beam_search
from .usefulness import UsefulnessModel

MAX_EXAMPLES = 64
MAX_DEPTH = 8


@dataclass(frozen=True)
class PlanRecipe:
    """Every setting that changes which plan is found."""

    world: str = "strings"
    depth: int = 4
    beam: int = 4
    score: str = "both"
    usefulness_depth: int = 2
    usefulness_examples: int = 3000
    affordance_examples: int = 256
    min_fit: float = 0.5
    seed: int = 0
    world_args: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.score not in WEIGHTS:
            raise ValueError(f"unknown plan score {self.score!r}; choose {', '.join(WEIGHTS)}")
        for key, hi in (("depth", MAX_DEPTH), ("beam", 64), ("usefulness_depth", MAX_DEPTH),
                        ("usefulness_examples", 100_000), ("affordance_examples", 100_000)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise ValueError(f"plan: {key} must be an integer in 1..{hi}, got {v!r}")
        if not 0.0 <= self.min_fit <= 1.0:   # 0: keep the best plan whatever its fit
            raise ValueError(f"plan: min_fit must be in [0, 1], got {self.min_fit}")

    def as_dict(self) -> dict:
        return {"method": "plan", **asdict(self)}


@lru_cache(maxsize=8)
def _usefulness(world_name: str, world_args: tuple, steps: tuple[str, ...], depth: int, n: int,
                seed: int) -> UsefulnessModel:
    return UsefulnessModel(get_world(world_name, **dict(world_args)), steps, depth, n, seed)


def usefulness_for(recipe: PlanRecipe, steps: Sequence[str]) -> UsefulnessModel:
    """The usefulness model of ``recipe`` over ``steps`` (trained once per process)."""
    return _usefulness(recipe.world, tuple(sorted(recipe.world_args.items())), tuple(steps),
                       recipe.usefulness_depth, recipe.usefulness_examples, recipe.seed)


def check_examples(world, examples: Sequence[tuple[str, str]], depth: int = MAX_DEPTH) -> None:
    """SkillError unless every example is an (input, target) pair of the world's letters,
    the input no longer than the world's inputs and the target no longer than ``depth`` steps
    can make (each may double the length)."""
    if not examples:
        raise SkillError("no examples to plan from")
    if len(examples) > MAX_EXAMPLES:
        raise SkillError(f"at most {MAX_EXAMPLES} examples, got {len(examples)}")
    letters = set(world.alphabet)
    for i, (x, y) in enumerate(examples, start=1):
        if not isinstance(x, str) or not isinstance(y, str) or not x or not y:
            raise SkillError(f"example {i}: input and target must be non-empty strings")
        bad = sorted((set(x) | set(y)) - letters)
        if bad:
            raise SkillError(f"example {i}: {''.join(bad)!r} not in the world's alphabet {world.alphabet!r}")
        if len(x) > world.max_len:
            raise SkillError(f"example {i}: input longer than the world's {world.max_len} letters")
        if len(y) > world.max_len * 2 ** depth:
            raise SkillError(f"example {i}: target longer than {depth} steps can make from "
                             f"{world.max_len} letters")


class SkillSteps:
    """Skill ``i`` asked its task of each input, greedily, with its (mean, min) token
    log-probability of each answer (:meth:`answer`; cached per input), and as the search's
    :data:`search.Step` with the log affordance of each call (:meth:`step`)."""

    def __init__(self, base: Base, skills: Sequence[Skill], world):
        self.world, self.tok = world, base.load_tokenizer()
        self.steps = [s.recipe.get("task") for s in skills]
        self.refs = [s.ref for s in skills]
        self.models = [base.load_model([s]) for s in skills]
        for m in self.models:
            m.eval()
        self.cache: dict[tuple[int, str], tuple[str, tuple[float, float]]] = {}
        self.calls = 0
        self.affordances: dict[tuple[int, int], Affordance] = {}

    @torch.no_grad()
    def answer(self, i: int, inputs: list[str]) -> tuple[list[str], list[tuple[float, float]]]:
        todo = sorted({x for x in inputs if (i, x) not in self.cache})
        if todo:
            prompts = [self.world.prompt_for(self.steps[i], x) for x in todo]
            budget = max(self.world.max_target_len(self.steps[i]) * max(1, -(-len(x) // self.world.max_len))
                         for x in todo) + 2
            ids = greedy(self.models[i], self.tok, prompts, budget)
            outs = [self.tok.decode(a, skip_special_tokens=True).strip() for a in ids]
            conf = step_confidence(self.models[i], self.tok, prompts, outs)
            self.calls += len(todo)
            self.cache.update({(i, x): (o, c) for x, o, c in zip(todo, outs, conf, strict=True)})
        got = [self.cache[(i, x)] for x in inputs]
        return [o for o, _ in got], [c for _, c in got]

    def affordance(self, n: int, seed: int) -> Affordance:
        """The calibrated affordance of these skills (fitted once per ``(n, seed)``)."""
        if (n, seed) not in self.affordances:
            self.affordances[(n, seed)] = Affordance(self.world, self.steps, self.answer, n, seed)
        return self.affordances[(n, seed)]

    def step(self, n: int, seed: int):
        """The search's step: outputs and the log affordance of each call."""
        aff = self.affordance(n, seed)

        def run(i: int, inputs: list[str]) -> tuple[list[str], list[float]]:
            outs, conf = self.answer(i, inputs)
            return outs, aff.log_prob(i, conf, inputs)
        return run


def check_planning_skills(base: Base, skills: Sequence[Skill], world) -> None:
    if not skills:
        raise SkillError("no skills to plan with")
    for s in skills:
        check_base(s, base)
        task = s.recipe.get("task")
        if s.kind not in ("lora", "delta", "sparse") or not isinstance(task, str) or "," in task:
            raise SkillError(f"a plan's steps are static skills trained on one task; {s.ref} is not")
        try:
            world.examples(task, 1, seed=0)
        except ValueError:
            raise SkillError(f"skill {s.ref}'s task {task!r} is not a task of world {world.name!r}") from None


def plan(base: Base, skills: Sequence[Skill], examples: Sequence[tuple[str, str]], recipe: PlanRecipe,
         runner: SkillSteps | None = None) -> dict:
    """The best plan for ``examples``: ``{"steps", "members", "fit", "score", "calls",
    "candidates"}`` (members as refs). SkillError if its fit is below ``recipe.min_fit``.
    ``runner``: a :class:`SkillSteps` over ``skills`` to re-use (and its answer cache)."""
    if base.kind != "causal":
        raise SkillError(f"plans chain generators; base {base.name} is {base.kind}")
    world = get_world(recipe.world, **recipe.world_args)
    check_chain_world(world)
    check_examples(world, examples, recipe.depth)
    check_planning_skills(base, skills, world)
    runner = runner or SkillSteps(base, skills, world)
    if runner.refs != [s.ref for s in skills]:
        raise ValueError("the runner given to plan() was built over other skills")
    use = usefulness_for(recipe, runner.steps) if WEIGHTS[recipe.score][0] else None
    if WEIGHTS[recipe.score][1]:
        step = runner.step(recipe.affordance_examples, recipe.seed)
    else:   # no affordance: the search adds 0·log a, so none is fitted
        def step(i, inputs):
            outs, _ = runner.answer(i, inputs)
            return outs, [0.0] * len(outs)
    top, kept, calls = beam_search(len(skills), [x for x, _ in examples], [y for _, y in examples],
                                   step, use, recipe.depth, recipe.beam, recipe.score)
    found = {"steps": [runner.steps[i] for i in top.plan], "members": [skills[i].ref for i in top.plan],
             "fit": top.fit, "score": top.score, "calls": calls,
             "candidates": len(kept), "examples": len(examples)}
    if top.fit < recipe.min_fit:
        raise SkillError(f"no plan of up to {recipe.depth} steps explains the examples: the best "
                         f"({' → '.join(found['steps'])}) fits {top.fit:.0%} of them, below "
                         f"{recipe.min_fit:.0%}; nothing stored")
    return found


def make_chain(lib, name: str, base: Base, skills: Sequence[Skill], examples: Sequence[tuple[str, str]],
               recipe: PlanRecipe, runner: SkillSteps | None = None) -> tuple[Skill, dict]:
    """Plan, then store the plan as the chain skill ``name``: (stored skill, plan)."""
    from ..skill import check_name

    check_name(name, "skill name")
    found = plan(base, skills, examples, recipe, runner)
    by_ref = {s.ref: s for s in skills}
    skill = chain_skill(name, base, [by_ref[r] for r in found["members"]], found["steps"], recipe.world,
                        recipe={**recipe.as_dict(), "examples": [list(e) for e in examples],
                                "skills": [s.ref for s in skills]},
                        metrics={"plan": found})
    return lib.add(skill), found
