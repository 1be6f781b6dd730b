"""Run a causal model on a world's examples: greedy answers and the target's log-probs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ..acquire.data import encode_prompt, encode_target, training_batch

if TYPE_CHECKING:
    from ..worlds.base import Example


def _left_pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s)
        mask[i, width - len(s):] = 1
    return ids, mask


@torch.no_grad()
def _generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int,
              **decoding) -> list[list[int]]:
    """Each answer's token ids, stopped before the first ``</s>``, decoded in batches."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    answers: list[list[int]] = []
    for i in range(0, len(prompts), batch_size):
        ids, mask = _left_pad([encode_prompt(tokenizer, p) for p in prompts[i: i + batch_size]], pad)
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                             eos_token_id=eos, pad_token_id=pad, **decoding)
        for row in out[:, ids.shape[1]:].tolist():
            answers.append(row[: row.index(eos)] if eos in row else row)
    return answers


def greedy(model, tokenizer, prompts: Sequence[str], max_new_tokens: int,
           batch_size: int = 256) -> list[list[int]]:
    """Greedy decoding; each answer's token ids, stopped before the first ``</s>``."""
    return _generate(model, tokenizer, prompts, max_new_tokens, batch_size, do_sample=False)


def sampled(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, temperature: float,
            batch_size: int = 1024) -> list[list[int]]:
    """One answer per prompt sampled at ``temperature`` from the full distribution (no top-k,
    no top-p), from torch's global generator: seed it first for reproducible answers."""
    return _generate(model, tokenizer, prompts, max_new_tokens, batch_size, do_sample=True,
                     temperature=float(temperature), top_k=0, top_p=1.0)


@torch.no_grad()
def target_logprobs(model, tokenizer, examples: Sequence[Example],
                    batch_size: int = 256) -> list[list[float]]:
    """log p(target token | prompt, earlier target tokens) for each token of ``target </s>``."""
    out: list[list[float]] = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i: i + batch_size]
        batch = training_batch(tokenizer, chunk)
        # labels let a routed model pool its context over the prompt only; HF models just add a loss
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       labels=batch["labels"]).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        labels = batch["labels"][:, 1:]
        picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        for row, lab in zip(picked, labels, strict=True):
            out.append(row[lab != -100].tolist())
    return out


def generation_records(model, tokenizer, examples: Sequence[Example], max_new_tokens: int,
                       batch_size: int = 256) -> list[dict]:
    """Per example: prediction, tokens of prediction and target, and target log-probs."""
    answers = greedy(model, tokenizer, [e.prompt for e in examples], max_new_tokens, batch_size)
    logps = target_logprobs(model, tokenizer, examples, batch_size)
    records = []
    for ex, ans, lp in zip(examples, answers, logps, strict=True):
        records.append({
            "pred": tokenizer.decode(ans, skip_special_tokens=True),
            "target": ex.target,
            "pred_tokens": ans,
            "target_tokens": encode_target(tokenizer, ex.target)[:-1],
            "target_logprobs": lp,
        })
    return records
