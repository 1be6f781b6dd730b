"""Behaviour cloning: the policy base, LoRA policy skills on it, and the from-scratch baseline.

All three minimise the same loss, the mean squared error between π(s) and the expert's
action over demonstration states (actions clipped to [-1, 1], the range the environment
executes), with
AdamW and ``acquire.loop``'s schedule (warm-up, cosine decay to 10%). PSEC trains its LoRAs
with an IQL-weighted diffusion loss on offline data of mixed quality; with expert
demonstrations every weight is 1 and the loss is plain behaviour cloning (docs/methods.md §16).

- ``PolicyBaseRecipe`` → ``ensure_policy_base``: the base cloned from the demonstrations of a
  few base tasks, registered as a base of kind ``policy`` and found again by recipe.
- ``PolicyLoraRecipe`` → ``train_policy_lora``: a LoRA on every linear layer of the base's
  blocks (``fc1``, ``fc2``) through PEFT, the base frozen — a ``lora`` skill like any other.
- ``train_scratch``: the same network trained from a fresh initialisation on the same
  demonstrations (every parameter) — claim 1's baseline.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..acquire.loop import LoopConfig, lr_at
from ..base import Base
from ..skill import Skill
from . import PolicyError, require
from .env import HORIZON, Demos, check_horizon, check_speed, check_task, demonstrations


def check_int(what: str, value, high: int = 1_000_000, low: int = 1) -> None:
    """PolicyError unless ``value`` is an integer (not a bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PolicyError(f"{what} must be an integer in [{low}, {high:,}], got {value!r}")


def check_rate(what: str, value) -> None:
    """PolicyError unless ``value`` is a finite number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 0 < value <= 1:
        raise PolicyError(f"{what} must be a number in (0, 1], got {value!r}")


@dataclass(frozen=True)
class PolicyBaseRecipe:
    """The policy base: cloned from ``demos`` demonstrations of each base task."""

    tasks: tuple[str, ...] = ("reach-v3", "push-v3", "pick-place-v3")
    demos: int = 25
    noise: float = 0.1
    width: int = 256
    blocks: int = 3
    steps: int = 3000
    lr: float = 1e-3
    batch_size: int = 256
    seed: int = 0
    horizon: int = HORIZON
    std_floor: float = 0.05  # σ of the state normalisation floored here (policynet's docstring)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if not self.tasks:
            raise PolicyError("a policy base needs at least one base task")
        for t in self.tasks:
            check_task(t)
        for key, high in (("demos", 1000), ("width", 4096), ("blocks", 64), ("steps", 10 ** 6),
                          ("batch_size", 65536)):
            check_int(key, getattr(self, key), high)
        check_rate("lr", self.lr)
        check_horizon(self.horizon)
        if not 0.0 <= self.std_floor <= 10.0:
            raise PolicyError(f"std_floor must be in [0, 10], got {self.std_floor}")

    def as_meta(self) -> dict:
        return {"method": "policy-bc", "world": "metaworld", **asdict(self),
                "tasks": list(self.tasks)}


@dataclass(frozen=True)
class PolicyLoraRecipe:
    """A policy skill: a rank-``rank`` LoRA cloned from ``demos`` demonstrations of ``task``
    (under the dynamics ``speed``), benchmark seed ``seed``."""

    task: str
    demos: int = 10
    rank: int = 8
    alpha: int = 16
    steps: int = 1000
    lr: float = 1e-3
    batch_size: int = 128
    noise: float = 0.1
    seed: int = 0
    horizon: int = HORIZON
    speed: float = 1.0

    def __post_init__(self) -> None:
        check_task(self.task)
        for key, high in (("demos", 1000), ("rank", 4096), ("alpha", 65536), ("steps", 10 ** 6),
                          ("batch_size", 65536)):
            check_int(key, getattr(self, key), high)
        check_rate("lr", self.lr)
        check_horizon(self.horizon)
        object.__setattr__(self, "speed", check_speed(self.speed))

    def as_dict(self) -> dict:
        return {"method": "policy-lora", "world": "metaworld", **asdict(self)}

    def demonstrations(self, cache: Path | None = None) -> Demos:
        return demonstrations(self.task, self.demos, self.seed, self.noise, self.horizon,
                              self.speed, cache)


def fit(model: torch.nn.Module, params: list, obs: np.ndarray,
        act: np.ndarray, steps: int, lr: float, batch_size: int, seed: int,
        progress=None, warmup: int = 50, penalty=None, replay=None, at=None) -> dict:
    """Minimise mean ‖π(s) − a‖² over random minibatches (deterministic in ``seed``); returns
    ``{"curve": [(step, loss)], "seconds": …}`` (the loss every 50 steps, and the last).
    ``params``: parameters, or groups ``{"params": [...], "lr": x}`` each on ``lr``'s
    schedule scaled to its own rate. Optional: ``penalty()`` added to each step's loss (EWC);
    ``replay = (obs, act, fraction)``: that fraction of every batch drawn from those
    examples instead (the batch size stays ``batch_size``); ``at = (steps, fn)``: ``fn(step)``
    called, with the model in eval mode, after each of those steps (learning curves)."""
    x = torch.as_tensor(obs, dtype=torch.float32)
    y = torch.as_tensor(act, dtype=torch.float32).clamp(-1.0, 1.0)
    gen = torch.Generator().manual_seed(seed)
    n_old = 0
    if replay is not None:
        rx = torch.as_tensor(replay[0], dtype=torch.float32)
        ry = torch.as_tensor(replay[1], dtype=torch.float32).clamp(-1.0, 1.0)
        n_old = int(round(replay[2] * min(batch_size, len(x)))) if len(rx) else 0
    groups = params if params and isinstance(params[0], dict) else [{"params": params, "lr": lr}]
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.0, fused=True)
    rates = [g["lr"] for g in opt.param_groups]
    params = [p for g in opt.param_groups for p in g["params"]]
    cfg = LoopConfig(steps=steps, lr=1.0, warmup=min(warmup, steps // 10))
    model.train()
    curve, running, start = [], [], time.perf_counter()
    for step in range(steps):
        for g, rate in zip(opt.param_groups, rates, strict=True):
            g["lr"] = rate * lr_at(step, cfg)
        idx = torch.randint(len(x), (min(batch_size, len(x)) - n_old,), generator=gen)
        bx, by = x[idx], y[idx]
        if n_old:
            old = torch.randint(len(rx), (n_old,), generator=gen)
            bx, by = torch.cat([bx, rx[old]]), torch.cat([by, ry[old]])
        loss = torch.mean((model(obs=bx) - by) ** 2)
        if penalty is not None:
            loss = loss + penalty()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        running.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == steps:
            curve.append((step + 1, round(sum(running) / len(running), 6)))
            running = []
        if progress is not None:
            progress(step + 1, curve[-1][1] if curve else None)  # (step, loss): Ui.bar's signature
        if at is not None and step + 1 in at[0]:
            model.eval()
            at[1](step + 1)
            model.train()
    model.eval()
    return {"curve": curve, "seconds": round(time.perf_counter() - start, 2)}


def base_demos(recipe: PolicyBaseRecipe, cache: Path | None = None) -> list[Demos]:
    return [demonstrations(t, recipe.demos, recipe.seed, recipe.noise, recipe.horizon,
                           cache=cache) for t in recipe.tasks]


def train_policy_base(recipe: PolicyBaseRecipe, out: Path, progress=None,
                      cache: Path | None = None) -> dict:
    """Clone the base from every base task's demonstrations and save it to ``out``."""
    from ..policynet import new_policy

    require()
    demos = base_demos(recipe, cache)
    obs = np.concatenate([d.obs for d in demos])
    act = np.concatenate([d.act for d in demos])
    std = obs.std(0)  # an input constant in the base tasks (σ ≈ 0) is left unscaled
    std = np.where(std > 1e-6, np.maximum(std, recipe.std_floor), 1.0)
    model = new_policy(recipe.width, recipe.blocks, obs.mean(0), std, recipe.seed)
    log = fit(model, list(model.parameters()), obs, act, recipe.steps, recipe.lr,
              recipe.batch_size, recipe.seed, progress)
    model.save_pretrained(out, safe_serialization=True)
    return {**log, "demo_steps": int(len(obs))}


def find_policy_base(lib, recipe: PolicyBaseRecipe) -> Base | None:
    want = recipe.as_meta()
    return next((b for b in lib.bases() if b.meta.get("recipe") == want), None)


def ensure_policy_base(lib, name: str, recipe: PolicyBaseRecipe, progress=None
                       ) -> tuple[Base, dict | None]:
    """The base made by ``recipe``: found in the library, or cloned now and registered."""
    found = find_policy_base(lib, recipe)
    if found is not None:
        return found, None
    with tempfile.TemporaryDirectory(prefix=f"{os.getpid()}-", dir=lib.home / "tmp") as tmp:
        out = Path(tmp) / "model"
        log = train_policy_base(recipe, out, progress, demo_cache(lib))
        base = lib.add_base(name, out, kind="policy",
                            meta={"recipe": recipe.as_meta(),
                                  "train": {"curve": log["curve"], "seconds": log["seconds"],
                                            "demo_steps": log["demo_steps"]}})
        shutil.rmtree(out, ignore_errors=True)
    return base, log


def demo_cache(lib) -> Path | None:
    """Where demonstrations are kept in ``lib`` (``cache/demos``), or None for a read-only one."""
    return None if lib.readonly else lib.home / "cache" / "demos"


def check_policy_base(base: Base) -> None:
    if base.kind != "policy":
        raise PolicyError(f"base {base.name} is a {base.kind} model, not a policy: policy skills "
                          "need a policy base (`skillbank base train NAME --world metaworld`)")


def policy_lora_config(base: Base, rank: int, alpha: int) -> dict:
    """The stored PEFT config of a LoRA on the policy's linear layers."""
    return {"peft_type": "LORA", "r": rank, "lora_alpha": alpha,
            "target_modules": list(base.arch.targets), "lora_dropout": 0.0, "bias": "none",
            "fan_in_fan_out": False, "use_rslora": False, "task_type": None}


def policy_peft(base: Base, rank: int, alpha: int, seed: int):
    """The policy base wrapped by PEFT with a fresh LoRA (initialised under ``seed``) on its
    linear layers: ``(model, {name: trainable parameter})``."""
    from peft import LoraConfig, get_peft_model

    from ..acquire.lora import check_rank

    check_policy_base(base)
    model = base.load_model()
    targets = list(base.arch.targets)
    check_rank(model, targets, rank)
    torch.manual_seed(seed)
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets,
                                             lora_dropout=0.0, bias="none"))
    return model, {k: p for k, p in model.named_parameters() if p.requires_grad}


def train_policy_lora(name: str, base: Base, recipe: PolicyLoraRecipe, progress=None,
                      cache: Path | None = None, init: dict | None = None) -> Skill:
    """A LoRA policy skill cloned from the recipe's demonstrations, the base frozen; with
    ``init``, its A and B start from those tensors (another skill's, same rank) instead of
    PEFT's fresh init, and the recipe records their sha256 under ``init``."""
    from ..acquire.lora import load_lora_init, lora_tensors

    require()
    demos = recipe.demonstrations(cache)
    peft_model, params = policy_peft(base, recipe.rank, recipe.alpha, recipe.seed)
    made = recipe.as_dict()
    if init is not None:
        with torch.no_grad():
            made["init"] = load_lora_init(params, init)
    cfg = policy_lora_config(base, recipe.rank, recipe.alpha)
    log = fit(peft_model, list(params.values()), demos.obs, demos.act, recipe.steps, recipe.lr,
              recipe.batch_size, recipe.seed, progress)
    tensors = lora_tensors(peft_model)
    n_base = sum(p.numel() for p in peft_model.parameters() if not p.requires_grad)
    n_lora = sum(t.numel() for t in tensors.values())
    return Skill(name=name, kind="lora", base=base.fingerprint, tensors=tensors, config=cfg,
                 recipe=made,
                 metrics={"train": {"final_loss": log["curve"][-1][1], "curve": log["curve"],
                                    "seconds": log["seconds"], "demo_steps": demos.steps,
                                    "expert_failures": demos.expert_failures,
                                    "parameters": n_lora, "base_parameters": n_base}})


def ensure_policy_lora(lib, name: str, base: Base, recipe: PolicyLoraRecipe) -> Skill:
    """The LoRA policy skill ``name`` on ``base`` made by ``recipe``: found, or trained and
    stored."""
    ref = lib.find(name, base.fingerprint, recipe.as_dict())
    if ref is not None:
        return lib.get(ref)
    return lib.add(train_policy_lora(name, base, recipe, cache=demo_cache(lib)))


def train_scratch(base: Base, recipe: PolicyLoraRecipe, progress=None,
                  cache: Path | None = None):
    """The base's network freshly initialised (seeded by the recipe) and cloned on the same
    demonstrations, every parameter trained, the base's state normalisation kept: the model
    (not stored) and its training log."""
    from ..policynet import PolicyModel

    require()
    check_policy_base(base)
    demos = recipe.demonstrations(cache)
    config = base.meta_model().config
    torch.manual_seed(recipe.seed)
    model = PolicyModel(config)
    log = fit(model, list(model.parameters()), demos.obs, demos.act, recipe.steps, recipe.lr,
              recipe.batch_size, recipe.seed, progress)
    return model, log
