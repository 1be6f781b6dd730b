"""Attempts and what they say: K sampled answers per input, and B-STaR's monitors.

Zeng et al. (2024), *B-STaR: Monitoring and Balancing Exploration and Exploitation in
Self-Taught Reasoners* (docs/methods.md §14), watch two things per round: exploration —
Pass@K (an input with at least one correct answer among its K attempts) and the diversity
of the attempts — and exploitation — how well the reward (here: the evaluator) separates
correct attempts from wrong ones. Their balance score, computed over the attempts an
evaluator accepted,

    BS = mean_q  min(c_q / n*, 1) · (c_q / n_q)

(c_q correct among the n_q accepted for input q; 0 when nothing was accepted; n* = 8 in the
authors' code), rewards many correct accepted attempts per input (up to n*) and a clean
acceptance. With the exact grader as evaluator c_q = n_q and BS measures exploration only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..evaluate.generate import sampled

N_STAR = 8


@torch.no_grad()
def sample_answers(model, tokenizer, prompts: Sequence[str], k: int, temperature: float,
                   max_new_tokens: int, seed: int, batch_size: int = 1024) -> list[list[str]]:
    """``k`` answers per prompt sampled at ``temperature`` (no top-k or top-p), seeded."""
    if k < 1:
        raise ValueError(f"the number of samples per input must be at least 1, got {k}")
    if not temperature > 0:
        raise ValueError(f"the temperature must be positive, got {temperature}")
    rows = [p for p in prompts for _ in range(k)]
    torch.manual_seed(seed)
    texts = [tokenizer.decode(a, skip_special_tokens=True)
             for a in sampled(model, tokenizer, rows, max_new_tokens, temperature, batch_size)]
    return [texts[i * k: (i + 1) * k] for i in range(len(prompts))]


def balance_score(correct: np.ndarray, accepted: np.ndarray, n_star: int = N_STAR) -> float:
    """B-STaR's BS over inputs × attempts boolean arrays (``correct`` by the grader,
    ``accepted`` by the evaluator)."""
    c = (correct & accepted).sum(axis=1).astype(np.float64)
    n = accepted.sum(axis=1).astype(np.float64)
    per = np.where(n > 0, np.minimum(c / n_star, 1.0) * c / np.maximum(n, 1), 0.0)
    return float(per.mean()) if len(per) else 0.0


def monitors(answers: Sequence[Sequence[str]], correct: np.ndarray, accepted: np.ndarray,
             n_star: int = N_STAR) -> dict:
    """A round's exploration and exploitation figures (``correct``/``accepted``: inputs × K)."""
    k = correct.shape[1] if correct.ndim == 2 else 0
    tp = float((correct & accepted).sum())
    distinct = [len(set(a)) for a in answers]
    return {
        "pass_at_k": float(correct.any(axis=1).mean()),
        "pass_rate": float(correct.mean()),
        "distinct_answers": float(np.mean(distinct)) / max(k, 1),
        "distinct_correct": float(np.mean([len({x for x, ok in zip(a, row, strict=True) if ok})
                                           for a, row in zip(answers, correct, strict=True)])),
        "accepted": int(accepted.sum()),
        "precision": tp / float(accepted.sum()) if accepted.any() else None,
        "recall": tp / float(correct.sum()) if correct.any() else None,
        "balance": balance_score(correct, accepted, n_star),
    }
