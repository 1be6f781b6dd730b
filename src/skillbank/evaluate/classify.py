"""Evaluate classification skills on an encoder base: accuracy, Brier score, 10-bin ECE.

A skill's ΔW is merged into the base (``Base.load_model([skill])``, refused on another
base), its texts are mean-pooled and its own head gives the class probabilities.

The base alone has no head, so nothing can be read off it without fitting one. Its row
therefore fits nothing and reports the *majority-class baseline*: every held-out example
gets the same probabilities, the label frequencies of the task's train split. That row is
well defined, deterministic, and is the bar a classifier must clear (its accuracy is the
majority share of the eval split, its ECE the gap between that and the train share).

A skill answers the tasks it has a head for (``Skill.heads``: its own task, or every
member's task for a merge of classifiers); on any other task it is *not applicable*
(:class:`NotApplicable`), which an evaluation matrix shows as an empty cell.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..acquire.classify import (
    EncoderClassifier,
    classification_world,
    encode_texts,
    label_indices,
)
from ..base import Base, check_base
from ..skill import Skill, SkillError
from .metrics import summarize_classification

if TYPE_CHECKING:
    from ..worlds.base import World


class NotApplicable(SkillError):
    """The skill has no head for the task: nothing it could answer there."""


def head_for(skill: Skill, task: str) -> dict:
    """The skill's head for ``task``; NotApplicable when it has none."""
    heads = skill.heads()
    if not heads:
        raise NotApplicable(f"skill {skill.ref} has no classification head (head.weight, "
                            "head.bias and labels); it is not a classifier")
    if task not in heads:
        raise NotApplicable(f"skill {skill.ref} has no head for task {task!r} (it answers "
                            f"{', '.join(sorted(heads))})")
    return heads[task]


def head_layer(skill: Skill, task: str) -> tuple[torch.nn.Linear, list[str]]:
    """The skill's head for ``task`` as a frozen float32 ``nn.Linear``, and its labels."""
    head = head_for(skill, task)
    linear = torch.nn.Linear(head["weight"].shape[1], head["weight"].shape[0])
    linear.load_state_dict({k: head[k].float() for k in ("weight", "bias")})
    linear.requires_grad_(False)
    return linear, head["labels"]


def majority_probs(world: World, task: str, labels: Sequence[str]) -> np.ndarray:
    """Train-split label frequencies of ``task``, in the order of ``labels``."""
    counts = Counter(ex.target for ex in world.examples(task, 0, seed=0, split="train"))
    freq = np.array([counts.get(label, 0) for label in labels], dtype=np.float64)
    if freq.sum() == 0:
        raise SkillError(f"task {task!r} has no rows in the train split")
    return freq / freq.sum()


@torch.no_grad()
def skill_probs(base: Base, skill: Skill, texts: Sequence[str], task: str,
                batch_size: int = 64, loaded=None) -> np.ndarray:
    """Class probabilities ``[N, C]`` of a classification skill on ``texts`` of ``task``
    (its head for that task; the columns follow that head's labels). ``loaded``: the
    ``(encoder with the skill applied, tokenizer)`` already in memory, if any."""
    check_base(skill, base)
    linear, labels = head_layer(skill, task)
    model, tokenizer = loaded if loaded is not None else (base.load_model([skill]),
                                                          base.load_tokenizer())
    clf = EncoderClassifier(model, linear).eval()
    max_length = int(skill.config.get("max_length") or skill.recipe.get("max_length") or 512)
    out = []
    for i in range(0, len(texts), batch_size):
        batch = encode_texts(tokenizer, texts[i: i + batch_size], max_length)
        out.append(torch.softmax(clf(**batch).logits.double(), dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(labels)))


def evaluate_classifier(base: Base, skill: Skill | None, world: World, task: str, n: int,
                        seed: int, loaded=None) -> dict[str, Any]:
    """Metrics on ``n`` held-out examples (``split='eval'``) of a classification task.

    With ``skill=None`` the row is the majority-class baseline (train-split label
    frequencies for every example; see the module docstring): nothing is fitted. A skill
    without a head for ``task`` raises :class:`NotApplicable` before any work.
    """
    world_labels = classification_world(world, task, base)
    if skill is not None:
        head_for(skill, task)
    examples = world.examples(task, n, seed=seed, split="eval")
    if not examples:
        raise SkillError(f"task {task!r} has no rows in the eval split")
    if skill is None:
        labels = world_labels
        probs = np.tile(majority_probs(world, task, labels), (len(examples), 1))
    else:
        labels = head_for(skill, task)["labels"]
        probs = skill_probs(base, skill, [ex.prompt for ex in examples], task, loaded=loaded)
    y = label_indices(examples, labels).numpy()
    return summarize_classification(probs, y, seed=seed)
