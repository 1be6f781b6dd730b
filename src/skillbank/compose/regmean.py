"""RegMean (Jin et al. 2023, "Dataless knowledge fusion by merging weights of language
models"; docs/methods.md §2), in ΔW space.

For a linear layer y = x Wᵀ, RegMean picks the W that best reproduces every member's outputs
on that member's inputs, min_W Σ_i ‖X_i Wᵀ − X_i W_iᵀ‖², whose solution is

    Wᵀ = (Σ_i G_i)⁻¹ Σ_i G_i W_iᵀ,      G_i = X_iᵀ X_i  (the Gram matrix of layer inputs).

With W_i = W_0 + ΔW_i the base term cancels, so the merge of task vectors is
ΔWᵀ = (Σ G_i)⁻¹ Σ G_i ΔW_iᵀ. The paper shrinks each G_i's off-diagonal entries by α
(G̃ = α G + (1 − α) diag G; α = 0.9 in the paper, α = 0 is a per-input-feature weighted
mean) to keep the solve well conditioned. Parameters without a Gram matrix (vectors, and
matrices no member's statistics cover) are averaged, as in the paper. Members' ``weights``
scale their G_i (a member weighted 0 drops out). A singular Σ G̃ (an input feature no
member ever saw) is solved by least squares: on those features ΔW is the minimum-norm
solution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

ALPHA = 0.9


def shrink(gram: torch.Tensor, alpha: float) -> torch.Tensor:
    """α G + (1 − α) diag G: the off-diagonal entries scaled by α."""
    diag = torch.diag(torch.diagonal(gram))
    return alpha * gram + (1.0 - alpha) * diag


def regmean(taus: Sequence[torch.Tensor], grams: Sequence[torch.Tensor], alpha: float = ALPHA,
            weights: Sequence[float] | None = None) -> torch.Tensor:
    """ΔW (out × in) minimising Σ_i w_i ‖X_i ΔWᵀ − X_i ΔW_iᵀ‖² with G_i shrunk by ``alpha``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    w = [1.0] * len(taus) if weights is None else list(weights)
    gs = [wi * shrink(g.double(), alpha) for wi, g in zip(w, grams, strict=True)]
    total = sum(gs)
    rhs = sum(g @ t.double().T for g, t in zip(gs, taus, strict=True))
    try:
        solution = torch.linalg.solve(total, rhs)
    except RuntimeError:  # singular: some input feature never seen by any member
        solution = torch.linalg.lstsq(total, rhs, driver="gelsd").solution
    return solution.T.float()


def average(taus: Sequence[torch.Tensor]) -> torch.Tensor:
    """The mean τ: RegMean's rule for parameters without a Gram matrix."""
    return torch.stack([t.float() for t in taus]).mean(0)
