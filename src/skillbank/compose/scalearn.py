"""ScaLearn: learned scaling of each member skill's output, per layer (docs/methods.md §3).

Frohmann et al. 2023 (ScaLearn), eq. 2 of the paper / ``ScaLearn`` fusion in the authors'
code: the composed output at a location l is Σ_k ω_l^k ⊙ a_l^k(h) plus the frozen
residual, with ω initialised N(2/n, 0.001), no softmax, and only ω trained. Four variants:

===================== ======================================================
``scalearn``           ω vector (one entry per output feature) per layer per module
``scalearn-uniform``   ω scalar per layer per module
``scalearn++``         ω vector per module type, shared across layers
``scalearn-uniform++`` ω scalar per module type, shared across layers
===================== ======================================================

Departures from the paper, on purpose:

- Applied to **LoRA outputs**, not bottleneck adapters: the source a_l^k is member k's
  LoRA output at linear module l, s_k·B_k·A_k·x, and the composed module computes
  W0·x + Σ_k ω_l^k ⊙ (s_k·B_k·A_k·x). The paper has one adapter location per layer; here
  every adapted linear module is a location, so "per layer" means per (layer, module) and
  the "++" variants share ω across layers per module type (q_proj, v_proj, …). For the
  paper's Uniform++ ("8 parameters for 8 sources") read "n parameters per module type".
- Because ω ⊙ (s·B·A·x) = diag(ω)·s·B·A·x, the trained composition is a **static** ΔW per
  weight matrix, ΔW = Σ_k diag(ω^k)·ΔW_k, so it is stored exactly as a ``delta`` skill
  (merge error 0) and needs no run-time machinery; the training model below is the only
  place the per-output form is used.
- Trained with the shared training loop (AdamW, warm-up then cosine decay) on an even
  mixture of a few hundred examples per target task.

On an encoder base the members are classifiers: each example's loss is the cross-entropy of
its label through its task's member head, frozen (``acquire.multihead.MultiHead``), and the
composed skill carries every member's head beside the ΔW (``compose.heads``), so it answers
each member task with that task's head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..acquire.data import Sampler
from ..acquire.loop import LoopConfig, train
from ..arch import LAYER_INDEX
from ..base import Base, check_base
from ..routed import linear_factors
from ..skill import Skill, SkillError
from ..worlds import get_world
from .heads import with_heads
from .ops import check_members, diagnostics

# variant: (ω is a vector over output features, ω shared across layers)
VARIANTS = {
    "scalearn": (True, False),
    "scalearn-uniform": (False, False),
    "scalearn++": (True, True),
    "scalearn-uniform++": (False, True),
}
_LAYER = LAYER_INDEX  # a parameter's block: its first numeric path component


def scaled_delta(deltas: Sequence[torch.Tensor], omegas: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ_k diag(ω_k)·ΔW_k for one weight matrix (out×in); each ω_k is a scalar or a vector of
    length out (one scale per output feature)."""
    if len(deltas) != len(omegas):
        raise ValueError(f"{len(deltas)} deltas but {len(omegas)} ω")
    out = torch.zeros_like(deltas[0], dtype=torch.float32)
    for dw, om in zip(deltas, omegas, strict=True):
        om = torch.as_tensor(om, dtype=torch.float32).reshape(-1, 1)
        if om.shape[0] not in (1, dw.shape[0]):
            raise ValueError(f"ω has {om.shape[0]} entries; ΔW has {dw.shape[0]} output features")
        out += om * dw.float()
    return out


def omega_key(module: str, shared: bool) -> str:
    """Which ω a module uses: its own, or (shared across layers) its module type's."""
    return _LAYER.sub(".*.", module, count=1) if shared else module


@dataclass(frozen=True)
class ScaLearnRecipe:
    variant: str = "scalearn"
    steps: int = 300
    lr: float = 5e-2
    batch_size: int = 32
    pool: int = 300  # training examples per target task
    seed: int = 0
    warmup: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0

    def check(self) -> None:
        if self.variant not in VARIANTS:
            raise SkillError(
                f"unknown ScaLearn variant {self.variant!r}; choose from {', '.join(VARIANTS)}"
            )
        if self.steps < 1 or self.pool < 1 or self.batch_size < 1:
            raise SkillError("ScaLearn steps, pool and batch size must be ≥ 1")


class ScaLearnModel(nn.Module):
    """A frozen base whose adapted linear modules output W0·x + Σ_k ω^k ⊙ (B_k·A_k·x)."""

    def __init__(
        self, base_model: nn.Module, members: Sequence[Skill], variant: str, seed: int = 0
    ):
        super().__init__()
        vector, shared = VARIANTS[variant]
        self.model, self.members, self.shared = base_model, list(members), shared
        for p in self.model.parameters():
            p.requires_grad_(False)
        modules = dict(self.model.named_modules())
        n = len(members)
        gen = torch.Generator().manual_seed(seed)
        self.omega = nn.ParameterDict()
        self._A: dict[str, torch.Tensor] = {}
        self._B: dict[str, torch.Tensor] = {}
        for name, (A, B) in linear_factors(self.model, members, "ScaLearn").items():
            self._A[name], self._B[name] = A, B
            out_f = B.shape[1]
            key = self._pkey(name)
            if key not in self.omega:  # ω ~ N(2/n, 0.001), as in the paper
                shape = (n, out_f) if vector else (n, 1)
                self.omega[key] = nn.Parameter(2.0 / n + 0.001 * torch.randn(shape, generator=gen))
            modules[name].register_forward_hook(self._hook(name))
        self.config = self.model.config
        self.generation_config = getattr(self.model, "generation_config", None)  # encoders: none

    def _pkey(self, module: str) -> str:
        return omega_key(module, self.shared).replace(".", "__")

    def omega_of(self, module: str) -> torch.Tensor:
        """ω for ``module``: (n, out) for vector variants, (n, 1) for uniform ones."""
        return self.omega[self._pkey(module)]

    def _hook(self, name: str):
        def hook(_module, inputs, output):
            z = torch.einsum("bsi,nri->bnsr", inputs[0], self._A[name])
            b = self._B[name] * self.omega_of(name)[:, :, None]  # diag(ω_k)·B_k
            return output + torch.einsum("bnsr,nor->bso", z, b)

        return hook

    def forward(self, **kw):
        return self.model(**kw)

    @torch.no_grad()
    def generate(self, **kw):
        return self.model.generate(**kw)

    @torch.no_grad()
    def deltas(self) -> dict[str, torch.Tensor]:
        """The composition as static ΔW: ``{param: Σ_k diag(ω_k)·B_k·A_k}``."""
        return {
            f"{m}.weight": scaled_delta(
                [b @ a for a, b in zip(self._A[m], self._B[m], strict=True)],
                list(self.omega_of(m).detach()),
            )
            for m in self._A
        }


def train_scalearn(
    name: str,
    base: Base,
    members: Sequence[Skill],
    world_name: str,
    tasks: Sequence[str],
    recipe: ScaLearnRecipe | None = None,
    progress=None,
    world_args: dict | None = None,
) -> Skill:
    """Train only ω on an even mixture of ``tasks``; returns an (unsaved) exact ``delta`` skill."""
    recipe = recipe or ScaLearnRecipe()
    recipe.check()
    check_members(members)
    for m in members:
        check_base(m, base)
    if not tasks:
        raise SkillError("ScaLearn needs at least one target task")
    world = get_world(world_name, **(world_args or {}))
    torch.manual_seed(recipe.seed)
    model = ScaLearnModel(base.load_model(), members, recipe.variant, recipe.seed)
    pools = {t: world.examples(t, recipe.pool, seed=recipe.seed, split="train") for t in tasks}
    trained, extra = model, {}
    if base.kind == "encoder":
        trained, extra["make_batch"] = _classifier_task_model(base, model, members, pools)
    log = train(
        trained,
        dict(model.omega.named_parameters()),
        Sampler(pools, recipe.batch_size, recipe.seed),
        base.load_tokenizer(),
        LoopConfig.of(recipe),
        progress=progress,
        **extra,
    )
    refs = [m.ref for m in members]
    omega_mean = {
        ref: float(torch.cat([p.detach()[i].reshape(-1) for p in model.omega.values()]).mean())
        for i, ref in enumerate(refs)
    }
    return with_heads(Skill(
        name=name,
        kind="delta",
        base=base.fingerprint,
        tensors=model.deltas(),
        recipe={
            "method": recipe.variant,
            **asdict(recipe),
            "world": world_name,
            "tasks": list(tasks),
            "members": refs,
        },
        lineage=refs,
        metrics={
            "train": {"curve": log["curve"], "seconds": round(log["seconds"], 2)},
            "omega_mean": omega_mean,
            "omega_params": sum(p.numel() for p in model.omega.values()),
            "merge_error": {"max": 0.0, "mean": 0.0},
            "diagnostics": diagnostics(members),
        },
    ), members)


def _classifier_task_model(base: Base, model: ScaLearnModel, members: Sequence[Skill],
                           pools: dict) -> tuple[nn.Module, object]:
    """``(model with every task's frozen member head, make_batch)`` for classifiers."""
    from ..acquire.multihead import MultiHead, multi_task_batch
    from ..evaluate.classify import head_layer

    tasks = list(pools)
    multi = MultiHead(model, tasks)
    labels = {}
    for task in tasks:
        owner = next((m for m in members if task in m.heads()), None)
        if owner is None:
            raise SkillError(f"ScaLearn on classifiers reads each task with its member's head; "
                             f"no member answers {task!r}")
        multi.heads[task], labels[task] = head_layer(owner, task)
    max_length = max(int(m.config.get("max_length") or 64) for m in members)
    return multi, multi_task_batch(base.load_tokenizer(), pools, labels, max_length)
