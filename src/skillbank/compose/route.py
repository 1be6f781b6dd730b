"""Train a context-aware router over frozen skills (PSEC, docs/methods.md §1).

The routed model is ``skillbank.routed``: W(x) = W0 + Σ_i α_i(x)·ΔW_i, α(x) from a small
MLP over the base's last hidden state mean-pooled over the *prompt* tokens (the answer
never feeds its own router), with a plain linear head — no softmax, as in PSEC's code.
Only the router trains; member skills stay frozen. The result is a ``router`` skill
holding the MLP's tensors, with the members in its lineage and config; it is applied at
run time.

``distil`` turns a router into one static skill: a linear ΔW merge whose weights are the
router's mean α over the training mixture — what survives when routing is removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from ..acquire.data import Sampler, training_batch
from ..acquire.loop import LoopConfig, train
from ..base import Base, check_base
from ..routed import RoutedModel, Router, load_routed, member_factors
from ..skill import Skill, SkillError
from ..worlds import get_world

__all__ = ["Router", "RoutedModel", "RouterRecipe", "distil_weights", "load_routed",
           "member_factors", "train_router"]


@dataclass(frozen=True)
class RouterRecipe:
    """Everything that decides a router's tensors (members aside, which its config names).

    The defaults are the demo's (``standard.demo_router``): enough steps for every member
    task to reach ≥ 0.95 normalised accuracy on the embedded base (docs/methods.md §1:
    500 steps at 1e-2 keep 0.963 on the weakest task, as 1000 at 3e-3 did; 300 at 1e-2
    and 400 at 1.5e-2 fall below)."""

    world: str
    tasks: tuple[str, ...]
    steps: int = 500
    lr: float = 1e-2
    batch_size: int = 64
    seed: int = 0
    width: int = 256
    pool: int = 2000
    warmup: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    world_args: dict = field(default_factory=dict)  # a files world's data file (pinned)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if self.steps < 1 or self.batch_size < 1 or self.pool < 1 or self.width < 1:
            raise SkillError("router steps, batch_size, pool and width must be ≥ 1")
        if not self.lr > 0:
            raise SkillError(f"router lr must be > 0, got {self.lr}")

    def as_dict(self) -> dict:
        return {"method": "route", **asdict(self), "tasks": list(self.tasks)}

    def loop(self) -> LoopConfig:
        return LoopConfig.of(self)


@torch.no_grad()
def prompt_contexts(model: RoutedModel, tokenizer, examples, chunk: int = 256
                    ) -> dict[str, torch.Tensor]:
    """``{prompt: context}`` for every distinct prompt, from prompt-only passes of the base
    (right-padded ``<s> + prompt``: the same states the full sequence has at those tokens)."""
    prompts = sorted({ex.prompt for ex in examples})
    out = {}
    for i in range(0, len(prompts), chunk):
        part = prompts[i: i + chunk]
        ids = tokenizer(part, add_special_tokens=False)["input_ids"]
        seqs = [[tokenizer.bos_token_id, *p] for p in ids]
        width = max(map(len, seqs))
        input_ids = torch.tensor([s + [tokenizer.pad_token_id] * (width - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        ctx = model.context(input_ids, mask, mask.bool())
        out.update(zip(part, ctx, strict=True))
    return out


def train_router(name: str, base: Base, members: Sequence[Skill], recipe: RouterRecipe,
                 progress=None) -> Skill:
    """Train only the router on an even mixture of the recipe's tasks; a ``router`` skill."""
    for m in members:
        check_base(m, base)
    world = get_world(recipe.world, **recipe.world_args)
    torch.manual_seed(recipe.seed)
    base_model = base.load_model()
    model = RoutedModel(base_model, members,
                        Router(base_model.config.hidden_size, len(members), recipe.width))
    tokenizer = base.load_tokenizer()
    pools = {t: world.examples(t, recipe.pool, seed=recipe.seed, split="train")
             for t in recipe.tasks}
    contexts = prompt_contexts(model, tokenizer, [ex for p in pools.values() for ex in p])

    def batch(tok, examples):  # the frozen base's context of each prompt, computed once
        return {**training_batch(tok, examples),
                "context": torch.stack([contexts[ex.prompt] for ex in examples])}

    log = train(model, dict(model.router.named_parameters()),
                Sampler(pools, recipe.batch_size, recipe.seed), tokenizer, recipe.loop(),
                progress=progress, make_batch=batch)
    with torch.no_grad():  # mean α per task: what the router learned to pick
        mean_alpha = {}
        for t in recipe.tasks:
            b = training_batch(tokenizer, pools[t][:128])
            prompt = b["attention_mask"].bool() & (b["labels"] == -100)
            mean_alpha[t] = model.alpha(b["input_ids"], b["attention_mask"], prompt).mean(0).tolist()
    tensors = {f"router.{k}": v.detach().clone() for k, v in model.router.state_dict().items()}
    refs = [m.ref for m in members]
    return Skill(
        name=name, kind="router", base=base.fingerprint, tensors=tensors,
        config={"members": refs, "width": recipe.width, "hidden": model.config.hidden_size,
                "context": "last hidden state, mean over prompt tokens"},
        recipe=recipe.as_dict(), lineage=refs,
        metrics={"train": {"curve": log["curve"], "seconds": round(log["seconds"], 2)},
                 "mean_alpha": mean_alpha},
    )


def distil_weights(router_skill: Skill) -> list[float]:
    """Static merge weights: the router's α averaged over its training tasks."""
    per_task = list(router_skill.metrics["mean_alpha"].values())
    n = len(per_task[0])
    return [sum(a[i] for a in per_task) / len(per_task) for i in range(n)]
