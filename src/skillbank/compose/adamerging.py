"""AdaMerging (Yang et al. 2024, "AdaMerging: adaptive model merging for multi-task
learning"; docs/methods.md §3): merge coefficients learned without labels.

The merged model is θ = θ_0 + Σ_i λ_i τ_i (task-wise: one λ per member) or, per weight
tensor p, θ_p = θ_{0,p} + Σ_i λ_{i,p} τ_{i,p} (layer-wise, the paper's stronger variant).
Every λ starts at 0.3 (the paper's initialisation); the base and the members stay frozen;
only λ trains, with Adam, to minimise the Shannon entropy of the merged model's predictions
on unlabeled inputs of every member task — the paper's surrogate for the multi-task loss.

Departures, on purpose:

- The members are generation skills on a causal LM, so a "prediction" is the next-token
  distribution at each answer position, and the answer is the member's own greedy answer
  to the input (``stats.own_answers``; no target is read). The paper's classifiers predict
  once per input.
- The unlabeled inputs come from the train split (the paper adapts on the test inputs it
  reports, transductively); the held-out evaluation stays untouched.
- Fewer steps than the paper's 500 by default (CPU), Adam at the paper's lr 1e-3.
The result is stored exactly as a ``delta`` skill, ΔW_p = Σ_i λ_{i,p} τ_{i,p}.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..acquire.data import training_batch
from ..base import Base, check_base
from ..skill import Skill, SkillError
from ..worlds import get_world
from .ops import aligned_deltas, check_members, diagnostics
from .stats import own_answers

GRANULARITY = ("layer", "task")


@dataclass(frozen=True)
class AdaMergingRecipe:
    """Every setting that changes an AdaMerging result."""

    granularity: str = "layer"
    steps: int = 100
    lr: float = 1e-3
    init: float = 0.3
    examples: int = 64  # unlabeled inputs per member task
    batch_size: int = 16  # per member task, per step
    seed: int = 0

    def check(self) -> None:
        if self.granularity not in GRANULARITY:
            raise SkillError(f"granularity must be layer or task, not {self.granularity!r}")
        for name in ("steps", "examples", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SkillError(f"AdaMerging {name} must be an integer ≥ 1, got {v!r}")
        if not (0 < self.lr < 10) or not (-10 < self.init < 10):
            raise SkillError(f"AdaMerging lr must be in (0, 10) and init in (-10, 10), got "
                             f"{self.lr}, {self.init}")


def answer_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy of the next-token distributions at the answer positions
    (where ``labels`` ≠ −100, shifted as a causal LM predicts them)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    h = -(logp.exp() * logp).sum(-1)
    mask = (labels[:, 1:] != -100).float()
    return (h * mask).sum() / mask.sum().clamp(min=1.0)


def train_adamerging(name: str, base: Base, members: Sequence[Skill],
                     recipe: AdaMergingRecipe | None = None, progress=None) -> Skill:
    """Learn λ on the members' unlabeled inputs; returns an (unsaved) exact ``delta`` skill."""
    recipe = recipe or AdaMergingRecipe()
    recipe.check()
    check_members(members)
    for m in members:
        check_base(m, base)
        if not m.recipe.get("world") or not m.recipe.get("task"):
            raise SkillError(f"{m.ref} does not record its world and task (a merge, an "
                             "import?): AdaMerging needs each member's task inputs")
    tokenizer = base.load_tokenizer()
    pools = []
    for m in members:  # each member's own answers to its task's unlabeled inputs
        world = get_world(m.recipe["world"], **m.recipe.get("world_args", {}))
        inputs = world.examples(m.recipe["task"], recipe.examples, seed=recipe.seed, split="train")
        pools.append(own_answers(base.load_model([m]), tokenizer, inputs,
                                 world.max_target_len(m.recipe["task"]) + 1))
    taus = aligned_deltas(members)
    model = base.load_model()
    for p in model.parameters():
        p.requires_grad_(False)
    theta0 = {p: t.detach().clone() for p, t in model.named_parameters() if p in taus}
    n_groups = len(taus) if recipe.granularity == "layer" else 1
    lam = torch.full((n_groups, len(members)), recipe.init, requires_grad=True)
    opt = torch.optim.Adam([lam], lr=recipe.lr)
    rng = np.random.default_rng(recipe.seed)
    params = list(taus)
    curve, t0 = [], time.perf_counter()

    def merged(lam_: torch.Tensor) -> dict[str, torch.Tensor]:
        return {p: theta0[p] + sum(lam_[i if n_groups > 1 else 0, k] * taus[p][k]
                                   for k in range(len(members)))
                for i, p in enumerate(params)}

    for step in range(recipe.steps):
        batch = [pool[int(j)] for pool in pools
                 for j in rng.integers(len(pool), size=min(recipe.batch_size, len(pool)))]
        enc = training_batch(tokenizer, batch)
        out = torch.func.functional_call(model, merged(lam), (),
                                         {"input_ids": enc["input_ids"],
                                          "attention_mask": enc["attention_mask"]})
        loss = answer_entropy(out.logits, enc["labels"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append((step + 1, float(loss)))
        if progress is not None:
            progress(step + 1, float(loss))
    final = lam.detach()
    tensors = {p: sum(final[i if n_groups > 1 else 0, k] * taus[p][k] for k in range(len(members)))
               for i, p in enumerate(params)}
    refs = [m.ref for m in members]
    return Skill(
        name=name, kind="delta", base=base.fingerprint,
        tensors={p: t.detach().float().contiguous() for p, t in tensors.items()},
        recipe={"method": "adamerging", **asdict(recipe), "members": refs},
        lineage=refs,
        metrics={"train": {"entropy_curve": curve[:: max(1, len(curve) // 50)] + curve[-1:],
                           "seconds": round(time.perf_counter() - t0, 2)},
                 "lambda_mean": {r: float(final[:, k].mean()) for k, r in enumerate(refs)},
                 "lambda": final.tolist() if n_groups == 1 else None,
                 "merge_error": {"max": 0.0, "mean": 0.0},
                 "diagnostics": diagnostics(members)},
    )
