"""Localize a policy skill: grafting (Panigrahi et al. 2023; docs/methods.md §5) on a
Meta-World policy (§16).

The mask training and its selection are ``localize/ops.py``'s (``train_mask``), with the
behaviour-cloning loss as the objective:

- the task model is the frozen policy base with θ = θ_pre + γ(S)⊙Δ on the residual blocks
  (``base.arch.block_prefix``), trained on the states of the skill's own demonstrations
  (its recipe's), the last fifth of them held out for the selection;
- the selection score (``PolicyScorer``): ``exact_match`` is the share of states whose
  action is within 0.1 of the expert's in every coordinate, ``mean_logprob`` minus the mean
  squared action error (the Gaussian log-likelihood up to scale) — the LM graft's keys, so
  the selection rule is the same;
- held out, every subject (the base, the skill, the learned graft, top-|Δ| and random of the
  same size) is rolled out on the held-out goals: ``success`` (stored as ``exact_match``
  too, the key every consumer of a graft reads) and the relative gain
  (P_graft − P_base)/(P_skill − P_base) in success. The paper's calibration has no analogue
  for a deterministic action; none is reported.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch
from torch.func import functional_call

from ..acquire.data import Sampler
from ..base import Base, check_base
from ..policy.bc import PolicyLoraRecipe, check_policy_base
from ..policy.evaluate import success_rate
from ..skill import Skill, SkillError
from . import graft
from .ops import GraftRecipe, _set_params, check_localizable, eligible_deltas, train_mask

TOLERANCE = 0.1  # an action "matches" when every coordinate is within this of the expert's


class PolicyScorer:
    """Share of matched actions, minus the mean squared error, and the loss, of the policy
    with replaced weights on fixed states."""

    def __init__(self, model, obs: np.ndarray, act: np.ndarray):
        self.model = model
        self.x = torch.as_tensor(obs, dtype=torch.float32)
        self.y = torch.as_tensor(act, dtype=torch.float32).clamp(-1.0, 1.0)

    def actions(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, params, args=(), kwargs={"obs": x})

    @torch.no_grad()
    def __call__(self, params: dict) -> dict[str, float]:
        err = self.actions(params, self.x) - self.y
        mse = float(torch.mean(err ** 2))
        return {"exact_match": float((err.abs().amax(-1) < TOLERANCE).float().mean()),
                "mean_logprob": -mse, "loss": mse}


def skill_recipe(skill: Skill) -> PolicyLoraRecipe:
    """The policy recipe the skill was trained by (its demonstrations)."""
    fields = {k: v for k, v in skill.recipe.items() if k in PolicyLoraRecipe.__dataclass_fields__}
    if "task" not in fields:
        raise SkillError(f"skill {skill.ref} does not record its Meta-World task (a merge?): "
                         "pass --task")
    return PolicyLoraRecipe(**fields)


def localize_policy(base: Base, skill: Skill, recipe: GraftRecipe, name: str | None = None,
                    n_eval: int = 20, progress=None, cache=None) -> Skill:
    """``localize`` for a policy skill (see the module docstring); ``n_eval`` held-out goals
    (at most 25)."""
    t0 = time.perf_counter()
    recipe.check()
    check_policy_base(base)
    check_base(skill, base)
    check_localizable(skill)
    made = skill_recipe(skill)
    if recipe.task and recipe.task != made.task:
        made = replace(made, task=recipe.task)
    recipe = replace(recipe, world="metaworld", task=made.task, world_args={})
    episodes = min(n_eval, 25)
    model = base.load_model().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    params = dict(model.named_parameters())
    deltas, n_eligible = eligible_deltas(skill, params, recipe.prefixes or [base.arch.block_prefix])
    theta_pre = {p: params[p].detach().clone() for p in sorted(deltas)}
    k = max(1, round(recipe.sparsity * n_eligible))
    demos = made.demonstrations(cache)
    cut = max(1, int(0.8 * demos.steps))
    if cut >= demos.steps:
        raise SkillError(f"skill {skill.ref}'s {demos.steps} demonstration states are too few "
                         "to hold some out for the graft's selection")
    train = PolicyScorer(model, demos.obs[:cut], demos.act[:cut])
    val = PolicyScorer(model, demos.obs[cut:], demos.act[cut:])

    def batch_loss(theta, idx):
        i = torch.as_tensor(idx)
        return torch.mean((train.actions(theta, train.x[i]) - train.y[i]) ** 2)

    t_train = time.perf_counter()
    res = train_mask(model, theta_pre, deltas, k, recipe,
                     Sampler({made.task: list(range(cut))}, recipe.batch_size, recipe.seed),
                     batch_loss, train, val, progress)
    train_seconds = time.perf_counter() - t_train
    learned = res["mask"]
    size = graft.mask_size(learned)
    masks = {"learned": learned, "top_delta": graft.top_mask(deltas, size),
             "random": graft.random_mask({p: deltas[p].shape for p in deltas}, size, recipe.seed),
             "skill": {p: torch.ones_like(d, dtype=torch.bool) for p, d in deltas.items()}}
    success: dict[str, dict] = {}
    with torch.no_grad():
        _set_params(model, theta_pre, deltas, None)
    success["base"] = success_rate(model, made.task, episodes, made.seed, made.horizon,
                                   made.speed)
    for label, mask in masks.items():
        with torch.no_grad():
            _set_params(model, theta_pre, deltas, mask)
        success[label] = success_rate(model, made.task, episodes, made.seed, made.horizon,
                                      made.speed)

    def brief(label: str) -> dict:
        s = success[label]
        row = {"success": s["success"], "success_stderr": s["stderr"],
               "exact_match": s["success"], "exact_match_stderr": s["stderr"]}
        if label not in ("base", "skill"):
            row |= {"relative_gain": {"exact_match": graft.relative_gain(
                s["success"], success["base"]["success"], success["skill"]["success"])},
                "size": graft.mask_size(masks[label]),
                "fraction": graft.mask_size(masks[label]) / n_eligible}
        return row

    subjects = {label: brief(label) for label in ("base", "skill", "learned", "top_delta",
                                                   "random")}
    tensors, config = graft.mask_to_sparse(learned, deltas)
    metrics = {"localization": {
        "world": "metaworld", "task": made.task, "n_eval": episodes, "seed": recipe.seed,
        "n_eligible": n_eligible, "k_init": k, "size": size, "fraction": size / n_eligible,
        "target_sparsity": recipe.sparsity, "best_step": res["best_step"],
        "selection": {"init": {"train_em": res["init"]["train"]["exact_match"],
                               "val_em": res["init"]["val"]["exact_match"]},
                      "best": {"train_em": res["best"]["train"]["exact_match"],
                               "val_em": res["best"]["val"]["exact_match"]}},
        "relative_gain": subjects["learned"]["relative_gain"]["exact_match"],
        "subjects": subjects, "curve": res["curve"],
        "calibration_note": "exact_match is the held-out success rate; the selection's "
                            f"exact_match is the share of actions within {TOLERANCE} of the "
                            "expert's",
        "train_seconds": round(train_seconds, 2),
        "seconds": round(time.perf_counter() - t0, 2),
    }}
    return Skill(name=name or f"{skill.name}-graft", kind="sparse", base=skill.base,
                 tensors=tensors, config=config, recipe=recipe.as_dict() | {"source": skill.ref},
                 lineage=[skill.ref], metrics=metrics)
