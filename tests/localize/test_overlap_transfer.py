"""Overlap vs transfer: the transfer matrix and the Spearman correlation, by hand."""

from __future__ import annotations

import math

import pytest

from skillbank.localize import graft


def test_transfer_matrix_by_hand():
    lp = {"base": {"a": -3.0, "b": -2.0},
          "A": {"a": -1.0, "b": -1.5},     # A gains 2 on a, 0.5 on b
          "B": {"a": -2.5, "b": -0.0}}     # B gains 0.5 on a, 2 on b
    t = graft.transfer_matrix(lp, ["A", "B"], ["a", "b"], "base")
    # T[i][j] = (lp_i(t_j) − lp_base(t_j)) / (lp_j(t_j) − lp_base(t_j))
    assert t == [[1.0, pytest.approx(0.5 / 2.0)], [pytest.approx(0.5 / 2.0), 1.0]]
    lp["B"]["b"] = -2.0                    # B does not move its own task: undefined column
    t = graft.transfer_matrix(lp, ["A", "B"], ["a", "b"], "base")
    assert t[0][1] is None and t[1][1] is None and t[1][0] == pytest.approx(0.25)


def test_off_diagonal_skips_diagonal_and_none():
    a = [[1.0, 0.2, None], [0.3, 1.0, 0.4], [0.5, 0.6, 1.0]]
    b = [[9.0, 1.0, 2.0], [3.0, 9.0, None], [5.0, 6.0, 9.0]]
    assert graft.off_diagonal(a, b) == ([0.2, 0.3, 0.5, 0.6], [1.0, 3.0, 5.0, 6.0])


def test_spearman_by_hand():
    # 3 skills, 6 ordered pairs; overlap ranks 1..6, transfer ranks [2, 1, 3, 4, 6, 5]
    o = [[1, 0.1, 0.2], [0.3, 1, 0.4], [0.5, 0.6, 1]]
    t = [[1, 0.02, 0.01], [0.03, 1, 0.04], [0.06, 0.05, 1]]
    res = graft.overlap_transfer_correlation(o, t)
    n, d2 = 6, 1 + 1 + 0 + 0 + 1 + 1       # Σ (rank difference)²
    rho = 1 - 6 * d2 / (n * (n * n - 1))   # = 1 − 24/210 = 0.8857…
    assert res["n_pairs"] == 6 and res["spearman"] == pytest.approx(rho)
    # p-value: two-sided t test with n − 2 degrees of freedom, t = ρ √((n − 2)/(1 − ρ²))
    from scipy.stats import t as student

    tt = rho * math.sqrt((n - 2) / (1 - rho * rho))
    assert res["p_value"] == pytest.approx(2 * student.sf(tt, n - 2))
    # perfectly reversed: ρ = −1
    t_rev = [[1, 0.6, 0.5], [0.4, 1, 0.3], [0.2, 0.1, 1]]
    assert graft.overlap_transfer_correlation(o, t_rev)["spearman"] == pytest.approx(-1.0)


def test_spearman_undefined_cases():
    o2 = [[1, 0.5], [0.5, 1]]
    t2 = [[1, 0.1], [0.2, 1]]
    assert graft.overlap_transfer_correlation(o2, t2) == {"n_pairs": 2, "spearman": None,
                                                          "p_value": None}
    flat = [[1, 0.5, 0.5], [0.5, 1, 0.5], [0.5, 0.5, 1]]   # constant overlap: ρ undefined
    t3 = [[1, 0.1, 0.2], [0.3, 1, 0.4], [0.5, 0.6, 1]]
    assert graft.overlap_transfer_correlation(flat, t3)["spearman"] is None
