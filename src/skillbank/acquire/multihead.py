"""Several classification tasks on one encoder: one head per task, each example read by its
own task's head (continual learning of classifiers, ScaLearn over classifiers)."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import torch
from torch import nn

from ..worlds.base import Example
from .classify import Encoded, hidden_size, label_indices, mean_pool


class MultiHead(nn.Module):
    """Encoder + mean pooling + one head per task; each example is read by its task's head
    (``task_index`` into ``tasks``) and the loss is the mean cross-entropy over the batch
    (continual learning of classifiers; ScaLearn over classifiers)."""

    def __init__(self, encoder: nn.Module, tasks: list[str]):
        super().__init__()
        self.encoder, self.tasks = encoder, tasks
        self.heads = nn.ModuleDict()

    def add_head(self, task: str, n_labels: int) -> nn.Linear:
        head = nn.Linear(hidden_size(self.encoder), n_labels)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        self.heads[task] = head
        return head

    def forward(self, input_ids, attention_mask, labels, task_index):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = mean_pool(hidden.float(), attention_mask)
        loss = pooled.new_zeros(())
        for j in task_index.unique().tolist():
            rows = task_index == j
            logits = self.heads[self.tasks[j]](pooled[rows])
            loss = loss + nn.functional.cross_entropy(logits, labels[rows], reduction="sum")
        return SimpleNamespace(loss=loss / len(labels))


def multi_task_batch(tokenizer, pools: dict[str, Sequence[Example]],
                     labels: dict[str, Sequence[str]], max_length: int):
    """``make_batch(tokenizer, examples)`` for :class:`MultiHead`: the pools' texts tokenized
    once; each example's class index in its own task's ``labels`` and its task's index in
    ``pools`` (every label checked before any training)."""
    tasks = list(pools)
    for t in tasks:
        label_indices(pools[t], labels[t])
    encoded = Encoded(tokenizer, [e.prompt for p in pools.values() for e in p], max_length)
    class_of = {t: {label: i for i, label in enumerate(labels[t])} for t in tasks}
    index = {t: i for i, t in enumerate(tasks)}

    def make_batch(_tok, examples):
        batch = encoded.batch([e.prompt for e in examples])
        batch["labels"] = torch.tensor([class_of[e.task][e.target] for e in examples],
                                       dtype=torch.long)
        batch["task_index"] = torch.tensor([index[e.task] for e in examples], dtype=torch.long)
        return batch
    return make_batch
