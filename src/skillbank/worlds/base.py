"""The world interface: families of tasks with exact graders, generated from seeds.

A world names its primitive tasks, knows every character its prompts and targets can use
(so a char-level tokenizer can be built from it), and generates examples deterministically:
the same ``(task, n, seed, split)`` always gives the same list.

Splits. Every world partitions its *input* space once, independently of the seed: an input
whose sha256 (of the UTF-8 input string) is 0 modulo 10 belongs to ``"eval"``, every other
input to ``"train"`` (see :func:`split_of`). Generated examples are rejection-sampled until
``n`` examples of the requested split are found, so train and eval inputs never overlap.
"""

from __future__ import annotations

import abc
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

SPLITS = ("train", "eval")
EVAL_MODULUS = 10

# Consecutive draws without a new unique example before a sampler decides the space is
# exhausted and starts repeating examples it already has.
PATIENCE = 2000


@dataclass(frozen=True)
class Example:
    """One example: ``prompt`` is the full model input, ``target`` the exact answer."""

    task: str
    prompt: str
    target: str


def split_of(key: str) -> str:
    """The split an input belongs to: "eval" if sha256(key) % 10 == 0, else "train"."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return "eval" if int(digest, 16) % EVAL_MODULUS == 0 else "train"


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}")


MAX_EXAMPLES = 200_000  # per call: more is a typo, and would exhaust memory generating it


def check_n(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if n > MAX_EXAMPLES:
        raise ValueError(f"n = {n:,} examples is more than a world generates at once "
                         f"({MAX_EXAMPLES:,})")


def make_rng(world: str, task: str, seed: int, split: str) -> random.Random:
    """A private RNG for one call; string seeds are hashed stably by ``random.Random``."""
    return random.Random(f"{world}|{task}|{seed}|{split}")


def choose(rng: random.Random, pool: Sequence[Example], n: int) -> list[Example]:
    """``n`` examples from ``pool``: without repeats if the pool is large enough, otherwise
    the whole pool (shuffled) followed by random repeats."""
    if n <= len(pool):
        return rng.sample(list(pool), n)
    out = list(pool)
    rng.shuffle(out)
    return out + [rng.choice(pool) for _ in range(n - len(pool))]


Draw = Callable[[random.Random], tuple[str, Example] | None]


def rejection_sample(
    rng: random.Random, draw: Draw, n: int, split: str, what: str
) -> list[Example]:
    """Draw until ``n`` unique examples of ``split`` are found.

    ``draw(rng)`` returns ``(input_key, example)`` or ``None`` when the candidate is invalid;
    ``input_key`` decides the split and uniqueness. After :data:`PATIENCE` consecutive draws
    without a new example the space is taken as exhausted and the rest are repeats.
    """
    out: list[Example] = []
    seen: set[str] = set()
    misses = 0
    while len(out) < n and misses < PATIENCE:
        got = draw(rng)
        if got is None or got[0] in seen or split_of(got[0]) != split:
            misses += 1
            continue
        seen.add(got[0])
        out.append(got[1])
        misses = 0
    if len(out) < n:
        if not out:
            raise ValueError(f"{what}: no valid inputs found in split {split!r}")
        out = choose(rng, out, n)
    return out


class World(abc.ABC):
    """A family of tasks with exact graders."""

    name: str = ""
    kind: str = "generation"  # "generation" (prompt → target text) or "classification"

    def identity(self) -> dict:
        """What, besides the world's name and arguments, decides its examples (e.g. a data
        file's sha256); recipes record it so a changed data set gives a new recipe."""
        return {}

    @abc.abstractmethod
    def tasks(self) -> list[str]:
        """The primitive task names."""

    @abc.abstractmethod
    def charset(self) -> str:
        """Every character that can appear in any prompt or target, sorted and unique."""

    @abc.abstractmethod
    def examples(self, task: str, n: int, seed: int, split: str = "train") -> list[Example]:
        """``n`` examples of ``task`` from ``split``, a pure function of the arguments."""

    @abc.abstractmethod
    def max_target_len(self, task: str) -> int:
        """An upper bound on ``len(target)`` for ``task`` (a generation budget)."""

    def grade(self, example: Example, prediction: str) -> bool:
        """Exact match after stripping surrounding whitespace from the prediction."""
        return prediction.strip() == example.target

    def unknown_task(self, task: str, extra: str = "") -> ValueError:
        known = ", ".join(self.tasks())
        return ValueError(
            f"unknown task {task!r} for world {self.name!r}; known tasks: {known}{extra}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
