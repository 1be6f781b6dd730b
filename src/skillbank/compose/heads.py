"""A composed classifier keeps each member's head, by task, beside the shared encoder.

Merging acts on what the members change in the *base* (ΔW); a classification head is not a
change of the base but the skill's own read-out, so it is never averaged. A merge of
classifiers carries every member's head under ``head.TASK.weight`` / ``head.TASK.bias``
with ``config["heads"] = {task: labels}`` (``Skill.heads``), and so answers every member's
task with the merged encoder and that task's head — what FusionBench and the merging papers
evaluate (one merged backbone, each task's own classifier).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..skill import Skill, SkillError


def carry_heads(members: Sequence[Skill]) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, config)`` holding every member's classification heads by task; empty
    when no member is a classifier. Two members answering one task are refused: a composed
    skill keeps one head per task."""
    tensors: dict[str, torch.Tensor] = {}
    labels: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    lengths = []
    for m in members:
        for task, head in m.heads().items():
            if task in owner:
                raise SkillError(f"{owner[task]} and {m.ref} both answer task {task!r}: a "
                                 "composed classifier keeps one head per task")
            owner[task] = m.ref
            tensors[f"head.{task}.weight"] = head["weight"].detach().clone()
            tensors[f"head.{task}.bias"] = head["bias"].detach().clone()
            labels[task] = head["labels"]
            lengths.append(int(m.config.get("max_length") or m.recipe.get("max_length") or 512))
    if not labels:
        return {}, {}
    heads = [m for m in members if m.heads()]
    if len(heads) != len(members):
        plain = next(m.ref for m in members if not m.heads())
        raise SkillError(f"{plain} has no classification head: merge classifiers with "
                         "classifiers")
    return tensors, {"heads": labels, "pooling": "mean", "max_length": max(lengths)}


def with_heads(skill: Skill, members: Sequence[Skill]) -> Skill:
    """``skill`` with the members' heads added to its tensors and config (in place)."""
    tensors, config = carry_heads(members)
    skill.tensors.update(tensors)
    skill.config.update(config)
    return skill
