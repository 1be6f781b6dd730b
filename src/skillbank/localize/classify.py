"""Localize a classification skill: grafting in the paper's own setting (docs/methods.md §5).

Panigrahi et al. graft RoBERTa fine-tuned on few-shot text classification; here the base is
an encoder and the skill a classifier (LoRA on attention plus a head, ``acquire/classify``).
The mask training and its selection are ``localize/ops.py``'s (``train_mask``), with the
classifier's cross-entropy as the loss and its accuracy as the selection score:

- the task model is the frozen encoder with θ = θ_pre + γ(S)⊙Δ (eligible: the encoder
  blocks, ``base.arch.blocks``), mean-pooled, read by the skill's own head;
- departure: the head is not part of the base, so it is never sparsified — every subject
  (the base, the skill, each graft and baseline) is read by the skill's head. The base row
  is therefore "the head on the unchanged encoder", the graft with zero entries, and the
  relative gain (P_graft − P_base)/(P_skill − P_base) measures what the sparse encoder
  change recovers. (The paper's prompt-based fine-tuning has no new head to set aside.)
- scores are the paper's: accuracy, and the 10-bin ECE of the class probabilities
  (``evaluate.metrics``), on the held-out split; ``exact_match`` in the stored metrics is
  the accuracy (an exact match of the label), so every consumer of a graft reads one key.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch.func import functional_call

from ..acquire.classify import Encoded, label_indices, mean_pool
from ..acquire.data import Sampler
from ..base import Base
from ..evaluate.classify import head_layer
from ..evaluate.metrics import summarize_classification
from ..skill import Skill, SkillError
from . import graft
from .ops import GraftRecipe, _set_params, eligible_deltas, resolved, train_mask


class ClassifierScorer:
    """Accuracy, mean log p(label) and loss of the encoder with replaced weights, read by a
    fixed head, on fixed examples (the graft's selection score)."""

    def __init__(self, model, head: torch.nn.Linear, encoded: Encoded, examples, labels,
                 chunk: int = 256):
        self.model, self.head = model, head
        self.batches = [(encoded.batch([e.prompt for e in examples[i:i + chunk]]),
                         label_indices(examples[i:i + chunk], labels))
                        for i in range(0, len(examples), chunk)]

    def logits(self, params: dict[str, torch.Tensor], enc: dict) -> torch.Tensor:
        hidden = functional_call(self.model, params, args=(), kwargs=enc).last_hidden_state
        return self.head(mean_pool(hidden.float(), enc["attention_mask"]))

    @torch.no_grad()
    def __call__(self, params: dict[str, torch.Tensor]) -> dict[str, float]:
        right, lp, n = 0, 0.0, 0
        for enc, y in self.batches:
            logp = torch.log_softmax(self.logits(params, enc), -1)
            right += int((logp.argmax(-1) == y).sum())
            lp += float(logp.gather(-1, y.unsqueeze(-1)).sum())
            n += len(y)
        return {"exact_match": right / n, "mean_logprob": lp / n, "loss": -lp / n}


@torch.no_grad()
def _held_out(scorer: ClassifierScorer, model, examples, encoded: Encoded, labels,
              seed: int) -> dict:
    probs = []
    for i in range(0, len(examples), 256):
        enc = encoded.batch([e.prompt for e in examples[i:i + 256]])
        probs.append(torch.softmax(scorer.logits({}, enc).double(), -1).numpy())
    y = label_indices(examples, labels).numpy()
    p = np.concatenate(probs)
    m = summarize_classification(p, y, seed=seed)
    m["mean_logprob"] = float(np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))
    m["exact_match"] = m["accuracy"]
    return m


def localize_classifier(base: Base, skill: Skill, recipe: GraftRecipe, name: str | None = None,
                        n_eval: int = 200,
                        progress: Callable[[int, float], None] | None = None) -> Skill:
    """``localize`` for a classifier on an encoder base (see the module docstring)."""
    t0 = time.perf_counter()
    recipe, world = resolved(base, skill, recipe)
    world_name, task = recipe.world, recipe.task
    if world.kind != "classification":
        raise SkillError(f"task {task!r} of world {world_name!r} is not a classification task")
    head, labels = head_layer(skill, task)
    model = base.load_model().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    params = dict(model.named_parameters())
    deltas, n_eligible = eligible_deltas(skill, params, recipe.prefixes or [base.arch.block_prefix])
    theta_pre = {p: params[p].detach().clone() for p in sorted(deltas)}
    k = max(1, round(recipe.sparsity * n_eligible))
    pool = world.examples(task, recipe.n_train + recipe.n_val, seed=recipe.seed, split="train")
    train_ex, val_ex = pool[:recipe.n_train], pool[recipe.n_train:] or pool[:recipe.n_train]
    held = world.examples(task, n_eval, seed=recipe.seed, split="eval")
    max_length = int(skill.config.get("max_length") or 512)
    encoded = Encoded(base.load_tokenizer(), [e.prompt for e in pool + held], max_length)
    score_train = ClassifierScorer(model, head, encoded, train_ex, labels)

    def batch_loss(theta, examples):
        enc = encoded.batch([e.prompt for e in examples])
        return torch.nn.functional.cross_entropy(score_train.logits(theta, enc),
                                                 label_indices(examples, labels))

    t_train = time.perf_counter()
    res = train_mask(model, theta_pre, deltas, k, recipe,
                     Sampler({task: train_ex}, recipe.batch_size, recipe.seed), batch_loss,
                     score_train, ClassifierScorer(model, head, encoded, val_ex, labels), progress)
    train_seconds = time.perf_counter() - t_train
    learned = res["mask"]
    size = graft.mask_size(learned)
    masks = {"learned": learned, "top_delta": graft.top_mask(deltas, size),
             "random": graft.random_mask({p: deltas[p].shape for p in deltas}, size, recipe.seed),
             "skill": {p: torch.ones_like(d, dtype=torch.bool) for p, d in deltas.items()}}
    evals = {}
    _set_params(model, theta_pre, deltas, None)
    evals["base"] = _held_out(score_train, model, held, encoded, labels, recipe.seed)
    for label, mask in masks.items():
        _set_params(model, theta_pre, deltas, mask)
        evals[label] = _held_out(score_train, model, held, encoded, labels, recipe.seed)

    def gains(m: dict) -> dict:
        return {key: graft.relative_gain(m[key], evals["base"][key], evals["skill"][key])
                for key in ("exact_match", "mean_logprob")}

    def brief(label: str) -> dict:
        m = evals[label]
        row = {key: m[key] for key in ("exact_match", "accuracy", "accuracy_stderr", "ece",
                                       "brier", "mean_logprob")}
        if label not in ("base", "skill"):
            row |= {"relative_gain": gains(m), "size": graft.mask_size(masks[label]),
                    "fraction": graft.mask_size(masks[label]) / n_eligible}
        return row

    tensors, config = graft.mask_to_sparse(learned, deltas)
    # the head travels with the graft: a sparse skill of a classifier is still a classifier
    tensors |= {f"head.{k_}": v.detach().clone() for k_, v in skill.head().items()}
    config |= {key: skill.config[key] for key in ("labels", "heads", "pooling", "max_length")
               if key in skill.config}
    metrics = {"localization": {
        "world": world_name, "task": task, "n_eval": len(held),
        "n_eval_requested": n_eval, "seed": recipe.seed,
        "n_eligible": n_eligible, "k_init": k, "size": size, "fraction": size / n_eligible,
        "target_sparsity": recipe.sparsity, "best_step": res["best_step"],
        "selection": {"init": {"train_em": res["init"]["train"]["exact_match"],
                               "val_em": res["init"]["val"]["exact_match"]},
                      "best": {"train_em": res["best"]["train"]["exact_match"],
                               "val_em": res["best"]["val"]["exact_match"]}},
        "relative_gain": gains(evals["learned"])["exact_match"],
        "subjects": {label: brief(label) for label in ("base", "skill", "learned", "top_delta",
                                                        "random")},
        "curve": res["curve"],
        "calibration_note": "ece: 10-bin expected calibration error of the class probabilities "
                            "(the paper's); exact_match is the accuracy; every subject is read "
                            "by the skill's own head",
        "train_seconds": round(train_seconds, 2),
        "seconds": round(time.perf_counter() - t0, 2),
    }}
    return Skill(name=name or f"{skill.name}-graft", kind="sparse", base=skill.base,
                 tensors=tensors, config=config,
                 recipe=recipe.as_dict() | {"source": skill.ref},
                 lineage=[skill.ref], metrics=metrics)
