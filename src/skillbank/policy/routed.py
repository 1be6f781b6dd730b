"""PSEC's context-aware composition for policies: W(s) = W₀ + Σ_i α_i(s)·ΔW_i.

α(s) is a small MLP over the (normalised) state — two ReLU layers of 256, then a plain
linear output of one weight per member, no softmax and no positivity (PSEC, docs/methods.md
§1 and §16) — trained by the same behaviour-cloning loss on the new task's few
demonstrations, the base and every member frozen. The mixture is ``routed.RoutedModel``'s
(one pair of GEMMs per layer); here its context is the state, not a pooled hidden state.

With ``new_rank`` > 0 a new LoRA on the same layers trains beside α (PEFT's initialisation:
A Kaiming-uniform, B = 0): W(s) = W₀ + ΔW_new + Σ_i α_i(s)·ΔW_i. It is stored as a ``lora``
skill of its own, and the router names it under ``config["fixed"]``: loading adds it to the
weights statically, which is the same map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..base import Base, check_base
from ..routed import RoutedModel, Router
from ..skill import Skill, SkillError
from . import PolicyError
from .bc import check_int, check_policy_base, check_rate, demo_cache, fit, policy_lora_config
from .env import HORIZON, check_horizon, check_speed, check_task, demonstrations


class StateRouted(RoutedModel):
    """A frozen policy base mixing ``members`` by α(s), optionally with a trainable new LoRA."""

    def __init__(self, base_model: nn.Module, members: Sequence[Skill], router: Router,
                 new_rank: int = 0, new_alpha: int = 16, seed: int = 0):
        super().__init__(base_model, members, router)
        self.new_scale = new_alpha / new_rank if new_rank else 0.0
        self.new = nn.ParameterDict()
        if new_rank:
            gen = torch.Generator().manual_seed(seed)
            modules = dict(self.model.named_modules())
            for name in self.layers:
                out_f, in_f = modules[name].weight.shape
                a = torch.empty(new_rank, in_f)
                bound = 1 / math.sqrt(in_f)  # kaiming_uniform_(a=√5), as nn.Linear and PEFT
                a.uniform_(-bound, bound, generator=gen)
                self.new[name.replace(".", "/") + "/A"] = nn.Parameter(a)
                self.new[name.replace(".", "/") + "/B"] = nn.Parameter(torch.zeros(out_f, new_rank))
                modules[name].register_forward_hook(self._new_hook(name))

    def _new_hook(self, name: str):
        key = name.replace(".", "/")

        def hook(_module, inputs, output):
            a, b = self.new[key + "/A"], self.new[key + "/B"]
            return output + self.new_scale * torch.nn.functional.linear(
                torch.nn.functional.linear(inputs[0], a), b)
        return hook

    def forward(self, obs: torch.Tensor, **_) -> torch.Tensor:
        self._alpha = self.router(self.model.features(obs))
        try:
            return self.model(obs=obs)
        finally:
            self._alpha = None

    def new_tensors(self) -> dict[str, torch.Tensor]:
        """The new LoRA as a skill's tensors (PEFT's key names)."""
        out = {}
        for key, p in self.new.items():
            module, part = key.rsplit("/", 1)
            out[f"{module.replace('/', '.')}.lora_{part}.weight"] = p.detach().clone()
        return out


@dataclass(frozen=True)
class StateRouterRecipe:
    """α(s) over library skills for ``task``, from ``demos`` demonstrations (PSEC: ~1,000
    Adam steps at 3e-4); ``new_rank`` > 0 trains a new LoRA beside it."""

    task: str
    demos: int = 5
    steps: int = 1000
    lr: float = 3e-4
    width: int = 256
    layers: int = 2
    new_rank: int = 0
    new_lr: float = 1e-3
    batch_size: int = 128
    noise: float = 0.1
    seed: int = 0
    horizon: int = HORIZON
    speed: float = 1.0

    def __post_init__(self) -> None:
        check_task(self.task)
        for key, high in (("demos", 1000), ("steps", 10 ** 6), ("width", 4096), ("layers", 8),
                          ("batch_size", 65536)):
            check_int(key, getattr(self, key), high)
        check_int("new_rank", self.new_rank, 4096, low=0)
        check_rate("lr", self.lr)
        check_rate("new_lr", self.new_lr)
        check_horizon(self.horizon)
        object.__setattr__(self, "speed", check_speed(self.speed))

    def as_dict(self) -> dict:
        return {"method": "policy-router", "world": "metaworld", **asdict(self)}


def train_state_router(name: str, base: Base, members: Sequence[Skill], recipe: StateRouterRecipe,
                       progress=None, cache: Path | None = None) -> tuple[Skill, Skill | None]:
    """The router skill and (``new_rank`` > 0) the new LoRA trained beside it, unstored; the
    router's ``config["fixed"]`` is filled in by the caller once the new LoRA has a ref."""
    check_policy_base(base)
    if not members:
        raise PolicyError("a state router needs at least one member skill")
    for m in members:
        check_base(m, base)
        if m.kind not in ("lora", "delta", "sparse"):
            raise PolicyError(f"{m.ref} is a {m.kind} skill; a state router mixes static skills")
    demos = demonstrations(recipe.task, recipe.demos, recipe.seed, recipe.noise, recipe.horizon,
                           recipe.speed, cache)
    torch.manual_seed(recipe.seed)
    router = Router(base.meta_model().config.obs_dim, len(members), recipe.width, recipe.layers)
    model = StateRouted(base.load_model(), members, router, recipe.new_rank, 2 * recipe.new_rank
                        if recipe.new_rank else 16, recipe.seed)
    groups = [{"params": list(router.parameters()), "lr": recipe.lr}]
    if recipe.new_rank:
        groups.append({"params": list(model.new.parameters()), "lr": recipe.new_lr})
    log = fit(model, groups, demos.obs, demos.act, recipe.steps, recipe.lr, recipe.batch_size,
              recipe.seed, progress)
    metrics = {"train": {"final_loss": log["curve"][-1][1], "curve": log["curve"],
                         "seconds": log["seconds"], "demo_steps": demos.steps}}
    config = {"members": [m.ref for m in members], "hidden": router.net[0].in_features,
              "width": recipe.width, "layers": recipe.layers, "context": "state", "fixed": []}
    router_skill = Skill(name=name, kind="router", base=base.fingerprint,
                         tensors={f"router.{k}": v.detach().clone()
                                  for k, v in router.state_dict().items()},
                         config=config, recipe=recipe.as_dict(),
                         lineage=[m.ref for m in members], metrics=metrics)
    new = None
    if recipe.new_rank:
        new = Skill(name=f"{name}-new", kind="lora", base=base.fingerprint,
                    tensors=model.new_tensors(), config=policy_lora_config(base, recipe.new_rank,
                                                                 2 * recipe.new_rank),
                    recipe={**recipe.as_dict(), "method": "policy-router-new"}, metrics=metrics)
    return router_skill, new


def ensure_state_router(lib, name: str, base: Base, members: Sequence[Skill],
                        recipe: StateRouterRecipe) -> tuple[Skill, Skill | None]:
    """(router, its new LoRA or None): found by recipe and members, or trained and stored
    (the new LoRA first, then the router naming it under ``fixed``)."""
    want = {**recipe.as_dict(), "members": [m.ref for m in members]}
    ref = lib.find(name, base.fingerprint, want)
    if ref is not None:
        router = lib.get(ref)
        return router, (lib.get(router.config["fixed"][0]) if router.config["fixed"] else None)
    router, new = train_state_router(name, base, members, recipe, cache=demo_cache(lib))
    if new is not None:
        new = lib.add(new)
        router.config["fixed"] = [new.ref]
        router.lineage.append(new.ref)
    router.recipe = want
    return lib.add(router), new


def load_state_routed(base: Base, router_skill: Skill, members: Sequence[Skill],
                      fixed: Sequence[Skill] = ()) -> StateRouted:
    """A stored state router over ``members`` (its ``fixed`` skills, if any, added statically)."""
    check_base(router_skill, base)
    cfg = router_skill.config
    if cfg.get("context") != "state":
        raise SkillError(f"router {router_skill.ref} routes language-model prompts, not states")
    if [m.ref for m in members] != cfg["members"]:
        raise SkillError(f"router {router_skill.ref} expects members {cfg['members']}")
    if [f.ref for f in fixed] != cfg.get("fixed", []):
        raise SkillError(f"router {router_skill.ref} expects fixed skills {cfg.get('fixed', [])}")
    router = Router(cfg["hidden"], len(members), cfg["width"], cfg.get("layers", 1))
    router.load_state_dict({k.removeprefix("router."): v for k, v in router_skill.tensors.items()})
    model = StateRouted(base.load_model(list(fixed)), members, router)
    model.eval()
    return model
