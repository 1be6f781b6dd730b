"""Output-space composition: EFT up-scaling (logit arithmetic) of skills across bases.

Emulated fine-tuning (Mitchell et al. 2023, "An Emulator for Fine-Tuning Large Language
Models using Small Language Models", eq. 3 with the "up-scaling" choice of models;
docs/methods.md §4): a skill learned on a small base is moved onto a large base by adding, per
token, the log-ratio it induces on the small base to the large base's log-probabilities:

    log π̃(y_t | x, y_<t) = log π_large_base + Σ_j w_j · (log π_small_skill_j − log π_small_base)

then renormalised over the vocabulary (a log-softmax per token). ``w = 1`` with one skill
is EFT up-scaling; several skills add with their own weights (the "logit arithmetic" of
several behaviour deltas). The models must share a vocabulary: the sum is per token id.

The maths (:func:`eft_logprobs`) is a pure function on tensors. Above it sit a greedy
decoder that runs the models token by token and composes at every step
(:func:`eft_greedy`), the composed log-probabilities of a given target under teacher
forcing (:func:`eft_target_logprobs`), and :func:`upscale_eval`, which loads the three
models from a library and scores them on a world's task.

Departures from the paper: decoding is greedy on the composed distribution (the paper
samples, and also studies top-k filtering of the small models' ratio); every model
recomputes the whole sequence at each step (no KV cache) — the sequences here are short.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..acquire.data import encode_prompt, encode_target, training_batch
from ..evaluate.generate import _left_pad
from ..evaluate.metrics import summarize_generation
from ..skill import SkillError

if TYPE_CHECKING:
    from ..base import Base
    from ..skill import Skill
    from ..worlds.base import Example, World


def eft_logprobs(large_base: torch.Tensor, small_base: torch.Tensor,
                 small_skills: Sequence[torch.Tensor],
                 weights: Sequence[float] | None = None) -> torch.Tensor:
    """Composed next-token log-probs, ``log_softmax(ℓ_L + Σ_j w_j (ℓ_S,j − ℓ_S))``.

    Every input is ``[..., V]`` log-probs or raw logits over the same vocabulary: each is
    normalised with a log-softmax first, which only shifts it by a constant per position,
    and the final log-softmax removes any such constant, so logits and log-probs give the
    same result. ``weights`` default to 1 for every skill (EFT up-scaling). With all
    weights 0 the result is the large base's log-probs.
    """
    weights = [1.0] * len(small_skills) if weights is None else list(weights)
    if len(weights) != len(small_skills):
        raise ValueError(f"{len(small_skills)} skill log-probs but {len(weights)} weights")
    for t in (small_base, *small_skills):
        if t.shape != large_base.shape:
            raise ValueError(f"log-probs must share one shape [..., vocab]; got "
                             f"{tuple(large_base.shape)} and {tuple(t.shape)}")
    base_lp = torch.log_softmax(small_base.double(), dim=-1)
    out = torch.log_softmax(large_base.double(), dim=-1)
    for w, skill in zip(weights, small_skills, strict=True):
        out = out + w * (torch.log_softmax(skill.double(), dim=-1) - base_lp)
    return torch.log_softmax(out, dim=-1).to(large_base.dtype)


def check_shared_vocab(tok_small, tok_large, model_small=None, model_large=None,
                       names: tuple[str, str] = ("small base", "large base")) -> None:
    """Refuse (SkillError) unless both tokenizers map every token to the same id, with the
    same special tokens, and both models' output layers have the same width."""
    va, vb = tok_small.get_vocab(), tok_large.get_vocab()
    if va != vb:
        only_a = sorted(set(va) - set(vb))[:3]
        only_b = sorted(set(vb) - set(va))[:3]
        moved = sorted(t for t in set(va) & set(vb) if va[t] != vb[t])[:3]
        detail = (f"tokens only in {names[0]}: {only_a}; only in {names[1]}: {only_b}; "
                  f"same token, different id: {moved}")
        raise SkillError(f"{names[0]} ({len(va)} tokens) and {names[1]} ({len(vb)} tokens) do "
                         f"not share a vocabulary, so their log-probs cannot be added ({detail})")
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(tok_small, attr) != getattr(tok_large, attr):
            raise SkillError(f"{names[0]} and {names[1]} disagree on {attr}")
    if model_small is not None and model_large is not None:
        wa, wb = model_small.config.vocab_size, model_large.config.vocab_size
        if wa != wb:
            raise SkillError(f"{names[0]} predicts {wa} token ids but {names[1]} {wb}; "
                             "they do not share a vocabulary")


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch, as ``generate`` computes them for Llama."""
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 1)


def _logits(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask)).logits


@torch.no_grad()
def eft_greedy(large, small_base, small_skills: Sequence, weights: Sequence[float], tokenizer,
               prompts: Sequence[str], max_new_tokens: int, batch_size: int = 128,
               progress: Callable[[int], None] | None = None) -> list[list[int]]:
    """Greedy decoding of the composed distribution: at each step every model scores the
    same left-padded sequence, :func:`eft_logprobs` composes their last-position
    log-probs, and the arg-max token is appended. Each answer stops before ``</s>``."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    answers: list[list[int]] = []
    for i in range(0, len(prompts), batch_size):
        ids, mask = _left_pad([encode_prompt(tokenizer, p) for p in prompts[i: i + batch_size]], pad)
        done = torch.zeros(ids.shape[0], dtype=torch.bool)
        new: list[torch.Tensor] = []
        for _ in range(max_new_tokens):
            lp = eft_logprobs(_logits(large, ids, mask)[:, -1], _logits(small_base, ids, mask)[:, -1],
                              [_logits(m, ids, mask)[:, -1] for m in small_skills], weights)
            tok = lp.argmax(-1).masked_fill(done, pad)
            new.append(tok)
            done |= tok == eos
            ids = torch.cat([ids, tok[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(tok)[:, None]], dim=1)
            if bool(done.all()):
                break
        rows = torch.stack(new, dim=1).tolist() if new else [[] for _ in range(ids.shape[0])]
        for row in rows:
            answers.append(row[: row.index(eos)] if eos in row else row)
        if progress is not None:
            progress(len(answers))
    return answers


@torch.no_grad()
def eft_target_logprobs(large, small_base, small_skills: Sequence, weights: Sequence[float],
                        tokenizer, examples: Sequence[Example],
                        batch_size: int = 128) -> list[list[float]]:
    """Composed log p̃(target token | prompt, earlier target tokens) for ``target </s>``
    under teacher forcing (the smooth measure of docs/methods.md §11 for a composed model)."""
    out: list[list[float]] = []
    for i in range(0, len(examples), batch_size):
        batch = training_batch(tokenizer, examples[i: i + batch_size])
        ids, mask = batch["input_ids"], batch["attention_mask"]  # right-padded
        run = [m(input_ids=ids, attention_mask=mask).logits[:, :-1] for m in
               (large, small_base, *small_skills)]
        lp = eft_logprobs(run[0], run[1], run[2:], weights)
        labels = batch["labels"][:, 1:]
        picked = lp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        for row, lab in zip(picked, labels, strict=True):
            out.append(row[lab != -100].tolist())
    return out


def upscale_eval(small_base: Base, large_base: Base, skills: Sequence[Skill],
                 weights: Sequence[float], world: World, task: str, n: int = 100, seed: int = 0,
                 progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Score the large base alone, the small base, the small base with all ``skills``
    merged in, and the EFT up-scaled composition on ``n`` held-out examples of ``task``.

    Returns ``{"large_base" | "small_base" | "small_skill" | "upscaled": metrics}`` with the
    metrics of :func:`~skillbank.evaluate.metrics.summarize_generation` (exact match and the
    smooth ones). Each skill must be made on ``small_base`` (refused otherwise), and the two
    bases must share a vocabulary. ``progress(done)`` counts examples of the up-scaled run.
    """
    from ..base import check_base
    from ..evaluate.generate import generation_records

    if len(weights) != len(skills):
        raise ValueError(f"{len(skills)} skills but {len(weights)} weights")
    if not skills:
        raise ValueError("up-scaling needs at least one skill")
    for s in skills:
        check_base(s, small_base)
    tok_s, tok_l = small_base.load_tokenizer(), large_base.load_tokenizer()
    m_small, m_large = small_base.load_model(), large_base.load_model()
    check_shared_vocab(tok_s, tok_l, m_small, m_large,
                       (f"small base {small_base.name}", f"large base {large_base.name}"))
    # one model per skill (the EFT sum), and one with every skill merged (the small model's score)
    m_skills = [small_base.load_model([s]) for s in skills]
    m_all = m_skills[0] if len(skills) == 1 else small_base.load_model(list(skills))
    examples = world.examples(task, n, seed=seed, split="eval")
    budget = world.max_target_len(task) + 2

    def summarize(records):
        for rec, ex in zip(records, examples, strict=True):
            rec["pred"] = ex.target if world.grade(ex, rec["pred"]) else rec["pred"]
        return summarize_generation(records, seed=seed)

    out = {"large_base": summarize(generation_records(m_large, tok_l, examples, budget)),
           "small_base": summarize(generation_records(m_small, tok_s, examples, budget)),
           "small_skill": summarize(generation_records(m_all, tok_s, examples, budget))}
    answers = eft_greedy(m_large, m_small, m_skills, weights, tok_s,
                         [e.prompt for e in examples], budget, progress=progress)
    logps = eft_target_logprobs(m_large, m_small, m_skills, weights, tok_s, examples)
    records = [{"pred": tok_s.decode(a, skip_special_tokens=True), "target": ex.target,
                "pred_tokens": a, "target_tokens": encode_target(tok_s, ex.target)[:-1],
                "target_logprobs": lp} for a, lp, ex in zip(answers, logps, examples, strict=True)]
    out["upscaled"] = summarize(records)
    return out
