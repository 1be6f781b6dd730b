"""The ``strings`` world: small deterministic string transformations.

Prompt ``"{task}:{s}="``, target the transformed string, e.g. ``"rev:abcde="`` -> ``"edcba"``.
Inputs are strings of ``min_len``..``max_len`` letters drawn uniformly from the alphabet
(default ``"abcdefgh"``, lengths 4..8). Primitives (see :data:`PRIMITIVES`):

- ``copy``  identity                          ``abcde`` -> ``abcde``
- ``rev``   reverse                           ``abcde`` -> ``edcba``
- ``sort``  sort ascending (alphabet order)   ``dbca``  -> ``abcd``
- ``rot``   rotate left by one                ``abcd``  -> ``bcda``
- ``shift`` each letter to the next one in the alphabet, wrapping (``h`` -> ``a``)
- ``dedup`` drop repeated letters, keeping first occurrences in order  ``abcab`` -> ``abc``
- ``drop``  drop the vowels (``aeiou``; with the default alphabet that is ``a`` and ``e``)
- ``swap``  swap adjacent pairs               ``abcde`` -> ``badce``
- ``dup``   double each letter                ``abc``   -> ``aabbcc``

A chain ``"rev+sort"`` applies ``rev`` then ``sort`` (left to right); any chain of
primitives is a task, and its prompt uses the chain name: ``"rev+sort:abc="``.

Input rejection (so a model that merely copies its input scores zero): for every task,
inputs on which the task's output equals the input are rejected. For ``dedup`` this means
the input has a repeated letter, for ``drop`` that it has a vowel. Tasks that are the
identity on every input (``copy``, or chains such as ``rev+rev``) are exempt. Inputs whose
target would be empty (e.g. ``drop`` on ``"aeae"``) are rejected too.

Splits are decided by the hash of the input string ``s`` (not the prompt), so an input lies
in the same split for every task and chain.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .base import Example, World, check_n, check_split, make_rng, rejection_sample

DEFAULT_ALPHABET = "abcdefgh"
VOWELS = "aeiou"
SYNTAX = ":=+"

Primitive = Callable[[str, str], str]


def copy(s: str, alphabet: str = DEFAULT_ALPHABET) -> str:
    """Identity."""
    return s


def rev(s: str, alphabet: str = DEFAULT_ALPHABET) -> str:
    """Reverse."""
    return s[::-1]


def sort(s: str, alphabet: str = DEFAULT_ALPHABET) -> str:
    """Sort ascending in alphabet order."""
    return "".join(sorted(s, key=alphabet.index))


def rot(s: str, alphabet: str = DEFAULT_ALPHABET) -> str:
    """Rotate left by one: the first letter moves to the end."""
    return s[1:] + s[:1]


def shift(s: str, alphabet: str = DEFAULT_ALPHABET) -> str:
    """Replace each letter by the next one in the alphabet, the last wrapping to the first."""
    return "".join(alphabet[(alphabet.index(c) + 1) % len(alphabet)] for c in s)


def dedup(s: str, alphabet: str = DEFAULT_ALPHABET) -> str:
    """Remove repeated letters, keeping each letter's first occurrence in order."""
    return "".join(dict.fromkeys(s))


def drop(s: str, alphabet: str = DEFAULT_ALPHABET) -> str:
    """Remove the vowels."""
    return "".join(c for c in s if c not in VOWELS)


def swap(s: str, alphabet: str = DEFAULT_ALPHABET) -> str:
    """Swap adjacent pairs (positions 0<->1, 2<->3, ...); an odd last letter stays."""
    chars = list(s)
    for i in range(0, len(chars) - 1, 2):
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


def dup(s: str, alphabet: str = DEFAULT_ALPHABET) -> str:
    """Double each letter."""
    return "".join(c + c for c in s)


PRIMITIVES: dict[str, Primitive] = {
    "copy": copy,
    "rev": rev,
    "sort": sort,
    "rot": rot,
    "shift": shift,
    "dedup": dedup,
    "drop": drop,
    "swap": swap,
    "dup": dup,
}


def parse_chain(task: str) -> list[str]:
    """``"rev+sort"`` -> ``["rev", "sort"]``; raises ValueError on an unknown primitive."""
    parts = task.split("+") if isinstance(task, str) else [""]
    if not all(p in PRIMITIVES for p in parts):
        known = ", ".join(PRIMITIVES)
        raise ValueError(
            f"unknown task {task!r} for world 'strings'; known tasks: {known} "
            "(or chains of them joined with '+', e.g. 'rev+sort')"
        )
    return parts


def input_of(prompt: str) -> str:
    """The input ``s`` of a strings prompt ``"task:s="``."""
    return prompt.split(":", 1)[1][:-1]


def apply_chain(task: str, s: str, alphabet: str = DEFAULT_ALPHABET) -> str:
    """Apply the primitives of ``task`` to ``s`` from left to right."""
    for name in parse_chain(task):
        s = PRIMITIVES[name](s, alphabet)
    return s


class StringsWorld(World):
    """String transformations over a small alphabet (see the module docstring)."""

    name = "strings"

    def __init__(self, alphabet: str = DEFAULT_ALPHABET, min_len: int = 4, max_len: int = 8):
        if len(alphabet) < 2 or len(set(alphabet)) != len(alphabet):
            raise ValueError(f"alphabet must have at least 2 distinct letters, got {alphabet!r}")
        if any(c in SYNTAX or c.isspace() for c in alphabet):
            raise ValueError(
                f"alphabet {alphabet!r} may not contain whitespace or any of {SYNTAX!r}"
            )
        if not 1 <= min_len <= max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
        self.alphabet = alphabet
        self.min_len = min_len
        self.max_len = max_len
        self._identity: dict[str, bool] = {}

    def tasks(self) -> list[str]:
        return list(PRIMITIVES)

    def charset(self) -> str:
        return "".join(sorted(set(self.alphabet + "".join(PRIMITIVES) + SYNTAX)))

    def apply(self, task: str, s: str) -> str:
        """The target of ``task`` on input ``s``."""
        return apply_chain(task, s, self.alphabet)

    def prompt_for(self, task: str, s: str) -> str:
        """The prompt that asks ``task`` of input ``s``: ``"task:s="``."""
        return f"{task}:{s}="

    def input_of(self, prompt: str) -> str:
        """The input ``s`` of a prompt ``"task:s="``."""
        return input_of(prompt)

    def max_target_len(self, task: str) -> int:
        return self.max_len * 2 ** parse_chain(task).count("dup")

    def is_identity(self, task: str) -> bool:
        """Whether ``task`` leaves every input unchanged (checked on a fixed probe set)."""
        if task not in self._identity:
            rng = random.Random("strings-identity-probe")
            probes = [self._random_input(rng) for _ in range(256)]
            self._identity[task] = all(self.apply(task, p) == p for p in probes)
        return self._identity[task]

    def _random_input(self, rng: random.Random) -> str:
        length = rng.randint(self.min_len, self.max_len)
        return "".join(rng.choice(self.alphabet) for _ in range(length))

    def examples(self, task: str, n: int, seed: int, split: str = "train") -> list[Example]:
        parse_chain(task)
        check_split(split)
        check_n(n)
        allow_identity = self.is_identity(task)

        def draw(rng: random.Random) -> tuple[str, Example] | None:
            s = self._random_input(rng)
            target = self.apply(task, s)
            if not target or (target == s and not allow_identity):
                return None
            return s, Example(task, self.prompt_for(task, s), target)

        rng = make_rng(self.name, task, seed, split)
        return rejection_sample(rng, draw, n, split, f"strings task {task!r}")
