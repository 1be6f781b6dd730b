"""Acquire a skill: train a LoRA adapter through PEFT on one task of a world.

The base stays frozen; PEFT wraps the target linear layers with A (r×in) and B (out×r),
B initialised to zero so training starts from the base (Hu et al. 2021). Loss is on the
answer tokens only. The result is a ``lora`` skill whose recipe holds everything needed
to train it again; the same recipe and seed give the same tensors, also after a resume.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..base import Base
from ..skill import Skill, SkillError, canonical_json
from ..worlds import get_world, pinned_args
from .data import Sampler, check_encodable
from .loop import LoopConfig, train


@dataclass(frozen=True)
class LoraRecipe:
    """Everything that decides a LoRA skill's tensors: data, adapter shape and the whole
    training loop (``loop.LoopConfig``: warm-up, then cosine decay to 10% of ``lr``).
    A ``files`` world's arguments are pinned to the data file's sha256
    (``worlds.pinned_args``), so an edited file gives a different recipe."""

    world: str
    task: str
    rank: int = 8
    alpha: int = 16
    steps: int = 300
    lr: float = 5e-3
    batch_size: int = 64
    pool: int = 4000
    seed: int = 0
    target_modules: tuple[str, ...] = ()  # empty: every linear layer in the base's blocks
    world_args: dict = field(default_factory=dict)
    warmup: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        for key in ("rank", "steps", "batch_size", "pool"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SkillError(f"LoRA recipe: {key} must be an integer ≥ 1, got {value!r}")
        for key in ("lr", "alpha", "weight_decay", "grad_clip"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value < 0:
                raise SkillError(f"LoRA recipe: {key} must be a finite number ≥ 0, got {value!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise SkillError(f"LoRA recipe: warmup must be an integer ≥ 0, got {self.warmup!r}")
        object.__setattr__(self, "world_args", pinned_args(self.world, self.world_args))
        object.__setattr__(self, "target_modules", tuple(self.target_modules))

    def as_dict(self) -> dict:
        return {"method": "lora", **asdict(self), "target_modules": list(self.target_modules)}

    def loop(self) -> LoopConfig:
        return LoopConfig.of(self)

    def key(self, base: Base) -> str:
        """Identity of this run on this base (names its checkpoint directory)."""
        return hashlib.sha256(canonical_json([base.fingerprint, self.as_dict()]).encode()).hexdigest()[:24]


def target_modules(given, base: Base) -> list[str]:
    """``given`` target modules, or (empty) every linear layer in the base's blocks
    (``base.arch.targets``, read off the model: no family's names assumed)."""
    return sorted(given) if given else list(base.arch.targets)


def lora_config(recipe: LoraRecipe, base: Base) -> dict:
    """The PEFT LoraConfig fields a skill records (and exports to adapter_config.json)."""
    return {"peft_type": "LORA", "r": recipe.rank, "lora_alpha": recipe.alpha,
            "target_modules": target_modules(recipe.target_modules, base), "lora_dropout": 0.0,
            "bias": "none", "fan_in_fan_out": base.arch.fan_in_fan_out, "use_rslora": False,
            "task_type": "CAUSAL_LM"}


def train_lora(name: str, base: Base, recipe: LoraRecipe, checkpoint_root: Path | None = None,
               progress=None, init: dict[str, torch.Tensor] | None = None) -> Skill:
    """Train the skill; if ``checkpoint_root`` is given, checkpoints go there and a run
    interrupted earlier resumes from its last one (removed once training completes).

    ``init`` (optional): start A and B from an existing LoRA skill's tensors (same rank and
    target modules, keys as :func:`lora_tensors` writes them) instead of PEFT's A random,
    B = 0, i.e. fine-tune from that skill (``transfer.jobs.verify_on``). The skill's recipe
    then records ``init`` (the sha256 of those tensors) beside the LoraRecipe fields."""
    from peft import LoraConfig, get_peft_model

    world = get_world(recipe.world, **recipe.world_args)
    # a comma-separated task is a mixture: ``pool`` examples of each, sampled uniformly
    pools = {t: world.examples(t, recipe.pool, seed=recipe.seed, split="train")
             for t in recipe.task.split(",")}
    model = base.load_model()
    tokenizer = base.load_tokenizer()
    unknown = sum(check_encodable(tokenizer, pool, f"train {name} on {task}",
                                  getattr(model.config, "max_position_embeddings", None))
                  for task, pool in pools.items())
    torch.manual_seed(recipe.seed)
    cfg = lora_config(recipe, base)
    check_rank(model, cfg["target_modules"], recipe.rank)
    peft_model = get_peft_model(model, LoraConfig(
        r=recipe.rank, lora_alpha=recipe.alpha, target_modules=cfg["target_modules"],
        lora_dropout=0.0, bias="none", fan_in_fan_out=cfg["fan_in_fan_out"]))
    params = {k: p for k, p in peft_model.named_parameters() if p.requires_grad}
    run_recipe, key = recipe.as_dict(), recipe.key(base)
    if init is not None:
        run_recipe["init"] = load_lora_init(params, init)
        key = f"{key}-{run_recipe['init'][:12]}"
    ckpt = checkpoint_root / key if checkpoint_root is not None else None
    log = train(peft_model, params, Sampler(pools, recipe.batch_size, recipe.seed),
                tokenizer, recipe.loop(), checkpoint=ckpt,
                progress=progress)
    tensors = lora_tensors(peft_model)
    if ckpt is not None:
        shutil.rmtree(ckpt, ignore_errors=True)
    return Skill(name=name, kind="lora", base=base.fingerprint, tensors=tensors, config=cfg,
                 recipe=run_recipe, metrics={"train": {**train_metrics(log), "unk_tokens": unknown}})


def check_rank(model: torch.nn.Module, targets: list[str], rank: int) -> None:
    """SkillError if ``rank`` exceeds the smaller side of a targeted linear layer: ΔW = BA
    cannot have a higher rank, and such factors only cost memory."""
    shapes = [tuple(m.weight.shape) for name, m in model.named_modules()
              if any(name == t or name.endswith(f".{t}") for t in targets)
              and getattr(m, "weight", None) is not None and m.weight.ndim == 2]
    limit = min((min(s) for s in shapes), default=rank)
    if rank > limit:
        raise SkillError(f"LoRA rank {rank} is more than the targeted layers allow (their "
                         f"smaller side is {limit}): ΔW = BA has rank at most {limit}")


@torch.no_grad()
def load_lora_init(params: dict[str, torch.nn.Parameter], init: dict[str, torch.Tensor]) -> str:
    """Copy a LoRA skill's A/B tensors into a fresh PEFT model's trainable ``params``; returns
    the sha256 of ``init``. SkillError unless keys and shapes match exactly."""
    from ..skill import SkillError

    by_key = {k.removeprefix("base_model.model.").replace(".default.", "."): p
              for k, p in params.items()}
    if set(by_key) != set(init):
        extra, missing = sorted(set(init) - set(by_key)), sorted(set(by_key) - set(init))
        raise SkillError(f"initial LoRA tensors do not match this recipe's adapter (rank/target "
                         f"modules): {len(extra)} unexpected, {len(missing)} missing"
                         + (f", e.g. {(extra or missing)[0]}" if extra or missing else ""))
    h = hashlib.sha256()
    for k in sorted(init):
        t = init[k]
        if tuple(t.shape) != tuple(by_key[k].shape):
            raise SkillError(f"initial LoRA tensor {k} has shape {tuple(t.shape)}, "
                             f"the adapter has {tuple(by_key[k].shape)} (different rank?)")
        by_key[k].copy_(t.to(by_key[k].dtype))
        h.update(k.encode())
        h.update(t.detach().contiguous().to(torch.float32).reshape(-1).numpy().tobytes())
    return h.hexdigest()


def lora_tensors(peft_model) -> dict:
    """The adapter's A/B tensors keyed by the base's module paths (PEFT prefix stripped)."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(peft_model)
    return {k.removeprefix("base_model.model."): v.detach().clone() for k, v in state.items()}


def train_metrics(log: dict) -> dict:
    """What a skill's manifest keeps of a training run (see loop.train)."""
    return {"final_loss": log["curve"][-1][1] if log["curve"] else None,
            "curve": log["curve"], "seconds": round(log["seconds"], 2),
            "tokens_per_second": round(log["tokens_per_second"], 1),
            "resumed_from": log["resumed_from"],
            **({"restarted": log["restarted"]} if log.get("restarted") else {}),
            **({"validation": log["validation"], "stopped_at": log["stopped_at"],
                "best_step": log["best_step"]}
               if "validation" in log else {})}
