"""Transferability for classifiers on an encoder base (docs/methods.md §9).

Features: each target training text run through the base with one candidate's ΔW merged
in, mean-pooled (the encoder's sentence embedding) — one row per text, the label its class
index in the target task. LEEP's source distribution is the candidate's own head (its
class probabilities over its own labels: "what the candidate would answer"); the base alone
has no head, so its LEEP is undefined (None).

Verification: a classifier trained on the target task with the same recipe from each
candidate's LoRA factors (``train_classifier(init=...)``; the head starts at zero, since
the labels are new) and from PEFT's fresh init ("scratch"), scored by held-out accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from ..acquire.classify import encode_texts, label_indices, mean_pool
from ..base import Base
from ..skill import Skill


@torch.no_grad()
def classifier_features(base: Base, skill: Skill | None, texts, y: np.ndarray,
                        batch_size: int = 128):
    from .rank import TargetFeatures

    model = base.load_model([skill] if skill is not None else []).eval()
    tokenizer = base.load_tokenizer()
    max_length = int((skill.config.get("max_length") if skill else None) or 64)
    heads = skill.heads() if skill is not None else {}
    head = heads[skill.recipe.get("task")] if skill is not None and skill.recipe.get("task") \
        in heads else (next(iter(heads.values())) if heads else None)
    feats, probs = [], []
    for i in range(0, len(texts), batch_size):
        enc = encode_texts(tokenizer, texts[i:i + batch_size], max_length)
        pooled = mean_pool(model(**enc).last_hidden_state.float(), enc["attention_mask"])
        feats.append(pooled.double().numpy())
        if head is not None:
            logits = pooled @ head["weight"].float().T + head["bias"].float()
            probs.append(torch.softmax(logits.double(), -1).numpy())
    f = np.concatenate(feats)
    p = np.concatenate(probs) if probs else np.full((len(texts), 1), np.nan)
    return TargetFeatures(f, y, p)


def verify_classifier(base: Base, src: Skill, from_scratch: bool, world, world_name: str,
                      task: str, steps: int, n_eval: int, seed: int, lr: float, batch_size: int,
                      world_args: dict | None,
                      progress: Callable[[int, float | None], None] | None = None) -> dict:
    """One verification run for a classifier candidate (see the module docstring)."""
    from ..acquire.classify import ClassifierRecipe, train_classifier
    from ..evaluate.classify import evaluate_classifier

    recipe = ClassifierRecipe(task=task, world=world_name, world_args=dict(world_args or {}),
                              rank=int(src.config["r"]), alpha=int(src.config["lora_alpha"]),
                              steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                              max_length=int(src.config.get("max_length") or 64),
                              target_modules=list(src.config["target_modules"]))
    t0 = time.perf_counter()
    trained = train_classifier(f"verify-{task}", base, recipe, progress=progress,
                               init=None if from_scratch else src.tensors)
    t1 = time.perf_counter()
    m = evaluate_classifier(base, trained, world, task, n_eval, seed)
    return {"accuracy": m["accuracy"], "accuracy_stderr": m["accuracy_stderr"],
            "exact_match": m["accuracy"], "ece": m["ece"],
            "train_seconds": round(t1 - t0, 3), "eval_seconds": round(time.perf_counter() - t1, 3),
            "final_loss": trained.metrics["train"]["final_loss"]}


def target_rows(world, task: str, n: int, seed: int):
    """``(texts, class indices)`` of ``n`` target training rows."""
    examples = world.examples(task, n, seed=seed, split="train")
    labels = world.labels(task)
    return [e.prompt for e in examples], label_indices(examples, labels).numpy()
