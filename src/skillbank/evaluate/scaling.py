"""Task scaling laws: fit a pass rate against model size and predict a larger model's.

The PassUntil paper's form (Hu et al. 2024; docs/methods.md §13): a task's pass rate
PU(N) = exp(−c·N^(−α)), i.e. the line

    y = log(−log PU) = log c − α·log N.

:func:`fit_law` fits it by least squares over the smaller members (at least three points:
two fix a line and leave nothing to judge it by) and gives the slope's standard error and a
prediction at a larger N with its t-interval (n − 2 degrees of freedom, widened by the
leverage of a point beyond the data). :func:`bootstrap_prediction` adds the uncertainty of
the measured pass rates themselves: it refits on pass rates resampled from each member's
per-instance estimates. :func:`curvature` fits a quadratic in log N: a negative second
coefficient is the paper's "accelerated" emergence (the line under-predicts), zero smooth.

Pure numpy and scipy, no model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

MIN_POINTS = 3


def loglog(p: float) -> float:
    """log(−log p): the law's y. Only for 0 < p < 1."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"log(-log p) needs 0 < p < 1, got {p!r}")
    return float(np.log(-np.log(p)))


def from_loglog(y: float) -> float:
    """The pass rate whose log(−log p) is ``y``."""
    return float(np.exp(-np.exp(y)))


def _check(sizes: Sequence[float], rates: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    n = np.asarray(sizes, dtype=np.float64)
    p = np.asarray(rates, dtype=np.float64)
    if n.shape != p.shape or n.ndim != 1:
        raise ValueError(f"need one pass rate per size, got {n.shape} sizes and {p.shape} rates")
    if len(n) < MIN_POINTS:
        raise ValueError(f"a scaling-law fit needs at least {MIN_POINTS} sizes with a pass "
                         f"rate strictly between 0 and 1, got {len(n)}")
    if not np.all(np.isfinite(n)) or np.any(n <= 0) or np.any(np.diff(n) <= 0):
        raise ValueError("model sizes must be positive and strictly increasing")
    if not np.all((p > 0) & (p < 1)):
        raise ValueError("every pass rate must lie strictly between 0 and 1")
    return np.log(n), np.array([loglog(x) for x in p])


def fit_law(sizes: Sequence[float], rates: Sequence[float], level: float = 0.9) -> dict:
    """Least-squares fit of log(−log PU) = a + b·log N (b = −α) over ``sizes`` (parameters).

    Returns ``{"a", "b", "alpha", "b_stderr", "r2", "residual_sd", "points", "level"}``;
    ``predict`` turns it into a pass rate at any N."""
    x, y = _check(sizes, rates)
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    dof = len(x) - 2
    s2 = float(resid @ resid) / dof if dof > 0 else 0.0
    sxx = float(((x - x.mean()) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return {"a": float(a), "b": float(b), "alpha": float(-b),
            "b_stderr": float(np.sqrt(s2 / sxx)), "r2": 1.0 - float(resid @ resid) / ss_tot
            if ss_tot > 0 else 1.0, "residual_sd": float(np.sqrt(s2)), "points": len(x),
            "level": level, "x_mean": float(x.mean()), "sxx": sxx}


def predict(fit: dict, size: float) -> dict:
    """The fitted law's pass rate at ``size`` with its prediction interval at ``fit["level"]``
    (the interval of y mapped through exp(−exp y): a higher y is a lower pass rate)."""
    if not size > 0:
        raise ValueError(f"a model size must be positive, got {size!r}")
    x = float(np.log(size))
    y = fit["a"] + fit["b"] * x
    dof = fit["points"] - 2
    t = float(stats.t.ppf(0.5 + fit["level"] / 2, dof))
    half = t * fit["residual_sd"] * np.sqrt(1 + 1 / fit["points"]
                                            + (x - fit["x_mean"]) ** 2 / fit["sxx"])
    return {"pass_rate": from_loglog(y), "loglog": float(y),
            "interval": [from_loglog(y + half), from_loglog(y - half)]}


def bootstrap_prediction(sizes: Sequence[float], per_instance: Sequence[Sequence[float]],
                         size: float, resamples: int = 1000, seed: int = 0) -> dict:
    """The law's prediction at ``size`` refitted on pass rates resampled over each member's
    instances (``per_instance[m]`` holds member m's per-instance estimates): the median
    and the 5–95% range; resamples whose rate hits 0 or 1 cannot be fitted and are dropped
    (their share is returned)."""
    rng = np.random.default_rng(seed)
    rows = [np.asarray(p, dtype=np.float64) for p in per_instance]
    if len(rows) != len(sizes):
        raise ValueError("need the per-instance estimates of every size")
    preds = []
    for _ in range(resamples):
        rates = [r[rng.integers(0, len(r), size=len(r))].mean() for r in rows]
        if all(0 < q < 1 for q in rates):
            preds.append(predict(fit_law(sizes, rates), size)["pass_rate"])
    if not preds:
        return {"median": None, "range90": [None, None], "dropped": 1.0}
    lo, med, hi = (float(v) for v in np.quantile(preds, [0.05, 0.5, 0.95]))
    return {"median": med, "range90": [lo, hi], "dropped": 1 - len(preds) / resamples}


def curvature(sizes: Sequence[float], rates: Sequence[float]) -> float | None:
    """The second-order coefficient of a quadratic fit of log(−log PU) in log N (None with
    fewer than four points): below zero, the pass rate accelerates beyond the line."""
    x, y = _check(sizes, rates)
    if len(x) < 4:
        return None
    return float(np.polyfit(x, y, 2)[0])


def log_error(predicted: float, actual: float) -> float:
    """|log predicted − log actual|: a prediction's error as a factor (log 2 is 2× off)."""
    if not (predicted > 0 and actual > 0):
        raise ValueError("log error needs two positive pass rates")
    return float(abs(np.log(predicted) - np.log(actual)))
