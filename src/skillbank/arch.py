"""Architecture facts read off a base model, not assumed from one family's names.

Which modules a LoRA adapts, where the transformer blocks are and how a parameter's block
index is read: derived from the model itself (built on the meta device from its config) and
recorded in the base's metadata by ``Library.add_base``, so Llama-, GPT-2- and BERT-style
bases (and any Hugging Face model whose blocks sit in one ``ModuleList``) work the same way.

- ``blocks``: the dotted path of the ``ModuleList`` of transformer blocks (``model.layers``
  for Llama, ``transformer.h`` for GPT-2, ``encoder.layer`` for BERT): the longest
  ``ModuleList`` whose children are all of one class (ties: the first found).
- ``targets``: the sorted leaf names of the linear layers inside the blocks (``nn.Linear``
  and GPT-2's ``Conv1D``) — PEFT's ``target_modules``.
- ``fan_in_fan_out``: whether those layers store W as (in, out) (``Conv1D``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from torch import nn

from .skill import SkillError

LAYER_INDEX = re.compile(r"\.(\d+)\.")  # the first numeric path component: the block index


def block_index(param: str) -> int | None:
    """The transformer block a parameter belongs to (its first numeric path component)."""
    m = LAYER_INDEX.search(param)
    return int(m.group(1)) if m else None


def _is_conv1d(module: nn.Module) -> bool:
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or _is_conv1d(module)


def in_out(module: nn.Module) -> tuple[int, int]:
    """(in features, out features) of a linear layer, whichever way it stores W."""
    w = module.weight
    return (w.shape[0], w.shape[1]) if _is_conv1d(module) else (w.shape[1], w.shape[0])


@dataclass(frozen=True)
class Architecture:
    blocks: str
    n_blocks: int
    targets: tuple[str, ...]
    fan_in_fan_out: bool

    @property
    def block_prefix(self) -> str:
        return self.blocks + "."

    def as_dict(self) -> dict:
        return {**asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, d: dict) -> Architecture:
        return cls(d["blocks"], int(d["n_blocks"]), tuple(d["targets"]), bool(d["fan_in_fan_out"]))


def read_architecture(model: nn.Module) -> Architecture:
    """The facts of ``model`` (a real or meta-device module); SkillError if it has no blocks."""
    lists = [(name, m) for name, m in model.named_modules()
             if isinstance(m, nn.ModuleList) and len(m) > 0
             and len({type(c) for c in m}) == 1]
    if not lists:
        raise SkillError(f"{type(model).__name__}: no ModuleList of transformer blocks found")
    blocks, mlist = max(lists, key=lambda x: len(x[1]))  # max keeps the first of equals
    linear = [(name, m) for name, m in mlist.named_modules() if name and is_linear(m)]
    if not linear:
        raise SkillError(f"{type(model).__name__}: no linear layer inside {blocks}")
    targets = tuple(sorted({name.rsplit(".", 1)[-1] for name, _ in linear}))
    conv = {_is_conv1d(m) for _, m in linear}
    if len(conv) > 1:
        raise SkillError(f"{type(model).__name__}: mixes Linear and Conv1D layers in its blocks")
    return Architecture(blocks, len(mlist), targets, conv.pop())
