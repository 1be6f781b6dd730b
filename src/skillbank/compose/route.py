"""Context-aware routing over frozen skills (PSEC, PAPERS.md §1).

W(x) = W0 + Σ_i α_i(x)·ΔW_i for every weight a member changes, where α(x) comes from a
small MLP over a context feature with a plain linear head — no softmax, as in PSEC's
code. PSEC's context is the state; for sequences we use the base's last hidden state
mean-pooled over the *prompt* tokens (the answer never feeds its own router). Only the
router trains; member skills stay frozen. The result is a ``router`` skill holding the
MLP's tensors, with the members in its lineage and config; it is applied at run time.

``distil`` turns a router into one static skill: a linear ΔW merge whose weights are the
router's mean α over the training mixture — what survives when routing is removed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..acquire.data import Sampler, training_batch
from ..acquire.loop import LoopConfig, train
from ..base import Base, check_base
from ..skill import Skill, SkillError, lora_modules, lora_scale
from ..worlds import get_world


class Router(nn.Module):
    """α(h) = W2·relu(W1·h + b1) + b2; the head starts at zero, so training starts at the base."""

    def __init__(self, hidden: int, n_skills: int, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, width), nn.ReLU(), nn.Linear(width, n_skills))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def member_factors(skill: Skill) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{module: (A, B)}`` with B·A = ΔW: a LoRA's own factors (scale folded into B);
    other static kinds by an exact full-rank SVD."""
    if skill.kind == "lora":
        return {m: (skill.tensors[f"{m}.lora_A.weight"].float(),
                    lora_scale(skill.config, skill.tensors[f"{m}.lora_A.weight"].shape[0])
                    * skill.tensors[f"{m}.lora_B.weight"].float())
                for m in lora_modules(skill.tensors)}
    out = {}
    for param, dw in skill.delta().items():
        u, sv, vh = torch.linalg.svd(dw.float(), full_matrices=False)
        out[param.removesuffix(".weight")] = (vh, u * sv)
    return out


class RoutedModel(nn.Module):
    """A frozen base whose changed linear layers add Σ_i α_i(x)·ΔW_i x (forward hooks)."""

    def __init__(self, base_model: nn.Module, members: Sequence[Skill], router: Router):
        super().__init__()
        self.model = base_model
        self.router = router
        self.members = list(members)
        for p in self.model.parameters():
            p.requires_grad_(False)
        factors = [member_factors(m) for m in members]
        modules = dict(self.model.named_modules())
        self._alpha: torch.Tensor | None = None
        self._A: dict[str, torch.Tensor] = {}
        self._B: dict[str, torch.Tensor] = {}
        for name in sorted(set().union(*factors)):
            if not isinstance(modules.get(name), nn.Linear):
                raise SkillError(f"routing supports linear layers only; {name} is not one")
            out_f, in_f = modules[name].weight.shape
            r = max(f[name][0].shape[0] for f in factors if name in f)
            A, B = torch.zeros(len(members), r, in_f), torch.zeros(len(members), out_f, r)
            for i, f in enumerate(factors):
                if name in f:
                    a, b = f[name]
                    A[i, : a.shape[0]], B[i, :, : a.shape[0]] = a, b
            self._A[name], self._B[name] = A, B
            modules[name].register_forward_hook(self._hook(name))
        self.config = self.model.config
        self.generation_config = self.model.generation_config

    def _hook(self, name: str):
        def hook(_module, inputs, output):
            if self._alpha is None:
                return output
            z = torch.einsum("bsi,nri->bnsr", inputs[0], self._A[name])  # A_i x, rank-r
            z = z * self._alpha[:, :, None, None]
            return output + torch.einsum("bnsr,nor->bso", z, self._B[name])
        return hook

    def alpha(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              prompt_mask: torch.Tensor) -> torch.Tensor:
        self._alpha = None
        with torch.no_grad():
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        h = out.hidden_states[-1]
        w = prompt_mask.unsqueeze(-1).float()
        pooled = (h * w).sum(1) / w.sum(1).clamp(min=1.0)
        return self.router(pooled)

    def forward(self, input_ids, attention_mask, labels=None, **kw):
        prompt = attention_mask.bool() & (labels == -100) if labels is not None else attention_mask.bool()
        self._alpha = self.alpha(input_ids, attention_mask, prompt)
        try:
            return self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kw)
        finally:
            self._alpha = None

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, **kw):
        self._alpha = self.alpha(input_ids, attention_mask, attention_mask.bool())
        try:
            return self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kw)
        finally:
            self._alpha = None


def router_recipe(world_name: str, tasks: Sequence[str], steps: int = 200, lr: float = 1e-2,
                  batch_size: int = 64, seed: int = 0, width: int = 256, pool: int = 2000) -> dict:
    """The recipe a router skill records (and by which a stored router is found again)."""
    return {"method": "route", "world": world_name, "tasks": list(tasks), "steps": steps,
            "lr": lr, "batch_size": batch_size, "seed": seed, "width": width, "pool": pool}


def train_router(name: str, base: Base, members: Sequence[Skill], world_name: str,
                 tasks: Sequence[str], steps: int = 200, lr: float = 1e-2, batch_size: int = 64,
                 seed: int = 0, width: int = 256, pool: int = 2000, progress=None) -> Skill:
    """Train only the router on an even mixture of ``tasks``; returns a ``router`` skill."""
    for m in members:
        check_base(m, base)
    world = get_world(world_name)
    torch.manual_seed(seed)
    base_model = base.load_model()
    model = RoutedModel(base_model, members, Router(base_model.config.hidden_size, len(members), width))
    tokenizer = base.load_tokenizer()
    pools = {t: world.examples(t, pool, seed=seed, split="train") for t in tasks}
    log = train(model, dict(model.router.named_parameters()), Sampler(pools, batch_size, seed),
                tokenizer, LoopConfig(steps=steps, lr=lr, warmup=10), progress=progress)
    with torch.no_grad():  # mean α per task: what the router learned to pick
        mean_alpha = {}
        for t in tasks:
            b = training_batch(tokenizer, pools[t][:128])
            prompt = b["attention_mask"].bool() & (b["labels"] == -100)
            mean_alpha[t] = model.alpha(b["input_ids"], b["attention_mask"], prompt).mean(0).tolist()
    tensors = {f"router.{k}": v.detach().clone() for k, v in model.router.state_dict().items()}
    refs = [m.ref for m in members]
    return Skill(
        name=name, kind="router", base=base.fingerprint, tensors=tensors,
        config={"members": refs, "width": width, "hidden": model.config.hidden_size,
                "context": "last hidden state, mean over prompt tokens"},
        recipe=router_recipe(world_name, tasks, steps, lr, batch_size, seed, width, pool),
        lineage=refs,
        metrics={"train": {"curve": log["curve"], "seconds": round(log["seconds"], 2)},
                 "mean_alpha": mean_alpha},
    )


def load_routed(base: Base, router_skill: Skill, members: Sequence[Skill]) -> RoutedModel:
    """Rebuild a routed model from a stored router skill and its member skills."""
    check_base(router_skill, base)
    if [m.ref for m in members] != router_skill.config["members"]:
        raise SkillError(f"router {router_skill.ref} expects members {router_skill.config['members']}")
    router = Router(router_skill.config["hidden"], len(members), router_skill.config["width"])
    router.load_state_dict({k.removeprefix("router."): v for k, v in router_skill.tensors.items()})
    model = RoutedModel(base.load_model(), members, router)
    model.eval()
    return model


def distil_weights(router_skill: Skill) -> list[float]:
    """Static merge weights: the router's α averaged over its training tasks."""
    per_task = list(router_skill.metrics["mean_alpha"].values())
    n = len(per_task[0])
    return [sum(a[i] for a in per_task) / len(per_task) for i in range(n)]
