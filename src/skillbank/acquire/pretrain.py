"""The embedded default base: a tiny Llama-style transformer trained from scratch on a
world's base tasks, with a character tokenizer saved beside it.

Built with transformers from a config (no download). The recipe (world, tasks, size,
steps, lr, seed) identifies it: the library re-uses a base whose recipe matches instead
of training again.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..library import Library
from .data import Sampler, char_tokenizer
from .loop import LoopConfig, train

SIZES = {
    # name: (hidden, layers, heads, intermediate)
    "tiny": (32, 2, 2, 64),
    "mini": (64, 3, 4, 192),
    "small": (96, 4, 4, 256),
    "large": (128, 6, 4, 384),
}
SHAPE = re.compile(r"^(\d{1,4})x(\d{1,2})$")  # WIDTHxDEPTH, e.g. 48x2: a base family member
HEAD_DIM = 8


def shape_of(size: str) -> tuple[int, int, int, int]:
    """(hidden, layers, heads, intermediate) of a named size or of ``WIDTHxDEPTH``.

    ``WIDTHxDEPTH`` fixes the rest by one rule, so a family of bases differs only in
    width and depth: heads of 16 dimensions (one if narrower), intermediate 3 × width.
    """
    if size in SIZES:
        return SIZES[size]
    m = SHAPE.match(size) if isinstance(size, str) else None
    if not m or not (8 <= int(m.group(1)) <= 1024 and 1 <= int(m.group(2)) <= 24):
        raise ValueError(f"unknown base size {size!r}; choose from {', '.join(SIZES)} or "
                         "WIDTHxDEPTH (width 8-1024, depth 1-24, e.g. 48x2)")
    width, depth = int(m.group(1)), int(m.group(2))
    if width % HEAD_DIM:
        raise ValueError(f"base size {size!r}: the width must be a multiple of {HEAD_DIM}")
    return width, depth, width // HEAD_DIM, 3 * width


@dataclass(frozen=True)
class BaseRecipe:
    """Everything that decides the embedded base's weights, the training loop included."""

    world: str = "strings"
    tasks: list[str] = field(default_factory=lambda: ["copy", "rev", "sort"])
    size: str = "mini"
    steps: int = 800
    lr: float = 5e-3
    batch_size: int = 64
    pool: int = 4000
    seed: int = 0
    warmup: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0

    def as_meta(self) -> dict:
        return {"method": "pretrain", **asdict(self)}


def tiny_config(vocab_size: int, size: str, tokenizer=None):
    from transformers import LlamaConfig

    hidden, layers, heads, inter = shape_of(size)
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, intermediate_size=inter,
        max_position_embeddings=256, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id if tokenizer else 1,
        eos_token_id=tokenizer.eos_token_id if tokenizer else 2,
        pad_token_id=tokenizer.pad_token_id if tokenizer else 0,
    )


def train_base_dir(recipe: BaseRecipe, out_dir: Path, progress=None) -> dict:
    """Train a base from scratch and save model + tokenizer to ``out_dir``."""
    from transformers import LlamaForCausalLM

    from ..worlds import get_world

    world = get_world(recipe.world)
    tokenizer = char_tokenizer(world.charset())
    torch.manual_seed(recipe.seed)
    model = LlamaForCausalLM(tiny_config(len(tokenizer), recipe.size, tokenizer))
    pools = {t: world.examples(t, recipe.pool, seed=recipe.seed, split="train") for t in recipe.tasks}
    sampler = Sampler(pools, recipe.batch_size, recipe.seed)
    cfg = LoopConfig.of(recipe)
    log = train(model, dict(model.named_parameters()), sampler, tokenizer, cfg, progress=progress)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()   # no "Writing model shards" bar from a worker
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return log


def find_base(lib: Library, recipe: BaseRecipe):
    """A registered base made by exactly this recipe, or None."""
    want = recipe.as_meta()
    for b in lib.bases():
        if b.meta.get("recipe") == want:
            return b
    return None


def ensure_base(lib: Library, name: str, recipe: BaseRecipe, progress=None):
    """Return the base for ``recipe`` from the library, training it only if absent."""
    found = find_base(lib, recipe)
    if found is not None:
        return found, None
    with tempfile.TemporaryDirectory(prefix=f"{os.getpid()}-", dir=lib.home / "tmp") as tmp:
        out = Path(tmp) / "model"
        log = train_base_dir(recipe, out, progress)
        base = lib.add_base(name, out, kind="causal",
                            meta={"recipe": recipe.as_meta(), "train": {"curve": log["curve"],
                                                                        "seconds": log["seconds"]}})
        shutil.rmtree(out, ignore_errors=True)
    return base, log
