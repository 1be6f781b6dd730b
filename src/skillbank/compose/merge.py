"""Parameter-space merges as pure functions on task vectors τ_i = ΔW_i (docs/methods.md §2).

Every function takes the task vectors of *one* weight matrix (a list of equal-shape
tensors) and returns the merged ΔW. Merging happens in ΔW space, never factor by factor:
averaging LoRA A's and B's separately adds cross terms B_i·A_j (PEFT's factor-wise
``add_weighted_adapter``, LoRAHub). ``cat`` is the one exact merge that stays a LoRA.

TIES comes in two named conventions, because the two reference codes differ:

- ``peft``:      sign vote on the *unweighted* trimmed τ̃_i, result Σ w_i m_i τ̃_i / max(1, Σ m_i)
                 (PEFT ``utils/merge_utils.ties`` + ``disjoint_merge``)
- ``mergekit``:  sign vote on the *weighted* w_i τ̃_i, result Σ w_i m_i τ̃_i / Σ w_i m_i
                 (mergekit ``generalized_task_arithmetic``, divisor 1 where it is 0)

and both take ``sign_method`` ``total`` (sign of the sum) or ``frequency`` (sign of the
count of signs). Ties in the vote go to +1, as in both codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numba.typed import List

from . import kernels

Tensors = Sequence[torch.Tensor]


def _w(weights: Sequence[float] | None, n: int) -> torch.Tensor:
    w = torch.ones(n) if weights is None else torch.as_tensor(list(weights), dtype=torch.float32)
    if w.numel() != n:
        raise ValueError(f"{n} task vectors but {w.numel()} weights")
    return w


def _bcast(w: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return w.view(-1, *([1] * (like.dim() - 1)))


def task_arithmetic(taus: Tensors, weights: Sequence[float] | None = None) -> torch.Tensor:
    """Σ_i w_i τ_i (``linear``; Ilharco et al. 2023, task arithmetic)."""
    stack = torch.stack([t.float() for t in taus])
    return (stack * _bcast(_w(weights, len(taus)), stack)).sum(0)


def topk_mask(tau: torch.Tensor, density: float) -> torch.Tensor:
    """Boolean mask of the top-``density`` fraction of |τ| (at least one entry if d > 0).

    Exactly k = round(d·n) entries stay; ties at the threshold go to the lowest indices.
    The threshold is found by a radix select (:func:`trim_threshold`; the trim dominates
    a TIES merge, and a selection by ``torch.kthvalue`` is ~20× slower).
    """
    threshold, tie_end = trim_threshold(tau, density)
    bits = tau.detach().float().contiguous().view(torch.int32) & 0x7FFFFFFF
    if tie_end >= bits.numel():  # every entry at the threshold stays
        return bits >= threshold
    mask = bits > threshold
    if tie_end > 0:
        index = torch.arange(bits.numel()).view_as(bits)
        mask |= (bits == threshold) & (index < tie_end)
    return mask


def trim_threshold(tau: torch.Tensor, density: float) -> tuple[int, int]:
    """(t, e) such that entry j is among the top-``density`` fraction of |τ| exactly when
    its |x| bits exceed t, or equal t at a flat index j < e (ties go to the lowest
    indices; t = -1 keeps every entry). See :func:`kth_largest` for the bits."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    flat = _flat([tau])[0].numpy()
    n = flat.size
    k = max(1, int(round(density * n)))
    if k >= n:
        return -1, 0
    threshold, above, equal = _radix_select(flat, k)
    if above + equal == k:  # every tie kept (the usual case: no tie at all)
        return threshold, n
    return threshold, kernels.tie_end(flat, threshold, k - above)


def kth_largest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The exact k-th largest of non-negative float32 ``values`` (1-D), by a two-pass radix
    select on the bits: a non-negative IEEE-754 float orders like its bit pattern read as an
    integer, so a histogram of the top 16 bits finds the bucket holding the k-th largest and
    a histogram of the low 16 bits inside that bucket finds it exactly. Two counting passes
    instead of a selection's data movement."""
    threshold, _, _ = _radix_select(values.detach().float().contiguous().reshape(-1).numpy(), k)
    return torch.tensor(threshold, dtype=torch.int32).view(torch.float32)


def _radix_select(flat: np.ndarray, k: int) -> tuple[int, int, int]:
    """(bits of the k-th largest |x|, entries above it, entries equal to it), exactly."""
    threshold, above, equal = kernels.radix_select(flat, k)
    return int(threshold), int(above), int(equal)


def trim(tau: torch.Tensor, density: float) -> torch.Tensor:
    """topk_d(τ): τ with all but its largest-magnitude ``density`` fraction set to 0."""
    return tau * topk_mask(tau, density)


def magnitude_prune(taus: Tensors, weights: Sequence[float] | None = None,
                    density: float = 0.2) -> torch.Tensor:
    """Σ_i w_i topk_d(τ_i)."""
    return task_arithmetic([trim(t.float(), density) for t in taus], weights)


def ties(taus: Tensors, weights: Sequence[float] | None = None, density: float = 0.2,
         sign_method: str = "total", convention: str = "peft") -> torch.Tensor:
    """TIES-merging (Yadav et al. 2023): trim, elect sign, disjoint mean — the trim's
    thresholds by radix select, then one compiled pass over all members (``kernels``)."""
    flat = _flat(taus)
    cut = [trim_threshold(t, density) for t in flat]
    return _disjoint(flat, _w(weights, len(taus)), sign_method, convention, cut).view(taus[0].shape)


def disjoint_merge(stack: torch.Tensor, w: torch.Tensor, sign_method: str, convention: str) -> torch.Tensor:
    """Elect sign and disjoint mean of an already trimmed (n, …) ``stack`` (the module
    docstring gives the two conventions)."""
    merged = _disjoint(_flat(stack), w, sign_method, convention, [(-1, 0)] * len(stack))
    return merged.view(stack.shape[1:])


def _flat(taus: Tensors) -> list[torch.Tensor]:
    """Each τ_i as a contiguous 1-D float32 tensor (a view where it already is one)."""
    flat = [t.detach().float().contiguous().reshape(-1) for t in taus]
    if len({t.numel() for t in flat}) > 1:
        raise ValueError(f"task vectors differ in size: {sorted({t.numel() for t in flat})}")
    return flat


def _members(flat: list[torch.Tensor]) -> List:
    """The flat task vectors as the compiled loops take them: a typed list of arrays (views)."""
    return List([t.numpy() for t in flat])


def _disjoint(flat: list[torch.Tensor], w: torch.Tensor, sign_method: str, convention: str,
              cut: list[tuple[int, int]]) -> torch.Tensor:
    if sign_method not in ("total", "frequency"):
        raise ValueError(f"sign_method must be total or frequency, not {sign_method!r}")
    if convention not in ("peft", "mergekit"):
        raise ValueError(f"convention must be peft or mergekit, not {convention!r}")
    out = kernels.ties_fused(_members(flat), w.float().numpy(),
                             np.array([t for t, _ in cut], dtype=np.int32),
                             np.array([e for _, e in cut], dtype=np.int64),
                             convention == "mergekit", sign_method == "frequency")
    return torch.from_numpy(out)


def dare_drop(tau: torch.Tensor, density: float, generator: torch.Generator) -> torch.Tensor:
    """DARE (Yu et al. 2024): keep each entry with probability d and rescale by 1/d."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    keep = torch.rand(tau.shape, generator=generator) < density
    return tau.float() * keep / density


def dare(taus: Tensors, weights: Sequence[float] | None = None, density: float = 0.5,
         seed: int = 0, then: str = "linear", sign_method: str = "total",
         convention: str = "peft") -> torch.Tensor:
    """DARE drop-and-rescale of every τ_i, then ``linear`` or ``ties`` (without trimming)."""
    g = torch.Generator().manual_seed(seed)
    dropped = [dare_drop(t, density, g) for t in taus]
    if then == "linear":
        return task_arithmetic(dropped, weights)
    if then == "ties":
        return disjoint_merge(torch.stack(dropped), _w(weights, len(taus)), sign_method, convention)
    raise ValueError(f"dare then must be linear or ties, not {then!r}")


def cat_lora(As: Tensors, Bs: Tensors, scales: Sequence[float],
             weights: Sequence[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact LoRA concatenation: A' = [w_i s_i A_i] stacked by rows, B' = [B_i] by columns,
    so B'A' = Σ w_i s_i B_i A_i with rank Σ r_i (and scale 1)."""
    w = _w(weights, len(As))
    a = torch.cat([w[i] * scales[i] * A.float() for i, A in enumerate(As)], dim=0)
    b = torch.cat([B.float() for B in Bs], dim=1)
    return a, b


def svd_factor(dw: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Best rank-k factors (Eckart–Young): ΔW ≈ B'A' with B' = U_k Σ_k, A' = V_kᵀ.

    Returns (A', B', relative Frobenius error ‖ΔW − B'A'‖ / ‖ΔW‖; 0 for ΔW = 0).
    """
    u, s, vh = torch.linalg.svd(dw.float(), full_matrices=False)
    k = min(rank, s.numel())
    b, a = u[:, :k] * s[:k], vh[:k].clone()  # a copy: a view of vh would keep all of it alive
    norm = torch.linalg.norm(dw.float())
    err = float(torch.linalg.norm(dw.float() - b @ a) / norm) if norm > 0 else 0.0
    return a, b, err


def rank_for_error(dw: torch.Tensor, budget: float) -> int:
    """The smallest k ≥ 1 whose best rank-k approximation has relative Frobenius error
    ‖ΔW − ΔW_k‖ / ‖ΔW‖ = √(Σ_{j>k} s_j²) / √(Σ_j s_j²) ≤ ``budget`` (1 for ΔW = 0)."""
    s2 = torch.linalg.svdvals(dw.double()) ** 2
    total = float(s2.sum())
    if total == 0.0:
        return 1
    tail = torch.flip(torch.cumsum(torch.flip(s2, [0]), 0), [0])  # tail[j] = Σ_{i≥j} s_i²
    errors = torch.sqrt(torch.cat([tail[1:], torch.zeros(1, dtype=tail.dtype)]) / total)  # error at k = j+1
    return int(torch.nonzero(errors <= budget + 1e-12)[0]) + 1


def cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    """Cosine similarity of two flattened task vectors (0 if either is zero)."""
    nx, ny = torch.linalg.norm(x.float()), torch.linalg.norm(y.float())
    if nx == 0 or ny == 0:
        return 0.0
    return float((x.float().reshape(-1) @ y.float().reshape(-1)) / (nx * ny))


def sign_conflicts(taus: Tensors) -> float:
    """Share of entries, among those where ≥ 2 task vectors are non-zero, whose non-zero
    signs disagree (TIES's interference measure)."""
    shared, conflicting = kernels.sign_conflict_counts(_members(_flat(taus)))
    return conflicting / shared if shared else 0.0


def graft_union(values: Tensors, masks: Tensors, weights: Sequence[float] | None = None,
                on_overlap: str = "mean") -> tuple[torch.Tensor, int]:
    """Union of sparse grafts (Panigrahi et al. 2023, docs/methods.md §5 "sparse skills compose").

    Graft i adds w_i·τ_i on its support ``masks[i]`` and nothing elsewhere. Where exactly
    one graft holds an entry the union takes that graft's value, so the union of disjoint
    grafts is exact: every member's entries are reproduced bit for bit. Where several
    grafts hold the same entry (they localized the skill in the same weight) the union
    takes, by ``on_overlap``:

    - ``mean``: the mean of the w_i·τ_i of the grafts holding it (the default; one skill's
      value does not double when two grafts agree),
    - ``sum``: their sum (task arithmetic restricted to the supports),
    - ``refuse``: raise ``ValueError`` (use when only exact unions are acceptable).

    Returns (merged ΔW, number of overlapping entries, i.e. held by ≥ 2 grafts). The paper
    composes grafts of one multi-task model; here members come from separately trained
    skills, so the overlap rule is ours.
    """
    if on_overlap not in ("mean", "sum", "refuse"):
        raise ValueError(f"on_overlap must be mean, sum or refuse, not {on_overlap!r}")
    if len(values) != len(masks):
        raise ValueError(f"{len(values)} value tensors but {len(masks)} masks")
    w = _w(weights, len(values))
    m = torch.stack([mk.bool() for mk in masks]).float()
    stack = torch.stack([v.float() for v in values]) * _bcast(w, m) * m
    count = m.sum(0)
    overlapping = int((count >= 2).sum())
    if overlapping and on_overlap == "refuse":
        raise ValueError(f"grafts overlap on {overlapping} entries (on_overlap='refuse')")
    total = stack.sum(0)
    if on_overlap == "mean":
        total = total / count.clamp(min=1.0)
    return total, overlapping
