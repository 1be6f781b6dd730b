"""A ``chain`` skill: library skills applied one call at a time (docs/methods.md §15).

A chain holds no tensors. Its config names its members (skill refs, in order) and the step
each member is asked (the task whose prompt it answers, e.g. ``rot``); it is applied as the
call-by-call runner of Skill-Mix (``evaluate.skillmix.CallByCall``) is: member j gets
``world.prompt_for(step_j, y_{j-1})`` with ``y_0`` the input, and the last output is the
answer. So a chain answers any prompt of its world whose input it can read
(``world.input_of``) — the task name in the prompt is ignored — and is evaluated like any
skill: greedy exact match of the final answer on held-out inputs. It has no target
log-probability of its own (``mean_logprob`` is left out of its metrics).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..acquire.data import encode_target
from ..base import Base, check_base
from ..skill import Skill, SkillError
from ..worlds.base import Example, World
from .generate import greedy, sampled, target_logprobs
from .metrics import summarize_generation

MAX_STEPS = 16


def check_chain_world(world: World) -> None:
    """SkillError unless the world chains its tasks (``apply``) and builds prompts from inputs."""
    if not all(hasattr(world, a) for a in ("apply", "prompt_for", "input_of")):
        raise SkillError(f"a chain needs a world whose tasks chain call by call (as strings: "
                         f"tasks chain with '+'); world {world.name!r} does not")


def chain_skill(name: str, base: Base, members: Sequence[Skill], steps: Sequence[str],
                world: str, recipe: dict, metrics: dict | None = None) -> Skill:
    """A ``chain`` skill of ``members`` asked ``steps`` in order (not yet stored)."""
    if not members or len(members) != len(steps):
        raise SkillError("a chain needs one step per member, and at least one member")
    if len(members) > MAX_STEPS:
        raise SkillError(f"a chain has at most {MAX_STEPS} steps, got {len(members)}")
    for m in members:
        check_base(m, base)
        if m.kind in ("router", "chain"):
            raise SkillError(f"chain members are static skills; {m.ref} is a {m.kind}")
    return Skill(name=name, kind="chain", base=base.fingerprint, tensors={},
                 config={"members": [m.ref for m in members], "steps": list(steps), "world": world},
                 recipe=recipe, lineage=sorted({m.ref for m in members}), metrics=metrics or {})


class ChainRunner:
    """Members (loaded models) asked their steps in order, one batched call per step."""

    def __init__(self, models: Sequence, steps: Sequence[str], tokenizer, world: World):
        check_chain_world(world)
        self.models, self.steps, self.tokenizer, self.world = list(models), list(steps), tokenizer, world

    def budget(self, j: int) -> int:
        """New tokens for step ``j``: the longest output of the steps so far, plus room."""
        return self.world.max_target_len("+".join(self.steps[: j + 1])) + 2

    @torch.no_grad()
    def calls(self, inputs: Sequence[str], temperature: float | None = None) -> list[list[str]]:
        """Each step's outputs (``[step][input]``): greedy, or sampled at ``temperature``
        from torch's global generator (seed it first)."""
        current, out = list(inputs), []
        for j, (model, step) in enumerate(zip(self.models, self.steps, strict=True)):
            prompts = [self.world.prompt_for(step, x) for x in current]
            ids = (greedy(model, self.tokenizer, prompts, self.budget(j)) if temperature is None
                   else sampled(model, self.tokenizer, prompts, self.budget(j), temperature))
            current = [self.tokenizer.decode(a, skip_special_tokens=True).strip() for a in ids]
            out.append(current)
        return out

    def __call__(self, inputs: Sequence[str], temperature: float | None = None) -> list[str]:
        return self.calls(inputs, temperature)[-1]


def load_chain(lib, base: Base, chain: Skill, world: World) -> ChainRunner:
    """A runner for a stored chain skill: each member loaded on ``base``."""
    if chain.kind != "chain":
        raise SkillError(f"skill {chain.ref} is a {chain.kind}, not a chain")
    check_base(chain, base)
    members = [lib.get(ref) for ref in chain.config["members"]]
    return ChainRunner([base.load_model([m]) for m in members], chain.config["steps"],
                       base.load_tokenizer(), world)


def step_confidence(model, tokenizer, prompts: Sequence[str], answers: Sequence[str]
                    ) -> list[tuple[float, float]]:
    """(mean, min) token log-probability of each answer (and its ``</s>``) under ``model``:
    a skill's own confidence in what it said (docs/methods.md §15)."""
    exs = [Example("", p, a) for p, a in zip(prompts, answers, strict=True)]
    return [(sum(lp) / len(lp), min(lp)) for lp in target_logprobs(model, tokenizer, exs)]


def evaluate_chain(runner: ChainRunner, world: World, task: str, n: int, seed: int) -> dict:
    """Exact match, edit distance and token accuracy of the chain's final answers on ``n``
    held-out inputs of ``task`` (no ``mean_logprob``: a chain has no likelihood)."""
    examples = world.examples(task, n, seed=seed, split="eval")
    preds = runner([world.input_of(e.prompt) for e in examples])
    tok = runner.tokenizer
    records = [{"pred": ex.target if world.grade(ex, p) else p, "target": ex.target,
                "pred_tokens": encode_target(tok, p)[:-1], "target_tokens": encode_target(tok, ex.target)[:-1]}
               for ex, p in zip(examples, preds, strict=True)]
    return summarize_generation(records, seed=seed)
