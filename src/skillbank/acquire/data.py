"""From examples to tensors: a character tokenizer and answer-only training batches.

Every sequence is ``<s> prompt target </s>``; the loss sees only ``target </s>`` (labels
are -100 on the prompt and on padding), so a skill learns to answer, not to echo.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from ..worlds.base import Example

SPECIALS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def char_tokenizer(charset: str):
    """A Hugging Face fast tokenizer with one token per character of ``charset``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS.values())}
    for ch in sorted(set(charset)):
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIALS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIALS, padding_side="left")


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    return [tokenizer.bos_token_id, *tokenizer.encode(prompt, add_special_tokens=False)]


def encode_target(tokenizer, target: str) -> list[int]:
    return [*tokenizer.encode(target, add_special_tokens=False), tokenizer.eos_token_id]


def training_batch(tokenizer, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and answer-only ``labels``.

    Equal to ``encode_prompt + encode_target`` per example; built with one batched tokenizer
    call per side and one tensor per output (it runs once per training step)."""
    prompts = tokenizer([ex.prompt for ex in examples], add_special_tokens=False)["input_ids"]
    targets = tokenizer([ex.target for ex in examples], add_special_tokens=False)["input_ids"]
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    seqs = [[bos, *p, *t, eos] for p, t in zip(prompts, targets, strict=True)]
    width = max(map(len, seqs))
    ids, labels, mask = [], [], []
    for p, s in zip(prompts, seqs, strict=True):
        n, k = len(s), len(p) + 1  # k: <s> + prompt, no loss there
        ids.append(s + [pad] * (width - n))
        labels.append([-100] * k + s[k:] + [-100] * (width - n))
        mask.append([1] * n + [0] * (width - n))
    return {"input_ids": torch.tensor(ids, dtype=torch.long),
            "attention_mask": torch.tensor(mask, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long)}


MAX_UNK_FRACTION = 0.01  # more of the training text unknown to the tokenizer is refused


def check_encodable(tokenizer, examples: Sequence[Example], what: str,
                    max_tokens: int | None = None, targets: bool = True) -> int:
    """The number of ``<unk>`` tokens in ``examples`` (prompt and, with ``targets``, target);
    SkillError if an example is longer than ``max_tokens`` (the base's context: a huge row
    would train for minutes on text it cannot read) or more than 1% of the tokens are
    ``<unk>`` (text outside the base's vocabulary would train on ``<unk>``)."""
    from ..skill import SkillError

    if not examples:
        return 0
    texts = [ex.prompt for ex in examples] + ([ex.target for ex in examples] if targets else [])
    if max_tokens is not None:
        for ex in examples:  # characters bound tokens from below for every tokenizer we know
            if len(ex.prompt) + len(ex.target) > 64 * max_tokens:
                raise SkillError(f"{what}: an example is {len(ex.prompt) + len(ex.target):,} "
                                 f"characters long; the base reads at most {max_tokens} tokens")
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    n = len(examples)
    if max_tokens is not None:
        for i, ex in enumerate(examples):
            length = 2 + len(ids[i]) + (len(ids[n + i]) if targets else 0)
            if length > max_tokens:
                raise SkillError(f"{what}: an example is {length} tokens long (input "
                                 f"{ex.prompt[:30]!r}...); the base reads at most {max_tokens}")
    unk = tokenizer.unk_token_id
    if unk is None:
        return 0
    count = sum(seq.count(unk) for seq in ids)
    total = sum(map(len, ids)) or 1
    if count / total > MAX_UNK_FRACTION:
        first = next(texts[i] for i, seq in enumerate(ids) if unk in seq)
        raise SkillError(f"{what}: {count / total:.1%} of the training text is outside the "
                         f"base's vocabulary (e.g. in {first[:40]!r}), so it would train on "
                         f"{tokenizer.unk_token}; use a base whose tokenizer knows this text")
    return count


class Sampler:
    """Deterministic minibatches: batch ``step`` depends only on (seed, step), so a run
    resumed from a checkpoint sees exactly the batches an uninterrupted run would."""

    def __init__(self, pools: dict[str, list[Example]], batch_size: int, seed: int,
                 weights: dict[str, float] | None = None):
        self.tasks = sorted(pools)
        self.pools = pools
        self.batch_size = batch_size
        self.seed = seed
        w = np.array([(weights or {}).get(t, 1.0) for t in self.tasks], dtype=float)
        self.p = w / w.sum()

    def batch(self, step: int) -> list[Example]:
        rng = np.random.default_rng([self.seed, step])
        task_ix = rng.choice(len(self.tasks), size=self.batch_size, p=self.p)
        out = []
        for ti in task_ix:
            pool = self.pools[self.tasks[ti]]
            out.append(pool[int(rng.integers(len(pool)))])
        return out
