"""PSEC in its own domain: policy skills on Meta-World, expanded and composed in parameter space.

Liu et al. (2025) grow a policy's skill library as LoRA modules on a frozen base and compose
them per state with α(s) (docs/methods.md §1, §16). Here, at CPU scale, for each of 3 seeds
(the seed is Meta-World's benchmark seed: it draws the 50 goals, the demonstrations' noise
and every initialisation):

- **base**: the policy network (3 blocks × 256) cloned from 25 expert demonstrations each of
  reach, push and pick-place (``policy.bc.PolicyBaseRecipe``).
- **1. Expansion**: door-open, drawer-open, button-press-topdown and window-open, each learnt
  from 10 demonstrations as a rank-6 LoRA on the base (4.5% of its parameters; rank 8 would
  be 6.0%) against the same network cloned from scratch on the same demonstrations (same
  steps and learning rate, every parameter trained). Also from 1 demonstration: at 10 both
  saturate on these tasks (measured: 1.00 and 1.00), so a difference can only show where
  data is scarce, the regime PSEC's few-shot expansion is about.
- **2. Composition**: window-close, button-press (the front button) and faucet-open, three
  tasks the base alone fails (0.00 on 10 held-out goals; drawer-close, tried first, it
  solves: 1.00, so it cannot tell methods apart), each from 3 demonstrations: α(s) over
  the four expansion skills with a new LoRA beside it,
  against the new LoRA alone (same demonstrations), α(s) alone, and the static merges of the
  four skills and the new LoRA (linear average, task arithmetic λ = 0.3 on the library and 1
  on the new LoRA, TIES at density 0.2).
- **4. Dynamics shift**: door-open under the hand speed ×0.5 and ×2 (``env.speed``), one
  LoRA from 10 demonstrations each; the unseen setting ×1.25 from 3 demonstrations: α(s)
  over the two (+ a new LoRA) against each alone and the new LoRA alone.
- **3. Continual policy shift**: the four expansion tasks in turn, 10 demonstrations each,
  under ``seq``, ``replay``, ``ewc`` and ``expand`` (``policy.continual``), 10 held-out
  episodes per measurement; R, LIBERO's FWT/NBT/AUC and Chaudhry's forgetting.

Every subject's success rate is measured on the 20 held-out goals (indices 25–44; the
demonstrations use 0–24), 200 steps per episode. Skills, routers and the base are stored in
the library and found again by recipe.

Rule: ``holds`` iff (1) the LoRAs' mean success over tasks and seeds is above the
scratch policies' and each uses ≤ 5% of the base's parameters, at 10 demonstrations
(``expansion``) and at 1 (``expansion_1demo``), each part reported; (2) composition with a new
LoRA is above the new LoRA alone and above every static merge (means over tasks and seeds);
(3) expansion's mean forgetting is 0 and sequential fine-tuning's is above 0; (4) composition
at the unseen speed is above each skill alone and the new LoRA alone. Reported beside the
rule, not part of it: whether LIBERO's finding (``seq`` has the best FWT) holds here.

Each seed is one ``psec-seed`` job whose figures are kept in the library (results of subject
``repro:psec:seed``, keyed by the seed, the sizes and the skillbank version) and found
again: ``--workers 2`` runs two seeds at once, and a re-run reports what is stored.

Run: ``skillbank repro psec [--workers 2]`` (about 60 minutes in one process on 2 cores;
``--quick`` takes about two and its figures mean nothing). Needs ``pip install 'skillbank[policy]'``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace

import torch

from ..compose.ops import MergeSpec, merge_skills
from ..policy import require
from ..policy.bc import (
    PolicyBaseRecipe,
    PolicyLoraRecipe,
    demo_cache,
    ensure_policy_base,
    ensure_policy_lora,
    train_scratch,
)
from ..policy.continual import PolicyContinualRecipe, run_policy_continual
from ..policy.evaluate import load_policy, success_rate
from ..policy.routed import StateRouterRecipe, ensure_state_router, load_state_routed
from ..run import ensure, register
from . import Outcome

PAPER = "Liu et al. 2025, Skill Expansion and Composition in Parameter Space (PSEC)"
CLAIM = ("policy skills as LoRAs on a frozen base learn new tasks from few demonstrations "
         "better than training from scratch, and context-aware composition α(s) of library "
         "skills beats a new LoRA alone and static merges, also under a dynamics shift")

SEEDS = (0, 1, 2)
EXPANSION = ("door-open-v3", "drawer-open-v3", "button-press-topdown-v3", "window-open-v3")
NEW_TASKS = ("window-close-v3", "button-press-v3", "faucet-open-v3")
SHIFT_TASK, SHIFT_SPEEDS, SHIFT_TARGET = "door-open-v3", (0.5, 2.0), 1.25
PARAM_LIMIT = 0.05


@dataclass(frozen=True)
class Sizes:
    base: PolicyBaseRecipe
    lora: PolicyLoraRecipe  # task filled per use
    router: StateRouterRecipe
    few: int
    episodes: int
    expansion: tuple[str, ...]
    new_tasks: tuple[str, ...]
    continual: PolicyContinualRecipe
    suffix: str = ""  # of the base's name: a quick base is another base


def sizes(quick: bool) -> Sizes:
    if quick:
        return Sizes(PolicyBaseRecipe(tasks=("reach-v3",), demos=2, steps=20, horizon=150),
                     PolicyLoraRecipe("door-open-v3", demos=2, rank=6, alpha=12, steps=10,
                                      horizon=150),
                     StateRouterRecipe(NEW_TASKS[0], demos=1, steps=10, new_rank=6,
                                       horizon=150), 1, 2, EXPANSION[:2], NEW_TASKS[:1],
                     PolicyContinualRecipe(EXPANSION[:2], demos=1, steps=10, curve_points=1,
                                           episodes=1, horizon=150), "-quick")
    return Sizes(PolicyBaseRecipe(), PolicyLoraRecipe("door-open-v3", rank=6, alpha=12),
                 StateRouterRecipe(NEW_TASKS[0], demos=3, new_rank=6), 3, 20, EXPANSION,
                 NEW_TASKS, PolicyContinualRecipe(EXPANSION, rank=6))


def _routed(base, router, members, new):
    return load_state_routed(base, router, members, [new] if new is not None else [])


def _merges(base, members, new, seed) -> dict:
    n = len(members)
    specs = {"linear": MergeSpec("linear"),
             "task_arithmetic": MergeSpec("task_arithmetic", weights=[0.3] * n + [1.0]),
             "ties": MergeSpec("ties", density=0.2)}
    return {k: merge_skills(f"psec-merge-{k}", [*members, new], spec, base)
            for k, spec in specs.items()}


def _seed(lib, ui, s: int, sz: Sizes, step) -> dict:
    ev = dict(episodes=sz.episodes, seed=s, horizon=sz.base.horizon)
    base, _ = ensure_policy_base(lib, f"psec-base-s{s}{sz.suffix}", replace(sz.base, seed=s))
    base_params = sum(p.numel() for p in base.load_model().parameters())
    out: dict = {"seed": s, "base": base.name, "base_parameters": base_params,
                 "expansion": [], "expansion_1demo": [], "composition": [], "shift": {}}
    skills = []
    for task in sz.expansion:
        recipe = replace(sz.lora, task=task, seed=s, horizon=sz.base.horizon)
        skill = ensure_policy_lora(lib, f"psec-s{s}-{task}", base, recipe)
        scratch, _ = train_scratch(base, recipe, cache=demo_cache(lib))
        skills.append(skill)
        n = sum(t.numel() for t in skill.tensors.values())
        out["expansion"].append({
            "task": task, "skill": skill.ref, "parameters": n, "fraction": round(n / base_params, 4),
            "base": success_rate(load_policy(base), task, **ev)["success"],
            "lora": success_rate(load_policy(base, skill), task, **ev),
            "scratch": success_rate(scratch, task, **ev)})
        one = replace(recipe, demos=1)
        scratch1, _ = train_scratch(base, one, cache=demo_cache(lib))
        skill1 = ensure_policy_lora(lib, f"psec-s{s}-{task}-1demo", base, one)
        out["expansion_1demo"].append({
            "task": task, "lora": success_rate(load_policy(base, skill1), task, **ev),
            "scratch": success_rate(scratch1, task, **ev)})
        step()
    for task in sz.new_tasks:
        few = replace(sz.lora, task=task, seed=s, demos=sz.few, horizon=sz.base.horizon)
        new_alone = ensure_policy_lora(lib, f"psec-s{s}-{task}-few", base, few)
        r = replace(sz.router, task=task, seed=s, demos=sz.few, horizon=sz.base.horizon)
        router, new = ensure_state_router(lib, f"psec-s{s}-{task}-router", base, skills, r)
        plain, _ = ensure_state_router(lib, f"psec-s{s}-{task}-alpha", base, skills,
                                  replace(r, new_rank=0))
        row = {"task": task, "base": success_rate(load_policy(base), task, **ev)["success"],
               "new_lora": success_rate(load_policy(base, new_alone), task, **ev)["success"],
               "alpha": success_rate(_routed(base, plain, skills, None), task, **ev)["success"],
               "alpha_new": success_rate(_routed(base, router, skills, new), task, **ev)["success"],
               "router": router.ref}
        for k, merged in _merges(base, skills, new_alone, s).items():
            row[k] = success_rate(base.load_model([merged]), task, **ev)["success"]
        out["composition"].append(row)
        step()
    out["shift"] = _shift(lib, base, s, sz, ev)
    step()
    cont = run_policy_continual(base, replace(sz.continual, seed=s, horizon=sz.base.horizon),
                                cache=demo_cache(lib))
    out["continual"] = cont
    step()
    return out


def _shift(lib, base, s, sz: Sizes, ev) -> dict:
    h = sz.base.horizon
    at = [ensure_policy_lora(lib, f"psec-s{s}-{SHIFT_TASK}-speed{v}", base,
                       replace(sz.lora, task=SHIFT_TASK, seed=s, speed=v, horizon=h))
          for v in SHIFT_SPEEDS]
    few = replace(sz.lora, task=SHIFT_TASK, seed=s, demos=sz.few, speed=SHIFT_TARGET, horizon=h)
    new_alone = ensure_policy_lora(lib, f"psec-s{s}-{SHIFT_TASK}-speed{SHIFT_TARGET}-few", base, few)
    r = replace(sz.router, task=SHIFT_TASK, seed=s, demos=sz.few, speed=SHIFT_TARGET, horizon=h)
    router, new = ensure_state_router(lib, f"psec-s{s}-{SHIFT_TASK}-speed-router", base, at, r)
    ev = {**ev, "speed": SHIFT_TARGET}
    return {"task": SHIFT_TASK, "speeds": list(SHIFT_SPEEDS), "target": SHIFT_TARGET,
            **{f"speed{v}": success_rate(load_policy(base, k), SHIFT_TASK, **ev)["success"]
               for v, k in zip(SHIFT_SPEEDS, at, strict=True)},
            "new_lora": success_rate(load_policy(base, new_alone), SHIFT_TASK, **ev)["success"],
            "alpha_new": success_rate(_routed(base, router, at, new), SHIFT_TASK, **ev)["success"]}


def _mean(xs) -> float:
    xs = list(xs)
    return round(statistics.fmean(xs), 4) if xs else 0.0


CONTINUAL_METRICS = ("acc", "forgetting", "fwt", "nbt", "auc", "bwt")


def summary(per_seed: list[dict]) -> dict:
    exp = [e for r in per_seed for e in r["expansion"]]
    one = [e for r in per_seed for e in r["expansion_1demo"]]
    strategies = per_seed[0]["continual"]["strategies"] if per_seed else {}
    comp = [c for r in per_seed for c in r["composition"]]
    shift = [r["shift"] for r in per_seed]
    methods = ("base", "new_lora", "alpha", "alpha_new", "linear", "task_arithmetic", "ties")
    return {
        "expansion": {"lora": _mean(e["lora"]["success"] for e in exp),
                      "scratch": _mean(e["scratch"]["success"] for e in exp),
                      "base": _mean(e["base"] for e in exp),
                      "max_fraction": max((e["fraction"] for e in exp), default=0.0)},
        "expansion_1demo": {"lora": _mean(e["lora"]["success"] for e in one),
                            "scratch": _mean(e["scratch"]["success"] for e in one)},
        "continual": {k: {m: _mean(r["continual"]["strategies"][k][m] for r in per_seed)
                          for m in CONTINUAL_METRICS} for k in strategies},
        "composition": {m: _mean(c[m] for c in comp) for m in methods},
        "shift": {k: _mean(x[k] for x in shift)
                  for k in [f"speed{v}" for v in SHIFT_SPEEDS] + ["new_lora", "alpha_new"]},
    }


def holds_rule(s: dict) -> dict:
    e, c, d, k = s["expansion"], s["composition"], s["shift"], s["continual"]
    one = s["expansion_1demo"]
    return {
        "expansion": e["lora"] > e["scratch"] and e["max_fraction"] <= PARAM_LIMIT,
        "expansion_1demo": one["lora"] > one["scratch"] and e["max_fraction"] <= PARAM_LIMIT,
        "continual": k["expand"]["forgetting"] == 0 and k["seq"]["forgetting"] > 0,
        "composition": c["alpha_new"] > max(c["new_lora"], c["linear"], c["task_arithmetic"],
                                            c["ties"]),
        "shift": d["alpha_new"] > max(v for k, v in d.items() if k != "alpha_new"),
    }


def libero_finding(s: dict) -> bool:
    """LIBERO (Liu et al. 2023): sequential fine-tuning has the best forward transfer."""
    fwt = {k: v["fwt"] for k, v in s["continual"].items()}
    return "seq" in fwt and fwt["seq"] >= max(fwt.values())


SUBJECT = "repro:psec:seed"


def seed_spec(s: int, quick: bool) -> dict:
    """What one seed's figures depend on (its job's spec and the stored row's key)."""
    from .. import __version__

    return {"seed": s, "quick": quick, "sizes": repr(sizes(quick)), "version": __version__}


def stored_seed(lib, spec: dict) -> dict | None:
    rows = [r for r in lib.results(SUBJECT) if r["spec"] == spec]
    return rows[-1] if rows else None


def _seed_stored(lib, spec: dict) -> dict | None:
    row = stored_seed(lib, spec)
    return None if row is None else {"row": row["id"], "new": False}


def _seed_run(worker, lib, spec: dict) -> dict:
    from ..run.worker import QuietUi

    per = _seed(lib, QuietUi(), spec["seed"], sizes(spec["quick"]), lambda: None)
    return {"row": lib.add_result(SUBJECT, "metaworld", "", per, spec), "new": True}


PSEC_SEED = register("psec-seed", _seed_run, _seed_stored)


def _seeds(seed: int, quick: bool) -> tuple[int, ...]:
    return SEEDS[:1] if quick else tuple(seed + s for s in SEEDS)


def prepare(lib, ui, seed: int, quick: bool, executor) -> None:
    """Run every seed as a ``psec-seed`` job on ``executor`` (stored seeds skipped);
    :func:`run` then reports them."""
    require()
    jobs = [PSEC_SEED.job(seed_spec(s, quick), f"psec seed {s}") for s in _seeds(seed, quick)]
    with ui.jobs(f"psec seeds ({executor.name} × {executor.workers})", len(jobs)) as progress:
        ensure(executor, lib, jobs, progress, what="psec seed")


def run(lib, ui, out_dir, seed: int = 0, quick: bool = False) -> Outcome:
    require()
    torch.set_num_threads(2)
    sz = sizes(quick)
    seeds = _seeds(seed, quick)
    start = time.perf_counter()
    per_seed = []
    total = len(seeds) * (len(sz.expansion) + len(sz.new_tasks) + 2)
    with ui.bar("psec", total) as bar:
        done = [0]

        def step():
            done[0] += 1
            bar(done[0], None)
        for s in seeds:
            spec = seed_spec(s, quick)
            row = stored_seed(lib, spec)
            if row is None:
                per = _seed(lib, ui, s, sz, step)
                lib.add_result(SUBJECT, "metaworld", "", per, spec)
            else:
                per = row["metrics"]
                for _ in range(len(sz.expansion) + len(sz.new_tasks) + 2):
                    step()
            per_seed.append(per)
    summ = summary(per_seed)
    parts = holds_rule(summ)
    figures = {"summary": summ, "holds_parts": parts, "per_seed": per_seed, "seeds": list(seeds),
               "episodes": sz.episodes, "few_demos": sz.few, "base_recipe": sz.base.as_meta(),
               "libero_seq_best_fwt": libero_finding(summ),
               "seconds": round(time.perf_counter() - start, 1)}
    e, c, d, k = summ["expansion"], summ["composition"], summ["shift"], summ["continual"]
    one = summ["expansion_1demo"]
    rows = [["1 expansion (10 demos)", f"LoRA {e['lora']:.2f}", f"scratch {e['scratch']:.2f}",
             f"base {e['base']:.2f}", f"≤ {e['max_fraction']:.1%} params", parts["expansion"]],
            ["1 expansion (1 demo)", f"LoRA {one['lora']:.2f}", f"scratch {one['scratch']:.2f}",
             "", "", parts["expansion_1demo"]],
            ["3 continual (forgetting)", f"expand {k['expand']['forgetting']:.2f}",
             f"seq {k['seq']['forgetting']:.2f}",
             " · ".join(f"{n} {v['forgetting']:.2f}" for n, v in k.items()
                        if n not in ("expand", "seq")),
             "FWT " + " · ".join(f"{n} {v['fwt']:.2f}" for n, v in k.items()),
             parts["continual"]],
            ["2 composition (3 demos)", f"α(s)+new {c['alpha_new']:.2f}",
             f"new LoRA {c['new_lora']:.2f}", f"α(s) {c['alpha']:.2f}",
             f"linear {c['linear']:.2f} · TA {c['task_arithmetic']:.2f} · TIES {c['ties']:.2f}",
             parts["composition"]],
            ["4 dynamics shift (×1.25)", f"α(s)+new {d['alpha_new']:.2f}",
             f"new LoRA {d['new_lora']:.2f}",
             " · ".join(f"×{v} {d[f'speed{v}']:.2f}" for v in SHIFT_SPEEDS), "", parts["shift"]]]
    rows.sort(key=lambda row: row[0][0])  # by claim number
    notes = "quick: tiny sizes; the figures mean nothing" if quick else (
        "LIBERO's finding (seq has the best FWT) "
        + ("holds" if figures["libero_seq_best_fwt"] else "does not hold") + " here")
    return Outcome(figures=figures, holds=all(parts.values()),
                   table=(["claim", "composed / learnt", "against", "also", "", "holds"], rows),
                   notes=notes)
