"""Transferability estimators against hand-computed values and independent direct formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

from skillbank.transfer.estimators import (
    ESTIMATORS,
    estimate,
    evidence,
    hscore,
    kl_entropy,
    leep,
    logme,
    tmi,
)


def direct_log_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log N(y; 0, β⁻¹I + α⁻¹FFᵀ): the marginal likelihood written out, no SVD, no fixed point."""
    cov = np.eye(len(y)) / beta + f @ f.T / alpha
    return float(multivariate_normal(mean=np.zeros(len(y)), cov=cov).logpdf(y))


def max_direct_log_evidence(f: np.ndarray, y: np.ndarray) -> float:
    res = minimize(lambda t: -direct_log_evidence(f, y, math.exp(t[0]), math.exp(t[1])),
                   x0=[0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-11,
                                                                 "maxiter": 4000})
    return -float(res.fun)


@pytest.mark.parametrize("n,d", [(12, 3), (5, 8)])  # N > D and N ≤ D (rank-deficient FᵀF)
def test_evidence_is_the_maximised_marginal_likelihood(n, d):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(n, d))
    y = f @ rng.normal(size=d) + 0.5 * rng.normal(size=n)
    ev, alpha, beta = evidence(f, y)
    assert ev == pytest.approx(direct_log_evidence(f, y, alpha, beta), abs=1e-8)
    assert ev == pytest.approx(max_direct_log_evidence(f, y), abs=1e-6)


def test_logme_is_mean_one_vs_rest_evidence_over_n():
    rng = np.random.default_rng(1)
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    f = rng.normal(size=(10, 2)) + np.eye(3)[labels][:, :2] * 2
    want = np.mean([max_direct_log_evidence(f, (labels == c).astype(float)) for c in range(3)]) / 10
    assert logme(f, labels) == pytest.approx(want, abs=1e-6)


def test_logme_regression_columns():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(15, 3))
    t = np.stack([f[:, 0] + 0.1 * rng.normal(size=15), rng.normal(size=15)], axis=1)
    want = (max_direct_log_evidence(f, t[:, 0]) + max_direct_log_evidence(f, t[:, 1])) / 2 / 15
    assert logme(f, t, regression=True) == pytest.approx(want, abs=1e-6)
    assert logme(f, t[:, 0], regression=True) > logme(f, t[:, 1], regression=True)


def test_informative_features_score_higher_on_every_estimator():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=200)
    good = np.eye(4)[labels] * 3 + rng.normal(size=(200, 4))
    bad = rng.normal(size=(200, 4))
    assert logme(good, labels) > logme(bad, labels)
    assert hscore(good, labels) > hscore(bad, labels)
    probs_good = np.full((200, 4), 0.05) + 0.8 * np.eye(4)[labels]
    assert leep(probs_good, labels) > leep(np.full((200, 4), 0.25), labels)


def test_kl_entropy_by_hand_one_dimension():
    # k = 3 neighbours of 0,10,20,30,40: the 3rd-nearest distances are 30,20,20,20,30
    x = np.array([[0.0], [10.0], [20.0], [30.0], [40.0]])
    # ψ(5) − ψ(3) = 1/3 + 1/4
    want = (1 / 3 + 1 / 4) + math.log(2) + (2 * math.log(30) + 3 * math.log(20)) / 5
    assert kl_entropy(x, k=3) == pytest.approx(want, abs=1e-12)


def test_tmi_by_hand_weights_classes_and_skips_singletons():
    f = np.array([[0.0], [10.0], [20.0], [30.0], [40.0], [100.0], [100.5], [7.0]])
    y = np.array([0, 0, 0, 0, 0, 1, 1, 2])
    h0 = 7 / 12 + math.log(2) + (2 * math.log(30) + 3 * math.log(20)) / 5
    h1 = 1.0 + math.log(2)   # two points: k = 1, ε = 0.5 clamped to 1, ψ(2) − ψ(1) = 1
    assert tmi(f, y) == pytest.approx(5 / 8 * h0 + 2 / 8 * h1, abs=1e-12)   # class 2 skipped


def test_tmi_depends_on_feature_scale_through_the_clamp():
    rng = np.random.default_rng(4)
    y = np.repeat([0, 1, 2], 30)
    f = rng.normal(size=(90, 3)) * 50            # every 3rd-NN distance well above 1
    d = f.shape[1]
    assert tmi(10 * f, y) == pytest.approx(tmi(f, y) + d * math.log(10), abs=1e-9)
    # shrunk far enough, every ε clamps to 1: the score forgets the features entirely
    floor = 3 * (30 / 90) * (_psi(30) - _psi(3) + d * math.log(2))   # three classes of 30
    assert tmi(1e-4 * f, y) == pytest.approx(floor, abs=1e-9)
    assert tmi(1e-4 * f, y) == pytest.approx(tmi(1e-6 * f, y), abs=1e-12)
    # LogME and H-score do not see a uniform rescaling in the same way
    assert hscore(10 * f, y) == pytest.approx(hscore(f, y), rel=1e-9)


def _psi(n: int) -> float:
    return -0.5772156649015329 + sum(1 / i for i in range(1, n))   # ψ(n) for integer n


def test_leep_by_hand():
    theta = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    y = np.array([0, 1, 0])
    p00, p01 = 1.4 / 1.7, 0.6 / 1.3        # P̂(y=0 | z)
    p10, p11 = 0.3 / 1.7, 0.7 / 1.3        # P̂(y=1 | z)
    eep = [0.8 * p00 + 0.2 * p01, 0.3 * p10 + 0.7 * p11, 0.6 * p00 + 0.4 * p01]
    assert leep(theta, y) == pytest.approx(np.mean(np.log(eep)), abs=1e-12)


def test_leep_perfect_relabelling_is_zero_and_unused_source_labels_drop():
    y = np.array([0, 1, 2, 1])
    theta = np.zeros((4, 5))
    theta[np.arange(4), [3, 0, 1, 0]] = 1.0   # source label = a permutation of y; z=2,4 unused
    assert leep(theta, y) == pytest.approx(0.0, abs=1e-12)


def test_hscore_by_hand():
    y = np.array([0, 0, 1, 1])
    # class means 1 and 5, total mean 3: between-class variance 4, total variance 5
    assert hscore(np.array([[0.0], [2.0], [4.0], [6.0]]), y) == pytest.approx(0.8, abs=1e-12)
    # an uncorrelated second dimension with equal class means adds nothing
    f = np.array([[0.0, 1.0], [2.0, -1.0], [4.0, -1.0], [6.0, 1.0]])
    assert hscore(f, y) == pytest.approx(0.8, abs=1e-12)


def test_estimate_registry_and_errors():
    rng = np.random.default_rng(5)
    f, y = rng.normal(size=(20, 3)), np.repeat([0, 1], 10)
    assert set(ESTIMATORS) == {"logme", "tmi", "leep", "hscore", "hscore-shrunk"}
    assert estimate("logme", f, y) == logme(f, y)
    with pytest.raises(ValueError, match="unknown estimator"):
        estimate("nce", f, y)
    with pytest.raises(ValueError, match="source-label"):
        estimate("leep", f, y)
    with pytest.raises(ValueError, match="labels must have shape"):
        logme(f, y[:5])
    with pytest.raises(ValueError, match="NaN"):
        hscore(np.full((3, 2), np.nan), np.zeros(3))


def test_shrinkage_hscore_by_hand():
    from skillbank.transfer.estimators import hscore, hscore_alpha, hscore_shrunk

    # 1-D, classes at ±1: cov(f) = 1, cov(E[f|y]) = 1, σ = 1, so Σ_α = 1 and H_α = 1 − α
    f = np.array([[-1.0], [-1.0], [1.0], [1.0]])
    y = np.array([0, 0, 1, 1])
    assert hscore_alpha(f, y, 0.0) == pytest.approx(1.0) == pytest.approx(hscore(f, y))
    assert hscore_alpha(f, y, 0.25) == pytest.approx(0.75)
    # 2-D: cov(f) = diag(1, 4) (rows ±1 on x, ±2 on y), classes split on x only:
    # cov(E[f|y]) = diag(1, 0); σ = 2.5; α = 0.5: Σ = diag(1.75, 3.25), H = 0.5 / 1.75
    f2 = np.array([[1.0, 2.0], [1.0, -2.0], [-1.0, 2.0], [-1.0, -2.0]])
    y2 = np.array([1, 1, 0, 0])
    assert hscore_alpha(f2, y2, 0.5) == pytest.approx(0.5 / 1.75)
    # more dimensions than rows: the plain H-score saturates at C − 1, the shrunk one does not
    rng = np.random.default_rng(0)
    wide, labels = rng.normal(size=(40, 200)), np.arange(40) % 4
    assert hscore(wide, labels) == pytest.approx(3.0, abs=1e-6)
    assert hscore_shrunk(wide, labels) < 2.0
