"""Localize a skill: train a graft mask on the skill's own task, store a ``sparse`` skill.

Orchestration above the pure maths of ``graft.py`` (docs/methods.md §5, Panigrahi et al. 2023):

1. Δ = the skill's ``delta()`` on the eligible tensors, the transformer blocks (parameters
   under the base's block list, ``base.arch.blocks``: ``model.layers`` for Llama,
   ``transformer.h`` for GPT-2; embeddings, final norm and LM head excluded). The sparsity is
   a fraction of *all* eligible parameters (norm weights and tensors the skill leaves
   alone count in the denominator), so k = round(sparsity · n_eligible).
2. γ_base = the top-k entries of |Δ|; S ~ U[0, 1). For ``steps`` minibatches of the task's
   training examples (answer-token loss, ``acquire.data.training_batch``) the frozen base
   is run with θ = θ_pre + γ(S)⊙Δ through ``torch.func.functional_call``; ∇_θL comes from
   autograd and S takes the authors' plain gradient step (``graft.update``).
   Every ``rebase_every`` steps γ_base becomes the current rounded graft and S is redrawn.
3. Every ``eval_every`` steps (and at step 0, i.e. the untrained top-|Δ| mask) the rounded
   mask (at most k entries with ``budget``; see ``GraftRecipe``) is scored on the training
   pool and on a disjoint validation pool (both from the world's train split) by
   teacher-forced exact match — all answer tokens and ``</s>`` are the arg-max, which is
   exactly when greedy decoding returns the target — tie-broken by mean target log-prob.
   The best rounded mask is kept, so training can only replace the initial mask by one
   that scores higher on train + validation.
4. On ``n`` held-out inputs (the eval split) the base, the skill, the learned graft, and
   two baselines of the learned graft's size — the top-|Δ| mask without training and a
   uniformly random mask over the entries Δ touches — are decoded greedily and graded.
   Relative gain = (P_graft − P_base)/(P_skill − P_base) on exact match (and on mean
   target log-prob). Calibration: the paper's 10-bin ECE is for classifiers; for these
   generation skills we report mean target log-prob and a *token-level* 10-bin ECE
   (teacher-forced next-token distribution over answer tokens, ``metrics.ece``), which is
   an ECE-like proxy, not the paper's sequence-level one.

Hyper-parameters at this scale and why: docs/methods.md §5.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from ..acquire.data import Sampler, training_batch
from ..base import Base, check_base
from ..evaluate.metrics import ece
from ..evaluate.suites import evaluate_model
from ..skill import Skill, SkillError
from ..worlds import get_world
from . import graft


@dataclass(frozen=True)
class GraftRecipe:
    """Everything that decides a graft's mask. The defaults, how the code departs from the
    authors' rule (a size budget, restarts every ``rebase_every`` steps, lr 1e6) and the
    measurements behind each choice are in docs/methods.md §5; ``budget=False,
    rebase_every=0, lr=1e7`` is the authors' own rule.
    """

    sparsity: float = 0.01
    steps: int = 200
    lr: float = 1e6
    b: float = 10.0
    batch_size: int = 64
    n_train: int = 512
    n_val: int = 256
    eval_every: int = 5
    budget: bool = True
    rebase_every: int = 25
    seed: int = 0
    world: str | None = None
    task: str | None = None
    world_args: dict = field(default_factory=dict)
    prefixes: list[str] = field(default_factory=list)  # empty: the base's blocks (base.arch)

    def check(self) -> None:
        if not 0.0 < self.sparsity <= 1.0:
            raise SkillError(f"sparsity must be in (0, 1], got {self.sparsity}")
        if self.steps < 0 or self.rebase_every < 0 or self.eval_every < 1 or self.batch_size < 1:
            raise SkillError("steps and rebase_every must be ≥ 0, eval_every and batch_size ≥ 1")
        if self.n_train < 1 or self.n_val < 1:
            raise SkillError("n_train and n_val must be ≥ 1")
        if self.lr < 0:
            raise SkillError(f"lr must be ≥ 0, got {self.lr}")

    def as_dict(self) -> dict[str, Any]:
        return {"method": "graft", **asdict(self)}


# -- Δ and eligibility ---------------------------------------------------------------
def eligible_deltas(skill: Skill, params: dict[str, torch.Tensor],
                    prefixes: Sequence[str]) -> tuple[dict[str, torch.Tensor], int]:
    """(Δ of the skill on eligible parameters it changes, number of eligible parameters)."""
    names = graft.eligible_names(params, prefixes)
    if not names:
        raise SkillError(f"no parameter of the base starts with {', '.join(prefixes)}: "
                         "nothing is eligible for grafting")
    deltas = {}
    for p, dw in skill.delta().items():
        if p not in params:
            raise SkillError(f"skill {skill.ref} changes {p!r}, which the base lacks")
        if tuple(dw.shape) != tuple(params[p].shape):
            raise SkillError(f"skill {skill.ref}: ΔW for {p} has shape {tuple(dw.shape)}, "
                             f"base has {tuple(params[p].shape)}")
        if graft.is_eligible(p, prefixes):
            deltas[p] = dw.float()
    if not deltas:
        raise SkillError(f"skill {skill.ref} changes no eligible parameter "
                         f"(prefixes {', '.join(prefixes)})")
    return deltas, sum(params[p].numel() for p in names)


# -- teacher-forced scoring ----------------------------------------------------------
class Scorer:
    """Loss, exact match and mean target log-prob of ``model`` with replaced parameters,
    teacher-forced on fixed examples (one forward pass; no decoding)."""

    def __init__(self, model, tokenizer, examples, chunk: int = 512):
        self.model = model
        self.batches = [training_batch(tokenizer, examples[i: i + chunk])
                        for i in range(0, len(examples), chunk)]

    @torch.no_grad()
    def __call__(self, params: dict[str, torch.Tensor]) -> dict[str, float]:
        em, lp, nll, ntok = [], [], 0.0, 0
        for batch in self.batches:
            logits = functional_call(self.model, params, args=(), kwargs={
                "input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            labels = batch["labels"][:, 1:]
            valid = labels != -100
            picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            hit = (logp.argmax(-1) == labels) | ~valid
            em += hit.all(dim=1).float().tolist()
            lp += ((picked * valid).sum(1) / valid.sum(1)).tolist()
            nll -= float((picked * valid).sum())
            ntok += int(valid.sum())
        return {"exact_match": float(np.mean(em)), "mean_logprob": float(np.mean(lp)),
                "loss": nll / ntok}


def _selection_key(res: dict) -> tuple[float, float]:
    """Train + validation exact match, ties broken by train + validation mean log-prob."""
    tr, va = res["train"], res["val"]
    return (tr["exact_match"] + va["exact_match"], tr["mean_logprob"] + va["mean_logprob"])


# -- mask training -------------------------------------------------------------------
def lm_loss(model, tokenizer) -> Callable[[dict, list], torch.Tensor]:
    """The generation objective: the answer-token loss of a batch with weights θ."""
    def loss(theta: dict[str, torch.Tensor], examples) -> torch.Tensor:
        return functional_call(model, theta, args=(), kwargs=training_batch(tokenizer, examples)).loss
    return loss


def train_mask(model, theta_pre: dict[str, torch.Tensor], deltas: dict[str, torch.Tensor], k: int,
               recipe: GraftRecipe, sampler: Sampler, batch_loss, score_train: Scorer,
               score_val: Scorer, progress: Callable[[int, float], None] | None = None) -> dict:
    """Train S from γ_base = top-k |Δ|; return the best rounded mask and the curve.

    ``model`` is the frozen base; its parameters in ``deltas`` are replaced functionally.
    ``batch_loss(θ, examples)`` is the task's loss with those weights (:func:`lm_loss`, or
    a classifier's cross-entropy); the scorers return ``exact_match`` and ``mean_logprob``.
    With ``recipe.rebase_every`` = R > 0, every R steps γ_base becomes the current rounded
    graft and S is drawn afresh, so the relaxed model the gradient sees stays the graft
    that would be kept (see ``GraftRecipe``).
    """
    for p in model.parameters():
        p.requires_grad_(False)
    keys = sorted(deltas)
    shapes = {p: deltas[p].shape for p in keys}
    gb = init_gb = graft.top_mask(deltas, k)
    s = graft.init_scores(shapes, recipe.seed)

    def rounded() -> dict[str, torch.Tensor]:
        if recipe.budget:
            return graft.budget_masks(s, gb, recipe.b, k)
        return {p: graft.round_mask(s[p], gb[p], recipe.b) for p in keys}

    def evaluate(mask: dict[str, torch.Tensor]) -> dict:
        params = graft.grafted(theta_pre, deltas, mask)
        return {"train": score_train(params), "val": score_val(params),
                "size": graft.mask_size(mask)}

    def point(step: int, loss: float | None, res: dict) -> dict:
        return {"step": step, "loss": loss, "size": res["size"],
                "train_em": res["train"]["exact_match"], "val_em": res["val"]["exact_match"]}

    init = best = last = evaluate(gb)
    best_mask, last_mask, best_step = gb, gb, 0
    curve, running = [point(0, None, init)], []
    for step in range(1, recipe.steps + 1):
        with torch.no_grad():
            theta = graft.grafted(theta_pre, deltas,
                                  {p: graft.gamma(s[p], gb[p], recipe.b) for p in keys})
        leaves = [theta[p].requires_grad_(True) for p in keys]
        loss = batch_loss(theta, sampler.batch(step - 1))
        grads = torch.autograd.grad(loss, leaves)
        s = {p: graft.update(s[p], gb[p], g, deltas[p], recipe.lr, recipe.b)
             for p, g in zip(keys, grads, strict=True)}
        running.append(loss.item())
        if progress is not None:
            progress(step, running[-1])
        if step % recipe.eval_every == 0 or step == recipe.steps:
            mask = rounded()
            if not all(torch.equal(mask[p], last_mask[p]) for p in keys):
                last = evaluate(mask)
            last_mask = mask
            curve.append(point(step, float(np.mean(running)), last))
            running = []
            if _selection_key(last) > _selection_key(best):
                best_mask, best, best_step = mask, last, step
        if recipe.rebase_every and step % recipe.rebase_every == 0 and step < recipe.steps:
            gb, s = rounded(), graft.init_scores(shapes, recipe.seed + step)
    return {"mask": best_mask, "init_mask": init_gb, "best": best, "init": init,
            "best_step": best_step, "curve": curve}


# -- evaluation ----------------------------------------------------------------------
@torch.no_grad()
def token_ece(model, tokenizer, examples, n_bins: int = 10) -> float:
    """10-bin ECE of the teacher-forced next-token distribution over answer tokens."""
    probs, labels = [], []
    for i in range(0, len(examples), 256):
        batch = training_batch(tokenizer, examples[i: i + 256])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        lab = batch["labels"][:, 1:]
        valid = lab != -100
        probs.append(torch.softmax(logits[:, :-1].float(), -1)[valid].double().numpy())
        labels.append(lab[valid].numpy())
    return ece(np.concatenate(probs), np.concatenate(labels), n_bins=n_bins)


@torch.no_grad()
def _set_params(model, theta_pre: dict[str, torch.Tensor], deltas: dict[str, torch.Tensor],
                mask: dict[str, torch.Tensor] | None) -> None:
    params = dict(model.named_parameters())
    for p, t in theta_pre.items():
        params[p].copy_(t if mask is None else t + mask[p].float() * deltas[p])


def _evaluate(model, tokenizer, world, task: str, n: int, seed: int) -> dict[str, float]:
    m = evaluate_model(model, tokenizer, world, task, n, seed)
    m["token_ece"] = token_ece(model, tokenizer, world.examples(task, n, seed=seed, split="eval"))
    return m


def _gains(m: dict, base: dict, full: dict) -> dict[str, float | None]:
    return {"exact_match": graft.relative_gain(m["exact_match"], base["exact_match"],
                                               full["exact_match"]),
            "mean_logprob": graft.relative_gain(m["mean_logprob"], base["mean_logprob"],
                                                full["mean_logprob"])}


def check_localizable(skill: Skill) -> None:
    """SkillError for a skill that acts per input (a router, a chain): no weights to localize."""
    if skill.kind in ("router", "chain"):
        raise SkillError(f"skill {skill.ref} is a {skill.kind}: it acts per input, so it has no "
                         "weights of its own to localize")


def resolved(base: Base, skill: Skill, recipe: GraftRecipe) -> tuple[GraftRecipe, Any]:
    """``recipe`` checked, with the skill's world, task and data filled in where it names
    none, and that world built; one line if the skill records none or is on another base."""
    recipe.check()
    check_base(skill, base)
    check_localizable(skill)
    world_name = recipe.world or skill.recipe.get("world")
    task = recipe.task or skill.recipe.get("task")
    world_args = recipe.world_args or skill.recipe.get("world_args") or {}
    if not world_name or not task:
        raise SkillError(f"skill {skill.ref} does not record its world and task "
                         "(a merge, an import?): pass --world and --task")
    recipe = replace(recipe, world=world_name, task=task, world_args=world_args)
    return recipe, get_world(world_name, **world_args)


def localize(base: Base, skill: Skill, recipe: GraftRecipe, name: str | None = None,
             n_eval: int = 200, progress: Callable[[int, float], None] | None = None) -> Skill:
    """Localize ``skill`` on ``base``: an unsaved ``sparse`` skill whose metrics hold the
    learned graft, the top-|Δ| and random baselines, the base and the skill itself. On an
    encoder base the skill is a classifier (``localize/classify.py``); on a policy base, a
    policy (``localize/policy.py``)."""
    if base.kind == "encoder":
        from .classify import localize_classifier

        return localize_classifier(base, skill, recipe, name, n_eval, progress)
    if base.kind == "policy":
        from .policy import localize_policy

        return localize_policy(base, skill, recipe, name, n_eval, progress)
    t0 = time.perf_counter()
    recipe, world = resolved(base, skill, recipe)
    world_name, task = recipe.world, recipe.task
    tokenizer = base.load_tokenizer()
    model = base.load_model()
    params = dict(model.named_parameters())
    deltas, n_eligible = eligible_deltas(skill, params,
                                         recipe.prefixes or [base.arch.block_prefix])
    theta_pre = {p: params[p].detach().clone() for p in sorted(deltas)}
    k = max(1, round(recipe.sparsity * n_eligible))

    pool = world.examples(task, recipe.n_train + recipe.n_val, seed=recipe.seed, split="train")
    train_ex, val_ex = pool[: recipe.n_train], pool[recipe.n_train:]
    sampler = Sampler({task: train_ex}, recipe.batch_size, recipe.seed)
    t_train = time.perf_counter()
    res = train_mask(model, theta_pre, deltas, k, recipe, sampler, lm_loss(model, tokenizer),
                     Scorer(model, tokenizer, train_ex), Scorer(model, tokenizer, val_ex), progress)
    train_seconds = time.perf_counter() - t_train
    learned = res["mask"]
    size = graft.mask_size(learned)
    baselines = {
        "learned": learned,
        "top_delta": graft.top_mask(deltas, size),
        "random": graft.random_mask({p: deltas[p].shape for p in deltas}, size, recipe.seed),
    }

    # held-out evaluation (greedy decoding), one model whose block weights are swapped
    evals: dict[str, dict] = {}
    _set_params(model, theta_pre, deltas, None)
    evals["base"] = _evaluate(model, tokenizer, world, task, n_eval, recipe.seed)
    for label, mask in baselines.items():
        _set_params(model, theta_pre, deltas, mask)
        evals[label] = _evaluate(model, tokenizer, world, task, n_eval, recipe.seed)
    full = base.load_model([skill])
    evals["skill"] = _evaluate(full, tokenizer, world, task, n_eval, recipe.seed)

    def brief(label: str) -> dict:
        m = evals[label]
        row = {k_: m[k_] for k_ in ("exact_match", "exact_match_stderr", "mean_logprob",
                                     "token_accuracy", "token_ece")}
        if label in baselines:
            row["relative_gain"] = _gains(m, evals["base"], evals["skill"])
            row["size"] = graft.mask_size(baselines[label])
            row["fraction"] = row["size"] / n_eligible
        return row

    tensors, config = graft.mask_to_sparse(learned, deltas)
    flips_in = sum(int((learned[p] & ~res["init_mask"][p]).sum()) for p in deltas)
    flips_out = sum(int((~learned[p] & res["init_mask"][p]).sum()) for p in deltas)
    metrics = {"localization": {
        "world": world_name, "task": task, "n_eval": n_eval, "seed": recipe.seed,
        "n_eligible": n_eligible, "k_init": k, "size": size, "fraction": size / n_eligible,
        "target_sparsity": recipe.sparsity, "best_step": res["best_step"],
        "entries_added": flips_in, "entries_removed": flips_out,
        "selection": {"init": {"train_em": res["init"]["train"]["exact_match"],
                               "val_em": res["init"]["val"]["exact_match"]},
                      "best": {"train_em": res["best"]["train"]["exact_match"],
                               "val_em": res["best"]["val"]["exact_match"]}},
        "relative_gain": _gains(evals["learned"], evals["base"], evals["skill"])["exact_match"],
        "subjects": {label: brief(label) for label in ("base", "skill", *baselines)},
        "curve": res["curve"],
        "calibration_note": "token_ece: teacher-forced next-token 10-bin ECE on answer tokens; "
                            "mean_logprob is the mean target log-prob per example",
        "train_seconds": round(train_seconds, 2),
        "seconds": round(time.perf_counter() - t0, 2),
    }}
    recipe_d = recipe.as_dict() | {"source": skill.ref}
    return Skill(name=name or f"{skill.name}-graft", kind="sparse", base=skill.base,
                 tensors=tensors, config=config, recipe=recipe_d, lineage=[skill.ref],
                 metrics=metrics)


# -- overlap -------------------------------------------------------------------------
def overlap_skills(skills: Sequence[Skill]) -> dict[str, Any]:
    """|γ_i ∩ γ_j| / |γ_j| for every ordered pair of sparse skills on one base."""
    if not skills:
        raise SkillError("overlap needs at least one skill")
    bad = [f"{s.ref} is {s.kind}" for s in skills if s.kind != "sparse"]
    if bad:
        raise SkillError("overlap compares sparse skills (make one with `skillbank localize`): "
                         + ", ".join(bad))
    if len({s.base for s in skills}) > 1:
        raise SkillError("skills come from different bases: "
                         + ", ".join(f"{s.ref}={s.base[:12]}" for s in skills))
    sets = [graft.index_sets(s.tensors) for s in skills]
    for s, st in zip(skills, sets, strict=True):
        shapes = s.config.get("shapes", {})
        for p, idx in st.items():
            if p not in shapes or (idx.numel() and int(idx.max()) >= math.prod(shapes[p])):
                raise SkillError(f"skill {s.ref}: indices of {p} do not fit its recorded shape")
    return {"skills": [s.ref for s in skills], "sizes": [graft.set_size(st) for st in sets],
            "matrix": graft.overlap_matrix(sets)}
