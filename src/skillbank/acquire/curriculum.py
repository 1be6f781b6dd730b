"""Skill-it (Chen et al. 2023, docs/methods.md §6): a skills graph and online data mixing.

A world's tasks are the skills. Skill-it estimates a skills graph ``A`` (how much training on
skill i helps skill j) and then trains in rounds, re-weighting the mixture of skills each
round towards skills that help the skills whose validation loss is still high:

    p_0 ∝ exp(η·A·1),    p_t ∝ exp(η·A·Σ_{τ = t-w+1..t} L_val(τ)),    η = 0.5, w = 3

(Algorithm 1, "online data selection"), with ``floor(p·n)`` examples of each skill in a
round of ``n``. Baselines: ``random`` draws each example's skill from the natural mixture
(the world's pools, weighted by size), ``stratified`` gives every skill the same count.

Graph (we pick the paper's cheaper estimate, Appendix "h-step" variant): from the base,
train on skill i alone for ``h`` steps; ``A_ij`` = the drop of skill j's validation loss,
clipped at 0, divided by the largest drop of skill j over all i (so each column's strongest
helper has weight 1 and A lies in [0, 1], as the paper's 0/1 LEGO graph does). A column
nothing helps is all zeros.

Departures from the paper: (1) ``floor(p·n)`` leaves up to k-1 examples of a round unfilled;
we give them to the largest remainders ("Hamilton" rounding) so every method trains on
exactly ``n`` examples per round, the same budget; (2) the graph's h-step training runs are
extra compute that the baselines do not spend; the figures report it. (3) Model: a full
fine-tune of the embedded base (kind ``delta``), the same for every method.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .data import Sampler, training_batch
from .loop import LoopConfig, train

METHODS = ("skill-it", "random", "stratified")


# -- the maths (pure) ----------------------------------------------------------------------
def skills_graph(before: Sequence[float], after: Sequence[Sequence[float]]) -> np.ndarray:
    """``A[i, j]`` from the validation losses ``before[j]`` (the base) and ``after[i][j]``
    (after h steps on skill i alone): the clipped drop ``max(0, before_j - after_ij)``,
    each column divided by its largest entry (a column of zeros stays zero)."""
    b = np.asarray(before, dtype=float)
    a = np.asarray(after, dtype=float)
    if a.ndim != 2 or a.shape != (b.size, b.size):
        raise ValueError(f"after must be {b.size}x{b.size}, got shape {a.shape}")
    drop = np.clip(b[None, :] - a, 0.0, None)
    top = drop.max(axis=0)
    return np.divide(drop, top, out=np.zeros_like(drop), where=top > 0)


def skill_it_mixture(graph: np.ndarray, losses: Sequence[Sequence[float]], eta: float = 0.5,
                     window: int = 3) -> np.ndarray:
    """Skill-it's mixture ``p ∝ exp(η·A·Σ_{last w} L)`` over skills; with no evaluation yet,
    ``p_0 ∝ exp(η·A·1)``. ``losses`` holds one per-skill loss vector per past evaluation."""
    A = np.asarray(graph, dtype=float)
    signal = (np.ones(A.shape[0]) if len(losses) == 0
              else np.sum(np.asarray(losses[-window:], dtype=float), axis=0))
    z = eta * A @ signal
    e = np.exp(z - z.max())
    return e / e.sum()


def mixture_counts(p: Sequence[float], n: int) -> np.ndarray:
    """Examples per skill in a round of ``n``: ``floor(p·n)``, the remainder given one each to
    the largest fractional parts (ties to the lower index), so the counts sum to ``n``."""
    p = np.asarray(p, dtype=float)
    exact = p / p.sum() * n
    counts = np.floor(exact).astype(int)
    short = n - counts.sum()
    order = sorted(range(len(p)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:short]:
        counts[i] += 1
    return counts


def natural_mixture(pool_sizes: Sequence[int]) -> np.ndarray:
    """The ``random`` baseline's mixture: a uniform draw over all pooled examples."""
    s = np.asarray(pool_sizes, dtype=float)
    return s / s.sum()


# -- evaluation ----------------------------------------------------------------------------
@torch.no_grad()
def answer_metrics(model, tokenizer, examples, batch_size: int = 256) -> tuple[float, float]:
    """(mean answer-token loss, accuracy) on ``examples`` from teacher-forced forward passes.

    An example counts as correct when the arg-max is right at every answer token (target and
    ``</s>``) — exactly when greedy decoding would produce the target, at one forward pass."""
    total_loss, total_tokens, correct = 0.0, 0, 0
    for i in range(0, len(examples), batch_size):
        batch = training_batch(tokenizer, examples[i: i + batch_size])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits, labels = logits[:, :-1].float(), batch["labels"][:, 1:]
        mask = labels != -100
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0),
                                               reduction="none")
        total_loss += float(ce[mask].sum())
        total_tokens += int(mask.sum())
        right = (logits.argmax(-1) == labels) | ~mask
        correct += int(right.all(dim=1).sum())
    return total_loss / max(total_tokens, 1), correct / max(len(examples), 1)


def evaluate_skills(model, tokenizer, evals: dict[str, list]) -> tuple[dict[str, float], dict[str, float]]:
    """Per-skill (loss, accuracy) dicts on held-out examples."""
    losses, accs = {}, {}
    for task, exs in evals.items():
        losses[task], accs[task] = answer_metrics(model, tokenizer, exs)
    return losses, accs


# -- sampling in rounds --------------------------------------------------------------------
class RoundSampler:
    """Minibatches for training in rounds of ``round_steps`` steps whose skill mixture may
    change between rounds (a ``loop.train`` sampler). Round ``r``'s examples are fixed by
    ``(seed, r)`` and its mixture: ``set_round(r, counts=...)`` puts exactly ``counts[i]``
    examples of skill i in the round, ``set_round(r, p=...)`` draws each example's skill
    from ``p`` (the natural-mixture baseline). Examples are drawn uniformly from the pools."""

    def __init__(self, pools: dict[str, list], batch_size: int, round_steps: int, seed: int):
        self.tasks = sorted(pools)
        self.pools = pools
        self.batch_size = batch_size
        self.round_steps = round_steps
        self.seed = seed
        self.rounds: dict[int, list] = {}

    @property
    def round_size(self) -> int:
        return self.batch_size * self.round_steps

    def set_round(self, r: int, counts: Sequence[int] | None = None,
                  p: Sequence[float] | None = None) -> None:
        rng = np.random.default_rng([self.seed, r])
        if counts is not None:
            skills = np.repeat(np.arange(len(self.tasks)), np.asarray(counts, dtype=int))
            rng.shuffle(skills)
        else:
            skills = rng.choice(len(self.tasks), size=self.round_size, p=np.asarray(p, dtype=float))
        out = []
        for si in skills:
            pool = self.pools[self.tasks[si]]
            out.append(pool[int(rng.integers(len(pool)))])
        self.rounds[r] = out

    def batch(self, step: int) -> list:
        r, i = divmod(step, self.round_steps)
        if r not in self.rounds:
            raise RuntimeError(f"round {r} has no mixture yet")
        return self.rounds[r][i * self.batch_size: (i + 1) * self.batch_size]


@dataclass
class CurriculumConfig:
    """Everything that decides a curriculum run (recorded as the skill's recipe)."""

    world: str = "lego"
    method: str = "skill-it"
    steps: int = 400
    round_steps: int = 50
    batch_size: int = 32
    lr: float = 3e-3
    eta: float = 0.5
    window: int = 3
    graph_steps: int = 50  # h: steps on one skill alone to estimate the graph
    pool: int = 2000
    n_eval: int = 200
    seed: int = 0
    world_args: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {**asdict(self), "method": f"curriculum:{self.method}"}


def skill_data(cfg: CurriculumConfig) -> tuple[list[str], dict[str, list], dict[str, list]]:
    """(skills, training pools, held-out evaluation sets) of the config's world."""
    from ..worlds import get_world

    world = get_world(cfg.world, **cfg.world_args)
    tasks = world.tasks()
    pools = {t: world.examples(t, cfg.pool, seed=cfg.seed, split="train") for t in tasks}
    evals = {t: world.examples(t, cfg.n_eval, seed=cfg.seed, split="eval") for t in tasks}
    return tasks, pools, evals


def estimate_graph(model, tokenizer, pools: dict[str, list], evals: dict[str, list],
                   cfg: CurriculumConfig, progress=None) -> np.ndarray:
    """The skills graph: from ``model``, ``cfg.graph_steps`` steps on each skill alone
    (a copy of the model each time), then :func:`skills_graph` of the validation losses."""
    tasks = sorted(pools)
    before, _ = evaluate_skills(model, tokenizer, {t: evals[t] for t in tasks})
    after = []
    loop = LoopConfig(steps=cfg.graph_steps, lr=cfg.lr, warmup=max(1, cfg.graph_steps // 5),
                      weight_decay=0.0)
    for k, task in enumerate(tasks):
        m = copy.deepcopy(model)
        done = k * cfg.graph_steps
        train(m, dict(m.named_parameters()), Sampler({task: pools[task]}, cfg.batch_size, cfg.seed),
              tokenizer, loop,
              progress=(lambda s, loss, done=done: progress(done + s, loss)) if progress else None)
        losses, _ = evaluate_skills(m, tokenizer, {t: evals[t] for t in tasks})
        after.append([losses[t] for t in tasks])
    return skills_graph([before[t] for t in tasks], after)


def run_curriculum(model, tokenizer, cfg: CurriculumConfig, graph: np.ndarray | None = None,
                   progress=None) -> dict:
    """Fine-tune all of ``model``'s parameters for ``cfg.steps`` steps, re-mixing the skills
    every ``cfg.round_steps`` steps by ``cfg.method``; evaluate every skill at each round's end.

    Returns per-skill accuracy and loss (final and per round), the mixtures used and, for
    ``skill-it``, the graph (estimated here unless given; its steps are reported)."""
    if cfg.method not in METHODS:
        raise ValueError(f"unknown curriculum method {cfg.method!r}; choose from {', '.join(METHODS)}")
    if cfg.steps < 1 or cfg.round_steps < 1:
        raise ValueError("steps and round_steps must be positive")
    tasks, pools, evals = skill_data(cfg)
    graph_steps = 0
    if cfg.method == "skill-it" and graph is None:
        graph = estimate_graph(model, tokenizer, pools, evals, cfg, progress=progress)
        graph_steps = cfg.graph_steps * len(tasks)
    sampler = RoundSampler(pools, cfg.batch_size, cfg.round_steps, cfg.seed)
    n = sampler.round_size
    history: list[list[float]] = []
    mixtures: list[list[float]] = []
    curve_acc: dict[str, list] = {t: [] for t in tasks}
    curve_loss: dict[str, list] = {t: [] for t in tasks}

    def mixture() -> np.ndarray:
        if cfg.method == "skill-it":
            return skill_it_mixture(graph, history, cfg.eta, cfg.window)
        if cfg.method == "stratified":
            return np.full(len(tasks), 1.0 / len(tasks))
        return natural_mixture([len(pools[t]) for t in tasks])

    def plan(r: int) -> None:
        p = mixture()
        mixtures.append([round(float(x), 6) for x in p])
        if cfg.method == "random":
            sampler.set_round(r, p=p)
        else:
            sampler.set_round(r, counts=mixture_counts(p, n))

    def evaluate(step: int) -> None:
        losses, accs = evaluate_skills(model, tokenizer, evals)
        for t in tasks:
            curve_acc[t].append((step, accs[t]))
            curve_loss[t].append((step, losses[t]))
        if step > 0:
            history.append([losses[t] for t in tasks])

    def on_step(step: int, opt) -> None:
        if step % cfg.round_steps == 0 or step == cfg.steps:
            was = model.training
            model.eval()
            evaluate(step)
            model.train(was)
            if step < cfg.steps:
                plan(step // cfg.round_steps)

    model.eval()
    evaluate(0)
    plan(0)
    log = train(model, dict(model.named_parameters()), sampler, tokenizer,
                LoopConfig(steps=cfg.steps, lr=cfg.lr, warmup=max(1, min(20, cfg.steps // 10)),
                           weight_decay=0.0), on_step=on_step,
                progress=(lambda s, loss: progress(graph_steps + s, loss)) if progress else None)
    final_acc = {t: curve_acc[t][-1][1] for t in tasks}
    final_loss = {t: curve_loss[t][-1][1] for t in tasks}
    return {"method": cfg.method, "skills": tasks, "accuracy": final_acc,
            "mean_accuracy": float(np.mean(list(final_acc.values()))), "loss": final_loss,
            "curve_accuracy": curve_acc, "curve_loss": curve_loss, "mixtures": mixtures,
            "graph": None if graph is None else np.asarray(graph).round(4).tolist(),
            "graph_steps": graph_steps, "train_steps": cfg.steps,
            "examples_seen": cfg.steps * cfg.batch_size, "seconds": round(log["seconds"], 2),
            "train_curve": log["curve"]}
