"""KnOTS (Stoica et al. 2025, "Model merging with SVD to tie the KnOTS"; docs/methods.md §2).

LoRA updates of different tasks live in different subspaces, so merging them entry by entry
mixes unrelated directions. KnOTS first puts every member's ΔW_i (out × in) in one basis:
the SVD of their column-wise concatenation,

    [ΔW_1 … ΔW_n] = U Σ [V_1ᵀ … V_nᵀ],      so ΔW_i = U (Σ V_iᵀ) exactly,

then merges the aligned task representations Σ V_iᵀ (k × in each) with an ordinary
merge (TIES, or linear task arithmetic) and rebuilds ΔW = U · merged. As in the authors'
code, singular values ≤ 1e-5 are dropped and Σ is folded into each V_iᵀ before merging.
With a linear inner merge KnOTS equals task arithmetic (U is orthonormal and the merge
is linear); the gain is in TIES' trimming and sign election acting on aligned coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import merge

INNER = ("ties", "linear")
S_FLOOR = 1e-5  # the authors' cut-off for unsupported directions


def aligned(taus: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(U, [Σ V_iᵀ])``: the shared left basis and each member's representation in it."""
    cat = torch.cat([t.double() for t in taus], dim=1)
    u, s, vh = torch.linalg.svd(cat, full_matrices=False)
    keep = s > S_FLOOR
    u, s, vh = u[:, keep], s[keep], vh[keep]
    width = taus[0].shape[1]
    reps = [(s[:, None] * vh[:, i * width:(i + 1) * width]) for i in range(len(taus))]
    return u, reps


def knots(taus: Sequence[torch.Tensor], weights: Sequence[float] | None = None,
          inner: str = "ties", density: float = 0.2, sign_method: str = "total",
          convention: str = "peft") -> torch.Tensor:
    """The KnOTS merge of one weight matrix's task vectors (see the module docstring)."""
    if inner not in INNER:
        raise ValueError(f"KnOTS merges its aligned vectors with {' or '.join(INNER)}, not {inner!r}")
    if taus[0].dim() != 2:  # a vector (a bias, a norm): no subspace to align
        return merge.task_arithmetic(taus, weights)
    if all(float(t.abs().max()) == 0.0 for t in taus):
        return torch.zeros_like(taus[0], dtype=torch.float32)
    u, reps = aligned(taus)
    if inner == "ties":
        merged = merge.ties([r.float() for r in reps], weights, density, sign_method, convention)
    else:
        merged = merge.task_arithmetic([r.float() for r in reps], weights)
    return (u.float() @ merged).float()
