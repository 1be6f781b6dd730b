"""Experience replay for continual acquisition: a balanced memory of earlier tasks' examples
mixed into each new task's batches (docs/methods.md §10)."""

from __future__ import annotations

import numpy as np


def balanced_buffer(pools: dict[str, list], memory: int) -> dict[str, list]:
    """``memory`` stored examples split evenly over the past tasks (the first ones of each
    task's training pool, which is already a random draw)."""
    if not pools:
        return {}
    per = max(1, memory // len(pools))
    return {t: list(p[:per]) for t, p in pools.items()}


class ReplaySampler:
    """``Sampler``'s contract (batch depends only on (seed, step)): ``batch_size − m``
    examples of the current task and m = round(fraction·batch_size) from the buffer, split
    as evenly as possible over the past tasks (the remainder goes to tasks chosen at random)."""

    def __init__(
        self, current: list, buffer: dict[str, list], batch_size: int, seed: int, fraction: float
    ):
        self.current, self.buffer = current, buffer
        self.tasks = sorted(buffer)
        self.batch_size, self.seed = batch_size, seed
        self.n_mem = round(fraction * batch_size) if buffer else 0

    def counts(self, rng: np.random.Generator) -> dict[str, int]:
        per, extra = divmod(self.n_mem, len(self.tasks)) if self.tasks else (0, 0)
        lucky = set(rng.permutation(len(self.tasks))[:extra].tolist()) if extra else set()
        return {t: per + (i in lucky) for i, t in enumerate(self.tasks)}

    def batch(self, step: int) -> list:
        rng = np.random.default_rng([self.seed, step])
        out = [
            self.current[int(i)]
            for i in rng.integers(len(self.current), size=self.batch_size - self.n_mem)
        ]
        for t, k in self.counts(rng).items():
            out += [self.buffer[t][int(i)] for i in rng.integers(len(self.buffer[t]), size=k)]
        return out


# -- orchestration -----------------------------------------------------------------------
