"""What a data-aware merge knows of each member: statistics of the member's own behaviour on
its task's unlabeled inputs (docs/methods.md §2).

- ``gram``:   G = Xᵀ X of every adapted linear layer's inputs (RegMean), summed over the
              tokens of the inputs and the member's own answers;
- ``fisher``: the diagonal empirical Fisher of every adapted weight, the mean over examples
              of (∂ log p(ŷ | x) / ∂W)² where ŷ is the member's own greedy answer (Fisher
              merging's "the model's predictions", with greedy decoding standing in for
              sampling from the model: one answer per input, deterministic).

Statistics are kept with the member (``Library.attach``, key ``stats/KIND/N/SEED``), so a
later merge of it needs no data and no forward passes: ``stored_member_stats``.

No target is ever read: the inputs are a world's train-split prompts and the answers are
the member's. Both are computed with the member applied to the base (its fine-tuned model,
as in both papers) on ``n`` inputs drawn with ``seed``.

A classifier (an encoder base) is the papers' own setting: the Gram matrices are over
every non-pad token of its texts, and the Fisher is that of log p(ŷ | x) with ŷ the
member's own predicted class (its head on the pooled encoding).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..base import Base
from ..skill import Skill, SkillError
from ..worlds import get_world
from ..worlds.base import Example

KINDS = ("gram", "fisher")


def own_answers(model, tokenizer, examples: Sequence[Example], max_new_tokens: int) -> list[Example]:
    """``examples`` with each target replaced by the model's own greedy answer."""
    from ..evaluate.generate import greedy

    answers = greedy(model, tokenizer, [ex.prompt for ex in examples], max_new_tokens)
    return [Example(ex.task, ex.prompt, tokenizer.decode(a)) for ex, a in zip(examples, answers, strict=True)]


def _modules(model: torch.nn.Module, params: Sequence[str]) -> dict[str, torch.nn.Linear]:
    wanted = {p.removesuffix(".weight") for p in params}
    return {name: m for name, m in model.named_modules()
            if name in wanted and isinstance(m, torch.nn.Linear)}


def _lm_batches(tokenizer, examples: Sequence[Example], batch_size: int = 32):
    from ..acquire.data import training_batch

    for i in range(0, len(examples), batch_size):
        yield training_batch(tokenizer, examples[i:i + batch_size])


def _text_batches(tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 32):
    from ..acquire.classify import encode_texts

    for i in range(0, len(texts), batch_size):
        yield encode_texts(tokenizer, texts[i:i + batch_size], max_length)


@torch.no_grad()
def gram_matrices(model, batches, params: Sequence[str]) -> dict[str, torch.Tensor]:
    """``{param: Xᵀ X}`` of each linear layer's inputs over every non-pad token of
    ``batches`` (dicts with ``input_ids`` and ``attention_mask``)."""
    mods = _modules(model, params)
    grams = {f"{n}.weight": torch.zeros(m.in_features, m.in_features, dtype=torch.float64)
             for n, m in mods.items()}
    mask_now: dict[str, torch.Tensor] = {}

    def hook(name):
        def accumulate(_module, inputs):
            x = inputs[0].reshape(-1, inputs[0].shape[-1])[mask_now["m"]].double()
            grams[f"{name}.weight"] += x.T @ x
        return accumulate

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in mods.items()]
    try:
        for batch in batches:
            mask_now["m"] = batch["attention_mask"].reshape(-1).bool()
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        for h in handles:
            h.remove()
    return {k: v.float() for k, v in grams.items()}


def fisher_diagonal(model, losses, params: Sequence[str]) -> dict[str, torch.Tensor]:
    """``{param: mean over examples of (∂ log p(ŷ | x) / ∂W)²}``, one example at a time
    (the Fisher squares per-example gradients, not a batch's). ``losses`` yields, per
    example, a function giving −log p(ŷ | x) (a scalar) once the weights require grad."""
    named = dict(model.named_parameters())
    missing = [p for p in params if p not in named]
    if missing:
        raise SkillError(f"the base has no parameter {missing[0]}")
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        named[p].requires_grad_(True)
    fisher = {p: torch.zeros_like(named[p], dtype=torch.float64) for p in params}
    count = 0
    try:
        for loss_of in losses:
            loss = loss_of()
            count += 1
            model.zero_grad(set_to_none=True)
            loss.backward()
            for p in params:
                fisher[p] += named[p].grad.double() ** 2
    finally:
        for p in params:
            named[p].requires_grad_(False)
            named[p].grad = None
    return {p: (f / max(1, count)).float() for p, f in fisher.items()}


def _lm_losses(model, tokenizer, examples: Sequence[Example]):
    from ..acquire.data import training_batch

    for ex in examples:
        batch = training_batch(tokenizer, [ex])
        yield lambda b=batch: model(**b).loss * int((b["labels"] != -100).sum())  # −Σ log p


def _classifier_losses(clf, tokenizer, texts: Sequence[str], max_length: int):
    from ..acquire.classify import encode_texts

    for text in texts:
        enc = encode_texts(tokenizer, [text], max_length)

        def loss(e=enc):
            logp = torch.log_softmax(clf(**e).logits.float(), dim=-1)[0]
            return -logp[int(logp.argmax())]   # the member's own prediction ŷ
        yield loss


def _classifier_stats(base: Base, member: Skill, kind: str, params: Sequence[str],
                      texts: Sequence[str]) -> dict[str, torch.Tensor]:
    from ..acquire.classify import EncoderClassifier
    from ..evaluate.classify import head_layer

    linear, _ = head_layer(member, member.recipe.get("task"))   # NotApplicable without one
    max_length = int(member.config.get("max_length") or 512)
    model = base.load_model([member]).eval()
    tokenizer = base.load_tokenizer()
    if kind == "gram":
        return gram_matrices(model, _text_batches(tokenizer, texts, max_length), params)
    clf = EncoderClassifier(model, linear).eval()
    return fisher_diagonal(model, _classifier_losses(clf, tokenizer, texts, max_length), params)


def member_stats(base: Base, member: Skill, kind: str, params: Sequence[str], n: int,
                 seed: int) -> dict[str, torch.Tensor]:
    """``kind`` statistics of ``member`` for ``params`` on ``n`` of its task's train inputs."""
    if kind not in KINDS:
        raise SkillError(f"unknown statistics {kind!r}; expected one of {', '.join(KINDS)}")
    world_name, task = member.recipe.get("world"), member.recipe.get("task")
    if not world_name or not task:
        raise SkillError(f"{member.ref} does not record its world and task (a merge, an import?): "
                         "a data-aware merge needs each member's task inputs")
    world = get_world(world_name, **member.recipe.get("world_args", {}))
    inputs = world.examples(task, n, seed=seed, split="train")
    if base.kind == "encoder":
        return _classifier_stats(base, member, kind, params, [ex.prompt for ex in inputs])
    model = base.load_model([member])
    tokenizer = base.load_tokenizer()
    examples = own_answers(model, tokenizer, inputs, world.max_target_len(task) + 1)
    if kind == "gram":
        return gram_matrices(model, _lm_batches(tokenizer, examples), params)
    return fisher_diagonal(model, _lm_losses(model, tokenizer, examples), params)


def stats_key(kind: str, n: int, seed: int) -> str:
    return f"stats/{kind}/{n}/{seed}"


def stored_member_stats(lib, base: Base, member: Skill, kind: str, params: Sequence[str], n: int,
                        seed: int) -> dict[str, torch.Tensor]:
    """:func:`member_stats`, read from the library when kept with ``member`` (for every
    parameter asked), else computed and kept (unless the library is read-only)."""
    key = stats_key(kind, n, seed)
    found = lib.attachment(member.ref, key) if member.version is not None else None
    if found is not None and set(params) <= set(found[0]):
        return {p: found[0][p] for p in params}
    stats = member_stats(base, member, kind, params, n, seed)
    if member.version is not None and not lib.readonly:
        lib.attach(member.ref, key, stats, {"kind": kind, "examples": n, "seed": seed,
                                            "world": member.recipe.get("world"),
                                            "task": member.recipe.get("task")})
    return stats
