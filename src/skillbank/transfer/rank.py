"""Rank library skills as starting points for a target task, and check the ranking.

Features (:func:`target_features`). The target task's training inputs are run, teacher-
forced on their targets (``<s> prompt target </s>``, as in training), through the base with
one candidate skill merged in. At every *answer position* — a position whose next token is
a target token or the closing ``</s>`` — the row is the model's final hidden state (after
the last norm, what the LM head reads), the label is that next target token, and the source
distribution for LEEP is the model's softmax over the vocabulary there ("the token the
candidate would write next"). ``positions="first"`` keeps only the position before the
first answer token (one row per example). The base alone is scored too, as "base".

Scores: each estimator of :mod:`.estimators` on those rows; higher = better start.
Verification (``transfer.jobs.verify_on``, one :func:`verify_run` per candidate): train the target skill with the same recipe and budget from
each candidate's LoRA tensors (``train_lora(init=...)``) and from PEFT's fresh init
("scratch"), evaluate exact match on held-out inputs, and compare the score order with the
accuracy order by Kendall's τ-b, weighted τ (``scipy.stats.weightedtau``) and top-1 hit.
The fine-tunes are ``verify`` jobs on an executor (``skillbank.run``, in this process by
default), naming the base and candidates by id.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats

from ..base import Base
from ..skill import Skill, SkillError
from .estimators import ESTIMATORS, estimate

POSITIONS = ("answer", "first")


@dataclass
class TargetFeatures:
    features: np.ndarray   # M×D float64: final hidden state at each answer position
    labels: np.ndarray     # M: the next target token id
    probs: np.ndarray      # M×V float64: the model's next-token distribution there


@torch.no_grad()
def target_features(model, tokenizer, examples, positions: str = "answer",
                    batch_size: int = 256) -> TargetFeatures:
    """Rows of (hidden state, next target token, next-token distribution); see module doc."""
    from ..acquire.data import training_batch

    if positions not in POSITIONS:
        raise ValueError(f"unknown positions {positions!r}; choose from {', '.join(POSITIONS)}")
    feats, labels, probs = [], [], []
    for i in range(0, len(examples), batch_size):
        batch = training_batch(tokenizer, examples[i: i + batch_size])
        hidden = model.base_model(input_ids=batch["input_ids"],
                                  attention_mask=batch["attention_mask"]).last_hidden_state
        logits = model.get_output_embeddings()(hidden)
        nxt = batch["labels"][:, 1:]                   # position t predicts token t + 1
        keep = nxt != -100
        if positions == "first":                       # first answer position of each row
            first = keep.float().argmax(dim=1)
            keep = torch.zeros_like(keep)
            keep[torch.arange(len(first)), first] = True
        feats.append(hidden[:, :-1][keep].double().numpy())
        labels.append(nxt[keep].numpy())
        probs.append(torch.softmax(logits[:, :-1][keep].double(), dim=-1).numpy())
    return TargetFeatures(np.concatenate(feats), np.concatenate(labels), np.concatenate(probs))


def _clean(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def score_candidates(base: Base, skills: Sequence[Skill], world_name: str, task: str,
                     estimators: Sequence[str] = tuple(ESTIMATORS), n: int = 256, seed: int = 0,
                     positions: str = "answer", world_args: dict | None = None,
                     include_base: bool = True,
                     progress: Callable[[int, float | None], None] | None = None) -> dict[str, Any]:
    """Score every candidate (and the base alone) with every estimator.

    Returns ``{"scores": {subject: {estimator: score}}, "ranking": {estimator: [subjects
    best first]}, "seconds": {"features": s, estimator: s, "total": s}, "rows": M}``; the
    ranking covers the candidate skills only (the base is a reference row)."""
    from ..worlds import get_world

    for e in estimators:
        if e not in ESTIMATORS:
            raise ValueError(f"unknown estimator {e!r}; choose from {', '.join(ESTIMATORS)}")
    if not skills:
        raise SkillError("no candidate skills to score")
    world = get_world(world_name, **(world_args or {}))
    classify = base.kind == "encoder"
    if classify:
        from .classify import classifier_features, target_rows

        texts, y = target_rows(world, task, n, seed)
    else:
        examples = world.examples(task, n, seed=seed, split="train")
    tokenizer = base.load_tokenizer()
    subjects = ([("base", [])] if include_base else []) + [(s.ref, [s]) for s in skills]
    seconds = {"features": 0.0, **{e: 0.0 for e in estimators}}
    scores: dict[str, dict[str, float | None]] = {}
    rows = 0
    t_all = time.perf_counter()
    for i, (subject, applied) in enumerate(subjects):
        t0 = time.perf_counter()
        if classify:   # one row per text: its embedding, its class (transfer/classify.py)
            tf = classifier_features(base, applied[0] if applied else None, texts, y)
        else:
            tf = target_features(base.load_model(list(applied)), tokenizer, examples, positions)
        seconds["features"] += time.perf_counter() - t0
        rows = len(tf.labels)
        scores[subject] = {}
        for e in estimators:
            t0 = time.perf_counter()
            if classify and e == "leep" and not applied:
                scores[subject][e] = None   # the base has no head: no source distribution
                continue
            scores[subject][e] = _clean(estimate(e, tf.features, tf.labels, tf.probs))
            seconds[e] += time.perf_counter() - t0
        if progress is not None:
            progress(i + 1, None)
    seconds["total"] = time.perf_counter() - t_all
    refs = [s.ref for s in skills]
    ranking = {e: ranked(refs, [scores[r][e] for r in refs]) for e in estimators}
    return {"scores": scores, "ranking": ranking, "rows": rows, "examples": n,
            "positions": positions, "seconds": {k: round(v, 3) for k, v in seconds.items()}}


def ranked(names: Sequence[str], values: Sequence[float | None]) -> list[str]:
    """``names`` sorted by value, best first (None last; ties keep the given order)."""
    order = sorted(range(len(names)),
                   key=lambda i: (values[i] is None, -(values[i] or 0.0)))
    return [names[i] for i in order]


def agreement(scores: Sequence[float], accuracies: Sequence[float]) -> dict[str, Any]:
    """How well a score order matches an accuracy order (docs/methods.md §9).

    ``kendall_tau``: Kendall's τ-b (ties counted as in scipy); ``weighted_tau``:
    ``scipy.stats.weightedtau`` (hyperbolic weights, so disagreements at the top cost
    more); ``top1``: the best-scored candidate reaches the highest accuracy (any of them,
    if tied). A τ that is undefined (all scores or all accuracies equal) is None."""
    s, a = np.asarray(scores, dtype=float), np.asarray(accuracies, dtype=float)
    if s.shape != a.shape or len(s) < 2:
        raise ValueError(f"need two equal-length sequences of at least 2, got {s.shape}, {a.shape}")
    tau = stats.kendalltau(s, a)
    wtau = stats.weightedtau(s, a)
    best = int(np.argmax(s))
    return {"kendall_tau": _clean(tau.statistic), "kendall_p": _clean(tau.pvalue),
            "weighted_tau": _clean(wtau.statistic), "top1": bool(a[best] == a.max()),
            "n": int(len(s))}


def check_verify(skills: Sequence[Skill]) -> None:
    for s in skills:
        if s.kind != "lora":
            raise SkillError(f"verify fine-tunes from LoRA skills; {s.ref} is a {s.kind} skill")
    if not skills:
        raise SkillError("no candidate skills to verify")


def verify_runs(skills: Sequence[Skill], scratch: bool) -> list[tuple[str, Skill]]:
    """(subject, skill whose rank/alpha/modules the run uses): candidates, then scratch."""
    return [(s.ref, s) for s in skills] + ([("scratch", skills[0])] if scratch else [])


def verify_run(base: Base, src: Skill, from_scratch: bool, world, tokenizer, world_name: str,
               task: str, steps: int, n_eval: int, seed: int, lr: float, batch_size: int,
               world_args: dict | None,
               progress: Callable[[int, float | None], None] | None = None) -> dict[str, float]:
    """One verification run: fine-tune ``task`` from ``src``'s LoRA tensors (or PEFT's
    fresh init with ``src``'s rank, alpha and modules) and evaluate it; nothing is stored.
    On an encoder base the run trains a classifier (``transfer/classify.py``)."""
    from ..acquire.lora import LoraRecipe, train_lora

    if base.kind == "encoder":
        from .classify import verify_classifier

        return verify_classifier(base, src, from_scratch, world, world_name, task, steps,
                                 n_eval, seed, lr, batch_size, world_args, progress)
    from ..evaluate.suites import evaluate_model

    recipe = LoraRecipe(world=world_name, task=task, rank=int(src.config["r"]),
                        alpha=int(src.config["lora_alpha"]), steps=steps, lr=lr,
                        batch_size=batch_size, seed=seed,
                        target_modules=list(src.config["target_modules"]),
                        world_args=dict(world_args or {}))
    t0 = time.perf_counter()
    trained = train_lora(f"verify-{task.replace('+', '_')}", base, recipe, progress=progress,
                         init=None if from_scratch else src.tensors)
    t1 = time.perf_counter()
    m = evaluate_model(base.load_model([trained]), tokenizer, world, task, n_eval, seed)
    return {"exact_match": m["exact_match"], "token_accuracy": m["token_accuracy"],
            "mean_logprob": m["mean_logprob"], "train_seconds": round(t1 - t0, 3),
            "eval_seconds": round(time.perf_counter() - t1, 3),
            "final_loss": trained.metrics["train"]["final_loss"]}


def compare(scored: dict[str, Any], verified: dict[str, Any], metric: str = "exact_match") -> dict:
    """``{estimator: agreement(...)}`` over the candidates both ``scored`` and ``verified``
    know (the base and scratch rows are references, not candidates)."""
    refs = [r for r in scored["scores"] if r != "base" and r in verified]
    acc = [verified[r][metric] for r in refs]
    out = {}
    for e in scored["ranking"]:
        vals = [scored["scores"][r][e] for r in refs]
        vals = [v if v is not None else -math.inf for v in vals]
        out[e] = agreement(vals, acc)
    return out
