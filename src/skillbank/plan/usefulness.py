"""Usefulness: a small model of which skill helps next, from (current, target) strings.

SayCan's usefulness is a language model's probability that a skill is the right next step
for the instruction (docs/methods.md §15). Here the instruction is an example's target and
the state is what the plan has made so far, so usefulness is a classifier
``p(next step | current, target)`` trained on chains the world itself generates — its own
task space, the proposer's in ``practice`` — never on the examples being planned for:
for random chains of distinct steps up to ``depth`` long, the pair (input, the chain's
output) is labelled with the chain's first step.

Features (:func:`features`) are generic relations between two strings, not the world's
primitives: lengths and their ratio, character counts and their difference, adjacent
repeats, and for each offset the share of positions where the target repeats the current
string shifted, reversed, cycled or moved along the alphabet. A scikit-learn multilayer
perceptron on standardised features is the model.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import numpy as np

OFFSETS = (-3, -2, -1, 1, 2, 3)


def _share(hits: int, n: int) -> float:
    return hits / n if n else 0.0


def features(cur: str, target: str, alphabet: str) -> np.ndarray:
    """A fixed-length vector describing how ``target`` relates to ``cur``."""
    index = {ch: i for i, ch in enumerate(alphabet)}
    a, m = len(alphabet), len(target)
    hc = np.array([cur.count(ch) for ch in alphabet], dtype=np.float64)
    ht = np.array([target.count(ch) for ch in alphabet], dtype=np.float64)
    lc, lt = len(cur), m
    rel = [
        lc, lt, lt - lc, lt / lc if lc else 0.0,
        len(set(cur)), len(set(target)),
        sum(x == y for x, y in itertools.pairwise(cur)), sum(x == y for x, y in itertools.pairwise(target)),
        float(cur == target), float(sorted(cur) == sorted(target)),
        _share(sum(i < lc and target[i] == cur[i] for i in range(m)), m),
        _share(sum(i < lc and target[i] == cur[lc - 1 - i] for i in range(m)), m),
        _share(sum(lc > 0 and target[i] == cur[i % lc] for i in range(m)), m),
    ]
    for d in OFFSETS:  # target[i] == cur[i + d]: the string moved along
        rel.append(_share(sum(0 <= i + d < lc and target[i] == cur[i + d] for i in range(m)), m))
        rel.append(_share(sum(lc > 0 and target[i] == cur[(i + d) % lc] for i in range(m)), m))
    for o in OFFSETS:  # target[i] == cur[i] moved o letters along the alphabet
        rel.append(_share(sum(i < lc and cur[i] in index and target[i] in index
                              and (index[target[i]] - index[cur[i]]) % a == o % a for i in range(m)), m))
    for d in (1, 2):   # target[i] == cur[i ± 1] pairwise swapped
        rel.append(_share(sum(i ^ 1 < lc and target[i] == cur[i ^ 1] for i in range(m)), m) if d == 1
                   else _share(sum(2 * i < lc and target[i] == cur[2 * i] for i in range(m)), m))
    return np.concatenate([np.array(rel, dtype=np.float64), hc, ht, ht - hc])


def training_pairs(world, steps: Sequence[str], depth: int, n: int, seed: int
                   ) -> tuple[list[tuple[str, str]], list[int]]:
    """``n`` (input, output) pairs of random chains of distinct ``steps`` (1..``depth`` long,
    lengths equally likely), each labelled with the index of its chain's first step."""
    rng = random.Random(f"usefulness|{seed}")
    distinct = sorted(set(steps))
    pairs, labels = [], []
    while len(pairs) < n:
        k = rng.randint(1, min(depth, len(distinct)))
        chain = rng.sample(distinct, k)
        s = world.examples(chain[0], 1, seed=rng.randrange(2**31), split="train")[0]
        x = world.input_of(s.prompt)
        pairs.append((x, world.apply("+".join(chain), x)))
        labels.append(distinct.index(chain[0]))
    return pairs, labels


class UsefulnessModel:
    """``p(next step | current, target)`` over ``steps`` (see the module docstring)."""

    def __init__(self, world, steps: Sequence[str], depth: int = 2, n: int = 3000, seed: int = 0):
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.world, self.steps, self.alphabet = world, list(steps), world.alphabet
        self.distinct = sorted(set(steps))
        pairs, labels = training_pairs(world, steps, depth, n, seed)
        X = np.stack([features(x, y, self.alphabet) for x, y in pairs])
        self.model = make_pipeline(StandardScaler(), MLPClassifier(
            hidden_layer_sizes=(64,), max_iter=300, early_stopping=True, random_state=seed))
        self.model.fit(X, np.array(labels))
        self.train_accuracy = float(self.model.score(X, np.array(labels)))

    def __call__(self, currents: list[str], targets: list[str]) -> np.ndarray:
        """``[len(currents), len(steps)]``: each skill's probability as the next step (a
        skill shares its step's probability with any other skill asked the same step)."""
        X = np.stack([features(c, t, self.alphabet) for c, t in zip(currents, targets, strict=True)])
        p = np.zeros((len(currents), len(self.distinct)))
        p[:, self.model.classes_] = self.model.predict_proba(X)
        return p[:, [self.distinct.index(s) for s in self.steps]]
