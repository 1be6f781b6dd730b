"""Skill localization by grafting (Panigrahi et al. 2023; docs/methods.md §5): the pure maths.

Tensors in, tensors or numbers out; no I/O and no models (``localize/ops.py`` does that).
Every mask is a ``{param: bool tensor}`` dict over the *eligible* parameters, and every
Δ a ``{param: ΔW}`` dict with the same keys (``ΔW = θ_skill − θ_pre``).

- Initial mask: γ_base = 1[|Δ| ≥ τ], τ the top-``k`` threshold of |Δ| over *all* eligible
  entries at once (one global threshold, as in the authors' code), exactly ``k`` entries
  kept (ties at τ broken by ``torch.topk`` order).
- Relaxation: γ(S) = γ_base + (1 − 2γ_base)·σ(S − b). With S ~ U[0, 1) and b large,
  γ(S) ≈ γ_base; an entry of γ_base flips only when its S climbs past b.
- Update (plain gradient descent on S with the base frozen):
  g = ∇_θ L ⊙ Δ at θ = θ_pre + γ(S)⊙Δ, then S ← S − lr·(1 − 2γ_base)⊙g⊙σ'(S − b),
  which is exactly S ← S − lr·∂L/∂S.
- Rounding: the graft keeps entry e iff γ(S)_e > 1/2, i.e. γ_base_e where S_e < b and
  its complement where S_e > b (at S_e = b exactly, γ = 1/2 and the entry is out).
  ``budget_masks`` is the same rounding under the paper's constraint ‖γ‖₀ ≤ k: when more
  than k entries have γ > 1/2, only the k with the largest γ(S) stay.
- Overlap of two grafts: |γ_i ∩ γ_j| / |γ_j|.
- Relative gain: (P_graft − P_base) / (P_skill − P_base); ``None`` when the skill does
  not move the metric at all (P_skill == P_base), where the ratio is undefined.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch

Tensors = Mapping[str, torch.Tensor]
Mask = dict[str, torch.Tensor]

def is_eligible(name: str, prefixes: Sequence[str]) -> bool:
    """A parameter takes part in grafting iff it lives in a transformer block: under one of
    ``prefixes`` (a base's ``arch.block_prefix``), which leaves out the token embeddings, the
    final norm and the LM head, as the authors do."""
    return any(name.startswith(p) for p in prefixes)


def eligible_names(names: Iterable[str], prefixes: Sequence[str]) -> list[str]:
    return sorted(n for n in names if is_eligible(n, prefixes))


def mask_size(mask: Tensors) -> int:
    """Number of kept entries."""
    return int(sum(int(m.sum()) for m in mask.values()))


def _flat(tensors: Tensors, keys: Sequence[str]) -> torch.Tensor:
    if not keys:
        return torch.zeros(0)
    return torch.cat([tensors[k].reshape(-1).float() for k in keys])


def _unflat(flat: torch.Tensor, like: Tensors, keys: Sequence[str]) -> Mask:
    out, at = {}, 0
    for k in keys:
        n = like[k].numel()
        out[k] = flat[at: at + n].view(like[k].shape)
        at += n
    return out


def top_mask(deltas: Tensors, k: int) -> Mask:
    """γ_base: the ``k`` entries of largest |Δ| over all tensors together (exactly k,
    or every entry when there are fewer)."""
    keys = sorted(deltas)
    flat = _flat(deltas, keys).abs()
    k = max(0, min(int(k), flat.numel()))
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    if k:
        keep[torch.topk(flat, k, sorted=False).indices] = True
    return _unflat(keep, deltas, keys)


def random_mask(shapes: Mapping[str, Sequence[int]], k: int, seed: int) -> Mask:
    """``k`` entries drawn uniformly without replacement from all entries of ``shapes``."""
    keys = sorted(shapes)
    like = {p: torch.empty(tuple(shapes[p]), device="meta") for p in keys}
    total = sum(math.prod(shapes[p]) for p in keys)
    k = max(0, min(int(k), total))
    gen = torch.Generator().manual_seed(int(seed))
    keep = torch.zeros(total, dtype=torch.bool)
    keep[torch.randperm(total, generator=gen)[:k]] = True
    return _unflat(keep, like, keys)


def init_scores(shapes: Mapping[str, Sequence[int]], seed: int) -> dict[str, torch.Tensor]:
    """S ~ U[0, 1), one reproducible stream over the tensors in sorted order."""
    gen = torch.Generator().manual_seed(int(seed))
    return {p: torch.rand(tuple(shapes[p]), generator=gen) for p in sorted(shapes)}


def gamma(s: torch.Tensor, gamma_base: torch.Tensor, b: float) -> torch.Tensor:
    """γ(S) = γ_base + (1 − 2γ_base)·σ(S − b); differentiable in S."""
    gb = gamma_base.to(s.dtype)
    return gb + (1 - 2 * gb) * torch.sigmoid(s - b)


def update(s: torch.Tensor, gamma_base: torch.Tensor, grad_theta: torch.Tensor,
           delta: torch.Tensor, lr: float, b: float) -> torch.Tensor:
    """One step of the authors' rule: S − lr·(1 − 2γ_base)⊙(∇_θL⊙Δ)⊙σ'(S − b)."""
    gb = gamma_base.to(s.dtype)
    sig = torch.sigmoid(s - b)
    return s - lr * (1 - 2 * gb) * (grad_theta * delta) * sig * (1 - sig)


def round_mask(s: torch.Tensor, gamma_base: torch.Tensor, b: float) -> torch.Tensor:
    """The binary graft: entry kept iff γ(S) > 1/2."""
    return gamma(s, gamma_base, b) > 0.5


def keep_logit(s: torch.Tensor, gamma_base: torch.Tensor, b: float) -> torch.Tensor:
    """(1 − 2γ_base)·(S − b), the logit of γ(S): γ(S) = σ(keep_logit) exactly, without the
    saturation of σ in float32 (so entries far past b still rank by how far)."""
    gb = gamma_base.to(s.dtype)
    return (1 - 2 * gb) * (s - b)


def budget_masks(scores: Mapping[str, torch.Tensor], gamma_base: Mapping[str, torch.Tensor],
                 b: float, k: int) -> Mask:
    """Rounding under the sparsity constraint ‖γ‖₀ ≤ k: the entries with γ(S) > 1/2, and if
    there are more than k of them, only the k with the largest γ(S) (by its logit; ties by
    ``torch.topk`` order). Over all tensors at once, like the initial top-k."""
    keys = sorted(scores)
    logits = {p: keep_logit(scores[p], gamma_base[p], b) for p in keys}
    flat = _flat(logits, keys)
    keep = flat > 0
    if int(keep.sum()) > k:
        keep = torch.zeros_like(keep)
        if k > 0:
            keep[torch.topk(flat, int(k), sorted=False).indices] = True
    return _unflat(keep, scores, keys)


def grafted(theta_pre: Tensors, deltas: Tensors, weights: Tensors) -> dict[str, torch.Tensor]:
    """θ = θ_pre + w⊙Δ per parameter (``w`` a relaxed γ(S) or a rounded 0/1 mask)."""
    return {p: theta_pre[p] + weights[p].to(deltas[p].dtype) * deltas[p] for p in deltas}


def mask_to_sparse(mask: Tensors, deltas: Tensors) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and config of a ``sparse`` skill that adds Δ exactly on the kept entries.

    ``{param}.indices`` are the sorted flat (row-major) indices, int64; ``{param}.values``
    the float32 Δ there. Parameters with nothing kept are left out.
    """
    tensors: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    for p in sorted(mask):
        idx = torch.nonzero(mask[p].reshape(-1), as_tuple=False).reshape(-1).to(torch.int64)
        if idx.numel() == 0:
            continue
        tensors[f"{p}.indices"] = idx
        tensors[f"{p}.values"] = deltas[p].reshape(-1)[idx].float().clone()
        shapes[p] = list(deltas[p].shape)
    return tensors, {"shapes": shapes}


def index_sets(tensors: Tensors) -> dict[str, torch.Tensor]:
    """``{param: sorted unique flat indices}`` of a sparse skill's tensors."""
    return {k.removesuffix(".indices"): torch.unique(v.long())
            for k, v in tensors.items() if k.endswith(".indices")}


def set_size(sets: Mapping[str, torch.Tensor]) -> int:
    return int(sum(v.numel() for v in sets.values()))


def intersection_size(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> int:
    """|a ∩ b| where an element is a (parameter, flat index) pair."""
    total = 0
    for p in set(a) & set(b):
        total += int(torch.isin(a[p], b[p]).sum())
    return total


def overlap(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float | None:
    """|γ_a ∩ γ_b| / |γ_b| (the share of b's graft that a also holds); None if b is empty."""
    nb = set_size(b)
    return intersection_size(a, b) / nb if nb else None


def overlap_matrix(sets: Sequence[Mapping[str, torch.Tensor]]) -> list[list[float | None]]:
    """M[i][j] = |γ_i ∩ γ_j| / |γ_j|; the diagonal is 1 (None for an empty graft)."""
    return [[overlap(a, b) for b in sets] for a in sets]


def relative_gain(p_graft: float, p_base: float, p_skill: float) -> float | None:
    """(P_graft − P_base) / (P_skill − P_base); None when P_skill == P_base."""
    if p_skill == p_base:
        return None
    return (p_graft - p_base) / (p_skill - p_base)


def transfer_matrix(logprob: Mapping[str, Mapping[str, float]], subjects: Sequence[str],
                    tasks: Sequence[str], base: str) -> list[list[float | None]]:
    """T[i][j] = relative_gain(lp_i(t_j), lp_base(t_j), lp_j(t_j)): the share of skill j's
    own gain in mean target log-prob on its task t_j that skill i's full ΔW brings.

    ``logprob[subject][task]`` is a mean target log-prob on held-out inputs; subject i is
    the skill trained on ``tasks[i]``. The diagonal is 1 by construction (None where skill
    j does not move its own task's log-prob at all).
    """
    return [[relative_gain(logprob[si][tj], logprob[base][tj], logprob[sj][tj])
             for sj, tj in zip(subjects, tasks, strict=True)] for si in subjects]


def off_diagonal(a: Sequence[Sequence[float | None]], b: Sequence[Sequence[float | None]]
                 ) -> tuple[list[float], list[float]]:
    """The (a[i][j], b[i][j]) pairs for every ordered i ≠ j where both are defined."""
    xs, ys = [], []
    for i, (ra, rb) in enumerate(zip(a, b, strict=True)):
        for j, (x, y) in enumerate(zip(ra, rb, strict=True)):
            if i != j and x is not None and y is not None:
                xs.append(float(x))
                ys.append(float(y))
    return xs, ys


def overlap_transfer_correlation(overlap_m: Sequence[Sequence[float | None]],
                                 transfer_m: Sequence[Sequence[float | None]]) -> dict:
    """Spearman's ρ (scipy, average ranks for ties) between overlap and transfer over the
    ordered off-diagonal pairs; the paper's claim is that overlap tracks task similarity.

    The p-value is scipy's (t-distribution, pairs taken as independent); the ordered pairs
    (i, j) and (j, i) share a graft pair, so it is optimistic. ρ and p are None with fewer
    than 3 pairs or when either side is constant (ρ undefined).
    """
    from scipy.stats import spearmanr

    xs, ys = off_diagonal(overlap_m, transfer_m)
    out: dict = {"n_pairs": len(xs), "spearman": None, "p_value": None}
    if len(xs) >= 3 and len(set(xs)) > 1 and len(set(ys)) > 1:
        res = spearmanr(xs, ys)
        out["spearman"], out["p_value"] = float(res.statistic), float(res.pvalue)
    return out
