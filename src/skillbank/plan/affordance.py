"""Affordance: the probability that a skill's call succeeds from the current string.

SayCan's affordance is a value function: the probability that a skill, started in the
current state, succeeds (docs/methods.md §15). A skill here knows one thing about a call —
how confident it was in its own answer — so its affordance is that confidence calibrated
into a success probability, as a value function is trained on the skill's own outcomes:

    a(s, x) = σ(w_s · [mean token log-prob, min token log-prob, len(x)] + b_s)

fitted per skill by logistic regression on ``n`` calls whose inputs are the outputs of random
chains of 0–2 steps (so they reach the lengths and strings a plan passes along), each call
graded against the world's exact answer to the skill's own task. Nothing about the
examples being planned for is used.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np


def confidence_features(conf: Sequence[tuple[float, float]], inputs: Sequence[str]) -> np.ndarray:
    return np.array([[m, lo, len(x)] for (m, lo), x in zip(conf, inputs, strict=True)], dtype=np.float64)


def calibration_inputs(world, steps: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` strings a plan may pass along: train inputs after a random chain of 0–2 steps."""
    rng = random.Random(f"affordance|{seed}")
    distinct = sorted(set(steps))
    out = []
    while len(out) < n:
        chain = rng.sample(distinct, rng.randint(0, min(2, len(distinct))))
        ex = world.examples(distinct[0], 1, seed=rng.randrange(2**31), split="train")[0]
        x = world.input_of(ex.prompt)
        out.append(world.apply("+".join(chain), x) if chain else x)
    return out


class Affordance:
    """Per-skill success probability from its confidence (see the module docstring).
    ``call(i, inputs) -> (outputs, [(mean, min) log-prob])`` runs skill ``i``."""

    def __init__(self, world, steps: Sequence[str], call, n: int = 256, seed: int = 0):
        from sklearn.linear_model import LogisticRegression

        self.models, self.base_rate = [], []
        inputs = calibration_inputs(world, steps, n, seed)
        for i, step in enumerate(steps):
            outs, conf = call(i, inputs)
            y = np.array([o == world.apply(step, x) for o, x in zip(outs, inputs, strict=True)])
            self.base_rate.append(float(y.mean()))
            if y.all() or not y.any():   # one outcome only: a constant probability
                self.models.append(None)
                continue
            self.models.append(LogisticRegression(C=1.0, max_iter=1000).fit(confidence_features(conf, inputs), y))

    def log_prob(self, i: int, conf: Sequence[tuple[float, float]], inputs: Sequence[str]) -> list[float]:
        """log a(skill i, input) for each call."""
        model = self.models[i]
        if model is None:
            p = np.full(len(inputs), min(max(self.base_rate[i], 1e-3), 1 - 1e-3))
        else:
            p = model.predict_proba(confidence_features(conf, inputs))[:, 1]
        return np.log(np.clip(p, 1e-6, 1.0)).tolist()
