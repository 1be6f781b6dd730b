"""Skill-Mix for exact worlds: how well does a model do ordered chains of k skills?

Skill-Mix (Yu et al. 2023; docs/methods.md §8) draws k of N skills and asks for one answer that
uses all k; it reports the *Ratio of Full Marks* (every point earned) and the *Skill
Fraction* (share of the k skills shown). In the ``strings`` world a k-chain
``"a+b+c"`` applies primitives left to right and has one exact answer, so both measures
become exact, with no grader model:

- Sampling. For each k, the ordered k-chains of *distinct* primitives (k-permutations of
  the N primitives, optionally filtered by ``keep``) are shuffled with a seeded RNG and
  taken in turn (cycling if fewer than ``n``); item ``i`` gets one held-out (``eval``
  split) input of its chain. So a chain is as likely as any other, and ``n`` ≥ the number
  of chains covers every chain.
- Ratio of Full Marks (RFM): the share of items whose final answer equals the whole
  chain's target (exact match).
- Skill Fraction (SF), graded on the final answer ``y`` only, so one definition serves a
  model answering the whole chain in one go and skills chained call by call:
  ``SF(y) = max{|S| / k : S ⊆ {1..k}, apply(p_S, x) == y}``, where ``p_S`` is the
  sub-chain of the steps in ``S`` *in their order* (``S = ∅`` gives the input ``x``).
  In words: the most steps whose in-order application, skipping the others, explains the
  answer exactly. A right answer scores 1, an answer that stopped after step j or that
  left out step j scores (k−1)/k, an answer that equals the input or that no sub-chain
  explains scores 0. SF ≥ RFM always. Where a step happens to be the identity on an input
  (``dedup`` of a string without repeats) it can be skipped without changing the answer,
  so SF takes the generous reading. This departs from Skill-Mix, which has a grader judge
  each skill separately; here a step only counts if the answer is exactly what it gives.
- Call accuracy (call by call only): the share of calls whose output equals that call's
  primitive applied to the input it was actually given — each skill judged on its own
  step, whatever earlier calls did. Calls whose input has a character outside the world's
  alphabet (an earlier call's garbage, on which e.g. ``shift`` is undefined) are left out.
- A smooth measure (docs/methods.md §11): the mean character edit distance of the final answer
  to the chain's target (with its bootstrap standard error), next to the exact RFM.

Pure functions (chain sampling, :func:`skill_fraction`, :func:`summarize_chains`) sit apart
from the runners (:class:`OneShot`, :class:`CallByCall`) that call models.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..evaluate.generate import greedy
from ..evaluate.metrics import bootstrap_stderr, token_edit_distance
from ..worlds.base import Example, World
from ..worlds.strings import input_of as strings_input
from .chain import check_chain_world

DEFAULT_PRIMITIVES = ("rot", "shift", "dedup", "drop", "swap", "dup")

Chain = tuple[str, ...]
Pair = tuple[str, str]


def all_chains(primitives: Sequence[str], k: int) -> list[Chain]:
    """Every ordered chain of ``k`` distinct primitives (k-permutations), in a fixed order."""
    if k < 1 or k > len(primitives):
        raise ValueError(f"k must be in 1..{len(primitives)} for {len(primitives)} primitives, got {k}")
    return list(itertools.permutations(primitives, k))


def pairs(chain: Sequence[str]) -> list[Pair]:
    """The adjacent ordered pairs of a chain: ``(a, b, c)`` -> ``[(a, b), (b, c)]``."""
    return list(zip(chain[:-1], chain[1:], strict=False))


def touches(chain: Sequence[str], held: set[Pair] | Sequence[Pair]) -> bool:
    """Whether the chain contains a held-out pair as two adjacent steps."""
    held = set(map(tuple, held))
    return any(p in held for p in pairs(chain))


def hold_out_pairs(primitives: Sequence[str], fraction: float, seed: int) -> list[Pair]:
    """A seeded ``fraction`` (rounded up, at least one) of the ordered pairs, held out of
    training to test composition of pairs never seen together."""
    every = all_chains(primitives, 2)
    if not 0 < fraction < 1:
        raise ValueError(f"held-out fraction must be in (0, 1), got {fraction}")
    m = max(1, math.ceil(fraction * len(every) - 1e-9))
    return sorted(random.Random(f"skillmix-holdout|{seed}").sample(every, m))


def sample_chains(primitives: Sequence[str], k: int, n: int, seed: int,
                  keep: Callable[[Chain], bool] | None = None) -> list[Chain]:
    """``n`` chains of length ``k``: the k-permutations kept by ``keep``, shuffled by
    ``seed`` and taken in turn (cycling). Empty if ``keep`` rejects every chain."""
    chains = [c for c in all_chains(primitives, k) if keep is None or keep(c)]
    if not chains:
        return []
    random.Random(f"skillmix|{k}|{seed}").shuffle(chains)
    return [chains[i % len(chains)] for i in range(n)]


def chain_items(world: World, chains: Sequence[Chain], seed: int) -> list[Example]:
    """One held-out example per chain (item ``i`` uses example seed ``(seed, i)``)."""
    return [world.examples("+".join(c), 1, seed=seed * 100_003 + i, split="eval")[0]
            for i, c in enumerate(chains)]


def skill_fraction(chain: Sequence[str], x: str, y: str, apply: Callable[[str, str], str]) -> float:
    """Largest ``|S|/k`` over in-order sub-chains ``S`` of ``chain`` with ``apply(S, x) == y``
    (``apply(task, s)`` runs a '+' chain; the empty sub-chain leaves ``x``). 0 if none."""
    k = len(chain)
    y = y.strip()
    for size in range(k, -1, -1):
        for idx in itertools.combinations(range(k), size):
            out = apply("+".join(chain[i] for i in idx), x) if idx else x
            if out == y:
                return size / k
    return 0.0


@dataclass
class Answer:
    """A final answer, and for call-by-call chaining each call's (primitive, input, output)."""

    pred: str
    calls: list[tuple[str, str, str]] = field(default_factory=list)


def input_of(example: Example) -> str:
    """The input string of a strings-world prompt ``"task:input="``."""
    return strings_input(example.prompt)


def summarize_chains(chains: Sequence[Chain], examples: Sequence[Example], answers: Sequence[Answer],
                     apply: Callable[[str, str], str], seed: int = 0) -> dict:
    """RFM, SF, edit distance (each with a bootstrap stderr) and, if any calls were
    recorded, call accuracy, over one set of items."""
    if not examples:
        raise ValueError("no chain items to summarize")
    full, frac, edit, calls_ok = [], [], [], []
    for chain, ex, ans in zip(chains, examples, answers, strict=True):
        pred = ans.pred.strip()
        full.append(1.0 if pred == ex.target else 0.0)
        frac.append(skill_fraction(chain, input_of(ex), pred, apply))
        edit.append(float(token_edit_distance(list(pred), list(ex.target))))
        for p, inp, out in ans.calls:
            try:
                calls_ok.append(1.0 if out.strip() == apply(p, inp) else 0.0)
            except ValueError:  # an earlier call left letters the primitive is undefined on
                continue
    out = {"n": len(examples)}
    for name, vals in (("ratio_of_full_marks", full), ("skill_fraction", frac), ("edit_distance", edit)):
        out[name] = sum(vals) / len(vals)
        out[f"{name}_stderr"] = bootstrap_stderr(vals, seed=seed)
    if calls_ok:
        out["call_accuracy"] = sum(calls_ok) / len(calls_ok)
    return out


class OneShot:
    """One model answers the whole chain from its prompt ``"a+b+c:x="``."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def __call__(self, world: World, chains: Sequence[Chain], examples: Sequence[Example]) -> list[Answer]:
        budget = max(world.max_target_len(e.task) for e in examples) + 2
        answers = greedy(self.model, self.tokenizer, [e.prompt for e in examples], budget)
        return [Answer(self.tokenizer.decode(a, skip_special_tokens=True)) for a in answers]


class CallByCall:
    """Skills chained one call at a time: step j's skill gets ``world.prompt_for(p_j,
    y_{j-1})`` (``"p_j:y_{j-1}="`` in strings) where ``y_{j-1}`` is the previous call's
    output (``y_0`` the input); the last output is the answer. ``models`` maps each
    primitive to its model (base + that skill). As ``chain.ChainRunner`` does for one fixed
    chain, here for a batch of different chains (each step groups the inputs by skill)."""

    def __init__(self, models: dict, tokenizer):
        self.models, self.tokenizer = models, tokenizer

    def __call__(self, world: World, chains: Sequence[Chain], examples: Sequence[Example]) -> list[Answer]:
        missing = sorted({p for c in chains for p in c} - set(self.models))
        if missing:
            raise ValueError(f"no skill for primitive(s) {', '.join(missing)} in call-by-call chaining")
        current = [world.input_of(e.prompt) for e in examples]
        answers = [Answer("") for _ in examples]
        for j in range(max(map(len, chains))):
            todo: dict[str, list[int]] = {}
            for i, c in enumerate(chains):
                if j < len(c):
                    todo.setdefault(c[j], []).append(i)
            for prim, idx in todo.items():
                # budget: the longest chain prefix's target bound (dup doubles lengths)
                budget = max(world.max_target_len("+".join(chains[i][: j + 1])) for i in idx) + 2
                outs = greedy(self.models[prim], self.tokenizer,
                              [world.prompt_for(prim, current[i]) for i in idx], budget)
                for i, o in zip(idx, outs, strict=True):
                    text = self.tokenizer.decode(o, skip_special_tokens=True).strip()
                    answers[i].calls.append((prim, current[i], text))
                    current[i] = text
        for a, y in zip(answers, current, strict=True):
            a.pred = y
        return answers


Runner = Callable[[World, Sequence[Chain], Sequence[Example]], list[Answer]]


def skill_mix(runner: Runner, world: World, primitives: Sequence[str], ks: Sequence[int], n: int,
              seed: int = 0, keep: Callable[[Chain], bool] | None = None,
              progress: Callable[[int], None] | None = None) -> dict[str, dict | None]:
    """``{str(k): summary}`` for each k (``None`` where ``keep`` leaves no chain of length k).

    The world must run '+' chains (``world.apply(task, s)``, as ``strings`` does)."""
    check_chain_world(world)
    unknown = [p for p in primitives if p not in world.tasks()]
    if unknown:
        raise ValueError(f"unknown primitive(s) {', '.join(unknown)} for world {world.name!r}; "
                         f"known: {', '.join(world.tasks())}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    out: dict[str, dict | None] = {}
    for done, k in enumerate(ks, start=1):
        chains = sample_chains(primitives, k, n, seed, keep)
        if not chains:
            out[str(k)] = None
        else:
            examples = chain_items(world, chains, seed)
            answers = runner(world, chains, examples)
            out[str(k)] = summarize_chains(chains, examples, answers, world.apply, seed)
        if progress is not None:
            progress(done)
    return out
