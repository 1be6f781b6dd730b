"""LoRAHub: gradient-free search of merge weights on a few examples of a new task (docs/methods.md §3).

Huang et al. 2024 (LoRAHub), as in the authors' code: one weight w_i per member skill,
w ∈ [-1.5, 1.5]^n, starting at w = 0, found by nevergrad's ``NGOpt`` with a budget of
~40 evaluations of

    L(w) = CE(base + Σ_i w_i ΔW_i ; few examples) + 0.05 · mean_i |w_i|

where CE is the mean cross-entropy of the answer tokens of the ~5 examples.

Departures from the authors' code, on purpose:

- Composition is in ΔW space, W = W0 + Σ_i w_i·ΔW_i per weight matrix. The authors
  average the A's and the B's separately (B̄Ā), which adds cross terms w_i w_j B_i A_j.
- The result is the *best evaluated* w (the objective is deterministic), not nevergrad's
  recommendation, which may be a point never evaluated. w = 0 (the base) is the first
  point asked, so the result is never worse on the few examples than the start.
- Determinism: nevergrad's random state is seeded, and the examples come from the world
  with the same seed; the same recipe and seed give the same weights and tensors.

The composed skill is stored through the ordinary merge machinery (a ``linear`` merge with
the found weights, so a ``delta`` skill, exact: merge error 0), with a ``lorahub`` recipe,
the found weights and the members as lineage.

On an encoder base the members are classifiers and CE is the cross-entropy of the few
examples' labels, read by the target task's head: a member's own head when a member
answers the task, otherwise the task's label-word head on the base (``acquire.classify.
label_head``, frozen), which the composed skill then carries beside the members' heads —
so LoRAHub composes classifiers for a task none of them was trained on, as in the paper.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..acquire.data import training_batch
from ..base import Base, check_base
from ..skill import Skill, SkillError
from ..worlds import get_world
from .ops import MergeSpec, aligned_deltas, check_members, merge_skills

REG = 0.05
BOUND = 1.5


def objective(ce: float, weights: Sequence[float], reg: float = REG) -> float:
    """LoRAHub's objective: CE + reg · mean |w_i|."""
    return float(ce) + reg * float(np.mean(np.abs(np.asarray(weights, dtype=float))))


def search(
    loss: Callable[[np.ndarray], float],
    n: int,
    steps: int = 40,
    seed: int = 0,
    bound: float = BOUND,
    progress=None,
) -> tuple[np.ndarray, float, list[float]]:
    """Minimise ``loss(w)`` over w ∈ [-bound, bound]^n from w = 0 with nevergrad NGOpt.

    Returns (best evaluated w, its loss, loss of every evaluation in order).
    """
    import nevergrad as ng

    if n < 1 or steps < 1:
        raise SkillError(f"LoRAHub needs ≥ 1 member and ≥ 1 step (got {n}, {steps})")
    param = ng.p.Array(init=np.zeros(n), lower=-bound, upper=bound)
    param.random_state = np.random.RandomState(seed)
    opt = ng.optimizers.NGOpt(parametrization=param, budget=steps)
    best_w, best, history = np.zeros(n), float("inf"), []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's COBYLA complains about its own defaults
        for step in range(steps):
            cand = opt.ask()
            w = np.clip(np.asarray(cand.value, dtype=float), -bound, bound)
            value = float(loss(w))
            opt.tell(cand, value)
            history.append(value)
            if value < best:
                best_w, best = w.copy(), value
            if progress is not None:
                progress(step + 1, best)
    return best_w, best, history


class WeightedBase:
    """A base model whose changed matrices are set to W0 + Σ_i w_i ΔW_i on demand."""

    def __init__(self, model: torch.nn.Module, members: Sequence[Skill]):
        self.model = model
        self.aligned = aligned_deltas(members)
        params = dict(model.named_parameters())
        missing = [p for p in self.aligned if p not in params]
        if missing:
            raise SkillError(f"members change {missing[0]!r}, which the base lacks")
        self.params = {p: params[p] for p in self.aligned}
        self.w0 = {p: t.detach().clone() for p, t in self.params.items()}
        self.stacks = {p: torch.stack(ts) for p, ts in self.aligned.items()}

    @torch.no_grad()
    def set(self, weights: Sequence[float]) -> None:
        w = torch.as_tensor(np.asarray(weights, dtype=np.float32))
        for p, stack in self.stacks.items():
            self.params[p].copy_(self.w0[p] + torch.tensordot(w, stack, dims=1))


def lorahub(
    name: str,
    base: Base,
    members: Sequence[Skill],
    world_name: str,
    task: str,
    examples: int = 5,
    steps: int = 40,
    seed: int = 0,
    reg: float = REG,
    bound: float = BOUND,
    progress=None,
    world_args: dict | None = None,
) -> Skill:
    """Find LoRAHub weights for ``task`` from ``examples`` training examples (of the world
    built with ``world_args``); return the composed (unsaved) ``delta`` skill."""
    check_members(members)
    for m in members:
        check_base(m, base)
    if examples < 1:
        raise SkillError(f"LoRAHub needs ≥ 1 example, got {examples}")
    world = get_world(world_name, **(world_args or {}))
    shots = world.examples(task, examples, seed=seed, split="train")
    model = base.load_model()
    for p in model.parameters():
        p.requires_grad_(False)
    new_head = None
    if base.kind == "encoder":
        forward, new_head = _classifier_loss(base, model, members, world, task, shots)
    else:
        batch = training_batch(base.load_tokenizer(), shots)

        def forward() -> torch.Tensor:
            return model(**batch).loss
    weighted = WeightedBase(model, members)
    ces: list[float] = []

    @torch.no_grad()
    def loss(w: np.ndarray) -> float:
        weighted.set(w)
        ce = float(forward())
        ces.append(ce)
        return objective(ce, w, reg)

    best_w, best, history = search(loss, len(members), steps, seed, bound, progress)
    weights = [float(x) for x in best_w]
    skill = merge_skills(name, members, MergeSpec("linear", weights=weights, seed=seed))
    if new_head is not None:   # the task's label-word head travels with the composed skill
        labels, head = new_head
        skill.tensors[f"head.{task}.weight"] = head.weight.detach().clone()
        skill.tensors[f"head.{task}.bias"] = head.bias.detach().clone()
        skill.config["heads"] = {**skill.config.get("heads", {}), task: list(labels)}
    skill.recipe = {
        "method": "lorahub",
        "world": world_name,
        "task": task,
        "examples": examples,
        "steps": steps,
        "seed": seed,
        "reg": reg,
        "bound": bound,
        "optimizer": "nevergrad NGOpt",
        "weights": weights,
        "members": [m.ref for m in members],
        "merge": skill.recipe,
    }
    skill.metrics["lorahub"] = {
        "objective": best,
        "ce": ces[history.index(best)],
        "objective_at_start": history[0],
        "history": history,
    }
    return skill


def _classifier_loss(base: Base, model, members: Sequence[Skill], world, task: str, shots):
    """``(forward, new head)``: the few examples' cross-entropy through ``task``'s head on
    ``model`` (whose weights LoRAHub sets), and ``(labels, head)`` when that head is the
    task's label-word head (no member answers ``task``), else None."""
    from ..acquire.classify import (
        EncoderClassifier,
        classification_world,
        encode_texts,
        label_head,
        label_indices,
    )
    from ..evaluate.classify import head_layer

    owner = next((m for m in members if task in m.heads()), None)
    tokenizer = base.load_tokenizer()
    max_length = max(int(m.config.get("max_length") or 64) for m in members)
    new_head = None
    if owner is not None:
        head, labels = head_layer(owner, task)
    else:
        labels = classification_world(world, task, base)
        pool = world.examples(task, 256, seed=0, split="train")
        head = label_head(model, tokenizer, labels, [e.prompt for e in pool], max_length)
        new_head = (labels, head)
    clf = EncoderClassifier(model, head).eval()
    enc = encode_texts(tokenizer, [e.prompt for e in shots], max_length)
    y = label_indices(shots, labels)

    def forward() -> torch.Tensor:
        return clf(**enc, labels=y).loss
    return forward, new_head
