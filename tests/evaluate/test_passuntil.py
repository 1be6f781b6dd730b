"""PassUntil: the estimator, the exact stopping point inside a batched round, unbiasedness
with two passes (and the bias of 1/K with one), the zero-pass bound, and a real tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skillbank.evaluate.passuntil import (
    PassUntilConfig,
    cut,
    estimate,
    inverse_sampling,
    pass_until,
    summarize,
)


def test_estimate_by_hand():
    assert estimate(2, 5, stopped=True) == pytest.approx(1 / 4)     # (r-1)/(K-1)
    assert estimate(3, 11, stopped=True) == pytest.approx(2 / 10)
    assert estimate(1, 8, stopped=True) == pytest.approx(1 / 8)     # the first pass: 1/K
    assert estimate(1, 10, stopped=False) == pytest.approx(0.1)     # capped: r/K
    assert estimate(0, 10, stopped=False) == 0.0
    with pytest.raises(ValueError):
        estimate(3, 2, stopped=True)


def test_cut_stops_at_the_needed_pass():
    hits = np.array([0, 1, 0, 1, 1], dtype=bool)
    assert cut(hits, 2) == (2, 4, True)      # draws after the 2nd pass are not counted
    assert cut(hits, 1) == (1, 2, True)
    assert cut(hits, 5) == (3, 5, False)


def _scripted(patterns):
    """A draw whose instance i yields patterns[i] in order (then fails forever)."""
    pos = [0] * len(patterns)

    def draw(requests):
        out = []
        for i, k in requests:
            seq = patterns[i][pos[i]: pos[i] + k]
            out.append(np.array(list(seq) + [False] * (k - len(seq)), dtype=bool))
            pos[i] += k
        return out

    return draw


@pytest.mark.parametrize("rows", [1, 3, 7, 1000])
def test_batching_gives_the_sequential_answer(rows):
    patterns = [[False, False, True, False, False, False, True, True],   # passes at draws 3 and 7
                [False] * 20,                                            # never: capped at 10
                [True, True]]                                            # 2 in 2
    got = inverse_sampling(_scripted(patterns), 3, PassUntilConfig(cap=10, passes=2, rows=rows))
    assert [(r["passes"], r["draws"], r["stopped"]) for r in got] == [(2, 7, True), (0, 10, False),
                                                                      (2, 2, True)]
    assert [r["p"] for r in got] == pytest.approx([1 / 6, 0.0, 1.0])


def _bernoulli(p, seed):
    rng = np.random.default_rng(seed)
    return lambda requests: [rng.random(k) < p for _, k in requests]


def test_two_passes_are_unbiased_and_the_first_pass_is_not():
    p, n = 0.05, 3000
    two = inverse_sampling(_bernoulli(p, 1), n, PassUntilConfig(cap=100_000, passes=2, rows=4096))
    est = np.array([r["p"] for r in two])
    assert abs(est.mean() - p) < 4 * est.std() / math.sqrt(n)
    one = inverse_sampling(_bernoulli(p, 2), n, PassUntilConfig(cap=100_000, passes=1, rows=4096))
    biased = -p * math.log(p) / (1 - p)          # E[1/K] for a geometric K: 0.158 at p = 0.05
    assert np.mean([r["p"] for r in one]) == pytest.approx(biased, rel=0.08)


def test_summary_and_the_zero_pass_bound():
    rows = [{"passes": 0, "draws": 100, "stopped": False, "p": 0.0}] * 3
    s = summarize(rows)
    assert s["pass_rate"] == 0.0 and s["draws"] == 300 and s["capped_instances"] == 3
    assert s["ci90"] == pytest.approx([0.0, 1 - 0.05 ** (1 / 300)])   # ≈ 3/300, the rule of three
    mixed = summarize([{"passes": 2, "draws": 5, "stopped": True, "p": 0.25},
                       {"passes": 2, "draws": 2, "stopped": True, "p": 1.0}])
    assert mixed["pass_rate"] == pytest.approx(0.625)


@pytest.mark.parametrize("bad", [{"cap": 0}, {"cap": 10**8}, {"cap": 2.5}, {"passes": 0}, {"temperature": 0.0},
                                 {"temperature": float("nan")}, {"rows": 0}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        PassUntilConfig(**bad)


def test_on_a_tiny_model_it_is_seeded_and_capped(tmp_path):
    from tests.tinyskills import tiny_strings_library

    from skillbank.worlds import get_world

    lib, base, tok = tiny_strings_library(tmp_path)
    model = base.load_model()
    cfg = PassUntilConfig(cap=6, rows=8, seed=3)
    a = pass_until(model, tok, get_world("strings"), "rev", 4, cfg)
    b = pass_until(model, tok, get_world("strings"), "rev", 4, cfg)
    assert a["per_instance"] == b["per_instance"]
    assert all(1 <= r["draws"] <= 6 for r in a["per_instance"])
    assert a["instances"] == 4 and a["config"]["cap"] == 6
