"""The user's alternative to a classification skill: a linear probe on frozen embeddings.

Before fine-tuning anything, a practitioner with a sentence encoder fits a logistic
regression on its mean-pooled embeddings (the pooling all-MiniLM-L6-v2 was trained with).
A LoRA skill is only worth its training if it beats that probe on held-out data, so every
classification skill is trained with its probe beside it, on the same train rows, scored
on the same held-out rows (scikit-learn's ``LogisticRegression``, L2, ``C`` = 1, lbfgs, on
standardised features; deterministic).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from ..base import Base
from ..skill import SkillError
from .classify import encode_texts, mean_pool


@torch.no_grad()
def embed(base: Base, texts: Sequence[str], max_length: int = 64,
          batch_size: int = 64) -> np.ndarray:
    """Mean-pooled last hidden states of the frozen base, ``[N, hidden]`` float64."""
    model = base.load_model().eval()
    tokenizer = base.load_tokenizer()
    out = []
    for i in range(0, len(texts), batch_size):
        enc = encode_texts(tokenizer, texts[i:i + batch_size], max_length)
        out.append(mean_pool(model(**enc).last_hidden_state.float(),
                             enc["attention_mask"]).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray,
              c: float = 1.0) -> dict:
    """Pure: accuracy (± binomial stderr) of a logistic regression fitted on the train rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(set(y_train.tolist())) < 2:
        raise SkillError("a probe needs at least two labels among its training rows")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    clf.fit(x_train, y_train)
    acc = float((clf.predict(x_eval) == y_eval).mean()) if len(y_eval) else 0.0
    stderr = float(np.sqrt(acc * (1 - acc) / len(y_eval))) if len(y_eval) else 0.0
    return {"accuracy": acc, "accuracy_stderr": stderr}


def probe(base: Base, world, task: str, labels: Sequence[str], n_eval: int, seed: int,
          max_length: int = 64) -> dict:
    """The probe of ``task``: fitted on every train row, scored on ``n_eval`` held-out rows
    drawn as ``evaluate_classifier`` draws them (same examples, same seed)."""
    from .classify import label_indices

    t0 = time.perf_counter()
    train = world.examples(task, 0, seed=seed, split="train")
    held = world.examples(task, n_eval, seed=seed, split="eval")
    xs = embed(base, [e.prompt for e in train + held], max_length)
    result = fit_probe(xs[:len(train)], label_indices(train, labels).numpy(),
                       xs[len(train):], label_indices(held, labels).numpy())
    return {**result, "train_rows": len(train), "eval_rows": len(held),
            "seconds": round(time.perf_counter() - t0, 2)}
