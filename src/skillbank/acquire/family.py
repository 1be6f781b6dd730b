"""A family of embedded bases: one recipe, several sizes, for scaling studies.

Every member is an embedded base (``acquire.pretrain``) trained on the same world and
tasks with the same loop and batch, and differs only in its shape, ``WIDTHxDEPTH`` (heads
of 8 dimensions, intermediate 3 × width; ``pretrain.shape_of``), and in its steps, set by
one token budget rule: steps = ``base.steps`` × (N / N_smallest)^``token_exponent`` for a
member of N parameters. The default exponent 0 is a fixed data budget: every size sees the
same tokens (100 steps of 64 examples), so size alone decides what a member can do, and
the whole family stays short of its tasks — the regime where PassUntil and a task law are
needed. 1 is Chinchilla's tokens ∝ parameters; with 0.5 and 150 steps the two larger
members already solve copy and rev (measured: greedy exact match 0.995–1.0), leaving
nothing to predict (docs/methods.md §13). A member is stored
as the base ``NAME-WIDTHxDEPTH`` and re-used by its recipe like any base, so a family can
grow by a size without retraining the others. Sizes must increase in parameters: a law
fitted across them reads model size off the parameter count (embeddings included).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .pretrain import BaseRecipe, shape_of

DEFAULT_SIZES = ("16x2", "24x2", "32x2", "48x3", "64x3", "96x4")


@dataclass(frozen=True)
class FamilyRecipe:
    """What every member shares, and the sizes. ``member(size)`` is one base's recipe."""

    sizes: tuple[str, ...] = DEFAULT_SIZES
    base: BaseRecipe = field(default_factory=lambda: BaseRecipe(steps=100))
    token_exponent: float = 0.0

    def member(self, size: str) -> BaseRecipe:
        """The base recipe of one size, its steps set by the token budget rule."""
        shaped = replace(self.base, tasks=list(self.base.tasks), size=size)
        smallest = parameters(replace(self.base, size=self.sizes[0]))
        steps = self.base.steps * (parameters(shaped) / smallest) ** self.token_exponent
        return replace(shaped, steps=max(1, round(steps)))

    def members(self, name: str) -> list[tuple[str, BaseRecipe]]:
        return [(member_name(name, s), self.member(s)) for s in self.sizes]


def member_name(family: str, size: str) -> str:
    return f"{family}-{size}"


def parameters(recipe: BaseRecipe) -> int:
    """Parameters of the base ``recipe`` makes, counted on the meta device (no weights)."""
    import torch
    from transformers import LlamaForCausalLM

    from ..worlds import get_world
    from .data import char_tokenizer
    from .pretrain import tiny_config

    tokenizer = char_tokenizer(get_world(recipe.world).charset())
    with torch.device("meta"):
        model = LlamaForCausalLM(tiny_config(len(tokenizer), recipe.size, tokenizer))
    return sum(p.numel() for p in model.parameters())


def check_family(recipe: FamilyRecipe) -> list[int]:
    """Each member's parameter count; ValueError unless there are at least two sizes, each
    a valid shape, strictly increasing in parameters."""
    sizes = list(recipe.sizes)
    if len(sizes) < 2:
        raise ValueError(f"a family needs at least two sizes, got {len(sizes)}")
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"repeated size in {','.join(sizes)}")
    for s in sizes:
        shape_of(s)
    if not (0.0 <= recipe.token_exponent <= 1.0):
        raise ValueError(f"the token exponent must lie in [0, 1], got {recipe.token_exponent}")
    counts = [parameters(replace(recipe.base, size=s)) for s in sizes]
    for (a, na), (b, nb) in zip(zip(sizes, counts, strict=True), zip(sizes[1:], counts[1:], strict=True),
                                strict=False):
        if nb <= na:
            raise ValueError(f"sizes must increase: {b} ({nb:,} parameters) is not larger than "
                             f"{a} ({na:,}); list them smallest first")
    return counts


def ensure_family(lib, name: str, recipe: FamilyRecipe, executor, progress=None) -> list[dict]:
    """Find or make every member (one ``pretrain`` job each on ``executor``); per member,
    smallest first: ``{"size", "base", "fingerprint", "parameters", "trained"}``."""
    from ..run import ensure
    from .jobs import pretrain_job

    counts = check_family(recipe)
    jobs = [pretrain_job(n, r) for n, r in recipe.members(name)]
    done = ensure(executor, lib, jobs, progress=progress, what="base training")
    return [{"size": s, "base": r.result["base"], "fingerprint": r.result["fingerprint"],
             "parameters": n, "trained": r.status == "done" and bool(r.result.get("new"))}
            for s, n, r in zip(recipe.sizes, counts, done, strict=True)]
