"""The ``arith`` world: exact integer addition, subtraction and multiplication.

Task ``"<op><d>"`` with ``op`` in ``add``/``sub``/``mul`` and ``d`` in 1..6 uses two operands
of exactly ``d`` digits (leading digit nonzero, except that ``d = 1`` allows 0..9). Prompts
are ``"{a}+{b}="``, ``"{a}-{b}="`` and ``"{a}*{b}="``; the target is the exact decimal
result, negative differences included (``"12-34="`` -> ``"-22"``). :meth:`ArithWorld.tasks`
lists add1..add4, sub1..sub4 and mul1..mul3, but every ``<op><d>`` above is accepted.

Splits are decided by the hash of the prompt. For ``d <= 2`` the whole operand space is
small, so it is enumerated and sampled without replacement (repeating only when ``n`` is
larger than the split); larger ``d`` are rejection-sampled.
"""

from __future__ import annotations

import operator
import random
import re
from collections.abc import Callable

from .base import Example, World, check_n, check_split, choose, make_rng, rejection_sample, split_of

OPS: dict[str, tuple[str, Callable[[int, int], int]]] = {
    "add": ("+", operator.add),
    "sub": ("-", operator.sub),
    "mul": ("*", operator.mul),
}
MAX_DIGITS = 6
ENUMERATE_UP_TO = 2
DEFAULT_TASKS = (
    [f"add{d}" for d in range(1, 5)]
    + [f"sub{d}" for d in range(1, 5)]
    + [f"mul{d}" for d in range(1, 4)]
)
_TASK = re.compile(rf"^(add|sub|mul)([1-{MAX_DIGITS}])$")


def parse_task(task: str) -> tuple[str, int]:
    """``"add3"`` -> ``("add", 3)``; raises ValueError otherwise."""
    m = _TASK.match(task) if isinstance(task, str) else None
    if m is None:
        raise ValueError(
            f"unknown task {task!r} for world 'arith'; known tasks: {', '.join(DEFAULT_TASKS)} "
            f"(any <op><d> with op in add/sub/mul and d in 1..{MAX_DIGITS})"
        )
    return m.group(1), int(m.group(2))


def operand_range(d: int) -> range:
    """All ``d``-digit operands: 0..9 for d=1, else 10**(d-1)..10**d-1."""
    return range(0 if d == 1 else 10 ** (d - 1), 10**d)


def make_example(task: str, a: int, b: int) -> Example:
    symbol, fn = OPS[parse_task(task)[0]]
    return Example(task, f"{a}{symbol}{b}=", str(fn(a, b)))


class ArithWorld(World):
    """Exact integer arithmetic on fixed-width operands (see the module docstring)."""

    name = "arith"

    def __init__(self) -> None:
        self._pools: dict[tuple[str, str], list[Example]] = {}

    def tasks(self) -> list[str]:
        return list(DEFAULT_TASKS)

    def charset(self) -> str:
        return "".join(sorted(set("0123456789=" + "".join(s for s, _ in OPS.values()))))

    def max_target_len(self, task: str) -> int:
        op, d = parse_task(task)
        return 2 * d if op == "mul" else d + 1

    def examples(self, task: str, n: int, seed: int, split: str = "train") -> list[Example]:
        _, d = parse_task(task)
        check_split(split)
        check_n(n)
        rng = make_rng(self.name, task, seed, split)
        operands = operand_range(d)
        if d <= ENUMERATE_UP_TO:
            if (task, split) not in self._pools:
                pool = [make_example(task, a, b) for a in operands for b in operands]
                self._pools[task, split] = [ex for ex in pool if split_of(ex.prompt) == split]
            return choose(rng, self._pools[task, split], n)

        def draw(rng: random.Random) -> tuple[str, Example]:
            ex = make_example(task, rng.choice(operands), rng.choice(operands))
            return ex.prompt, ex

        return rejection_sample(rng, draw, n, split, f"arith task {task!r}")
