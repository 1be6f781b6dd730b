"""Continual-learning metrics against the test vector of docs/methods.md §10 and hand-computed cases."""

import pytest

from skillbank.evaluate import continual as cm

# docs/methods.md §10
R = [[0.90, 0.20, 0.10], [0.95, 0.85, 0.30], [0.60, 0.75, 0.95]]
B = [0.10, 0.15, 0.05]


def test_papers_test_vector():
    assert cm.acc(R) == pytest.approx(0.766667, abs=1e-6)
    assert cm.bwt(R) == pytest.approx(-0.20)
    assert cm.fwt(R, B) == pytest.approx(0.15)
    f = cm.forgetting_avalanche(R)
    assert f.keys() == {0, 1}
    assert f[0] == pytest.approx(0.30) and f[1] == pytest.approx(0.10)
    assert cm.forgetting_chaudhry(R) == pytest.approx(0.225)


def test_gem_code_convention_divides_by_T():
    # sums: BWT (.60-.90)+(.75-.85) = -.40; FWT (.20-.15)+(.30-.05) = .30
    assert cm.bwt(R, "gem_code") == pytest.approx(-0.40 / 3)
    assert cm.fwt(R, B, "gem_code") == pytest.approx(0.30 / 3)
    with pytest.raises(ValueError, match="convention"):
        cm.bwt(R, "avalanche")


def test_chaudhry_uses_the_peak_not_the_diagonal():
    # after task 1 only R[0][0] precedes; accuracy on task 0 rose, so forgetting is negative
    assert cm.forgetting_chaudhry(R, t=1) == pytest.approx(0.90 - 0.95)
    R4 = [[0.5, 0, 0, 0], [0.9, 0.8, 0, 0], [0.7, 0.6, 0.9, 0], [0.4, 0.8, 0.3, 1.0]]
    # k=0: max(.5,.9,.7)-.4 = .5; k=1: max(0,.8,.6)-.8 = 0; k=2: max(0,0,.9)-.3 = .6
    assert cm.forgetting_chaudhry(R4) == pytest.approx((0.5 + 0.0 + 0.6) / 3)
    assert cm.forgetting_avalanche(R4) == pytest.approx({0: 0.1, 1: 0.0, 2: 0.6})


def test_intransigence():
    assert cm.intransigence(R, [1.0, 0.9, 0.95]) == pytest.approx({0: 0.10, 1: 0.05, 2: 0.0})


def test_single_task_and_bad_shapes():
    assert cm.bwt([[0.7]]) == 0.0 and cm.fwt([[0.7]], [0.1]) == 0.0
    assert cm.forgetting_chaudhry([[0.7]]) == 0.0
    with pytest.raises(ValueError, match="square"):
        cm.acc([[0.1, 0.2]])
    with pytest.raises(ValueError, match="b has"):
        cm.fwt(R, [0.1])


def test_held_at_best():
    assert cm.held_at_best([0.1, 0.6, 0.4, 0.6, 0.2]) == [0.1, 0.6, 0.6, 0.6, 0.6]


def test_libero_by_hand():
    curves = [[0.0, 0.5, 1.0, 0.8], [0.2, 0.6, 0.4, 0.6]]
    R2 = [[0.8, 0.3], [0.5, 0.6]]
    out = cm.libero(curves, R2)
    # task 0: held [0,.5,1,1] -> FWT .625; c00 = 1.0; NBT = 1.0-.5 = .5; AUC = (.625+.5)/2
    # task 1: held [.2,.6,.6,.6] -> FWT .5; NBT 0 (last task, still counted); AUC = .5/1
    assert out["fwt_k"] == pytest.approx([0.625, 0.5])
    assert out["nbt_k"] == pytest.approx([0.5, 0.0])
    assert out["auc_k"] == pytest.approx([0.5625, 0.5])
    assert out["fwt"] == pytest.approx(0.5625)
    assert out["nbt"] == pytest.approx(0.25)
    assert out["auc"] == pytest.approx(0.53125)


def test_examples_to_reach_and_efficiency():
    without = [(0, 0.0), (640, 0.3), (1280, 0.85), (1920, 0.95)]
    with_ = [(640, 0.9), (0, 0.2)]  # unsorted on purpose
    assert cm.examples_to_reach(without, 0.9) == 1920
    assert cm.examples_to_reach(with_, 0.9) == 640
    assert cm.examples_to_reach(without, 0.99) is None
    eff = cm.acquisition_efficiency(with_, without, 0.9)
    assert eff == {"target": 0.9, "with_library": 640, "without_library": 1920, "saving": 3.0}
    assert cm.acquisition_efficiency(with_, without, 0.99)["saving"] is None
    assert cm.acquisition_efficiency([(0, 1.0)], without, 0.9)["saving"] == float("inf")


def test_summary_keys_and_values():
    s = cm.summary(R, B, joint=[1.0, 0.9, 0.95])
    assert s["acc"] == pytest.approx(0.766667, abs=1e-6)
    assert s["forgetting_avalanche"] == pytest.approx({"0": 0.30, "1": 0.10})
    assert s["forgetting_avalanche_mean"] == pytest.approx(0.20)
    assert s["intransigence_mean"] == pytest.approx(0.05)
    assert "intransigence" not in cm.summary(R, B)
