"""The ``lego`` world: LEGO variable resolution (Skill-it, Chen et al. 2023).

An instance is a path graph of ``k`` binary variables (default 5) with distinct random
single-letter names from ``a``..``z``. The root's clause sets a value (``"x = val 1"``, the
value 0 or 1 at random); every later variable is defined from its predecessor, either
``"y = val x"`` (same value) or ``"y = not x"`` (negation), at random. The ``k`` clauses are
shuffled and joined with the separator ``" , "`` (space, comma, space). Example, k=3::

    Input: c = not q , q = val 1 , z = val c . Output: z = val

with target ``"0"`` (q=1, c=0, z=0). The prompt ends with the space after ``val``.

Tasks are ``"1"``..``"k"``: task ``i`` asks for the i-th variable of the chain, i.e. the
variable ``i - 1`` hops below the root; task ``"1"`` is the root itself. Splits are decided
by the hash of the clause string (the part between ``"Input: "`` and ``" . Output:"``), so a
clause set lies in the same split for every task.

``ordered=True`` (additive; default off) leaves the clauses in chain order instead of
shuffling them, as the original LEGO generator's ``random_order=False`` does: the i-th
clause then defines the i-th variable, so resolving it needs no search for the clause
(what makes skills 2-3 learnable by a 3-layer model in a few hundred steps, measured in
``repro/skill_it.py``).
"""

from __future__ import annotations

import random
import string

from .base import Example, World, check_n, check_split, make_rng, rejection_sample

SEPARATOR = " , "
PROMPT = "Input: {clauses} . Output: {var} = val "
NAMES = string.ascii_lowercase


def make_chain(rng: random.Random, k: int) -> tuple[list[str], list[int], list[str]]:
    """A random chain: (names in chain order, their values, clauses in chain order)."""
    names = rng.sample(NAMES, k)
    values = [rng.randint(0, 1)]
    clauses = [f"{names[0]} = val {values[0]}"]
    for i in range(1, k):
        if rng.random() < 0.5:
            values.append(values[-1])
            clauses.append(f"{names[i]} = val {names[i - 1]}")
        else:
            values.append(1 - values[-1])
            clauses.append(f"{names[i]} = not {names[i - 1]}")
    return names, values, clauses


class LegoWorld(World):
    """LEGO chains of ``k`` binary variables; task ``i`` resolves the i-th variable."""

    name = "lego"

    def __init__(self, k: int = 5, ordered: bool = False):
        if not 1 <= k <= len(NAMES):
            raise ValueError(f"k must be between 1 and {len(NAMES)}, got {k}")
        self.k = k
        self.ordered = bool(ordered)

    def tasks(self) -> list[str]:
        return [str(i) for i in range(1, self.k + 1)]

    def charset(self) -> str:
        fixed = PROMPT.format(clauses="", var="") + SEPARATOR + "val not 01"
        return "".join(sorted(set(fixed + NAMES)))

    def max_target_len(self, task: str) -> int:
        self._index(task)
        return 1

    def _index(self, task: str) -> int:
        if task not in self.tasks():
            raise self.unknown_task(task)
        return int(task) - 1

    def examples(self, task: str, n: int, seed: int, split: str = "train") -> list[Example]:
        index = self._index(task)
        check_split(split)
        check_n(n)

        def draw(rng: random.Random) -> tuple[str, Example]:
            names, values, clauses = make_chain(rng, self.k)
            if not self.ordered:
                rng.shuffle(clauses)
            joined = SEPARATOR.join(clauses)
            prompt = PROMPT.format(clauses=joined, var=names[index])
            return joined, Example(task, prompt, str(values[index]))

        rng = make_rng(self.name, task, seed, split)
        return rejection_sample(rng, draw, n, split, f"lego task {task!r}")
