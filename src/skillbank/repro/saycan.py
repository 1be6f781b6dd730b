"""SayCan at CPU scale: plans over library skills for composite tasks never trained on.

Ahn et al. (2022) chain a robot's skills by usefulness (a language model: does this skill
help the instruction next?) × affordance (a value function: can it succeed from here?);
docs/methods.md §15. Here a "new task" is a chain of k = 3 or 4 distinct strings primitives
given only as 8 input/target pairs (train split, no task name), and
``plan.planner`` searches (depth 4, beam 4) with three scores:

- **usefulness × affordance**: a classifier of the next step from (current, target), trained
  on chains of k ≤ 2 the world generates, times the skill's calibrated success probability;
- **usefulness alone** and **affordance alone**.

Two libraries. ``library``: the demo's six skills (rot, shift, dedup, drop, swap, dup; one
rank-8 LoRA each on ``strings-mini``, 300 steps) — every skill works on every string, so
there is nothing for affordance to ground. ``twins``: those six and a twin of each trained
for ``TWIN_STEPS`` steps (held-out exact match 0.01–1.0), in an order shuffled by the seed
— a pile of adapters with unreliable versions, which usefulness cannot tell apart (same
step) and affordance can: the setting where SayCan's claim lives.

Baselines: **named call-by-call** (the task's true steps, each by its demo skill) and the
**k ≤ 2 LoRA** (``strings-chains-k2``, the Skill-Mix reproduction's: one LoRA trained on the
primitives and their pairs, answering the chain's prompt in one call). Every subject's
greedy exact match is measured on 100 held-out inputs; a plan is *correct* when it
computes the task's function on every one of them (the world's exact ``apply``).
6 tasks per k for each of 3 seeds (the seed draws the tasks, their examples,
the usefulness and affordance models and the twins' order).

**Distillation** (first seed, ``library``): for each k, the first correct plan is stored as a
``chain`` skill and distilled by ``practice`` with the chain as teacher (one round, 4,096
train inputs × 1 attempt at T = 0.3, graded, 3,000 steps of a rank-16 LoRA) into one LoRA
that answers the plan's composite prompt in one call; both are scored on the same held-out
inputs. (256 inputs × 2 and 400 steps gave 0.65 against a chain's 0.86 at k = 3 and 0.05
against 0.70 at k = 4; 2,048 × 1,500 steps 0.40 at k = 4: a composite of four steps in one
call needs data and steps.)

Rule: ``holds`` iff (a) in ``twins``, usefulness × affordance's exact match is above each
score alone at k = 3 and at k = 4; (b) in ``library``, its exact match is above the k ≤ 2
LoRA's at k = 3 and at k = 4; (c) every distilled LoRA is within 0.05 of its chain.

Run: ``skillbank repro saycan`` re-uses the demo skills, twins and the k ≤ 2 LoRA when
stored (otherwise trains them: the LoRA takes 2–8 minutes on 2 cores); ``--quick`` takes
seconds and its figures mean nothing.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..acquire.jobs import train_job
from ..acquire.pretrain import BaseRecipe
from ..evaluate.chain import ChainRunner, evaluate_chain, load_chain
from ..evaluate.generate import greedy
from ..evaluate.skillmix import sample_chains
from ..plan.planner import PlanRecipe, SkillSteps, make_chain, plan
from ..practice.loop import PracticeRecipe, practise
from ..report.html import Section
from ..report.plots import curves
from ..run import ensure, get_executor
from ..standard import DemoConfig, demo_skills
from ..worlds import get_world
from . import Outcome
from .skillmix import ensure_chain_lora

PAPER = "Ahn et al. 2022, Do As I Can, Not As I Say: Grounding Language in Robotic Affordances (SayCan)"
CLAIM = ("usefulness × affordance plans solve more composite tasks than either alone, beat a "
         "LoRA trained on k ≤ 2, and distil into one call within 5 points")

KS = (3, 4)
SCORES = ("both", "usefulness", "affordance")
SEEDS = (0, 1, 2)
DISTIL_MARGIN = 0.05
TWIN_STEPS = 60
LIBRARIES = ("library", "twins")


@dataclass(frozen=True)
class Sizes:
    tasks_per_k: int
    examples: int
    n_eval: int
    plan: PlanRecipe
    distil: PracticeRecipe
    chain_lora: dict


def sizes(quick: bool) -> Sizes:
    if quick:
        return Sizes(1, 2, 4, PlanRecipe(depth=2, beam=1, usefulness_examples=100, affordance_examples=8,
                                          min_fit=0.0),
                     PracticeRecipe(tasks=("rot",), rounds=1, inputs=16, samples=1, steps=3,
                                    temperature=0.3, n_eval=8),
                     dict(steps=3, rank=2, pool=16, batch_size=8))
    return Sizes(6, 8, 100, PlanRecipe(depth=4, beam=4, min_fit=0.0),
                 PracticeRecipe(tasks=("rot",), rounds=1, inputs=4096, samples=1, steps=3000, rank=16,
                                temperature=0.3, n_eval=100),
                 dict(steps=1500, rank=16, pool=2000, batch_size=64))


def _demo(seed: int, quick: bool) -> DemoConfig:
    if quick:
        return DemoConfig(base=BaseRecipe(size="tiny", steps=4, batch_size=8, pool=64),
                          tasks=("rot", "shift", "swap", "drop"), steps=3, rank=2, seed=seed)
    return DemoConfig(seed=seed)


def holds_rule(figures: dict) -> bool:
    """The docstring's rule, from ``figures`` alone."""
    by = figures["by_k"]
    em = {lib: {sc: [by[str(k)][lib][sc]["exact_match"] for k in KS] for sc in SCORES} for lib in LIBRARIES}
    a = all(em["twins"]["both"][i] > em["twins"][o][i] for o in SCORES[1:] for i in range(len(KS)))
    b = all(em["library"]["both"][i] > by[str(k)]["trained_k2"]["exact_match"] for i, k in enumerate(KS))
    d = figures["distil"]
    c = bool(d) and all(r["distilled"] >= r["chain"] - DISTIL_MARGIN for r in d)
    return bool(a and b and c)


def _summary(rows: list[dict]) -> dict:
    """Per k: for each library and score, correct plans, mean exact match, plan length,
    skill calls and seconds; the named chain's and the k ≤ 2 LoRA's exact match."""
    out = {}
    for k in KS:
        mine = [r for r in rows if r["k"] == k]
        out[str(k)] = {lib: {sc: {
            "correct_plans": int(sum(r[lib][sc]["correct_plan"] for r in mine)),
            "exact_match": float(np.mean([r[lib][sc]["exact_match"] for r in mine])),
            "plan_length": float(np.mean([len(r[lib][sc]["steps"]) for r in mine])),
            "calls": float(np.mean([r[lib][sc]["calls"] for r in mine])),
            "seconds": float(np.mean([r[lib][sc]["seconds"] for r in mine]))}
            for sc in SCORES} for lib in LIBRARIES}
        out[str(k)].update({"tasks": len(mine),
                            "named": {"exact_match": float(np.mean([r["named"] for r in mine]))},
                            "trained_k2": {"exact_match": float(np.mean([r["trained_k2"] for r in mine]))}})
    return out


NAMES = {"both": "usefulness × affordance", "usefulness": "usefulness alone", "affordance": "affordance alone"}


def _report(figures: dict, out_dir, seeds, sz: Sizes):
    by = figures["by_k"]
    header = ["library", "subject", *[f"k={k} EM (correct plans, length)" for k in KS]]
    table = [[lib, NAMES[sc], *[f"{by[str(k)][lib][sc]['exact_match']:.2f} "
                                f"({by[str(k)][lib][sc]['correct_plans']}/{by[str(k)]['tasks']}, "
                                f"{by[str(k)][lib][sc]['plan_length']:.1f})" for k in KS]]
             for lib in LIBRARIES for sc in SCORES]
    table += [["—", "named call-by-call", *[f"{by[str(k)]['named']['exact_match']:.2f} (—, {k})" for k in KS]],
              ["—", "k ≤ 2 LoRA, one call", *[f"{by[str(k)]['trained_k2']['exact_match']:.2f} (—, 1)"
                                             for k in KS]]]
    series = {f"{lib}: {NAMES[sc]}": [(k, by[str(k)][lib][sc]["exact_match"]) for k in KS]
              for lib in LIBRARIES for sc in SCORES}
    series["named call-by-call"] = [(k, by[str(k)]["named"]["exact_match"]) for k in KS]
    series["k ≤ 2 LoRA"] = [(k, by[str(k)]["trained_k2"]["exact_match"]) for k in KS]
    curves(series, out_dir / "saycan_em.png", "Held-out exact match of plans by task length",
           "k (steps in the task)", "exact match")
    distil = figures["distil"]
    sections = [
        Section("Plans over library skills", text=(
            f"{len(seeds)} seeds × {sz.tasks_per_k} tasks per k; {sz.examples} examples shown to the "
            f"planner; {sz.n_eval} held-out inputs per task. 'library': the six demo skills; 'twins': "
            f"those six and a twin of each trained {figures['twin_steps']} steps. A correct plan computes "
            "the task's function on every held-out input."), table=(header, table), images=["saycan_em.png"]),
        Section("Distilled plans: one call instead of k", table=(
            ["task", "plan", "chain EM", "distilled EM", "accepted attempts"],
            [[d["task"], " → ".join(d["steps"]), f"{d['chain']:.2f}", f"{d['distilled']:.2f}",
              d["accepted"]] for d in distil])),
    ]
    return header, table, sections


def _exact(world, preds, examples) -> float:
    return float(np.mean([world.grade(e, p) for e, p in zip(examples, preds, strict=True)]))


def _library(lib, base, demo: DemoConfig, skills, ui, quick: bool):
    """The demo skills and their twins trained for ``TWIN_STEPS`` (the unreliable versions)."""
    steps = 1 if quick else TWIN_STEPS
    jobs = [train_job(f"{s.name}-early", base, replace(demo.skill_recipe(s.recipe["task"]), steps=steps))
            for s in skills]
    with ui.jobs(f"twin skills ({steps} steps)", len(jobs)) as progress, get_executor() as ex:
        done = ensure(ex, lib, jobs, progress, what="training")
    return [lib.get(r.result["ref"]) for r in done]


def _plan_row(base, world, tok, pool, runner, pairs, task, held_out, rec) -> dict:
    """One score's plan for one task on one library, and how it does on held-out inputs."""
    xs = [world.input_of(e.prompt) for e in held_out]
    t0 = time.perf_counter()
    found = plan(base, pool, pairs, rec, runner)
    index = {s.ref: i for i, s in enumerate(pool)}
    steps = found["steps"]
    chain_run = ChainRunner([runner.models[index[r]] for r in found["members"]], steps, tok, world)
    return {"steps": steps, "members": found["members"], "fit": found["fit"],
            "correct_plan": all(world.apply("+".join(steps), x) == world.apply(task, x) for x in xs),
            "exact_match": _exact(world, chain_run(xs), held_out), "calls": found["calls"],
            "seconds": time.perf_counter() - t0}


def run(lib, ui, out_dir, seed: int = 0, quick: bool = False) -> Outcome:
    torch.set_num_threads(1)
    sz = sizes(quick)
    demo = _demo(0, quick)
    world = get_world(demo.base.world)
    base, skills = demo_skills(lib, demo, ui)
    twins = _library(lib, base, demo, skills, ui, quick)
    prims = list(demo.tasks)
    chain_lora, *_ = ensure_chain_lora(lib, base, demo.base.world, prims, sz.chain_lora, 0, ui)
    k2 = base.load_model([chain_lora])
    tok = base.load_tokenizer()
    seeds = SEEDS[:1] if quick else tuple(seed + s for s in SEEDS)
    index = {s.recipe["task"]: i for i, s in enumerate(skills)}
    rows: list[dict] = []
    total = len(seeds) * len(KS) * sz.tasks_per_k
    with ui.bar("plans", total) as step:
        for s in seeds:
            pools = {"library": list(skills), "twins": list(skills + twins)}
            random.Random(f"saycan|{s}").shuffle(pools["twins"])   # no order favours either twin
            runners = {name: SkillSteps(base, pool, world) for name, pool in pools.items()}
            for k in KS:
                for chain in sample_chains(prims, k, sz.tasks_per_k, s):
                    task = "+".join(chain)
                    shown = world.examples(task, sz.examples, seed=s, split="train")
                    pairs = [(world.input_of(e.prompt), e.target) for e in shown]
                    held_out = world.examples(task, sz.n_eval, seed=s, split="eval")
                    xs = [world.input_of(e.prompt) for e in held_out]
                    named = ChainRunner([runners["library"].models[index[p]] for p in chain], list(chain),
                                        tok, world)
                    ids = greedy(k2, tok, [e.prompt for e in held_out], world.max_target_len(task) + 2)
                    row = {"seed": s, "k": k, "task": task, "named": _exact(world, named(xs), held_out),
                           "trained_k2": _exact(world, [tok.decode(a, skip_special_tokens=True) for a in ids],
                                                held_out)}
                    for name, pool in pools.items():
                        row[name] = {score: _plan_row(base, world, tok, pool, runners[name], pairs, task,
                                                      held_out, replace(sz.plan, score=score, seed=s))
                                     for score in SCORES}
                    rows.append(row)
                    step(len(rows), None)
            if s == seeds[0]:
                first_runner = runners["library"]

    distil = []
    first = [r for r in rows if r["seed"] == seeds[0]]
    with ui.bar("distillation", len(KS)) as step:
        for i, k in enumerate(KS):
            got = next((r for r in first if r["k"] == k and (r["library"]["both"]["correct_plan"]
                                                              or quick)), None)
            if got is not None:
                distil.append(_distil(lib, base, skills, got, seeds[0], sz, world, ui, first_runner))
            step(i + 1, None)

    figures = {"by_k": _summary(rows), "tasks": rows, "distil": distil, "seeds": list(seeds),
               "plan_recipe": sz.plan.as_dict(), "examples": sz.examples, "n_eval": sz.n_eval,
               "twin_steps": 1 if quick else TWIN_STEPS, "chain_skill": chain_lora.ref,
               "holds_rule": {"distil_margin": DISTIL_MARGIN}}
    holds = holds_rule(figures)
    header, table, sections = _report(figures, out_dir, seeds, sz)
    notes = "quick: tiny sizes; the figures mean nothing" if quick else ""
    return Outcome(figures=figures, holds=holds, table=(header, table), sections=sections, notes=notes)


def _distil(lib, base, skills, row, seed, sz: Sizes, world, ui, runner) -> dict:
    """Store the row's usefulness × affordance plan as a chain and distil it into one LoRA."""
    steps = row["library"]["both"]["steps"]
    task = "+".join(steps)
    shown = world.examples(row["task"], sz.examples, seed=seed, split="train")
    pairs = [(world.input_of(e.prompt), e.target) for e in shown]
    chain, _ = make_chain(lib, f"saycan-plan-{task.replace('+', '-')}", base, skills, pairs,
                          replace(sz.plan, score="both", seed=seed), runner)
    practice = replace(sz.distil, tasks=(task,), teacher=chain.ref, seed=seed)
    history = practise(lib, f"saycan-distil-{task.replace('+', '-')}", base, practice, ui=ui)
    last = history[-1]
    # the chain on the very inputs the distilled LoRA is scored on (practice's held-out set)
    chain_em = evaluate_chain(load_chain(lib, base, chain, world), world, task, practice.n_eval,
                              practice.seed)["exact_match"]
    return {"task": row["task"], "k": row["k"], "steps": steps, "chain_skill": chain.ref,
            "chain": chain_em, "distilled": (last.get("held_out") or {}).get(task, 0.0),
            "accepted": last["accepted"], "distilled_skill": last["stored"]}
