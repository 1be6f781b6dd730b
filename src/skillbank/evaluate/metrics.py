"""Evaluation metrics: pure functions, numpy or sequences in, floats out.

Two families:

* Generation metrics (exact match, token edit distance, per-token accuracy, mean target
  log-probability).  Following the "Mirage" paper -- Schaeffer, Miranda & Koyejo (2023),
  *Are Emergent Abilities of Large Language Models a Mirage?* -- exact match on an
  ``L``-token answer behaves like ``p**L`` and can look "emergent", while the continuous
  metrics (edit distance ~ ``L(1 - p)``, per-token accuracy ~ ``p``, target log-probability)
  move smoothly.  Report both kinds (docs/methods.md §11).
* Classification metrics (accuracy, Brier score, expected calibration error).  ECE follows
  Guo, Pleiss, Sun & Weinberger (2017), *On Calibration of Modern Neural Networks*, with
  10 equal-width confidence bins (docs/methods.md §5); the Brier score is Brier (1950),
  *Verification of forecasts expressed in terms of probability*, in its multi-class form.

Standard errors are bootstrap estimates (Efron & Tibshirani 1993): the standard deviation
of the statistic over resamples of the examples, with replacement, from
``np.random.default_rng(seed)``, so every number is reproducible given the seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "bootstrap_stderr",
    "bootstrap_stderr_fn",
    "brier_score",
    "ece",
    "exact_match",
    "mean_logprob",
    "per_token_accuracy",
    "summarize_classification",
    "summarize_generation",
    "token_edit_distance",
]


# --------------------------------------------------------------------------- generation


def exact_match(pred: str, target: str) -> float:
    """1.0 if ``pred`` equals ``target`` after stripping surrounding whitespace, else 0.0.

    The discontinuous metric of Schaeffer et al. (2023): all-or-nothing on the whole answer.
    """
    return 1.0 if pred.strip() == target.strip() else 0.0


def token_edit_distance(pred_tokens: Sequence[Any], target_tokens: Sequence[Any]) -> int:
    """Levenshtein distance between two token sequences (insert, delete, substitute cost 1).

    One of the continuous metrics of Schaeffer et al. (2023): for a per-token error rate
    ``1 - p`` it grows roughly like ``L (1 - p)`` instead of jumping as exact match does.
    Tokens are compared with ``==``, so ids, strings or characters all work.
    """
    a, b = list(pred_tokens), list(target_tokens)
    if len(a) < len(b):  # keep the DP row over the shorter sequence
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, start=1):
            cur[j] = min(prev[j] + 1,              # delete x
                         cur[j - 1] + 1,           # insert y
                         prev[j - 1] + (x != y))   # substitute (free if equal)
        prev = cur
    return prev[-1]


def per_token_accuracy(pred_tokens: Sequence[Any], target_tokens: Sequence[Any]) -> float:
    """Fraction of target positions ``i`` with ``pred[i] == target[i]``.

    Positions beyond ``len(pred)`` count as wrong; extra predicted tokens past the end of the
    target are not penalised (edit distance does that).  An empty target scores 1.0 if the
    prediction is empty too, else 0.0.  A continuous metric in the sense of Schaeffer et al.
    (2023): its expectation is the per-token accuracy ``p`` under teacher-free decoding.
    """
    n = len(target_tokens)
    if n == 0:
        return 1.0 if len(pred_tokens) == 0 else 0.0
    hits = sum(1 for p, t in zip(pred_tokens, target_tokens, strict=False) if p == t)
    return hits / n


def mean_logprob(token_logprobs: Sequence[float]) -> float:
    """Mean log-probability of the target tokens (natural log, so <= 0).

    ``token_logprobs[i] = log p(target_i | prompt, target_<i)``.  The target's probability,
    the smooth metric Schaeffer et al. (2023) recommend, is ``exp(sum)``; the mean is its
    length-normalised form, comparable across answers of different lengths.
    Raises ``ValueError`` on an empty sequence (the mean is undefined).
    """
    arr = np.asarray(token_logprobs, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"token_logprobs must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("mean_logprob of an empty sequence is undefined")
    return float(arr.mean())


# ----------------------------------------------------------------------- classification


def _check_probs_labels(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2:
        raise ValueError(f"probs must have shape [N, C], got {p.shape}")
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise ValueError(f"labels must have shape [{p.shape[0]}], got {y.shape}")
    if p.shape[0] == 0:
        raise ValueError("need at least one example")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must lie in [0, {p.shape[1]}), got [{y.min()}, {y.max()}]")
    return p, y.astype(np.int64)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of examples whose arg-max class equals the label.

    ``probs`` is ``[N, C]``, ``labels`` is ``[N]`` integers in ``[0, C)``.  Ties go to the
    lowest class index (``np.argmax``), the same prediction :func:`ece` uses.
    """
    p, y = _check_probs_labels(probs, labels)
    return float(np.mean(p.argmax(axis=1) == y))


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean over examples of ``sum_c (p_c - onehot(y)_c)**2``.

    Brier (1950), in the multi-class form used by Guo et al. (2017) and later calibration
    work.  Ranges over ``[0, 2]``; 0 is a perfect, confident forecaster.
    """
    p, y = _check_probs_labels(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(p.shape[0]), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error with ``n_bins`` equal-width confidence bins (Guo et al. 2017).

    ``ECE = sum_m |B_m| / N * |acc(B_m) - conf(B_m)|`` where the confidence of an example is
    its max probability, its prediction the arg-max (ties to the lowest index), ``acc`` the
    fraction of correct predictions in the bin and ``conf`` the mean confidence there.
    Empty bins contribute nothing.

    Bin edges are ``np.linspace(0, 1, n_bins + 1)``; bin ``m`` is the half-open interval
    ``(edge[m], edge[m + 1]]`` as in Guo et al.'s ``I_m = ((m-1)/M, m/M]``, except that the
    first bin also includes 0, i.e. ``[0, edge[1]]``.  So a confidence of exactly 0.3 falls
    in ``(0.2, 0.3]`` and 1.0 in the last bin.  Comparisons are against the floating-point
    edges themselves (``np.searchsorted(..., side="left")``), not ``ceil(conf * M)``, which
    would misplace values such as 0.3 because ``0.3 * 10 > 3`` in floating point.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    p, y = _check_probs_labels(probs, labels)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # first edge >= conf, minus one -> bin (edge[m], edge[m+1]]; conf == 0 -> bin 0.
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    # |B_m|/N * |acc_m - conf_m| == |sum_{B_m} correct - sum_{B_m} conf| / N; empty bins give 0.
    gap = (np.bincount(bins, weights=correct, minlength=n_bins)
           - np.bincount(bins, weights=conf, minlength=n_bins))
    return float(np.abs(gap).sum() / conf.shape[0])


# ---------------------------------------------------------------------------- bootstrap

_MAX_INDEX_CELLS = 1 << 20  # cap on resample indices held in memory at once


def _bootstrap_indices(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Yield ``[k, n]`` blocks of resample indices, ``n_boot`` rows in all.

    The block size depends only on ``n``, so the index stream for a given ``(n, n_boot,
    seed)`` is the same for :func:`bootstrap_stderr` and :func:`bootstrap_stderr_fn`.
    """
    rng = np.random.default_rng(seed)
    block = max(1, _MAX_INDEX_CELLS // max(n, 1))
    done = 0
    while done < n_boot:
        k = min(block, n_boot - done)
        yield rng.integers(0, n, size=(k, n))
        done += k


def _check_n_boot(n_boot: int) -> None:
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")


def bootstrap_stderr(values: Sequence[float], n_boot: int = 1000, seed: int = 0) -> float:
    """Bootstrap standard error of the mean of ``values``.

    Draws ``n_boot`` resamples of ``len(values)`` with replacement using
    ``np.random.default_rng(seed)`` and returns the standard deviation (``ddof=1``) of their
    means.  For a 0/1 sample this approaches ``sqrt(p(1 - p) / n)``; for a constant it is 0.
    Equal to ``bootstrap_stderr_fn(np.mean, values, n_boot=n_boot, seed=seed)`` up to
    floating-point rounding, only vectorised.
    """
    _check_n_boot(n_boot)
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("bootstrap_stderr needs at least one value")
    means = np.concatenate([x[idx].mean(axis=1) for idx in _bootstrap_indices(x.size, n_boot,
                                                                              seed)])
    return float(np.std(means, ddof=1))


def bootstrap_stderr_fn(statistic: Callable[..., float], *arrays: Any, n_boot: int = 1000,
                        seed: int = 0) -> float:
    """Bootstrap standard error of an arbitrary ``statistic(*arrays)``.

    For metrics that are not means of per-example values (ECE, Brier on the full matrix, ...):
    each resample draws example indices with replacement and indexes *all* ``arrays`` with the
    same indices along axis 0, so rows stay paired (e.g. ``probs[idx], labels[idx]``).
    Returns the standard deviation (``ddof=1``) of the ``n_boot`` statistic values; same RNG
    stream as :func:`bootstrap_stderr` (``np.random.default_rng(seed)``).
    """
    _check_n_boot(n_boot)
    if not arrays:
        raise ValueError("bootstrap_stderr_fn needs at least one array")
    arrs = [np.asarray(a) for a in arrays]
    n = arrs[0].shape[0] if arrs[0].ndim else 0
    if n == 0:
        raise ValueError("bootstrap_stderr_fn needs at least one example")
    for a in arrs[1:]:
        if a.ndim == 0 or a.shape[0] != n:
            raise ValueError(f"all arrays need {n} rows along axis 0, got shape {a.shape}")
    stats = [float(statistic(*(a[row] for a in arrs)))
             for idx in _bootstrap_indices(n, n_boot, seed) for row in idx]
    return float(np.std(np.asarray(stats), ddof=1))


# ---------------------------------------------------------------------------- summaries


_RECORD_KEYS = ("pred", "target", "pred_tokens", "target_tokens")


def summarize_generation(records: Sequence[Mapping[str, Any]], seed: int = 0,
                         n_boot: int = 1000) -> dict[str, float | int]:
    """Means over examples of the generation metrics, each with a bootstrap standard error.

    ``records`` are dicts as made by ``evaluate.generate.generation_records``:
    ``{"pred": str, "target": str, "pred_tokens": list, "target_tokens": list,
    "target_logprobs": list[float]}`` (``target_logprobs`` may be left out of every record,
    for a subject with no likelihood such as a chain; ``mean_logprob`` is then too).
    Returns ``n``, ``exact_match``, ``edit_distance`` (token Levenshtein), ``token_accuracy`` (per-token accuracy), ``mean_logprob`` (per-example
    mean target log-prob, then averaged) and ``<metric>_stderr`` for each (bootstrap over
    examples, ``seed``).  Reporting the discontinuous and the continuous metrics together is
    the recommendation of Schaeffer et al. (2023).
    """
    if len(records) == 0:
        raise ValueError("summarize_generation needs at least one record")
    for i, r in enumerate(records):
        missing = [k for k in _RECORD_KEYS if k not in r]
        if missing:
            raise KeyError(f"record {i} lacks {missing}")
    per_example = {
        "exact_match": [exact_match(r["pred"], r["target"]) for r in records],
        "edit_distance": [float(token_edit_distance(r["pred_tokens"], r["target_tokens"]))
                          for r in records],
        "token_accuracy": [per_token_accuracy(r["pred_tokens"], r["target_tokens"])
                           for r in records],
    }
    with_lp = [i for i, r in enumerate(records) if "target_logprobs" in r]
    if with_lp and len(with_lp) < len(records):
        first = next(i for i, r in enumerate(records) if "target_logprobs" not in r)
        raise KeyError(f"record {first} lacks ['target_logprobs'] that others have")
    if with_lp:
        per_example["mean_logprob"] = [mean_logprob(r["target_logprobs"]) for r in records]
    out: dict[str, float | int] = {"n": len(records)}
    for name, vals in per_example.items():
        out[name] = float(np.mean(vals))
        out[f"{name}_stderr"] = bootstrap_stderr(vals, n_boot=n_boot, seed=seed)
    return out


def summarize_classification(probs: np.ndarray, labels: np.ndarray, seed: int = 0,
                             n_boot: int = 1000, n_bins: int = 10) -> dict[str, float | int]:
    """Accuracy, Brier score and ECE (``n_bins`` bins), each with a bootstrap standard error.

    Accuracy and Brier are means of per-example values, so their errors come from
    :func:`bootstrap_stderr`; ECE is not, so its error resamples ``(probs, labels)`` jointly
    with :func:`bootstrap_stderr_fn`.  Same ``seed`` for all three.  Guo et al. (2017) for
    ECE; Brier (1950) for the Brier score.
    """
    p, y = _check_probs_labels(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(p.shape[0]), y] = 1.0
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    sq_err = np.sum((p - onehot) ** 2, axis=1)
    return {
        "n": int(p.shape[0]),
        "accuracy": accuracy(p, y),
        "accuracy_stderr": bootstrap_stderr(correct, n_boot=n_boot, seed=seed),
        "brier": brier_score(p, y),
        "brier_stderr": bootstrap_stderr(sq_err, n_boot=n_boot, seed=seed),
        "ece": ece(p, y, n_bins=n_bins),
        "ece_stderr": ece_bootstrap_stderr(p, y, n_bins=n_bins, n_boot=n_boot, seed=seed),
    }


def ece_bootstrap_stderr(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10,
                         n_boot: int = 1000, seed: int = 0) -> float:
    """``bootstrap_stderr_fn(ece, probs, labels)`` vectorised: the same resamples (same index
    stream), each ECE computed as Σ_m |Σ_{i ∈ B_m} (correct_i − conf_i)| / N at once."""
    _check_n_boot(n_boot)
    p, y = _check_probs_labels(probs, labels)
    conf = p.max(axis=1)
    d = (p.argmax(axis=1) == y).astype(np.float64) - conf
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    n = conf.shape[0]
    values = []
    for idx in _bootstrap_indices(n, n_boot, seed):
        rows = np.repeat(np.arange(idx.shape[0]), n) * n_bins + bins[idx].reshape(-1)
        gap = np.bincount(rows, weights=d[idx].reshape(-1), minlength=idx.shape[0] * n_bins)
        values.append(np.abs(gap.reshape(idx.shape[0], n_bins)).sum(axis=1) / n)
    return float(np.std(np.concatenate(values), ddof=1))
