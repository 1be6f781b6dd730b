"""PassUntil at CPU scale: predict the largest member of a base family from the smaller ones.

Hu et al. (2024) sample each test instance until it passes (PassUntil), which resolves
pass rates far below greedy exact match's 1/n, and fit the task scaling law
log(−log PU) = a − α·log N across model sizes to predict a larger model's pass rate before
training it (docs/methods.md §13). Here: the default family (``acquire.family``: six
embedded bases of 7.5k–485k parameters, ``strings`` world, base tasks copy, rev and sort,
the same 100 steps of 64 examples for every size), each member measured on ``n`` held-out inputs of every base task
by PassUntil (until 2 passes or 10⁴ draws, T = 1) and by greedy decoding. The law is
fitted on the five smaller members (those with 0 < PU < 1) and predicts the largest.
The same on a skill: a LoRA for ``rot`` (``SKILL``: rank 8, 100 steps, the same recipe on
every member) measured and predicted the same way.

Rule: ``holds`` iff on at least two of the three base tasks the prediction is within a
factor of two of the measured pass rate both in p and in −log p (|Δ log p| ≤ log 2 and
|Δ log(−log p)| ≤ log 2: the first is lenient near p = 1, the second near 0; a largest
member at PU = 1 cannot be judged) while greedy exact match could not have made it (fewer
than three smaller members with 0 < EM < 1). The skill's prediction is reported beside
it, not judged.

Run: ``skillbank repro passuntil`` (``--workers 2`` spreads the family, the skills and the
measurements over two processes); ``--quick`` takes seconds and its figures mean nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..acquire.family import FamilyRecipe, ensure_family
from ..acquire.jobs import train_job
from ..acquire.lora import LoraRecipe
from ..acquire.pretrain import BaseRecipe
from ..evaluate.family import fit_and_predict, measure
from ..evaluate.passuntil import PassUntilConfig
from ..evaluate.scaling import from_loglog
from ..report.html import Section
from ..report.plots import curves
from ..run import ensure, get_executor
from . import Outcome

PAPER = ("Predicting Emergent Abilities with Infinite Resolution Evaluation "
         "(Hu et al. 2024; PassUntil)")
CLAIM = ("a task scaling law fitted by PassUntil on smaller bases predicts the largest "
         "base's pass rate, where greedy exact match cannot")

NAME = "pu"
TASKS = ["copy", "rev", "sort"]
SKILL_TASK = "rot"
FACTOR = 2.0


@dataclass(frozen=True)
class Sizes:
    family: FamilyRecipe
    n: int
    n_greedy: int
    cap: int
    skill_steps: int


FULL = Sizes(FamilyRecipe(), n=30, n_greedy=200, cap=10_000, skill_steps=100)
QUICK = Sizes(FamilyRecipe(sizes=("8x1", "16x1", "16x2", "24x2"),
                           base=BaseRecipe(steps=3, batch_size=4, pool=16)),
              n=3, n_greedy=3, cap=8, skill_steps=2)


def family_name(quick: bool) -> str:
    return NAME + ("-quick" if quick else "")


def skill_recipe(sizes: Sizes, seed: int) -> LoraRecipe:
    return LoraRecipe(world="strings", task=SKILL_TASK, steps=sizes.skill_steps, seed=seed,
                      batch_size=64 if sizes.skill_steps > 10 else 4,
                      pool=4000 if sizes.skill_steps > 10 else 16)


def skill_name(base: str) -> str:
    return f"{base}-{SKILL_TASK}"


def _measure_all(lib, ui, seed: int, quick: bool, executor) -> dict:
    """The family, its skills and every measurement: found or made as jobs."""
    sizes = QUICK if quick else FULL
    name = family_name(quick)
    with ui.jobs(f"family {name}", len(sizes.family.sizes)) as progress:
        members = ensure_family(lib, name, sizes.family, executor, progress=progress)
    recipe = skill_recipe(sizes, seed)
    with ui.jobs(f"skills {SKILL_TASK}", len(members)) as progress:
        made = ensure(executor, lib, [train_job(skill_name(m["base"]), lib.base(m["base"]), recipe)
                                      for m in members], progress=progress, what="skill training")
    cfg = PassUntilConfig(cap=sizes.cap, seed=seed)
    with ui.jobs("measure bases", len(members) * len(TASKS) * 2) as progress:
        bases = measure(lib, [(m["base"], f"base:{m['base']}") for m in members], "strings", TASKS,
                        sizes.n, cfg, executor, progress, n_greedy=sizes.n_greedy)
    with ui.jobs("measure skills", len(members) * 2) as progress:
        skills = measure(lib, [(m["base"], r.result["ref"]) for m, r in zip(members, made, strict=True)],
                         "strings", [SKILL_TASK], sizes.n, cfg, executor, progress,
                         n_greedy=sizes.n_greedy)
    return {"members": members, "bases": bases, "skills": skills, "config": cfg.as_dict()}


def prepare(lib, ui, seed: int = 0, quick: bool = False, executor=None) -> None:
    _measure_all(lib, ui, seed, quick, executor)


def measured(lib, ui, seed: int, quick: bool) -> dict:
    """What ``prepare`` made (found again), or made here in this process."""
    with get_executor(None) as ex:
        return _measure_all(lib, ui, seed, quick, ex)


def _row(what: str, f: dict) -> list:
    if "error" in f:
        return [what, f"{f['actual']:.2e}", "—", "—", "—",
                f"no fit: {len(f['fitted_on'])} smaller member(s) with 0 < PU < 1"]
    lo, hi = f["interval90"]
    return [what, f"{f['actual']:.2e}", f"{f['predicted']:.2e}", f"[{lo:.1e}, {hi:.1e}]",
            _off(f),
            "yes" if f["exact_match_fittable"] else f"no (max {f['exact_match_smaller_max']:.2f})"]


def _off(f: dict) -> str:
    """How far off, as factors on p and on −log p."""
    parts = [f"{math.exp(f[k]):.2f}× in {what}" for k, what in (("log_error", "p"),
                                                                  ("loglog_error", "−log p")) if k in f]
    return ", ".join(parts) or "—"


def run(lib, ui, out_dir, seed: int = 0, quick: bool = False) -> Outcome:
    m = measured(lib, ui, seed, quick)
    params = [x["parameters"] for x in m["members"]]
    per_task = {t: fit_and_predict(params, [c[t] for c in m["bases"]], seed) for t in TASKS}
    skill = fit_and_predict(params, [c[SKILL_TASK] for c in m["skills"]], seed)
    within = {t: max(f.get("log_error", math.inf), f.get("loglog_error", math.inf)) <= math.log(FACTOR)
              and not f["exact_match_fittable"] for t, f in per_task.items()}
    holds = sum(within.values()) >= 2
    figures = {"family": [{k: x[k] for k in ("size", "base", "parameters")} for x in m["members"]],
               "pass_until": m["config"], "tasks": per_task, "skill": {SKILL_TASK: skill},
               "within_factor": within, "factor": FACTOR}
    header = ["subject: task", "largest, measured", "predicted", "90% interval", "off by",
              "EM fittable on smaller"]
    rows = [_row(f"base: {t}", f) for t, f in per_task.items()]
    rows.append(_row(f"{SKILL_TASK} LoRA skill", skill))
    series = {f"{t} PassUntil": list(zip(params, f["pass_rate"], strict=True)) for t, f in per_task.items()}
    series |= {f"{t} exact match": list(zip(params, f["exact_match"], strict=True))
               for t, f in per_task.items()}
    for t, f in per_task.items():
        if "fit" in f:
            law = {"a": f["fit"]["a"], "b": f["fit"]["b"]}
            series[f"{t} law (fitted without the largest)"] = [
                (n, from_loglog(law["a"] + law["b"] * math.log(n))) for n in params]
    series = {k: v for k, v in series.items() if any(y > 0 for _, y in v)}   # log y: zeros not drawn
    image = "passuntil_scaling.png"
    curves(series, out_dir / image, "pass rate against parameters", "parameters (log)",
           "pass rate (log)", logy=True, logx=True)
    by_size = [[x["size"], f"{x['parameters']:,}",
                *[f"{per_task[t]['pass_rate'][i]:.2e} / {per_task[t]['exact_match'][i]:.2f}"
                  for t in TASKS],
                f"{skill['pass_rate'][i]:.2e} / {skill['exact_match'][i]:.2f}"]
               for i, x in enumerate(m["members"])]
    notes = "; ".join(f"{t}: {'within' if ok else 'not within'} {FACTOR:g}×" for t, ok in within.items())
    if quick:
        notes += ". Quick run: tiny sizes, figures not comparable with a full run."
    return Outcome(figures=figures, holds=holds, table=(header, rows), notes=notes, sections=[
        Section("PassUntil / greedy exact match by member",
                text="Each cell: PassUntil pass rate / greedy exact match. Exact match rounds "
                     "anything below 1/n to 0; PassUntil resolves it.",
                table=(["size", "parameters", *TASKS, f"{SKILL_TASK} skill"], by_size),
                images=[image])])
