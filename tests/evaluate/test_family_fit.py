"""Holding out the largest member: the law's prediction, both errors, and the exact-match
comparison, on cells built by hand."""

from __future__ import annotations

import math

import pytest

from skillbank.evaluate.family import fit_and_predict


def cell(p, em):
    return {"pass_until": {"pass_rate": p, "per_instance": [{"p": p}] * 4},
            "greedy": {"exact_match": em}}


def law(n):
    return math.exp(-math.exp(3.0 - 0.4 * math.log(n)))


def test_an_exact_law_predicts_the_largest():
    sizes = [1e3, 1e4, 1e5, 1e6]
    f = fit_and_predict(sizes, [cell(law(n), 0.0) for n in sizes])
    assert f["predicted"] == pytest.approx(law(1e6))
    assert f["log_error"] == pytest.approx(0, abs=1e-3) and f["loglog_error"] == pytest.approx(0, abs=1e-3)
    assert f["fitted_on"] == sizes[:3] and not f["exact_match_fittable"]
    assert f["bootstrap"]["median"] == pytest.approx(law(1e6))


def test_errors_by_hand_and_exact_match_when_it_can_be_fitted():
    sizes = [1e3, 1e4, 1e5, 1e6]
    actual = 0.5
    f = fit_and_predict(sizes, [cell(law(1e3), 0.1), cell(law(1e4), 0.2), cell(law(1e5), 0.3),
                                cell(actual, 0.6)])
    assert f["log_error"] == pytest.approx(abs(math.log(law(1e6)) - math.log(actual)), abs=1e-4)
    y = 3.0 - 0.4 * math.log(1e6)
    assert f["loglog_error"] == pytest.approx(abs(y - math.log(-math.log(actual))), abs=1e-4)
    assert f["exact_match_fittable"] and "exact_match_predicted" in f


def test_too_few_fittable_members_and_a_saturated_largest():
    f = fit_and_predict([1e3, 1e4, 1e5, 1e6], [cell(0.0, 0), cell(0.01, 0), cell(0.1, 0), cell(1.0, 1)])
    assert "error" in f and "predicted" not in f
    g = fit_and_predict([1e3, 1e4, 1e5, 1e6], [cell(0.001, 0), cell(0.01, 0), cell(0.1, 0), cell(1.0, 1)])
    assert "loglog_error" not in g and "log_error" in g       # PU = 1: only |Δ log p| exists


def test_predict_a_size_before_training_it(tmp_path, monkeypatch):
    from skillbank.acquire.family import FamilyRecipe, ensure_family
    from skillbank.acquire.pretrain import BaseRecipe
    from skillbank.evaluate import family
    from skillbank.evaluate.passuntil import PassUntilConfig
    from skillbank.library import Library
    from skillbank.run import get_executor

    lib = Library.open(tmp_path / "home")
    fam = FamilyRecipe(sizes=("8x1", "16x1", "24x1", "32x1"), base=BaseRecipe(steps=1, batch_size=2, pool=8))
    with get_executor(None) as ex:
        made = ensure_family(lib, "f", fam, ex)
        params = {m["base"]: m["parameters"] for m in made}
        monkeypatch.setattr(family, "measure", lambda lib_, subjects, *a, **k: [
            {"rev": cell(law(params[b]), 0.0)} for b, _ in subjects])
        todo, target = family.members_up_to(lib, "f", "rev", "32x2")
        assert [m["base"] for m in todo] == ["f-8x1", "f-16x1", "f-24x1", "f-32x1"]
        assert target > max(params.values())
        got = family.predict_size(lib, "f", "rev", "32x2", 4, PassUntilConfig(), ex)
        assert got["predicted"] == pytest.approx(law(target)) and "measured" not in got
        inside = family.predict_size(lib, "f", "rev", "32x1", 4, PassUntilConfig(), ex)
        assert inside["measured"] == pytest.approx(law(params["f-32x1"]))
        assert inside["predicted"] == pytest.approx(law(params["f-32x1"]))
        with pytest.raises(ValueError, match="at least 3 members"):
            family.predict_size(lib, "f", "rev", "16x1", 4, PassUntilConfig(), ex)
        with pytest.raises(ValueError, match="no family"):
            family.members_up_to(lib, "g", "rev", "16x1")
        with pytest.raises(ValueError, match="unknown task"):
            family.members_up_to(lib, "f", "nope", "16x1")
        from skillbank.acquire.pretrain import ensure_base

        ensure_base(lib, "f-40x1", BaseRecipe(size="40x1", steps=1, batch_size=2, pool=8, lr=1e-3))
        with pytest.raises(ValueError, match="mixes recipes"):
            family.members_up_to(lib, "f", "rev", "64x2")
