"""Transferability estimators: how well a candidate's features suit a target task.

Pure functions of ``features`` (N×D) and ``labels`` (N class ids) in numpy float64; each
returns one number, **higher = more transferable**. They are the scores of docs/methods.md §9:

- :func:`logme` — You et al. 2021, "LogME: Practical Assessment of Pre-trained Models for
  Transfer Learning", Algorithm 1 (the authors' ``LogME.py``);
- :func:`tmi` — the intra-class entropy score of Xu & Kang 2023 ("Fast and Accurate
  Transferability Measurement by Evaluating Intra-class Feature Variance"), as the authors'
  code computes it (Kozachenko–Leonenko, k = 3, max-norm, ε clamped ≥ 1);
- :func:`leep` — Nguyen et al. 2020, "LEEP: A New Measure to Evaluate Transferability of
  Learned Representations", Eq. (1)–(2);
- :func:`hscore` — Bao et al. 2019, "An Information-Theoretic Approach to Transferability
  in Task Transfer Learning", Definition 2.

``ESTIMATORS`` maps each name to a function ``(features, labels, source_probs) -> float``
(only LEEP reads ``source_probs``; the others read the features).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma


def _as_features(features) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be an N×D array with N ≥ 2, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or inf")
    return f


def _as_labels(labels, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {y.shape}")
    return y


def thin_svd(f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, S, Vᵀ) of F over its non-zero singular values. For N > D via the eigenvectors of
    the D×D matrix FᵀF, as the LogME code does (much cheaper than an SVD of a tall F)."""
    n, d = f.shape
    if n <= d:
        u, s, vt = np.linalg.svd(f, full_matrices=False)
    else:
        sigma, v = np.linalg.eigh(f.T @ f)
        order = np.argsort(sigma)[::-1]
        sigma, v = sigma[order], v[:, order]
        s, vt = np.sqrt(np.clip(sigma, 0.0, None)), v.T
        keep = s > 1e-10 * max(s.max(initial=0.0), 1e-300)
        return f @ vt[keep].T / s[keep], s[keep], vt[keep]
    keep = s > 1e-10 * max(s.max(initial=0.0), 1e-300)
    return u[:, keep], s[keep], vt[keep]


def evidence(features, y, tol: float = 1e-8, max_iter: int = 500,
             svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
             ) -> tuple[float, float, float]:
    """Maximum log evidence of y ≈ F·w (LogME Algorithm 1) and the α, β that reach it.

    Model: w ~ N(0, α⁻¹ I), y | F, w ~ N(F w, β⁻¹ I). With F = U S Vᵀ (thin SVD) and
    σ_i = S_i² the eigenvalues of FᵀF (zero-padded to D), iterate from α = β = 1:
    γ = Σ βσ_i / (α + βσ_i), m = β (αI + βFᵀF)⁻¹ Fᵀ y, α ← γ / mᵀm, β ← (N − γ) / ‖y − Fm‖²;
    then log p(y | F, α, β) = D/2·log α + N/2·log β − ½ Σ log(α + βσ_i) − β/2 ‖y − Fm‖²
    − α/2 ‖m‖² − N/2·log 2π (Eq. 2 of the paper). Returns ``(evidence, α, β)``, evidence
    not yet divided by N. ``svd`` = :func:`thin_svd` of F if already
    computed (LogME shares it across classes, as the authors do). In the SVD basis every
    step is O(rank): Vᵀm = βS·Uᵀy / (α + βσ) and ‖y − Fm‖² = ‖y − UUᵀy‖² + ‖Uᵀy − S·Vᵀm‖².
    Departure: the authors stop at a relative change of 1e-2 (at most 11 steps); this
    iterates to ``tol`` so the result is the fixed point itself.
    """
    f = _as_features(features)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    n, d = f.shape
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} entries for {n} feature rows")
    u, s, _ = svd if svd is not None else thin_svd(f)
    sigma = s ** 2                      # non-zero part of the spectrum of FᵀF
    uty = u.T @ y
    outside = float(((y - u @ uty) ** 2).sum())   # the part of y no weight vector can reach

    def fit(alpha: float, beta: float) -> tuple[float, float, float]:
        vm = beta * s * uty / (alpha + beta * sigma)           # Vᵀm
        res2 = outside + float(((uty - s * vm) ** 2).sum())
        return float((beta * sigma / (alpha + beta * sigma)).sum()), res2, float(vm @ vm)

    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        gamma, res2, m2 = fit(alpha, beta)
        if m2 <= 0 or res2 <= 0:        # y exactly 0 or exactly fitted: evidence unbounded
            break
        new_alpha, new_beta = gamma / m2, (n - gamma) / res2
        done = abs(new_alpha - alpha) / alpha < tol and abs(new_beta - beta) / beta < tol
        alpha, beta = new_alpha, new_beta
        if done:
            break
    _, res2, m2 = fit(alpha, beta)
    logdet = float(np.log(alpha + beta * sigma).sum()) + (d - len(sigma)) * np.log(alpha)
    ev = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - logdet / 2 - beta / 2 * res2
          - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
    return float(ev), float(alpha), float(beta)


def logme(features, labels, regression: bool = False) -> float:
    """LogME: mean over outputs of the maximum log evidence / N (You et al. 2021, Alg. 1).

    Classification (default): ``labels`` are class ids; each class c present gives the
    one-vs-rest target y = 1[label = c] and its evidence; the score is their mean / N.
    Regression (``regression=True``): ``labels`` are real targets, N or N×K; each column
    is one output. Features are used as given (the authors do not centre or scale them).
    """
    f = _as_features(features)
    if regression:
        t = np.asarray(labels, dtype=np.float64)
        t = t.reshape(-1, 1) if t.ndim == 1 else t
        if t.shape[0] != f.shape[0] or t.ndim != 2:
            raise ValueError(f"targets must be N or N×K with N = {f.shape[0]}, got {t.shape}")
        columns = [t[:, j] for j in range(t.shape[1])]
    else:
        y = _as_labels(labels, f.shape[0])
        columns = [(y == c).astype(np.float64) for c in np.unique(y)]
    svd = thin_svd(f)
    return float(np.mean([evidence(f, col, svd=svd)[0] for col in columns]) / f.shape[0])


def kl_entropy(x, k: int = 3, min_eps: float = 1.0) -> float:
    """Kozachenko–Leonenko differential entropy (nats) in max-norm, as the TMI code uses it.

    H = ψ(n) − ψ(k) + d·log 2 + (d/n)·Σ_i log max(ε_i, min_eps), with ε_i the max-norm
    distance from x_i to its k-th nearest other point (the max-norm ball of radius ε has
    volume (2ε)^d). The clamp ε ≥ 1 is the authors' (it guards duplicate points, ε = 0) and
    makes the estimate depend on the features' scale: below ε = 1 all distances count alike.
    Departure: with n ≤ k points, k becomes n − 1 (the authors' code needs n > k).
    """
    x = _as_features(x)
    n, d = x.shape
    k = min(k, n - 1)
    dist, _ = cKDTree(x).query(x, k=k + 1, p=np.inf)   # column 0 is the point itself
    eps = np.maximum(dist[:, k], min_eps)
    return float(digamma(n) - digamma(k) + d * np.log(2.0) + d * np.log(eps).mean())


def tmi(features, labels, k: int = 3, min_eps: float = 1.0) -> float:
    """TMI: intra-class feature entropy H(F | Y) = Σ_c π_c·H_c (Xu & Kang 2023).

    Features are centred (column means removed); for every class c with n_c ≥ 2,
    H_c = :func:`kl_entropy` of its features and π_c = n_c / N; classes with one example
    are skipped (their π is not redistributed). Higher intra-class spread means features
    that have not collapsed onto the source task, which the authors find transfers better.
    Scale-sensitive through the ε ≥ 1 clamp (see :func:`kl_entropy`).
    """
    f = _as_features(features)
    y = _as_labels(labels, f.shape[0])
    f = f - f.mean(axis=0)
    n = f.shape[0]
    total = 0.0
    for c in np.unique(y):
        fc = f[y == c]
        if len(fc) >= 2:
            total += len(fc) / n * kl_entropy(fc, k=k, min_eps=min_eps)
    return float(total)


def leep(source_probs, labels) -> float:
    """LEEP (Nguyen et al. 2020): log-likelihood of an empirical-conditional classifier.

    ``source_probs`` θ (N×Z) is each input's distribution over the *source* label set; for a
    skill on a causal base it is the model's next-token distribution over the vocabulary at
    the answer position (see ``transfer.rank``), so z is "the token the candidate would
    write". Eq. (1): P̂(y, z) = (1/N) Σ_{i: y_i = y} θ_z(x_i), P̂(y | z) = P̂(y, z) / P̂(z);
    Eq. (2): LEEP = (1/N) Σ_i log Σ_z P̂(y_i | z) θ_z(x_i). Source labels no input gives
    any mass (P̂(z) = 0) are dropped; they contribute nothing to the sum.
    """
    theta = np.asarray(source_probs, dtype=np.float64)
    if theta.ndim != 2:
        raise ValueError(f"source_probs must be N×Z, got shape {theta.shape}")
    y = _as_labels(labels, theta.shape[0])
    n = theta.shape[0]
    classes, yi = np.unique(y, return_inverse=True)
    joint = np.zeros((len(classes), theta.shape[1]))
    np.add.at(joint, yi, theta)
    joint /= n
    pz = joint.sum(axis=0)
    keep = pz > 0
    cond = joint[:, keep] / pz[keep]                       # P̂(y | z)
    eep = (theta[:, keep] * cond[yi]).sum(axis=1)          # Σ_z P̂(y_i | z) θ_z(x_i)
    return float(np.log(eep).mean())


def _covariances(features, labels) -> tuple[np.ndarray, np.ndarray]:
    """Population covariances of the features and of their class means E[f | y]."""
    f = _as_features(features)
    y = _as_labels(labels, f.shape[0])
    f = f - f.mean(axis=0)
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(axis=0)
    return f.T @ f / len(f), g.T @ g / len(f)


def hscore(features, labels) -> float:
    """H-score (Bao et al. 2019, Def. 2): tr(cov(f)⁻¹ · cov(E[f | y])).

    Both covariances are population covariances over the N rows (the 1/N factors cancel);
    E[f | y] is each row's class mean. cov(f)⁻¹ is the pseudo-inverse, as in the authors'
    code, so rank-deficient features are allowed.
    """
    cov_f, cov_g = _covariances(features, labels)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-15, hermitian=True) @ cov_g))


def hscore_alpha(features, labels, alpha: float) -> float:
    """Pure: the shrinkage H-score at a given α (Ibrahim et al. 2022, "Newer is not always
    better"): tr(Σ_α⁻¹ · (1 − α)·cov(E[f | y])) with Σ_α = (1 − α)·cov(f) + α·(tr cov(f) / D)·I.
    α = 0 is :func:`hscore` for a full-rank cov(f)."""
    cov_f, cov_g = _covariances(features, labels)
    d = cov_f.shape[0]
    shrunk = (1 - alpha) * cov_f + alpha * (np.trace(cov_f) / d) * np.eye(d)
    return float(np.trace(np.linalg.solve(shrunk, (1 - alpha) * cov_g)))


def hscore_shrunk(features, labels) -> float:
    """The shrinkage H-score with Ledoit–Wolf's α (scikit-learn's ``ledoit_wolf``): the
    plain H-score saturates at C − 1 once the features outnumber the rows (a singular
    cov(f) separates any labelling), which this one does not."""
    from sklearn.covariance import ledoit_wolf

    f = _as_features(features)
    _, alpha = ledoit_wolf(f - f.mean(axis=0), assume_centered=True)
    return hscore_alpha(f, labels, float(alpha))


Estimator = Callable[[np.ndarray, np.ndarray, np.ndarray | None], float]

ESTIMATORS: dict[str, Estimator] = {
    "logme": lambda f, y, p=None: logme(f, y),
    "tmi": lambda f, y, p=None: tmi(f, y),
    "leep": lambda f, y, p=None: leep(p, y),
    "hscore": lambda f, y, p=None: hscore(f, y),
    "hscore-shrunk": lambda f, y, p=None: hscore_shrunk(f, y),
}


def estimate(name: str, features, labels, source_probs=None) -> float:
    """Score with the estimator called ``name`` (``logme``, ``tmi``, ``leep``, ``hscore``,
    ``hscore-shrunk``)."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}")
    if name == "leep" and source_probs is None:
        raise ValueError("leep needs the candidate's source-label probabilities")
    return ESTIMATORS[name](features, labels, source_probs)
