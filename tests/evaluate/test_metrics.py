"""Hand-computed checks of skillbank.evaluate.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skillbank.evaluate.metrics import (
    accuracy,
    bootstrap_stderr,
    bootstrap_stderr_fn,
    brier_score,
    ece,
    exact_match,
    mean_logprob,
    per_token_accuracy,
    summarize_classification,
    summarize_generation,
    token_edit_distance,
)

# ------------------------------------------------------------------------------ generation


@pytest.mark.parametrize("pred, target, expected", [
    ("42", "42", 1.0),
    ("  42\n", "42 ", 1.0),     # both sides stripped
    ("4 2", "42", 0.0),         # inner whitespace matters
    ("42", "43", 0.0),
    ("", "", 1.0),
    ("", "x", 0.0),
    ("ABC", "abc", 0.0),        # case-sensitive
])
def test_exact_match(pred, target, expected):
    assert exact_match(pred, target) == expected


@pytest.mark.parametrize("pred, target, expected", [
    ("kitten", "sitting", 3),   # k->s, e->i, +g
    ("sitting", "kitten", 3),   # symmetric
    ("flaw", "lawn", 2),        # -f, +n
    ("", "", 0),
    ("", "abc", 3),
    ("abc", "", 3),
    ("abc", "abc", 0),
    ("abc", "acb", 2),          # no transposition op: two substitutions
    ("intention", "execution", 5),
    ([1, 2, 3, 4], [1, 3, 4], 1),
    ([7, 7], [8, 8, 8], 3),
])
def test_token_edit_distance(pred, target, expected):
    assert token_edit_distance(list(pred), list(target)) == expected
    assert isinstance(token_edit_distance(list(pred), list(target)), int)


@pytest.mark.parametrize("pred, target, expected", [
    ([1, 2, 3], [1, 2, 3], 1.0),
    ([1, 9, 3], [1, 2, 3], 2 / 3),
    ([1, 2], [1, 2, 3, 4], 0.5),        # missing positions are wrong
    ([1, 2, 3, 4, 5], [1, 2, 3], 1.0),  # extra predicted tokens not penalised here
    ([2, 3], [1, 2, 3], 0.0),           # positional, no alignment
    ([], [1], 0.0),
    ([], [], 1.0),
    ([1], [], 0.0),
])
def test_per_token_accuracy(pred, target, expected):
    assert per_token_accuracy(pred, target) == pytest.approx(expected)


@pytest.mark.parametrize("logprobs, expected", [
    ([-1.0, -2.0, -3.0], -2.0),
    ([0.0], 0.0),
    ([math.log(0.5), math.log(0.25)], 1.5 * math.log(0.5)),
])
def test_mean_logprob(logprobs, expected):
    assert mean_logprob(logprobs) == pytest.approx(expected)


def test_mean_logprob_empty_raises():
    with pytest.raises(ValueError):
        mean_logprob([])


# -------------------------------------------------------------------------- classification

# Four examples, two classes (conf = max prob, pred = argmax):
#   A [0.92, 0.08] y=0 -> conf .92, correct   bin (0.9, 1.0]
#   B [0.96, 0.04] y=1 -> conf .96, wrong     bin (0.9, 1.0]
#   C [0.38, 0.62] y=1 -> conf .62, correct   bin (0.6, 0.7]
#   D [0.66, 0.34] y=1 -> conf .66, wrong     bin (0.6, 0.7]
# accuracy = 2/4 = 0.5
# ECE: bin (0.9,1]: acc 1/2, conf (.92+.96)/2 = .94, |.5-.94| = .44, weight 2/4 -> .22
#      bin (0.6,.7]: acc 1/2, conf (.62+.66)/2 = .64, |.5-.64| = .14, weight 2/4 -> .07
#      ECE = .22 + .07 = .29
# Brier: A (.92-1)^2 + .08^2 = .0128     B .96^2 + (.04-1)^2 = 1.8432
#        C .38^2 + (.62-1)^2 = .2888     D .66^2 + (.34-1)^2 = .8712
#        mean = 3.016 / 4 = .754
PROBS4 = np.array([[0.92, 0.08], [0.96, 0.04], [0.38, 0.62], [0.66, 0.34]])
LABELS4 = np.array([0, 1, 1, 1])


@pytest.mark.parametrize("probs, labels, expected", [
    (PROBS4, LABELS4, 0.5),
    (np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]), np.array([1, 0]), 0.5),
    (np.array([[0.5, 0.5]]), np.array([0]), 1.0),      # tie -> lowest index
    (np.array([[0.5, 0.5]]), np.array([1]), 0.0),
])
def test_accuracy(probs, labels, expected):
    assert accuracy(probs, labels) == pytest.approx(expected)


@pytest.mark.parametrize("probs, labels, expected", [
    (PROBS4, LABELS4, 0.754),
    # [.5,.3,.2], y=1: .5^2 + (.3-1)^2 + .2^2 = .25 + .49 + .04 = .78
    (np.array([[0.5, 0.3, 0.2]]), np.array([1]), 0.78),
    (np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]), 0.0),   # perfect
    (np.array([[1.0, 0.0]]), np.array([1]), 2.0),                  # worst case
    (np.array([[0.5, 0.5]]), np.array([0]), 0.5),                  # .25 + .25
])
def test_brier_score(probs, labels, expected):
    assert brier_score(probs, labels) == pytest.approx(expected)


@pytest.mark.parametrize("probs, labels, n_bins, expected", [
    (PROBS4, LABELS4, 10, 0.29),
    # one bin: acc .5, conf (.92+.96+.62+.66)/4 = .79 -> |.5-.79| = .29 (same by chance)
    (PROBS4, LABELS4, 1, 0.29),
    # two bins (0,.5],(.5,1]: every conf > .5 -> same as one bin
    (PROBS4, LABELS4, 2, 0.29),
    # edge: conf exactly 0.6 belongs to (0.5, 0.6], together with conf .55:
    #   acc 1/2, conf .575 -> .075   (were 0.6 in (0.6, 0.7] it would be .5*.4 + .5*.55 = .475)
    (np.array([[0.6, 0.4], [0.55, 0.45]]), np.array([0, 1]), 10, 0.075),
    # conf exactly 1.0 is in the last bin, correct -> 0
    (np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]), 10, 0.0),
    # conf 0 goes to the first bin (no index error): correct, |1 - 0| = 1
    (np.array([[0.0, 0.0]]), np.array([0]), 10, 1.0),
    # perfectly calibrated in bin (0.7, 0.8]: 4 at conf .75, 3 correct -> 0
    (np.array([[0.75, 0.25]] * 4), np.array([0, 0, 0, 1]), 10, 0.0),
])
def test_ece(probs, labels, n_bins, expected):
    assert ece(probs, labels, n_bins=n_bins) == pytest.approx(expected)


@pytest.mark.parametrize("probs, labels", [
    (np.array([0.5, 0.5]), np.array([0])),             # probs not 2-D
    (np.array([[0.5, 0.5]]), np.array([0, 1])),        # length mismatch
    (np.array([[0.5, 0.5]]), np.array([2])),           # label out of range
    (np.array([[0.5, 0.5]]), np.array([0.0])),         # float labels
    (np.zeros((0, 2)), np.zeros(0, dtype=int)),        # empty
])
def test_classification_input_validation(probs, labels):
    for fn in (accuracy, brier_score, ece):
        with pytest.raises(ValueError):
            fn(probs, labels)


# ------------------------------------------------------------------------------- bootstrap


def test_bootstrap_deterministic_per_seed():
    values = np.random.default_rng(123).normal(size=50)
    a = bootstrap_stderr(values, n_boot=200, seed=7)
    assert a == bootstrap_stderr(values, n_boot=200, seed=7)
    assert a != bootstrap_stderr(values, n_boot=200, seed=8)


@pytest.mark.parametrize("values", [[3.0] * 10, [0.0], [1.0] * 400])
def test_bootstrap_constant_is_zero(values):
    assert bootstrap_stderr(values, n_boot=100) == 0.0
    assert bootstrap_stderr_fn(np.mean, np.asarray(values), n_boot=100) == 0.0


def test_bootstrap_bernoulli_matches_binomial_stderr():
    sample = np.random.default_rng(0).integers(0, 2, size=400).astype(float)
    expected = math.sqrt(0.25 / 400)  # 0.025
    assert bootstrap_stderr(sample, n_boot=1000, seed=0) == pytest.approx(expected, rel=0.2)


def test_bootstrap_fn_matches_mean_version():
    values = np.random.default_rng(1).normal(size=30)
    a = bootstrap_stderr(values, n_boot=300, seed=3)
    b = bootstrap_stderr_fn(np.mean, values, n_boot=300, seed=3)
    assert a == pytest.approx(b, rel=1e-12)


def test_bootstrap_fn_resamples_arrays_jointly():
    # statistic is 0 exactly when rows stay paired (x == y for every resampled row)
    x = np.arange(20, dtype=float)
    stat = lambda a, b: float(np.abs(a - b).sum())  # noqa: E731
    assert bootstrap_stderr_fn(stat, x, x.copy(), n_boot=50, seed=0) == 0.0
    s1 = bootstrap_stderr_fn(lambda p, y: ece(p, y), PROBS4, LABELS4, n_boot=200, seed=5)
    s2 = bootstrap_stderr_fn(lambda p, y: ece(p, y), PROBS4, LABELS4, n_boot=200, seed=5)
    assert s1 == s2 > 0


@pytest.mark.parametrize("kwargs", [dict(n_boot=1), dict(n_boot=0)])
def test_bootstrap_rejects_bad_n_boot(kwargs):
    with pytest.raises(ValueError):
        bootstrap_stderr([1.0, 2.0], **kwargs)
    with pytest.raises(ValueError):
        bootstrap_stderr_fn(np.mean, np.array([1.0, 2.0]), **kwargs)


def test_bootstrap_rejects_mismatched_or_empty():
    with pytest.raises(ValueError):
        bootstrap_stderr([])
    with pytest.raises(ValueError):
        bootstrap_stderr_fn(lambda a, b: 0.0, np.zeros(3), np.zeros(4))


# ------------------------------------------------------------------------------- summaries


def _records():
    return [
        # exact; edit 0; tok acc 1; mean lp -0.5
        {"pred": "12", "target": "12", "pred_tokens": [1, 2], "target_tokens": [1, 2],
         "target_logprobs": [-0.25, -0.75]},
        # wrong; edit 1 (substitute); tok acc 1/2; mean lp -2
        {"pred": "13", "target": "12", "pred_tokens": [1, 3], "target_tokens": [1, 2],
         "target_logprobs": [-1.0, -3.0]},
        # wrong; edit 2 (7->4, +5); tok acc 0; mean lp -1
        {"pred": "7", "target": "45", "pred_tokens": [7], "target_tokens": [4, 5],
         "target_logprobs": [-1.0, -1.0]},
        # exact after strip; edit 0; tok acc 1; mean lp -0.5
        {"pred": " 9 ", "target": "9", "pred_tokens": [9], "target_tokens": [9],
         "target_logprobs": [-0.5]},
    ]


def test_summarize_generation_values():
    s = summarize_generation(_records())
    assert set(s) == {"n", "exact_match", "exact_match_stderr", "edit_distance",
                      "edit_distance_stderr", "token_accuracy", "token_accuracy_stderr",
                      "mean_logprob", "mean_logprob_stderr"}
    assert s["n"] == 4
    assert s["exact_match"] == pytest.approx(0.5)
    assert s["edit_distance"] == pytest.approx((0 + 1 + 2 + 0) / 4)
    assert s["token_accuracy"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert s["mean_logprob"] == pytest.approx((-0.5 - 2 - 1 - 0.5) / 4)
    assert s["exact_match_stderr"] == pytest.approx(
        bootstrap_stderr([1.0, 0.0, 0.0, 1.0], seed=0))
    assert all(s[k] > 0 for k in s if k.endswith("_stderr"))
    assert all(isinstance(v, float) for k, v in s.items() if k != "n")


def test_summarize_generation_seed_and_errors():
    recs = _records()
    assert summarize_generation(recs, seed=1) == summarize_generation(recs, seed=1)
    assert summarize_generation(recs, seed=1) != summarize_generation(recs, seed=2)
    with pytest.raises(ValueError):
        summarize_generation([])
    bad = [dict(recs[0])]
    del bad[0]["pred_tokens"]
    with pytest.raises(KeyError):
        summarize_generation(bad)
    mixed = [dict(r) for r in recs]
    del mixed[1]["target_logprobs"]
    with pytest.raises(KeyError):
        summarize_generation(mixed)
    no_lp = [{k: v for k, v in r.items() if k != "target_logprobs"} for r in recs]
    plain = summarize_generation(no_lp, seed=1)
    assert "mean_logprob" not in plain
    assert plain["exact_match"] == summarize_generation(recs, seed=1)["exact_match"]


def test_summarize_classification_values():
    s = summarize_classification(PROBS4, LABELS4)
    assert set(s) == {"n", "accuracy", "accuracy_stderr", "brier", "brier_stderr", "ece",
                      "ece_stderr"}
    assert s["n"] == 4
    assert s["accuracy"] == pytest.approx(0.5)
    assert s["brier"] == pytest.approx(0.754)
    assert s["ece"] == pytest.approx(0.29)
    assert s["accuracy_stderr"] == pytest.approx(bootstrap_stderr([1.0, 0.0, 1.0, 0.0]))
    assert s["brier_stderr"] == pytest.approx(
        bootstrap_stderr([0.0128, 1.8432, 0.2888, 0.8712]))
    assert s["ece_stderr"] == pytest.approx(
        bootstrap_stderr_fn(lambda p, y: ece(p, y), PROBS4, LABELS4))
    assert s == summarize_classification(PROBS4, LABELS4, seed=0)
    assert s != summarize_classification(PROBS4, LABELS4, seed=1)


def test_vectorised_ece_bootstrap_equals_the_generic_one():
    from skillbank.evaluate.metrics import bootstrap_stderr_fn, ece, ece_bootstrap_stderr

    rng = np.random.default_rng(1)
    for n in (1, 7, 200, 3000):
        p = rng.dirichlet([1, 1, 1], size=n)
        y = rng.integers(0, 3, n)
        want = bootstrap_stderr_fn(lambda a, b: ece(a, b), p, y, n_boot=300, seed=2)
        assert ece_bootstrap_stderr(p, y, n_boot=300, seed=2) == pytest.approx(want, abs=1e-12)
