"""Merge maths against matrices computed by hand (comments show the working)."""

import math

import pytest
import torch

from skillbank.compose import merge

T1 = torch.tensor([1.0, -2.0, 3.0, 0.5])
T2 = torch.tensor([-1.0, 1.0, 2.0, -3.0])
# trim at density 0.5: τ̃1 = [0, -2, 3, 0], τ̃2 = [0, 0, 2, -3]


def test_task_arithmetic():
    assert torch.equal(merge.task_arithmetic([T1, T2], [2.0, 1.0]), torch.tensor([1.0, -3.0, 8.0, -2.0]))


def test_topk_mask_keeps_exactly_k_with_ties_to_the_lowest_index():
    # |τ| = [3, 1, 1, 1, 0.5], d = 0.4 -> k = 2: 3, then the first of the three tied 1s
    m = merge.topk_mask(torch.tensor([3.0, -1.0, 1.0, 1.0, 0.5]), 0.4)
    assert m.tolist() == [True, True, False, False, False]
    assert merge.topk_mask(torch.tensor([[1.0, 1.0], [1.0, 1.0]]), 0.75).sum() == 3
    assert merge.topk_mask(torch.tensor([0.1, -0.2]), 1.0).all()


def test_trim_keeps_top_fraction():
    assert torch.equal(merge.trim(T1, 0.5), torch.tensor([0.0, -2.0, 3.0, 0.0]))
    assert torch.equal(merge.trim(T2, 0.5), torch.tensor([0.0, 0.0, 2.0, -3.0]))


def test_magnitude_prune():
    # [0,-2,3,0] + [0,0,2,-3]
    assert torch.equal(merge.magnitude_prune([T1, T2], None, 0.5), torch.tensor([0.0, -2.0, 5.0, -3.0]))


@pytest.mark.parametrize(
    "weights, convention, expected",
    [
        # vote on Σ τ̃ = [0,-2,5,-3] → γ = [+,-,+,-]; kept: pos1 τ̃1, pos2 both, pos3 τ̃2
        ([1.0, 1.0], "peft", [0.0, -2.0, 2.5, -3.0]),
        # PEFT: unweighted vote, weighted values / count: pos2 (2·3 + 1·2)/2 = 4
        ([2.0, 1.0], "peft", [0.0, -4.0, 4.0, -3.0]),
        # mergekit: divisor Σ w m: pos1 -4/2, pos2 8/3, pos3 -3/1
        ([2.0, 1.0], "mergekit", [0.0, -2.0, 8.0 / 3.0, -3.0]),
    ],
)
def test_ties_conventions(weights, convention, expected):
    got = merge.ties([T1, T2], weights, density=0.5, convention=convention)
    assert torch.allclose(got, torch.tensor(expected))


def test_ties_sign_methods_differ():
    taus = [torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([-5.0])]
    # total: Σ = -3 → γ = -1 → only -5 kept.  frequency: Σ sign = +1 → (1 + 1)/2
    assert merge.ties(taus, density=1.0, sign_method="total").item() == -5.0
    assert merge.ties(taus, density=1.0, sign_method="frequency").item() == 1.0


def test_mergekit_vote_uses_weights():
    taus = [torch.tensor([1.0]), torch.tensor([-1.5])]
    # PEFT votes on [1, -1.5] → γ = -1 → -1.5·0.2/1; mergekit on [3·1, 0.2·-1.5] → γ=+1 → 3/3
    assert merge.ties(taus, [3.0, 0.2], 1.0, convention="peft").item() == pytest.approx(-0.3)
    assert merge.ties(taus, [3.0, 0.2], 1.0, convention="mergekit").item() == pytest.approx(1.0)


def test_dare_rescales_and_is_seeded():
    tau = torch.ones(20000)
    a = merge.dare([tau], density=0.25, seed=3)
    b = merge.dare([tau], density=0.25, seed=3)
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) == {0.0, 4.0}  # kept entries scaled by 1/d
    assert a.mean().item() == pytest.approx(1.0, abs=0.05)  # unbiased
    assert not torch.equal(a, merge.dare([tau], density=0.25, seed=4))
    assert torch.equal(merge.dare([T1, T2], density=1.0), merge.task_arithmetic([T1, T2]))


def test_cat_is_exact():
    g = torch.Generator().manual_seed(0)
    As = [torch.randn(2, 5, generator=g), torch.randn(3, 5, generator=g)]
    Bs = [torch.randn(4, 2, generator=g), torch.randn(4, 3, generator=g)]
    a, b = merge.cat_lora(As, Bs, scales=[2.0, 0.5], weights=[1.0, -1.0])
    assert a.shape == (5, 5) and b.shape == (4, 5)
    expected = 2.0 * Bs[0] @ As[0] - 0.5 * Bs[1] @ As[1]
    assert torch.allclose(b @ a, expected, atol=1e-6)


def test_svd_factor_error():
    dw = torch.diag(torch.tensor([4.0, 3.0]))
    a, b, err = merge.svd_factor(dw, 1)
    assert err == pytest.approx(3.0 / 5.0)  # ‖diag(0,3)‖ / ‖diag(4,3)‖
    assert torch.allclose(b @ a, torch.diag(torch.tensor([4.0, 0.0])), atol=1e-6)
    assert merge.svd_factor(dw, 2)[2] == pytest.approx(0.0, abs=1e-6)
    assert merge.svd_factor(torch.zeros(3, 3), 1)[2] == 0.0


def test_diagnostics():
    # both non-zero everywhere; signs disagree at 0 (1,-1), 1 (-2,1), 3 (0.5,-3)
    assert merge.sign_conflicts([T1, T2]) == pytest.approx(3 / 4)
    # on the trimmed vectors only position 2 has two non-zeros, and they agree
    assert merge.sign_conflicts([merge.trim(T1, 0.5), merge.trim(T2, 0.5)]) == 0.0
    assert merge.cosine(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])) == pytest.approx(1 / math.sqrt(2))
    assert merge.cosine(torch.zeros(2), torch.ones(2)) == 0.0


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_density_checked(bad):
    with pytest.raises(ValueError):
        merge.trim(T1, bad)
