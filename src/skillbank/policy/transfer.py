"""Which policy skill to start a new task from: scores on the target task's demonstrations,
checked by fine-tuning (docs/methods.md §9 and §16).

Features: each candidate's policy (the base with the skill merged; the base alone as a
reference row) run on the target task's demonstration states; a row is the final
LayerNorm's output (what the action head reads), its target the expert's action there (4
real numbers). Estimators:

- ``logme``: LogME in its regression form (You et al. 2021, Alg. 1 with real targets: one
  maximum evidence per action dimension, their mean / N);
- ``bc``: minus the candidate's behaviour-cloning loss on those states as it stands (how
  well it already imitates the new expert) — the policy analogue of zero-shot accuracy.

LEEP, TMI and H-score need discrete labels; an action is not one, so they do not apply.

Verification: the target task learnt as a LoRA from each candidate's tensors (``init``; the
candidate's rank) and from PEFT's fresh init ("scratch"), the same demonstrations, steps and
learning rate each; success on held-out goals. ``transfer.rank.agreement`` compares the
orders (Kendall's τ-b, weighted τ, top-1).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..base import Base
from ..skill import Skill, SkillError
from ..transfer.estimators import logme
from .bc import PolicyLoraRecipe, check_policy_base, train_policy_lora
from .env import demonstrations
from .evaluate import load_policy, success_rate

POLICY_ESTIMATORS = ("logme", "bc")


@torch.no_grad()
def policy_features(model: torch.nn.Module, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(features, actions)``: what the head reads at each state, and the policy's action."""
    head = next(m for n, m in model.named_modules() if n.split(".")[-1] == "head")
    seen = []
    handle = head.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    try:
        act = model(obs=torch.as_tensor(obs, dtype=torch.float32))
    finally:
        handle.remove()
    return seen[0].double().numpy(), act.double().numpy()


def score_policy_candidates(base: Base, skills: Sequence[Skill], task: str, demos: int = 10,
                            seed: int = 0, cache: Path | None = None,
                            include_base: bool = True, progress=None) -> dict:
    """``{"scores": {subject: {estimator: score}}, "ranking": {estimator: [refs best
    first]}, "rows", "seconds"}`` on ``demos`` demonstrations of ``task``."""
    from ..transfer.rank import ranked

    check_policy_base(base)
    if not skills:
        raise SkillError("no candidate skills to score")
    d = demonstrations(task, demos, seed, cache=cache)
    y = np.clip(d.act, -1.0, 1.0).astype(np.float64)
    start, scores = time.perf_counter(), {}
    subjects = ([("base", None)] if include_base else []) + [(s.ref, s) for s in skills]
    for i, (subject, skill) in enumerate(subjects):
        feats, act = policy_features(load_policy(base, skill), d.obs)
        scores[subject] = {"logme": round(logme(feats, y, regression=True), 6),
                           "bc": round(-float(np.mean((act - y) ** 2)), 6)}
        if progress is not None:
            progress(i + 1, len(subjects))
    refs = [s.ref for s in skills]
    return {"scores": scores, "rows": int(len(y)), "demos": demos,
            "ranking": {e: ranked(refs, [scores[r][e] for r in refs]) for e in POLICY_ESTIMATORS},
            "seconds": round(time.perf_counter() - start, 2)}


def verify_policy(base: Base, src: Skill, from_scratch: bool, recipe: PolicyLoraRecipe,
                  episodes: int, cache: Path | None = None) -> dict:
    """One verification run (nothing stored): the recipe's task learnt from ``src``'s LoRA
    tensors (or a fresh init of its rank), then its held-out success."""
    if src.kind != "lora":
        raise SkillError(f"verify fine-tunes from LoRA skills; {src.ref} is a {src.kind} skill")
    rank = int(src.config["r"])
    r = replace(recipe, rank=rank, alpha=int(src.config["lora_alpha"]))
    t0 = time.perf_counter()
    skill = train_policy_lora("verify", base, r, cache=cache,
                              init=None if from_scratch else src.tensors)
    res = success_rate(load_policy(base, skill), r.task, episodes, r.seed, r.horizon, r.speed)
    return {"success": res["success"], "stderr": res["stderr"],
            "final_loss": skill.metrics["train"]["final_loss"],
            "seconds": round(time.perf_counter() - t0, 2)}
