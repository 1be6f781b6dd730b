"""Success rate of a policy on held-out goals, and the one way to load a policy subject.

A subject is the base alone, a static skill on it (LoRA, delta, sparse: ΔW added to the
weights, as for language models), or a ``router`` skill over policy skills (PSEC's α(s),
``policy.routed``; loaded by ``jobs.subject_policy``). Each of ``episodes`` held-out goals
(``env.EVAL_GOALS``) is run once to its first success or the horizon; success rate ± its binomial standard error
√(p(1 − p)/E). An episode the simulator kills is a failure and is counted in ``errors``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..base import Base
from ..skill import Skill
from .bc import check_policy_base
from .env import HORIZON, eval_goals, run_episode


def actor(model: torch.nn.Module):
    """``state → action`` for one state (numpy in, numpy out) with ``model`` in eval mode."""
    model.eval()

    @torch.no_grad()
    def act(obs: np.ndarray) -> np.ndarray:
        return model(obs=torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()
    return act


def load_policy(base: Base, skill: Skill | None = None):
    """The policy of a static ``skill`` on ``base`` (None: the base alone); routers load
    through ``jobs.subject_policy`` (they need their members)."""
    check_policy_base(base)
    return base.load_model([skill] if skill is not None else [])


def success_rate(model: torch.nn.Module, task: str, episodes: int = 20, seed: int = 0,
                 horizon: int = HORIZON, speed: float = 1.0, progress=None) -> dict:
    """``{"success", "stderr", "episodes", "successes", "errors", "steps", "seconds",
    "success_steps"}`` (the last: each successful episode's steps to its success, sorted —
    the success curve)."""
    act = actor(model)
    start, results = time.perf_counter(), []
    for goal in eval_goals(episodes):
        results.append(run_episode(act, task, seed, goal, horizon, speed))
        if progress is not None:
            progress(1)
    return summarize(results, time.perf_counter() - start)


def summarize(results, seconds: float = 0.0) -> dict:
    n = len(results)
    k = sum(r.success for r in results)
    p = k / n if n else 0.0
    errors = [r.error for r in results if r.error]
    return {"success": round(p, 4), "stderr": round(math.sqrt(p * (1 - p) / n), 4) if n else 0.0,
            "episodes": n, "successes": k, "errors": len(errors),
            **({"first_error": errors[0]} if errors else {}),
            "steps": sum(r.steps for r in results), "seconds": round(seconds, 2),
            "success_steps": sorted(r.steps for r in results if r.success)}


def success_curve(result: dict, horizon: int) -> list[tuple[int, float]]:
    """The fraction of episodes that have succeeded by step t, for t = 0, 5, 10, … horizon."""
    n, done = result["episodes"], result["success_steps"]
    steps = sorted({*range(0, horizon + 1, 5), horizon})
    return [(t, sum(s <= t for s in done) / n if n else 0.0) for t in steps]
