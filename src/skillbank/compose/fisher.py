"""Fisher merging (Matena & Raffel 2022, "Merging models with Fisher-weighted averaging";
docs/methods.md §2), in ΔW space.

Each member's parameters are weighted by their diagonal Fisher information F_i (how much
the member's log-likelihood cares about each entry): θ* = Σ_i λ_i F_i θ_i / Σ_i λ_i F_i.
With θ_i = θ_0 + τ_i the base cancels: τ* = Σ λ_i F_i τ_i / Σ λ_i F_i. As in the paper a
small floor ε is added to every F_i, so an entry no member's Fisher covers gets the
(λ-weighted) mean τ. ``stats.fisher_diagonal`` estimates F_i as the mean squared gradient
of the log-likelihood of the member's own predictions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

FLOOR = 1e-6


def fisher_merge(taus: Sequence[torch.Tensor], fishers: Sequence[torch.Tensor],
                 weights: Sequence[float] | None = None, floor: float = FLOOR) -> torch.Tensor:
    """Σ λ_i (F_i + ε) τ_i / Σ λ_i (F_i + ε), entry by entry."""
    w = [1.0] * len(taus) if weights is None else list(weights)
    num = sum(wi * (f.double() + floor) * t.double() for wi, f, t in zip(w, fishers, taus, strict=True))
    den = sum(wi * (f.double() + floor) for wi, f in zip(w, fishers, strict=True))
    return (num / den).float()
