"""Continual policy shift: Meta-World tasks learnt one after another (PSEC's third setting,
LIBERO's metrics; docs/methods.md §10 and §16).

Every strategy clones each task from the same demonstrations with the same budget (``steps``
AdamW steps of ``batch_size`` states, ``bc.fit``'s schedule) and the same LoRA shape:

- ``seq``    one shared LoRA fine-tuned on each task in turn;
- ``replay`` the shared LoRA, ``replay_fraction`` of every batch drawn from the earlier
  tasks' demonstrations (all of them kept: ten demonstrations are a few thousand states);
- ``ewc``    the shared LoRA plus λ Σ F (θ − θ*)² (Kirkpatrick et al. 2017), F the empirical
  Fisher of the BC loss (mean squared gradient over ``FISHER_BATCHES`` minibatches; the BC
  loss is a Gaussian log-likelihood up to scale), accumulated online F ← γF + F_t;
- ``expand`` PSEC's expansion: a new LoRA per task on the frozen base, earlier ones kept.
  R is task-aware (task i answered by skill i; a task with no skill yet by the base). Its
  forgetting is zero by construction — checked by re-reading every earlier skill's tensors
  bit for bit after each task, so their success rates are the ones measured when they were
  learnt (rollouts are deterministic in policy, task and seed).

``R[t][i]``: success on task i after learning task t; ``curves[k]``: success on task k
before its training (step 0) and at ``curve_points`` evenly spaced steps while it is learnt
— LIBERO's learning curves, from which ``evaluate.continual.libero`` gives FWT, NBT and AUC.
LIBERO's finding to test: sequential fine-tuning has the best forward transfer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..acquire.regularize import ewc_penalty, online_fisher
from ..base import Base
from ..evaluate import continual as metrics
from . import PolicyError
from .bc import check_int, check_policy_base, check_rate, fit, policy_peft
from .env import HORIZON, check_horizon, check_task, demonstrations, eval_goals
from .evaluate import success_rate

STRATEGIES = ("seq", "replay", "ewc", "expand")
FISHER_BATCHES = 16


@dataclass(frozen=True)
class PolicyContinualRecipe:
    tasks: tuple[str, ...] = ("door-open-v3", "drawer-open-v3", "button-press-topdown-v3",
                              "window-open-v3")
    strategies: tuple[str, ...] = STRATEGIES
    demos: int = 10
    rank: int = 6
    steps: int = 1000
    lr: float = 1e-3
    batch_size: int = 128
    replay_fraction: float = 0.5
    ewc_lambda: float = 1e4
    ewc_gamma: float = 0.9
    curve_points: int = 3
    episodes: int = 10
    noise: float = 0.1
    seed: int = 0
    horizon: int = HORIZON

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "strategies", tuple(self.strategies))
        if len(self.tasks) < 2 or len(set(self.tasks)) != len(self.tasks):
            raise PolicyError("continual learning needs at least two different tasks")
        for t in self.tasks:
            check_task(t)
        bad = [s for s in self.strategies if s not in STRATEGIES]
        if bad or not self.strategies:
            raise PolicyError(f"unknown strategy {bad[0] if bad else '(none)'!r}; choose from "
                              f"{', '.join(STRATEGIES)}")
        for key, high in (("demos", 1000), ("rank", 4096), ("steps", 10 ** 6),
                          ("batch_size", 65536), ("curve_points", 100)):
            check_int(key, getattr(self, key), high)
        check_rate("lr", self.lr)
        check_rate("replay_fraction", self.replay_fraction)
        check_rate("ewc_gamma", self.ewc_gamma)
        if not (isinstance(self.ewc_lambda, int | float) and math.isfinite(self.ewc_lambda)
                and 0 <= self.ewc_lambda <= 1e12):
            raise PolicyError(f"ewc_lambda must be in [0, 1e12], got {self.ewc_lambda!r}")
        eval_goals(self.episodes)
        check_horizon(self.horizon)

    def as_dict(self) -> dict:
        return {"method": "policy-continual", **asdict(self), "tasks": list(self.tasks),
                "strategies": list(self.strategies)}

    def checkpoints(self) -> list[int]:
        return sorted({max(1, round(self.steps * j / self.curve_points))
                       for j in range(1, self.curve_points + 1)})


def fisher(model, params: dict, obs: np.ndarray, act: np.ndarray, batch_size: int,
           seed: int) -> dict[str, torch.Tensor]:
    """Empirical Fisher diagonal of the BC loss: mean over minibatches of grad²."""
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.as_tensor(obs), torch.as_tensor(act).clamp(-1.0, 1.0)
    out = {k: torch.zeros_like(p) for k, p in params.items()}
    for _ in range(FISHER_BATCHES):
        idx = torch.randint(len(x), (min(batch_size, len(x)),), generator=gen)
        model.zero_grad(set_to_none=True)
        torch.mean((model(obs=x[idx]) - y[idx]) ** 2).backward()
        for k, p in params.items():
            out[k] += p.grad.detach() ** 2 / FISHER_BATCHES
    model.zero_grad(set_to_none=True)
    return out


def run_policy_continual(base: Base, recipe: PolicyContinualRecipe, cache=None,
                         progress=None) -> dict:
    """Every strategy's R, learning curves and metrics (LIBERO's FWT/NBT/AUC, ACC, BWT,
    Chaudhry forgetting), and the success of the base alone on each task (``b``)."""
    check_policy_base(base)
    r = recipe
    demos = [demonstrations(t, r.demos, r.seed, r.noise, r.horizon, cache=cache) for t in r.tasks]

    def success(model, task) -> float:
        return success_rate(model, task, r.episodes, r.seed, r.horizon)["success"]

    b = [success(base.load_model(), t) for t in r.tasks]
    out = {"recipe": r.as_dict(), "b": b, "strategies": {}}
    for strategy in r.strategies:
        run = _expand(base, r, demos, b, success) if strategy == "expand" else \
            _shared(base, r, demos, strategy, success)
        R, curves = run["R"], run["curves"]
        out["strategies"][strategy] = {
            **run, **{k: v for k, v in metrics.libero(curves, R).items()},
            "acc": metrics.acc(R), "bwt": metrics.bwt(R),
            "forgetting": metrics.forgetting_chaudhry(R)}
        if progress is not None:
            progress(1)
    return out


def _shared(base, r: PolicyContinualRecipe, demos, strategy: str, success) -> dict:
    """seq, replay or ewc: one LoRA carried from task to task."""
    model, params = policy_peft(base, r.rank, 2 * r.rank, r.seed)
    R, curves, F, anchor = [], [], None, None
    for k, (task, d) in enumerate(zip(r.tasks, demos, strict=True)):
        curve = [success(model, task)]
        penalty = replay = None
        if strategy == "ewc" and F is not None:
            def penalty(F=F, anchor=anchor):
                return ewc_penalty(params, F, anchor, r.ewc_lambda)
        if strategy == "replay" and k:
            replay = (np.concatenate([p.obs for p in demos[:k]]),
                      np.concatenate([p.act for p in demos[:k]]), r.replay_fraction)
        fit(model, list(params.values()), d.obs, d.act, r.steps, r.lr, r.batch_size,
            r.seed + k, penalty=penalty, replay=replay,
            at=(r.checkpoints(), lambda _step, task=task: curve.append(success(model, task))))
        curves.append(curve)
        R.append([curve[-1] if i == k else success(model, t) for i, t in enumerate(r.tasks)])
        if strategy == "ewc":
            F = online_fisher(F, fisher(model, params, d.obs, d.act, r.batch_size, r.seed + k),
                              r.ewc_gamma)
            anchor = {n: p.detach().clone() for n, p in params.items()}
    return {"R": R, "curves": curves}


def _expand(base, r: PolicyContinualRecipe, demos, b, success) -> dict:
    """A new LoRA per task; earlier ones frozen (checked bit for bit after every task)."""
    R, curves, kept, own = [], [], [], []
    for k, (task, d) in enumerate(zip(r.tasks, demos, strict=True)):
        model, params = policy_peft(base, r.rank, 2 * r.rank, r.seed + k)
        curve = [success(model, task)]
        fit(model, list(params.values()), d.obs, d.act, r.steps, r.lr, r.batch_size, r.seed + k,
            at=(r.checkpoints(), lambda _step, task=task, model=model: curve.append(
                success(model, task))))
        curves.append(curve)
        own.append(curve[-1])
        kept.append((model, {n: p.detach().clone() for n, p in params.items()}))
        for m, snapshot in kept:
            now = {n: p for n, p in m.named_parameters() if p.requires_grad}
            if any(not torch.equal(now[n], v) for n, v in snapshot.items()):
                raise RuntimeError("an earlier skill changed while a later one was learnt")
        R.append([own[i] if i <= k else b[i] for i in range(len(r.tasks))])
    return {"R": R, "curves": curves, "members_unchanged": True}
