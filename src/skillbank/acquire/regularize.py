"""Penalties that keep earlier skills while a new one is learned (docs/methods.md §10): EWC's
quadratic anchor with an online empirical Fisher, and O-LoRA's orthogonality loss.
Pure functions on tensors (``fisher_diag`` runs the model for gradients, nothing else)."""

from __future__ import annotations

import torch


def ewc_penalty(
    params: dict[str, torch.Tensor],
    fisher: dict[str, torch.Tensor],
    anchor: dict[str, torch.Tensor],
    lam: float,
) -> torch.Tensor:
    """λ Σ_k Σ F_k (θ_k − θ*_k)² over the parameters in ``fisher``."""
    total = sum(
        ((fisher[k] * (params[k] - anchor[k]) ** 2).sum() for k in fisher), torch.tensor(0.0)
    )
    return lam * total


def online_fisher(
    old: dict[str, torch.Tensor] | None, new: dict[str, torch.Tensor], gamma: float
) -> dict[str, torch.Tensor]:
    """Online EWC's importance: γ·F_old + F_new (F_new alone for the first task)."""
    if old is None:
        return {k: v.clone() for k, v in new.items()}
    return {k: gamma * old[k] + new[k] for k in new}


def fisher_diag(model, params: dict[str, torch.nn.Parameter], batches) -> dict[str, torch.Tensor]:
    """Empirical Fisher diagonal: the mean over ``batches`` (model kwargs) of grad²."""
    fisher = {k: torch.zeros_like(p) for k, p in params.items()}
    n = 0
    for batch in batches:
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        for k, p in params.items():
            if p.grad is not None:
                fisher[k] += p.grad.detach() ** 2
        n += 1
    model.zero_grad(set_to_none=True)
    return {k: v / max(n, 1) for k, v in fisher.items()}


def olora_penalty(
    old_A: dict[str, torch.Tensor], new_A: dict[str, torch.Tensor], lam: float
) -> torch.Tensor:
    """λ Σ_modules Σ_ij |(A_old A_newᵀ)_ij| (O-LoRA's orthogonality loss); A_old stacks the
    earlier tasks' A (Σr × in), A_new is r × in."""
    total = sum(
        (torch.abs(old_A[m] @ new_A[m].T).sum() for m in new_A if m in old_A), torch.tensor(0.0)
    )
    return lam * total
