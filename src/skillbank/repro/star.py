"""STaR and B-STaR at CPU scale: a skill rises from the grader alone (docs/methods.md §14).

STaR (Zelikman et al. 2022) trains on the model's own answers that a checker accepts and
repeats; B-STaR (Zeng et al. 2024) picks each round's temperature by a balance score of
exploration and exploitation. Here, on the demo's base (``strings-mini``), for each task in
``TASKS`` and each of three seeds: a starting skill — a rank-8 LoRA trained on 16 labelled
examples for 40 steps (STaR starts from a few-shot prompted model; this is the one place
a target is read) — then 4 rounds of ``practice.loop`` (128 train inputs × K = 8 attempts,
100 LoRA steps a round, each from the start, as STaR restarts) in three variants:

- **STaR**: the world's grader, T = 1.0;
- **B-STaR**: the grader, T chosen each round from {0.5, 0.7, 1.0, 1.3} by the balance score;
- **learned evaluator**: T = 1.0, attempts kept by a logistic regression fitted on graded
  attempts at 64 other inputs — what a noisy verifier does;

against **supervised**: the same start trained with the labels of the same 4 × 128 inputs
for the same 400 steps. Scored by greedy exact match on 200 held-out inputs.

Rule: ``holds`` iff STaR's final held-out exact match, averaged over tasks and seeds, is at
least 0.90 and at least 0.30 above the start's. B-STaR against STaR (final accuracy and
Pass@K and answer diversity per round) and the learned evaluator (its precision and recall
against the grader) are reported, not judged.

Run: ``skillbank repro star`` (in-process, about 6 minutes on 2 cores); ``--quick`` takes
seconds and its figures mean nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..acquire.lora import LoraRecipe, train_lora
from ..acquire.pretrain import BaseRecipe, ensure_base
from ..evaluate.suites import evaluate_model
from ..practice.loop import PracticeRecipe, practise, seed_of, train_on
from ..report.html import Section
from ..report.plots import curves
from ..worlds import get_world
from . import Outcome

PAPER = ("STaR: Bootstrapping Reasoning With Reasoning (Zelikman et al. 2022); B-STaR "
         "(Zeng et al. 2024)")
CLAIM = ("from the grader alone a skill rises from its starting pass rate to ≥ 0.90 held-out "
         "exact match")

TASKS = ("rot", "swap")
SEEDS = (0, 1, 2)
TARGET = 0.90
RISE = 0.30
VARIANTS = ("star", "bstar", "learned")


@dataclass(frozen=True)
class Sizes:
    seed_examples: int
    seed_steps: int
    practice: PracticeRecipe
    seeds: tuple[int, ...]


FULL = Sizes(16, 40, PracticeRecipe(tasks=("rot",)), SEEDS)
QUICK = Sizes(4, 2, PracticeRecipe(tasks=("rot",), rounds=2, inputs=4, samples=2, steps=2,
                                   n_eval=4, batch_size=4, calibration=4), (0,))


def _variant(p: PracticeRecipe, variant: str) -> PracticeRecipe:
    if variant == "bstar":
        return replace(p, balance=True)
    if variant == "learned":
        return replace(p, evaluator="learned")
    return p


def _supervised(base, p: PracticeRecipe, start, task: str, seed: int, world) -> float:
    """The start trained with labels on the inputs practice attempted, for the same steps."""
    exs = [e for r in range(p.rounds)
           for e in world.examples(task, p.inputs, seed=seed_of(seed, r, 1), split="train")]
    model, _ = train_on(base, replace(p, steps=p.steps * p.rounds), exs, start, seed)
    with torch.no_grad():
        return evaluate_model(model, base.load_tokenizer(), world, task, p.n_eval, seed)["exact_match"]


def run(lib, ui, out_dir, seed: int = 0, quick: bool = False) -> Outcome:
    torch.set_num_threads(2)
    sizes = QUICK if quick else FULL
    if quick:
        base, _ = ensure_base(lib, "strings-tiny-quick", BaseRecipe(size="tiny", steps=3, batch_size=4, pool=16))
    else:
        from ..standard import DemoConfig

        with ui.bar("base strings-mini", DemoConfig().base.steps) as step:
            base, _ = ensure_base(lib, "strings-mini", DemoConfig().base, progress=step)
    world, tok = get_world("strings"), base.load_tokenizer()
    tasks = TASKS[:1] if quick else TASKS
    runs = []
    for task in tasks:
        for s in (sizes.seeds if not quick else (seed,)):
            p = replace(sizes.practice, tasks=(task,), seed=s)
            start_recipe = LoraRecipe(world="strings", task=task, steps=sizes.seed_steps,
                                      pool=sizes.seed_examples, batch_size=min(16, sizes.seed_examples),
                                      seed=s)
            name = f"star-start-{task}-s{s}"
            ref = lib.find(name, base.fingerprint, start_recipe.as_dict())
            start = lib.get(ref) if ref else lib.add(train_lora(name, base, start_recipe))
            with torch.no_grad():
                start_em = evaluate_model(base.load_model([start]), tok, world, task, p.n_eval, s)["exact_match"]
            row = {"task": task, "seed": s, "start": start_em}
            for v in VARIANTS:
                try:
                    row[v] = practise(lib, f"star-{v}-{task}-s{s}", base, _variant(p, v), start=start, ui=ui)
                except ValueError as e:   # e.g. a learned evaluator with nothing correct to learn from
                    row[v] = [{"round": 1, "error": str(e)}]
            with ui.bar(f"supervised {task} seed {s}", 1) as step:
                row["supervised"] = _supervised(base, p, start, task, s, world)
                step(1, None)
            runs.append(row)

    def final(h: list[dict]) -> float | None:
        stored = [r for r in h if r.get("held_out_mean") is not None]
        return stored[-1]["held_out_mean"] if stored else None

    def mean(vals) -> float | None:
        vals = [v for v in vals if v is not None]
        return round(float(np.mean(vals)), 4) if vals else None

    summary = {v: mean([r[v] if v in ("supervised", "start") else final(r[v]) for r in runs])
               for v in (*VARIANTS, "supervised", "start")}
    by_task = {t: {v: mean([r[v] if v in ("supervised", "start") else final(r[v])
                            for r in runs if r["task"] == t])
                   for v in (*VARIANTS, "supervised", "start")} for t in tasks}
    rounds = sizes.practice.rounds
    per_round = {v: {k: [mean([r[v][i].get(k) if i < len(r[v]) else None for r in runs])
                         for i in range(rounds)]
                     for k in ("held_out_mean", "pass_at_k", "distinct_answers", "temperature",
                               "precision", "recall", "balance")} for v in VARIANTS}
    def fmt(x) -> str:
        return "—" if x is None else f"{x:.3f}"

    holds = summary["star"] is not None and summary["star"] >= TARGET \
        and summary["star"] >= summary["start"] + RISE
    figures = {"tasks": list(tasks), "seeds": list(sizes.seeds), "final_exact_match": summary,
               "final_by_task": by_task,
               "per_round": per_round, "runs": [{k: v for k, v in r.items()} for r in runs],
               "target": TARGET, "rise": RISE, "base": base.fingerprint}
    header = ["variant", "final held-out EM (mean)", *[f"round {i + 1}" for i in range(rounds)]]
    labels = {"star": "STaR (grader, T 1.0)", "bstar": "B-STaR (grader, balanced T)",
              "learned": "learned evaluator (T 1.0)"}
    rows = [["start (16 labelled examples)", summary["start"], *[""] * rounds]]
    rows += [[labels[v], fmt(summary[v]), *map(fmt, per_round[v]["held_out_mean"])] for v in VARIANTS]
    rows.append([f"supervised (labels, {rounds * sizes.practice.steps} steps)", summary["supervised"],
                 *[""] * rounds])
    image = "star_rounds.png"
    curves({f"{labels[v]}: {k}": [(i, y) for i, y in enumerate(per_round[v][k], start=1) if y is not None]
            for v in VARIANTS for k in ("held_out_mean", "pass_at_k", "distinct_answers")},
           out_dir / image, "per round (mean over tasks and seeds)", "round", "value")
    monitor_rows = [[labels[v], *[f"T {fmt(per_round[v]['temperature'][i])}, pass@K "
                                  f"{fmt(per_round[v]['pass_at_k'][i])}, distinct "
                                  f"{fmt(per_round[v]['distinct_answers'][i])}, precision "
                                  f"{fmt(per_round[v]['precision'][i])}, recall "
                                  f"{fmt(per_round[v]['recall'][i])}" for i in range(rounds)]]
                    for v in VARIANTS]
    notes = (f"STaR {fmt(summary['star'])} from a start of {fmt(summary['start'])} (supervised "
             f"{fmt(summary['supervised'])}; B-STaR {fmt(summary['bstar'])}; learned evaluator "
             f"{fmt(summary['learned'])}). By task: " + "; ".join(
                 f"{t} {fmt(b['start'])} → {fmt(b['star'])}" for t, b in by_task.items()) + ".")
    if quick:
        notes += " Quick run: tiny sizes, figures not comparable with a full run."
    return Outcome(figures=figures, holds=holds, table=(header, rows), notes=notes, sections=[
        Section("Monitors per round (B-STaR's exploration and exploitation)",
                table=(["variant", *[f"round {i + 1}" for i in range(rounds)]], monitor_rows),
                images=[image])])
