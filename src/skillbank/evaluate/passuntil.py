"""PassUntil: pass rates far below what greedy exact match can see (docs/methods.md §13).

Hu et al. (2024), *Predicting Emergent Abilities with Infinite Resolution Evaluation*
(PassUntil), sample each test instance until it passes, so a pass rate of 10⁻³ shows as a
number where greedy decoding shows 0. Here, per instance: draw answers at temperature T
until ``passes`` of them pass the world's grader or ``cap`` draws are spent. With r passes
in K draws the estimate is

- (r − 1)/(K − 1) when the draws stopped at the r-th pass and r ≥ 2: inverse (negative
  binomial) sampling, for which this is the unbiased estimator (Haldane 1945). With r = 1
  the natural 1/K is biased upwards: E[1/K] = −p·ln p/(1 − p), 4.7× p at p = 0.01, which
  is why the default asks for two passes (the paper's "until the first pass" is
  ``passes=1``; it is kept, with that bias, for comparison);
- r/K when the cap came first (the plain binomial estimate; 0 if nothing passed).

The task's pass rate is the mean over instances (the paper's PU), with a bootstrap
standard error and percentile interval over instances. When no instance passed, the
interval is [0, 1 − 0.05^(1/ΣK)] (the exact one-sided 95% bound from all the draws).

Batching keeps a cap of 10⁴ cheap: each round spreads a budget of ``rows`` draws evenly
over the instances still sampling (so finished ones make room for the rest), and the
stopping point inside a round is found exactly — draws after the r-th pass are discarded,
so the estimate is the one sequential sampling would give for the same draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

# (instance index, how many draws) per request -> one boolean array (pass?) per request
Draw = Callable[[list[tuple[int, int]]], list[np.ndarray]]
MAX_CAP = 10_000_000


@dataclass(frozen=True)
class PassUntilConfig:
    """Every setting that changes a PassUntil estimate."""

    cap: int = 10_000          # most draws per instance
    passes: int = 2            # stop an instance at this many passes
    temperature: float = 1.0
    rows: int = 2048           # draws per batched round, over all sampling instances
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.cap, int) or self.cap < 1:
            raise ValueError(f"the cap must be at least 1 draw per instance, got {self.cap!r}")
        if self.cap > MAX_CAP:
            raise ValueError(f"a cap of {self.cap:,} draws per instance is more than PassUntil "
                             f"runs ({MAX_CAP:,}: a pass rate of 1e-7 is already below any law here)")
        if not isinstance(self.passes, int) or self.passes < 1:
            raise ValueError(f"passes must be at least 1, got {self.passes!r}")
        if not (isinstance(self.temperature, int | float) and self.temperature > 0
                and np.isfinite(self.temperature)):
            raise ValueError(f"the temperature must be a positive number, got {self.temperature!r}")
        if not isinstance(self.rows, int) or self.rows < 1:
            raise ValueError(f"rows must be at least 1, got {self.rows!r}")

    def as_dict(self) -> dict:
        return asdict(self)


def estimate(passes: int, draws: int, stopped: bool) -> float:
    """One instance's pass rate from ``passes`` in ``draws`` (``stopped``: at the last pass)."""
    if draws < 1 or not 0 <= passes <= draws:
        raise ValueError(f"need 0 <= passes <= draws and draws >= 1, got {passes}, {draws}")
    if stopped and passes >= 2:
        return (passes - 1) / (draws - 1)
    return passes / draws


def cut(hits: np.ndarray, need: int) -> tuple[int, int, bool]:
    """(passes, draws used, stopped) of one round's ``hits`` when ``need`` more passes stop
    the instance: the draws after the ``need``-th pass are not counted."""
    where = np.flatnonzero(hits)
    if len(where) >= need:
        return need, int(where[need - 1]) + 1, True
    return len(where), len(hits), False


def inverse_sampling(draw: Draw, n: int, cfg: PassUntilConfig,
                     progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Per instance ``{"passes", "draws", "stopped", "p"}``, sampling through ``draw``.

    ``progress(done, n)`` after each round (instances finished so far)."""
    passes, draws = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    stopped = np.zeros(n, dtype=bool)
    while True:
        live = [i for i in range(n) if not stopped[i] and draws[i] < cfg.cap]
        if not live:
            break
        each = max(1, cfg.rows // len(live))
        requests = [(i, int(min(each, cfg.cap - draws[i]))) for i in live]
        for (i, k), hits in zip(requests, draw(requests), strict=True):
            hits = np.asarray(hits, dtype=bool)
            if hits.shape != (k,):
                raise ValueError(f"draw returned {hits.shape} results for {k} draws")
            got, used, done = cut(hits, cfg.passes - int(passes[i]))
            passes[i] += got
            draws[i] += used
            stopped[i] = done
        if progress is not None:
            progress(int(np.sum(stopped | (draws >= cfg.cap))), n)
    return [{"passes": int(passes[i]), "draws": int(draws[i]), "stopped": bool(stopped[i]),
             "p": estimate(int(passes[i]), int(draws[i]), bool(stopped[i]))} for i in range(n)]


def summarize(instances: Sequence[dict], seed: int = 0, resamples: int = 2000) -> dict:
    """The task's pass rate (mean over instances) with its bootstrap error and interval."""
    if not instances:
        raise ValueError("PassUntil needs at least one instance")
    p = np.array([r["p"] for r in instances], dtype=np.float64)
    total_draws = int(sum(r["draws"] for r in instances))
    rng = np.random.default_rng(seed)
    means = p[rng.integers(0, len(p), size=(resamples, len(p)))].mean(axis=1)
    lo, hi = (float(x) for x in np.quantile(means, [0.05, 0.95]))
    if not p.any():
        lo, hi = 0.0, float(1.0 - 0.05 ** (1.0 / total_draws))
    return {"pass_rate": float(p.mean()), "pass_rate_stderr": float(means.std(ddof=1)),
            "ci90": [lo, hi], "instances": len(p), "draws": total_draws,
            "passed_instances": int(sum(r["passes"] > 0 for r in instances)),
            "capped_instances": int(sum(not r["stopped"] for r in instances))}


# ------------------------------------------------------------------ on a causal model


def model_draw(model, tokenizer, world, examples: Sequence, cfg: PassUntilConfig,
               max_new_tokens: int) -> Draw:
    """A :data:`Draw` that samples ``model`` at ``cfg.temperature`` (no top-k, no top-p) and
    grades each answer with ``world.grade``; round j is seeded by ``(cfg.seed, j)``."""
    import torch

    from .generate import sampled

    verdicts: list[dict[tuple, bool]] = [{} for _ in examples]   # answer ids -> graded
    rounds = [0]

    def grade(i: int, answer: tuple) -> bool:
        if answer not in verdicts[i]:
            text = tokenizer.decode(list(answer), skip_special_tokens=True)
            verdicts[i][answer] = bool(world.grade(examples[i], text))
        return verdicts[i][answer]

    @torch.no_grad()
    def draw(requests: list[tuple[int, int]]) -> list[np.ndarray]:
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, rounds[0]]).generate_state(1)[0]))
        rounds[0] += 1
        owners = [i for i, k in requests for _ in range(k)]
        answers = sampled(model, tokenizer, [examples[i].prompt for i in owners], max_new_tokens,
                          cfg.temperature, batch_size=cfg.rows)
        hits = np.array([grade(i, tuple(a)) for i, a in zip(owners, answers, strict=True)], dtype=bool)
        out, at = [], 0
        for _, k in requests:
            out.append(hits[at: at + k])
            at += k
        return out

    return draw


def pass_until(model, tokenizer, world, task: str, n: int, cfg: PassUntilConfig,
               progress: Callable[[int, int], None] | None = None) -> dict:
    """PassUntil of one model on ``n`` held-out inputs of ``task`` (split ``eval``, seed
    ``cfg.seed``): the task summary, each instance's counts, and the settings."""
    examples = world.examples(task, n, seed=cfg.seed, split="eval")
    if not examples:
        raise ValueError(f"task {task!r} has no held-out inputs")
    draw = model_draw(model, tokenizer, world, examples, cfg, world.max_target_len(task) + 2)
    instances = inverse_sampling(draw, len(examples), cfg, progress)
    return {**summarize(instances, seed=cfg.seed), "per_instance": instances,
            "config": cfg.as_dict()}
