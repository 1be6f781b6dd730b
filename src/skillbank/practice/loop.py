"""Practice: a skill that improves from its own verified attempts (docs/methods.md §14).

STaR (Zelikman et al. 2022) and PAE (a proposer picks tasks, the agent attempts them, an
evaluator's verdict is the reward): each round

1. the **proposer** picks the tasks to practise — the given ones, or (``propose``) every
   primitive and chain of up to ``depth`` primitives of the world whose pass rate, from
   4 samples on each of 16 train inputs, lies in the learnable ``band``; at most
   ``max_tasks``, those nearest the band's middle;
2. the current skill **attempts** ``inputs`` train inputs ``samples`` times each at the
   round's temperature;
3. the **evaluator** (``practice.evaluator``) keeps what it accepts; the world's grader
   also scores every attempt, but only to report how good the evaluator is;
4. a LoRA is **trained** on the accepted (prompt, answer) pairs — the model's own answers,
   never a target — for ``steps`` steps; as in STaR it starts each round from the starting
   point (the ``start`` skill's tensors, or PEFT's B = 0), not from the last round;
5. it is scored by greedy exact match on held-out inputs and stored as the next version of
   the skill, its lineage naming the version before, so ``skillbank versions NAME`` is the
   practice history.

With ``balance`` (B-STaR, Zeng et al. 2024) each round first samples a probe of 32 inputs at
every temperature in ``temperatures`` and practises at the one with the highest balance
score (``attempts.balance_score``); the authors also tune the reward threshold, which the
grader does not have. Departure: STaR's rationalisation (retrying failures with the answer
as a hint) is left out — it reads the target.

A round whose evaluator accepts nothing is reported and ends practice; the skill keeps its
last version.

With a ``teacher`` (a stored ``chain`` skill, docs/methods.md §15) the attempts come from the
chain instead of the model — its members called one after another, each sampled at the
round's temperature — and the accepted ones distil the chain into one LoRA that answers
in one call. The tasks default to the chain's own composite name (``"rot+swap+dup"``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..acquire.data import Sampler
from ..acquire.loop import LoopConfig, train
from ..acquire.lora import LoraRecipe, load_lora_init, lora_config, lora_tensors, train_metrics
from ..acquire.select import lora_model
from ..base import Base
from ..evaluate.suites import evaluate_model
from ..skill import Skill, SkillError
from ..worlds import get_world
from ..worlds.base import Example
from .attempts import monitors, sample_answers
from .evaluator import EVALUATORS, LearnedEvaluator

PROBE_INPUTS = 32


@dataclass(frozen=True)
class PracticeRecipe:
    """Every setting that changes what practice makes."""

    world: str = "strings"
    tasks: tuple[str, ...] = ()
    propose: bool = False
    band: tuple[float, float] = (0.05, 0.95)
    depth: int = 2
    max_tasks: int = 3
    rounds: int = 4
    inputs: int = 128
    samples: int = 8
    temperature: float = 1.0
    balance: bool = False
    temperatures: tuple[float, ...] = (0.5, 0.7, 1.0, 1.3)
    evaluator: str = "grader"
    calibration: int = 64
    steps: int = 100
    rank: int = 8
    lr: float = 5e-3
    batch_size: int = 32
    n_eval: int = 200
    seed: int = 0
    world_args: dict = field(default_factory=dict)
    teacher: str | None = None   # a chain skill's ref: it makes the attempts

    def __post_init__(self):
        for key in ("rounds", "inputs", "samples", "steps", "rank", "batch_size", "n_eval",
                    "depth", "max_tasks", "calibration"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"practice: {key} must be an integer ≥ 1, got {v!r}")
        if self.evaluator not in EVALUATORS:
            raise ValueError(f"unknown evaluator {self.evaluator!r}; choose {' or '.join(EVALUATORS)}")
        lo, hi = self.band
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"the proposer's band must satisfy 0 ≤ low < high ≤ 1, got {self.band}")
        if not self.propose and not self.tasks:
            raise ValueError("give the tasks to practise, or let the proposer pick them")
        if self.teacher is not None and self.propose:
            raise ValueError("a teacher chain answers its own task; it does not take --propose")
        if not all(t > 0 for t in (self.temperature, *self.temperatures)):
            raise ValueError("temperatures must be positive")
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "band", tuple(self.band))
        object.__setattr__(self, "temperatures", tuple(self.temperatures))

    def as_dict(self) -> dict:
        out = {"method": "practice", **asdict(self), "tasks": list(self.tasks),
               "band": list(self.band), "temperatures": list(self.temperatures)}
        if self.teacher is None:   # recipes from before teachers existed stay the same
            del out["teacher"]
        return out


def seed_of(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def _graded(world, examples, answers) -> np.ndarray:
    return np.array([[bool(world.grade(e, a)) for a in row] for e, row in zip(examples, answers, strict=True)])


def propose(model, tokenizer, world, recipe: PracticeRecipe, round_: int) -> dict[str, float]:
    """The tasks in the band, with their estimated pass rates."""
    prims = world.tasks()
    candidates = ["+".join(c) for d in range(1, recipe.depth + 1)
                  for c in itertools.product(prims, repeat=d)]
    rates = {}
    for i, task in enumerate(candidates):
        try:
            exs = world.examples(task, 16, seed=seed_of(recipe.seed, round_, i, 7), split="train")
        except ValueError:
            continue
        if not exs:
            continue
        answers = sample_answers(model, tokenizer, [e.prompt for e in exs], 4, recipe.temperature,
                                 world.max_target_len(task) + 2, seed_of(recipe.seed, round_, i))
        rates[task] = float(_graded(world, exs, answers).mean())
    lo, hi = recipe.band
    inside = {t: r for t, r in rates.items() if lo <= r <= hi}
    if not inside:
        best = max(rates.values(), default=0.0)
        raise ValueError(f"no task's pass rate lies in the band [{lo}, {hi}] ({len(rates)} tasks "
                         f"tried, the highest {best:.2f}): nothing learnable to practise")
    mid = (lo + hi) / 2
    return dict(sorted(inside.items(), key=lambda kv: (abs(kv[1] - mid), kv[0]))[: recipe.max_tasks])


def train_on(base: Base, recipe: PracticeRecipe, data: list[Example], start: Skill | None,
             seed: int, progress=None):
    """A rank-``recipe.rank`` LoRA from ``start`` (or B = 0) trained on ``data`` for
    ``recipe.steps`` steps; (model, training log)."""
    model = lora_model(base, recipe.rank, seed)
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    if start is not None:
        load_lora_init(params, start.tensors)
    log = train(model, params, Sampler({"accepted": data}, recipe.batch_size, seed),
                base.load_tokenizer(), LoopConfig(steps=recipe.steps, lr=recipe.lr,
                                                  warmup=max(1, recipe.steps // 10)),
                progress=progress)
    model.eval()
    return model, log


def stored_history(lib, name: str, base: Base, recipe: PracticeRecipe,
                   start: Skill | None = None) -> list[dict] | None:
    """The rounds of an earlier practice of ``name`` by exactly this recipe from this start,
    if every round is stored; else None."""
    from ..library import LibraryError
    from ..skill import canonical_json

    try:
        rows = lib.versions(name)
    except LibraryError:
        return None
    want = canonical_json({**recipe.as_dict(), "start": start.ref if start else None})
    found = {}
    for row in rows:
        rec = dict(row.manifest.get("recipe") or {})
        k = rec.pop("round", None)
        if row.base == base.fingerprint and canonical_json(rec) == want:
            found[k] = {**row.manifest["metrics"]["practice"],
                        "stored": f"{name}@{row.manifest['version']}"}
    if set(found) != set(range(1, recipe.rounds + 1)):
        return None
    return [found[k] for k in range(1, recipe.rounds + 1)]


def teacher_answers(runner, world, prompts, k: int, temperature: float, seed: int) -> list[list[str]]:
    """``k`` answers per prompt from a chain (``evaluate.chain.ChainRunner``), each member
    sampled at ``temperature``, seeded."""
    rows = [world.input_of(p) for p in prompts for _ in range(k)]
    torch.manual_seed(seed)
    flat = runner(rows, temperature)
    return [flat[i * k: (i + 1) * k] for i in range(len(prompts))]


def practise(lib, name: str, base: Base, recipe: PracticeRecipe, start: Skill | None = None,
             ui=None, on_round: Callable[[dict], None] | None = None) -> list[dict]:
    """Run every round, storing each as the next version of ``name``; one dict per round
    (its monitors, held-out accuracy and the stored ref, or ``stored: None``). A practice
    already stored in full by the same recipe and start is returned, not run again.
    ``recipe.teacher``, if set, names the chain skill that makes the attempts."""
    again = stored_history(lib, name, base, recipe, start)
    if again is not None:
        return again
    world = get_world(recipe.world, **recipe.world_args)
    for t in recipe.tasks:
        world.examples(t, 1, seed=0)   # an unknown task: one line before any work
    if start is not None and (start.kind != "lora" or start.config.get("r") != recipe.rank):
        raise SkillError(f"practice starts from a rank-{recipe.rank} LoRA skill; {start.ref} is "
                         f"{start.kind} (rank {start.config.get('r')})")
    tok = base.load_tokenizer()
    teacher = None
    if recipe.teacher is not None:
        from ..evaluate.chain import load_chain

        teacher = load_chain(lib, base, lib.get(recipe.teacher), world)

    def attempt(model, prompts, k, temperature, max_new, seed):
        if teacher is not None:
            return teacher_answers(teacher, world, prompts, k, temperature, seed)
        return sample_answers(model, tok, prompts, k, temperature, max_new, seed)

    current, evaluator, history = start, None, []
    for r in range(recipe.rounds):
        model = base.load_model([current] if current is not None else [])
        model.eval()
        rates = propose(model, tok, world, recipe, r) if recipe.propose else None
        tasks = list(rates) if rates else list(recipe.tasks)
        per = max(1, recipe.inputs // len(tasks))
        exs = [e for t in tasks for e in world.examples(t, per, seed=seed_of(recipe.seed, r, 1), split="train")]
        max_new = max(world.max_target_len(t) for t in tasks) + 2
        prompts = [e.prompt for e in exs]
        if recipe.evaluator == "learned" and evaluator is None:
            cal = [e for t in tasks for e in world.examples(
                t, max(1, recipe.calibration // len(tasks)), seed=seed_of(recipe.seed, 99), split="train")]
            cal_answers = attempt(model, [e.prompt for e in cal], recipe.samples,
                                  recipe.temperature, max_new, seed_of(recipe.seed, 98))
            evaluator = LearnedEvaluator(recipe.seed)
            evaluator.fit([e.prompt for e in cal for _ in range(recipe.samples)],
                          [a for row in cal_answers for a in row],
                          _graded(world, cal, cal_answers).reshape(-1))

        def judge(examples, answers):
            correct = _graded(world, examples, answers)
            if evaluator is None:
                return correct, correct.copy()
            flat = evaluator.accept([e.prompt for e in examples for _ in answers[0]],
                                    [a for row in answers for a in row])
            return correct, flat.reshape(correct.shape)

        temperature, probe = recipe.temperature, {}
        if recipe.balance:
            sub = exs[:PROBE_INPUTS]
            for i, temp in enumerate(recipe.temperatures):
                ans = attempt(model, [e.prompt for e in sub], recipe.samples, temp, max_new,
                              seed_of(recipe.seed, r, 3, i))
                probe[temp] = monitors(ans, *judge(sub, ans))["balance"]
            temperature = max(probe, key=lambda t: (probe[t], -t))
        answers = attempt(model, prompts, recipe.samples, temperature, max_new,
                          seed_of(recipe.seed, r, 2))
        correct, accepted = judge(exs, answers)
        row = {"round": r + 1, "tasks": tasks, "temperature": temperature, "samples": recipe.samples,
               **monitors(answers, correct, accepted), **({"proposed": rates} if rates else {}),
               **({"balance_by_temperature": probe} if probe else {})}
        keep = sorted({(e.task, e.prompt, a) for e, ans, acc in zip(exs, answers, accepted, strict=True)
                       for a, ok in zip(ans, acc, strict=True) if ok})
        if not keep:
            row["stored"] = None
            history.append(row)
            if on_round:
                on_round(row)
            break
        data = [Example(t, p, a) for t, p, a in keep]
        row["train_examples"] = len(data)
        with (ui.bar(f"{name} round {r + 1}", recipe.steps) if ui else _null()) as step:
            trained, log = train_on(base, recipe, data, start, seed_of(recipe.seed, r, 4), step)
        with torch.no_grad():
            held = {t: evaluate_model(trained, tok, world, t, recipe.n_eval, recipe.seed)["exact_match"]
                    for t in tasks}
        row["held_out"] = held
        row["held_out_mean"] = float(np.mean(list(held.values())))
        cfg = lora_config(LoraRecipe(world=recipe.world, task=",".join(tasks), rank=recipe.rank,
                                     alpha=2 * recipe.rank), base)
        skill = Skill(name=name, kind="lora", base=base.fingerprint, tensors=lora_tensors(trained),
                      config=cfg, recipe={**recipe.as_dict(), "round": r + 1,
                                          "start": start.ref if start else None},
                      lineage=[current.ref] if current is not None else [],
                      metrics={"practice": row, "train": train_metrics(log)})
        current = lib.add(skill)
        row["stored"] = current.ref
        history.append(row)
        if on_round:
            on_round(row)
    return history


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
