"""The task scaling law log(-log PU) = a + b log N: exact recovery, the interval and slope
error against formulas written out here, curvature, and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from skillbank.evaluate.scaling import curvature, fit_law, log_error, loglog, predict


def law(a, b, n):
    return math.exp(-math.exp(a + b * math.log(n)))


def test_an_exact_law_is_recovered_and_extrapolated():
    sizes = [1e3, 1e4, 1e5]
    fit = fit_law(sizes, [law(1.0, -0.25, n) for n in sizes])
    assert fit["a"] == pytest.approx(1.0) and fit["b"] == pytest.approx(-0.25)
    assert fit["alpha"] == pytest.approx(0.25) and fit["residual_sd"] == pytest.approx(0, abs=1e-9)
    pred = predict(fit, 1e6)
    assert pred["pass_rate"] == pytest.approx(law(1.0, -0.25, 1e6))
    assert pred["interval"] == pytest.approx([pred["pass_rate"]] * 2)


def test_a_noisy_fit_against_the_textbook_formulas():
    sizes = [1e3, 3e3, 1e4, 3e4]
    rates = [0.001, 0.01, 0.02, 0.15]
    x = np.log(sizes)
    y = np.array([math.log(-math.log(p)) for p in rates])
    b = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    a = y.mean() - b * x.mean()
    s = math.sqrt(((y - a - b * x) ** 2).sum() / 2)
    fit = fit_law(sizes, rates)
    assert (fit["a"], fit["b"]) == pytest.approx((a, b))
    assert fit["b_stderr"] == pytest.approx(s / math.sqrt(((x - x.mean()) ** 2).sum()))
    x0 = math.log(1e5)
    half = stats.t.ppf(0.95, 2) * s * math.sqrt(1 + 1 / 4 + (x0 - x.mean()) ** 2 / ((x - x.mean()) ** 2).sum())
    pred = predict(fit, 1e5)
    y0 = a + b * x0
    assert pred["pass_rate"] == pytest.approx(math.exp(-math.exp(y0)))
    assert pred["interval"] == pytest.approx([math.exp(-math.exp(y0 + half)), math.exp(-math.exp(y0 - half))])


def test_curvature_and_log_error():
    sizes = [1e2, 1e3, 1e4, 1e5]
    ys = [2.0 - 0.1 * math.log(n) - 0.02 * math.log(n) ** 2 for n in sizes]
    assert curvature(sizes, [math.exp(-math.exp(v)) for v in ys]) == pytest.approx(-0.02)
    assert curvature(sizes[:3], [0.1, 0.2, 0.3]) is None
    assert log_error(0.2, 0.1) == pytest.approx(math.log(2))
    assert loglog(math.exp(-1)) == pytest.approx(0.0)


@pytest.mark.parametrize("sizes,rates,match", [
    ([1e3, 1e4], [0.1, 0.2], "at least 3"),
    ([1e3, 1e3, 1e4], [0.1, 0.2, 0.3], "strictly increasing"),
    ([1e4, 1e3, 1e5], [0.1, 0.2, 0.3], "strictly increasing"),
    ([1e3, 1e4, 1e5], [0.0, 0.2, 0.3], "strictly between"),
    ([1e3, 1e4, 1e5], [0.1, 0.2, 1.0], "strictly between"),
])
def test_bad_fits_are_refused(sizes, rates, match):
    with pytest.raises(ValueError, match=match):
        fit_law(sizes, rates)
