"""The joint reference of a continual run: one LoRA on the mixture of every task with the
whole sequence's budget, against which intransigence is measured (docs/methods.md §10)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from ..acquire.data import Sampler
from ..acquire.loop import LoopConfig, train
from ..acquire.lora import lora_config, lora_tensors
from ..base import Base
from ..library import Library
from ..skill import Skill
from ..worlds import get_world

if TYPE_CHECKING:
    from .strategies import ContinualConfig


def joint_reference(lib: Library, base: Base, cfg: ContinualConfig, ui) -> list[float]:
    """Intransigence's reference a*: one LoRA trained on the even mixture of all tasks with
    the whole sequence's budget (T × steps), evaluated on every task; stored as ``cl-joint``.
    On an encoder base, a classifier with every task's head (``continual/classify.py``)."""
    if base.kind == "encoder":
        from .classify import joint_classifier

        return joint_classifier(lib, base, cfg, ui)
    from .strategies import _new_lora, evaluate_row

    world = get_world(cfg.world)
    tok = base.load_tokenizer()
    pools = {t: world.examples(t, cfg.pool, seed=cfg.seed, split="train") for t in cfg.tasks}
    model, params = _new_lora(base.load_model(), cfg, cfg.seed, base)
    steps = cfg.steps * len(cfg.tasks)
    with ui.bar("joint reference", steps) as bar:
        log = train(
            model,
            params,
            Sampler(pools, cfg.batch_size, cfg.seed),
            tok,
            LoopConfig(steps=steps, lr=cfg.lr),
            progress=bar,
        )
    row = evaluate_row(model, tok, world, cfg.tasks, cfg.n_eval, cfg.seed)
    lib.add(
        Skill(
            name="cl-joint",
            kind="lora",
            base=base.fingerprint,
            tensors=lora_tensors(model),
            config=lora_config(cfg.lora_recipe(cfg.tasks[0]), base),
            recipe={
                "method": "continual-joint",
                "tasks": list(cfg.tasks),
                "steps": steps,
                **{k: v for k, v in asdict(cfg).items() if k not in ("tasks", "steps")},
            },
            metrics={
                "train": {"curve": log["curve"], "seconds": round(log["seconds"], 2)},
                "exact_match": dict(zip(cfg.tasks, [a for a, _ in row], strict=True)),
            },
        )
    )
    return [a for a, _ in row]
