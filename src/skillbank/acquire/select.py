"""LESS (Xia et al. 2024, docs/methods.md §7): select the training examples whose LoRA gradients
point where a few target examples' gradients point.

1. Warm-up: a LoRA trained on a random ``warmup`` fraction (5%) of the pool for a few
   epochs; after each epoch we keep the LoRA tensors, AdamW's moments (m, v) and the
   epoch's mean learning rate.
2. Per checkpoint c and pool example z: the LoRA gradient g of z's answer loss, the Adam
   update direction Γ = m'/sqrt(v' + ε) with m' = β1·m + (1-β1)·g, v' = β2·v + (1-β2)·g²
   (β = 0.9, 0.999, ε = 1e-8; no bias correction, as in the authors' code), projected by a
   random Rademacher matrix to ``dim`` dimensions and L2-normalised. Target examples use
   their plain gradient, same projection.
3. score(z) = max over target subtasks s of Σ_c lr_c · mean_{z' in s} cos(Γ_c(z), g_c(z'))
   (the authors' ``matching.py``: lr-weighted sum over checkpoints, mean within a subtask,
   max over subtasks); keep the top ``fraction`` (5%).

Per-example gradients come from one batched backward pass: each LoRA factor is a Linear
layer, whose per-example weight gradient is Σ_t grad_out[t] ⊗ input[t] (the trick Opacus
uses), so a batch of examples costs one forward and one backward.

Departures: the projection is a dense ±1/√d matrix generated on CPU (the paper uses the
``trak`` CUDA projector); the target "subtasks" default to one subtask per target task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .data import Sampler, training_batch
from .loop import LoopConfig, lr_at, train


# -- the maths (pure) ----------------------------------------------------------------------
def adam_precondition(g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, beta1: float = 0.9,
                      beta2: float = 0.999, eps: float = 1e-8) -> torch.Tensor:
    """LESS's Adam direction Γ = m'/sqrt(v' + ε), m' = β1·m + (1-β1)·g, v' = β2·v + (1-β2)·g².
    ``g`` is (n, D) (one row per example) or (D,); ``m`` and ``v`` are (D,)."""
    m2 = beta1 * m + (1 - beta1) * g
    v2 = beta2 * v + (1 - beta2) * g * g
    return m2 / torch.sqrt(v2 + eps)


def rademacher(in_dim: int, dim: int, seed: int) -> torch.Tensor:
    """An (in_dim, dim) matrix of ±1/√dim, a pure function of ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (in_dim, dim), generator=gen, dtype=torch.int8)
    return (signs.float() * 2 - 1) / math.sqrt(dim)


def project(x: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` projected by ``proj`` and L2-normalised (a zero row stays zero)."""
    y = x.float() @ proj
    return y / y.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def less_scores(train_feats: Sequence[torch.Tensor], target_feats: Sequence[Sequence[torch.Tensor]],
                lrs: Sequence[float]) -> torch.Tensor:
    """score(z) = max_s Σ_c lr_c · mean_{z' ∈ s} ⟨f_c(z), t_c(z')⟩ for unit-norm features.

    ``train_feats[c]`` is (n, d) at checkpoint c; ``target_feats[c][s]`` is (m_s, d), the
    target subtask s at checkpoint c; ``lrs[c]`` the checkpoint's learning rate."""
    if not (len(train_feats) == len(target_feats) == len(lrs)) or not lrs:
        raise ValueError("need one train, target and lr entry per checkpoint (at least one)")
    n_sub = len(target_feats[0])
    total = torch.zeros(train_feats[0].shape[0], n_sub)
    for f, targets, lr in zip(train_feats, target_feats, lrs, strict=True):
        for s, t in enumerate(targets):
            total[:, s] += lr * (f.float() @ t.float().T).mean(dim=1)
    return total.max(dim=1).values


def top_fraction(scores: torch.Tensor, fraction: float) -> list[int]:
    """Indices of the ``round(fraction·n)`` (at least 1) highest scores, best first; ties go
    to the lower index."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    n = scores.numel()
    k = max(1, round(fraction * n))
    order = sorted(range(n), key=lambda i: (-float(scores[i]), i))
    return order[:k]


# -- per-example LoRA gradients ------------------------------------------------------------
def lora_modules(model) -> list[tuple[str, torch.nn.Linear]]:
    """The LoRA factor layers (``...lora_A.<adapter>`` / ``...lora_B.<adapter>``) of a PEFT
    model, in a fixed (name) order: their weights are the LoRA parameters."""
    mods = [(n, m) for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and (".lora_A." in n or ".lora_B." in n)
            and m.weight.requires_grad]
    return sorted(mods, key=lambda x: x[0])


def flat_lora(model, what: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """The LoRA weights (or ``what[id(weight)]``, e.g. Adam moments) as one flat vector."""
    parts = [(what[id(m.weight)] if what is not None else m.weight).detach().reshape(-1)
             for _, m in lora_modules(model)]
    return torch.cat(parts)


def per_example_grads(model, tokenizer, examples, batch_size: int = 64):
    """Yield (n_batch, D) gradients of each example's mean answer-token loss with respect to
    the LoRA weights (order of :func:`lora_modules`), one batch at a time."""
    mods = lora_modules(model)
    store: dict[str, list] = {}

    def hook(name):
        def fwd(module, inputs, output):
            store[name] = [inputs[0].detach(), None]
            output.register_hook(lambda g: store[name].__setitem__(1, g.detach()))
        return fwd

    handles = [m.register_forward_hook(hook(n)) for n, m in mods]
    try:
        for i in range(0, len(examples), batch_size):
            batch = training_batch(tokenizer, examples[i: i + batch_size])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            ce = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2),
                                                   labels.clamp(min=0), reduction="none")
            mask = (labels != -100).float()
            per_example = (ce * mask).sum(1) / mask.sum(1).clamp(min=1)
            model.zero_grad(set_to_none=True)
            per_example.sum().backward()
            grads = []
            for name, _ in mods:
                x, gout = store[name]
                grads.append(torch.einsum("bto,bti->boi", gout, x).reshape(x.shape[0], -1))
            yield torch.cat(grads, dim=1)
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)


# -- orchestration -------------------------------------------------------------------------
@dataclass
class SelectConfig:
    """Everything that decides a LESS selection (recorded with the result)."""

    world: str = "strings"
    pool_tasks: list[str] = field(default_factory=list)
    target: str = ""
    per_task: int = 200  # pool examples per task
    n_target: int = 16  # target examples whose gradients we match
    fraction: float = 0.05
    warmup_fraction: float = 0.05
    warmup_epochs: int = 4
    batch_size: int = 16
    lr: float = 5e-3
    rank: int = 8
    dim: int = 512
    seed: int = 0
    world_args: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"method": "less", **asdict(self)}


def lora_model(base, rank: int, seed: int):
    """A fresh PEFT LoRA (PEFT's init: B = 0) on every linear layer in ``base``'s blocks."""
    from peft import LoraConfig, get_peft_model

    model = base.load_model()
    torch.manual_seed(seed)
    return get_peft_model(model, LoraConfig(
        r=rank, lora_alpha=2 * rank, target_modules=list(base.arch.targets), lora_dropout=0.0,
        bias="none", fan_in_fan_out=base.arch.fan_in_fan_out))


def build_pool(cfg: SelectConfig) -> tuple[list, list]:
    """(pool examples, target examples): ``per_task`` training examples of each pool task, and
    ``n_target`` target-task examples drawn with another seed (the few the user has)."""
    from ..worlds import get_world

    if not cfg.pool_tasks:
        raise ValueError("the pool needs at least one task")
    if not cfg.target:
        raise ValueError("give a target task")
    world = get_world(cfg.world, **cfg.world_args)
    pool = [ex for t in cfg.pool_tasks for ex in world.examples(t, cfg.per_task, seed=cfg.seed)]
    target = world.examples(cfg.target, cfg.n_target, seed=cfg.seed + 1_000_003)
    return pool, target


def warmup(base, tokenizer, examples, cfg: SelectConfig, progress=None):
    """Train the warm-up LoRA; return (model, checkpoints) where a checkpoint is
    ``{"weights", "m", "v", "lr"}`` (flat vectors in :func:`lora_modules` order) per epoch."""
    model = lora_model(base, cfg.rank, cfg.seed)
    per_epoch = max(1, math.ceil(len(examples) / cfg.batch_size))
    loop = LoopConfig(steps=per_epoch * cfg.warmup_epochs, lr=cfg.lr,
                      warmup=max(1, per_epoch // 2), weight_decay=0.0)
    checkpoints = []

    def on_step(step: int, opt) -> None:
        if step % per_epoch:
            return
        state = {}
        for p in opt.param_groups[0]["params"]:
            st = opt.state.get(p, {})
            state.setdefault("m", {})[id(p)] = st.get("exp_avg", torch.zeros_like(p))
            state.setdefault("v", {})[id(p)] = st.get("exp_avg_sq", torch.zeros_like(p))
        lrs = [lr_at(s, loop) for s in range(step - per_epoch, step)]
        checkpoints.append({"weights": flat_lora(model).clone(), "m": flat_lora(model, state["m"]).clone(),
                            "v": flat_lora(model, state["v"]).clone(), "lr": float(np.mean(lrs))})

    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    train(model, params, Sampler({"warmup": list(examples)}, cfg.batch_size, cfg.seed), tokenizer, loop,
          progress=progress, on_step=on_step)
    return model, checkpoints


def _load_flat(model, flat: torch.Tensor) -> None:
    with torch.no_grad():
        i = 0
        for _, m in lora_modules(model):
            n = m.weight.numel()
            m.weight.copy_(flat[i: i + n].view_as(m.weight))
            i += n


GRAD_BATCH = 64


def work_units(cfg: SelectConfig) -> int:
    """Progress units of :func:`select`: warm-up steps, then one per gradient batch."""
    n_pool = len(cfg.pool_tasks) * cfg.per_task
    n_warm = max(1, round(cfg.warmup_fraction * n_pool))
    per_epoch = max(1, math.ceil(n_warm / cfg.batch_size))
    grads = math.ceil(n_pool / GRAD_BATCH) + math.ceil(cfg.n_target / GRAD_BATCH)
    return cfg.warmup_epochs * (per_epoch + grads)


def select(base, cfg: SelectConfig, progress=None) -> dict:
    """Run LESS end to end on ``base``; returns the selected pool indices (best first), their
    scores, the per-task make-up of the selection and the warm-up's own indices.

    ``progress(done, loss)`` counts :func:`work_units`: warm-up steps, then gradient batches."""
    tokenizer = base.load_tokenizer()
    pool, target = build_pool(cfg)
    rng = np.random.default_rng([cfg.seed, 7])
    n_warm = max(1, round(cfg.warmup_fraction * len(pool)))
    warm_ix = sorted(rng.choice(len(pool), size=n_warm, replace=False).tolist())
    model, ckpts = warmup(base, tokenizer, [pool[i] for i in warm_ix], cfg, progress)
    model.train()  # dropout is 0: train mode only keeps autograd on the LoRA weights
    proj = rademacher(flat_lora(model).numel(), cfg.dim, cfg.seed)
    train_feats, target_feats = [], []
    done = len(ckpts) and max(1, math.ceil(n_warm / cfg.batch_size)) * len(ckpts)

    def tick(x):
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, None)
        return x

    for ck in ckpts:
        _load_flat(model, ck["weights"])
        feats = [tick(project(adam_precondition(g, ck["m"], ck["v"]), proj))
                 for g in per_example_grads(model, tokenizer, pool, GRAD_BATCH)]
        train_feats.append(torch.cat(feats))
        tgt = torch.cat([tick(project(g, proj))
                         for g in per_example_grads(model, tokenizer, target, GRAD_BATCH)])
        target_feats.append([tgt])
    scores = less_scores(train_feats, target_feats, [ck["lr"] for ck in ckpts])
    chosen = top_fraction(scores, cfg.fraction)
    make_up: dict[str, int] = {}
    for i in chosen:
        make_up[pool[i].task] = make_up.get(pool[i].task, 0) + 1
    return {"selected": chosen, "scores": [round(float(scores[i]), 6) for i in chosen],
            "make_up": dict(sorted(make_up.items(), key=lambda kv: -kv[1])),
            "pool_size": len(pool), "warmup_indices": warm_ix,
            "checkpoint_lrs": [ck["lr"] for ck in ckpts], "pool": pool, "target_examples": target}
