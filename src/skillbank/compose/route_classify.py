"""A context-aware router over frozen classifiers (PSEC's composition, docs/methods.md §1).

The routed encoder is ``skillbank.routed``'s: W(x) = W0 + Σ_i α_i(x)·ΔW_i on every linear
layer a member changes, α(x) = MLP(e(x)) with a plain linear head (no softmax), where e(x)
is the *unchanged* base's sentence embedding of the text (mean-pooled last hidden state —
all-MiniLM-L6-v2's own embedding). The task picks only the read-out: each member's head
answers its own task, as a merge of classifiers does (``compose.heads``), so the router and
the merges are judged on the same footing; α never sees the task.

Training departs from PSEC only in its loss: cross-entropy of the member task's labels
through that task's frozen head (PSEC clones actions), on an even mixture of the member
tasks' train rows. Only the router's MLP trains; the members and heads stay frozen. The
result is a ``router`` skill that also carries the members' heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..acquire.classify import Encoded, classification_world, label_indices, mean_pool
from ..acquire.data import Sampler
from ..acquire.loop import LoopConfig, train
from ..base import Base, check_base
from ..routed import RoutedModel, Router
from ..skill import Skill, SkillError
from ..worlds import get_world
from .heads import carry_heads


@dataclass(frozen=True)
class ClassifierRouterRecipe:
    """Everything that decides a classifier router's tensors (its members aside)."""

    world: str
    tasks: tuple[str, ...]
    steps: int = 300
    lr: float = 3e-3
    batch_size: int = 32
    seed: int = 0
    width: int = 256
    max_length: int = 128
    warmup: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    world_args: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if min(self.steps, self.batch_size, self.width, self.max_length) < 1:
            raise SkillError("router steps, batch_size, width and max_length must be ≥ 1")
        if not self.lr > 0:
            raise SkillError(f"router lr must be > 0, got {self.lr}")

    def as_dict(self) -> dict:
        return {"method": "route-classify", **asdict(self), "tasks": list(self.tasks)}

    def loop(self) -> LoopConfig:
        return LoopConfig.of(self)


class RoutedClassifier(nn.Module):
    """The routed encoder, mean pooling, and each row's own task head."""

    def __init__(self, routed: RoutedModel, heads: dict[str, nn.Linear], tasks: Sequence[str]):
        super().__init__()
        self.routed = routed
        self.heads = nn.ModuleDict(heads)
        self.tasks = list(tasks)

    def forward(self, input_ids, attention_mask, labels, task_ix, context):
        hidden = self.routed(input_ids=input_ids, attention_mask=attention_mask,
                             context=context).last_hidden_state
        pooled = mean_pool(hidden.float(), attention_mask)
        loss = pooled.new_zeros(())
        for i, task in enumerate(self.tasks):  # rows of one task share a head (and a label set)
            rows = task_ix == i
            if rows.any():
                logits = self.heads[task](pooled[rows])
                loss = loss + nn.functional.cross_entropy(logits, labels[rows], reduction="sum")
        return _Loss(loss / len(input_ids))


@dataclass
class _Loss:
    loss: torch.Tensor


def train_classifier_router(name: str, base: Base, members: Sequence[Skill],
                            recipe: ClassifierRouterRecipe, progress=None) -> Skill:
    """Train only α(x) over frozen classifier members; a ``router`` skill with their heads."""
    for m in members:
        check_base(m, base)
    head_tensors, head_config = carry_heads(members)
    if not head_config:
        raise SkillError("these members are not classifiers: route them as generation skills")
    missing = [t for t in recipe.tasks if t not in head_config["heads"]]
    if missing:
        raise SkillError(f"no member answers task(s) {', '.join(missing)}; the members answer "
                         f"{', '.join(sorted(head_config['heads']))}")
    world = get_world(recipe.world, **recipe.world_args)
    pools = {}
    for t in recipe.tasks:
        classification_world(world, t, base)
        pools[t] = world.examples(t, 0, seed=recipe.seed, split="train")
        if not pools[t]:
            raise SkillError(f"task {t!r} has no rows in the train split")
        label_indices(pools[t], head_config["heads"][t])
    torch.manual_seed(recipe.seed)
    encoder = base.load_model()
    for m in encoder.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    routed = RoutedModel(encoder, members, Router(encoder.config.hidden_size, len(members),
                                                  recipe.width))
    heads = {}
    for t in recipe.tasks:
        w, b = head_tensors[f"head.{t}.weight"], head_tensors[f"head.{t}.bias"]
        heads[t] = nn.Linear(w.shape[1], w.shape[0])
        heads[t].load_state_dict({"weight": w.float(), "bias": b.float()})
        heads[t].requires_grad_(False)
    model = RoutedClassifier(routed, heads, recipe.tasks)
    tokenizer = base.load_tokenizer()
    texts = sorted({ex.prompt for p in pools.values() for ex in p})
    encoded = Encoded(tokenizer, texts, recipe.max_length)
    contexts = embeddings(routed, encoded, texts)
    index = {t: i for i, t in enumerate(recipe.tasks)}

    def make_batch(_tok, examples):
        batch = encoded.batch([ex.prompt for ex in examples])
        labels = torch.zeros(len(examples), dtype=torch.long)
        for t in recipe.tasks:
            rows = [i for i, ex in enumerate(examples) if ex.task == t]
            if rows:
                labels[rows] = label_indices([examples[i] for i in rows], head_config["heads"][t])
        return {**batch, "labels": labels,
                "task_ix": torch.tensor([index[ex.task] for ex in examples]),
                "context": torch.stack([contexts[ex.prompt] for ex in examples])}

    log = train(model, dict(routed.router.named_parameters()),
                Sampler(pools, recipe.batch_size, recipe.seed), tokenizer, recipe.loop(),
                progress=progress, make_batch=make_batch)
    with torch.no_grad():  # mean α per task: what the router learned to pick
        mean_alpha = {t: routed.router(torch.stack([contexts[ex.prompt] for ex in pools[t][:256]]))
                      .mean(0).tolist() for t in recipe.tasks}
    tensors = {f"router.{k}": v.detach().clone() for k, v in routed.router.state_dict().items()}
    refs = [m.ref for m in members]
    return Skill(
        name=name, kind="router", base=base.fingerprint, tensors={**tensors, **head_tensors},
        config={"members": refs, "width": recipe.width, "hidden": encoder.config.hidden_size,
                "context": "the base's sentence embedding (mean-pooled last hidden state)",
                **head_config},
        recipe=recipe.as_dict(), lineage=refs,
        metrics={"train": {"curve": log["curve"], "seconds": round(log["seconds"], 2)},
                 "mean_alpha": mean_alpha},
    )


@torch.no_grad()
def embeddings(routed: RoutedModel, encoded: Encoded, texts: Sequence[str], chunk: int = 64
               ) -> dict[str, torch.Tensor]:
    """``{text: e(text)}``: the unchanged base's mean-pooled last hidden state, once each."""
    out = {}
    for i in range(0, len(texts), chunk):
        part = list(texts[i: i + chunk])
        batch = encoded.batch(part)
        ctx = routed.context(batch["input_ids"], batch["attention_mask"],
                             batch["attention_mask"].bool())
        out.update(zip(part, ctx, strict=True))
    return out
