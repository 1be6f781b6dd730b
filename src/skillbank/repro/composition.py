"""``skillbank repro composition``: every composition method on the same six strings skills.

Methods, all on the demo's six LoRA skills (``standard.demo_skills``) and its base:

- training-free ΔW merges (``compose/ops.py``): ``linear`` (weights 1), ``ties-peft`` and
  ``ties-mergekit`` (density 0.2, the two sign conventions), ``dare_linear`` and
  ``dare_ties`` (density 0.5), ``magnitude_prune`` (density 0.2), ``cat`` (exact LoRA,
  rank Σ r_i) and ``layer_swap`` (layer l from member l mod n);
- LoRAHub (``compose/lorahub.py``). LoRAHub is meant for a *new* task; here it is run once
  per member task T, searching weights over all six members from T's few training
  examples, and is evaluated (normalised) on T only;
- the four ScaLearn variants (``compose/scalearn.py``), trained on a few hundred examples
  of all six tasks;
- the PSEC router (``compose/route.py``), trained on the same mixture.

Figures: per method, exact match and normalised accuracy (composed / member alone, on the
member's own task; ``compose/measure.py``) per task, wall seconds (building + evaluating),
and two errors: ``stored_error`` (what the stored form loses, the manifest's merge error:
0 for every method here, all stored as exact ``delta`` or ``cat`` LoRA) and
``merge_error``, the relative Frobenius distance of the method's ΔW from the exact sum of
the members' ΔW, ‖ΔW_method − Σ_i ΔW_i‖ / ‖Σ_i ΔW_i‖ over all matrices (0 for the exact
merges ``linear`` and ``cat``; for LoRAHub and ScaLearn it measures how far the learned
weights moved from the plain sum; ``None`` for the router, which has no static ΔW).

``holds`` rule: the router's normalised accuracy is ≥ 0.95 on every
member task (a task whose member scores 0 alone counts as a miss).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..base import Base
from ..compose.lorahub import lorahub
from ..compose.measure import normalised
from ..compose.ops import MergeSpec, aligned_deltas, merge_skills
from ..compose.route import RouterRecipe, load_routed
from ..compose.scalearn import VARIANTS, ScaLearnRecipe, train_scalearn
from ..evaluate.suites import evaluate_model
from ..report.html import Section
from ..report.plots import heatmap
from ..skill import Skill
from ..standard import DemoConfig, demo_router, demo_skills
from ..worlds import get_world
from . import Outcome

PAPER = (
    "PSEC (Liu et al. 2025); task arithmetic, TIES, DARE, layer swapping (PEFT, mergekit); "
    "LoRAHub (Huang et al. 2024); ScaLearn (Frohmann et al. 2023)"
)
CLAIM = "a routed composition of 6 skills keeps ≥ 95% normalised accuracy on every member task"
TARGET = 0.95
WORLD = "strings"


@dataclass(frozen=True)
class Scale:
    n_eval: int = 200
    router_steps: int | None = None  # None: RouterRecipe's default (the demo's router)
    router_batch: int | None = None
    scalearn_steps: int = 250
    scalearn_pool: int = 300
    lorahub_steps: int = 40
    lorahub_examples: int = 5


FULL = Scale()
QUICK = Scale(
    n_eval=6,
    router_steps=3,
    router_batch=8,
    scalearn_steps=3,
    scalearn_pool=16,
    lorahub_steps=4,
    lorahub_examples=3,
)


def merge_specs(n_members: int, n_layers: int, seed: int) -> dict[str, MergeSpec]:
    """The training-free merges compared, by the name used in the figures."""
    return {
        "linear": MergeSpec("linear", seed=seed),
        "ties-peft": MergeSpec("ties", density=0.2, convention="peft", seed=seed),
        "ties-mergekit": MergeSpec("ties", density=0.2, convention="mergekit", seed=seed),
        "dare_linear": MergeSpec("dare_linear", density=0.5, seed=seed),
        "dare_ties": MergeSpec("dare_ties", density=0.5, seed=seed),
        "magnitude_prune": MergeSpec("magnitude_prune", density=0.2, seed=seed),
        "cat": MergeSpec("cat", seed=seed),
        "layer_swap": MergeSpec(
            "layer_swap", swap=[i % n_members for i in range(n_layers)], seed=seed
        ),
    }


def deviation_from_sum(
    merged: dict[str, torch.Tensor], aligned: dict[str, list[torch.Tensor]]
) -> float:
    """‖ΔW_merged − Σ_i ΔW_i‖_F / ‖Σ_i ΔW_i‖_F over all matrices together (0 if the sum is 0)."""
    num = den = 0.0
    for p, taus in aligned.items():
        total = torch.stack([t.float() for t in taus]).sum(0)
        got = merged.get(p, torch.zeros_like(total)).float()
        num += float(((got - total) ** 2).sum())
        den += float((total**2).sum())
    return (num / den) ** 0.5 if den > 0 else 0.0


def scale_router(scale: Scale, tasks: Sequence[str], seed: int) -> RouterRecipe:
    given = {"steps": scale.router_steps, "batch_size": scale.router_batch}
    return RouterRecipe(WORLD, tuple(tasks), seed=seed,
                        **{k: v for k, v in given.items() if v is not None})


def holds(figures: dict) -> bool:
    """The docstring's rule: the router keeps ≥ TARGET normalised accuracy on every task."""
    norm = figures["methods"]["router"]["normalised"]
    return all(v is not None and v >= TARGET for v in norm.values())


def _exact_match(model, base: Base, tasks: Sequence[str], n: int, seed: int) -> dict[str, float]:
    tok, world = base.load_tokenizer(), get_world(WORLD)
    return {t: evaluate_model(model, tok, world, t, n, seed)["exact_match"] for t in tasks}


def _static_entry(skill: Skill, aligned, base, tasks, n, seed, alone, t0, extra=None) -> dict:
    em = _exact_match(base.load_model([skill]), base, tasks, n, seed)
    return {
        "exact_match": em,
        "normalised": normalised(em, {t: alone[t] for t in tasks}),
        "merge_error": deviation_from_sum(skill.delta(), aligned),
        "stored_error": skill.metrics.get("merge_error", {}).get("max", 0.0),
        "seconds": round(time.perf_counter() - t0, 2),
        **(extra or {}),
    }


def compare(
    lib,
    base: Base,
    skills: Sequence[Skill],
    tasks: Sequence[str],
    methods: Sequence[str],
    scale: Scale,
    seed: int,
    ui,
    router: RouterRecipe | None = None,
    executor=None,
    alone: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Build every requested method on ``skills`` and measure it; the figures of this module.
    The router is ``router`` (default: :func:`scale_router`), re-used or trained as a job
    on ``executor`` (default: in this process). ``alone`` is each member's exact match on
    its own task with ``scale.n_eval`` and ``seed`` (a matrix's diagonal), measured here
    when not given."""
    n = scale.n_eval
    aligned = aligned_deltas(skills)
    if alone is None:
        alone = {}
        with ui.bar("members alone", len(skills)) as step:
            for i, (s, t) in enumerate(zip(skills, tasks, strict=True)):
                alone[t] = _exact_match(base.load_model([s]), base, [t], n, seed)[t]
                step(i + 1, None)
    n_layers = base.load_model().config.num_hidden_layers
    specs = merge_specs(len(skills), n_layers, seed)
    out: dict[str, dict] = {}
    with ui.bar("merges", sum(m in specs for m in methods)) as step:
        for m in [m for m in methods if m in specs]:
            t0 = time.perf_counter()
            merged = merge_skills(f"repro-{m}", skills, specs[m])
            out[m] = _static_entry(
                merged, aligned, base, tasks, n, seed, alone, t0, {"spec": asdict(specs[m])}
            )
            step(len(out), None)
    for variant in [m for m in methods if m in VARIANTS]:
        t0 = time.perf_counter()
        recipe = ScaLearnRecipe(
            variant=variant, steps=scale.scalearn_steps, pool=scale.scalearn_pool, seed=seed
        )
        with ui.bar(variant, recipe.steps) as step:
            s = train_scalearn(
                f"repro-{variant.replace('+', 'p')}",
                base,
                skills,
                WORLD,
                tasks,
                recipe,
                progress=step,
            )
        out[variant] = _static_entry(
            s,
            aligned,
            base,
            tasks,
            n,
            seed,
            alone,
            t0,
            {"omega_params": s.metrics["omega_params"], "omega_mean": s.metrics["omega_mean"]},
        )
    if "lorahub" in methods:
        t0 = time.perf_counter()
        em, weights, errs = {}, {}, []
        with ui.bar("lorahub (one search per task)", len(tasks)) as step:
            for i, t in enumerate(tasks):
                s = lorahub(
                    f"repro-lorahub-{t}",
                    base,
                    skills,
                    WORLD,
                    t,
                    scale.lorahub_examples,
                    scale.lorahub_steps,
                    seed,
                )
                em[t] = _exact_match(base.load_model([s]), base, [t], n, seed)[t]
                weights[t] = s.recipe["weights"]
                errs.append(deviation_from_sum(s.delta(), aligned))
                step(i + 1, None)
        out["lorahub"] = {
            "exact_match": em,
            "normalised": normalised(em, alone),
            "merge_error": max(errs),
            "stored_error": 0.0,
            "weights": weights,
            "seconds": round(time.perf_counter() - t0, 2),
            "note": "one search per member task from its few examples; each "
            "composition evaluated on its own task only",
        }
    if "router" in methods:
        t0 = time.perf_counter()
        recipe = router if router is not None else scale_router(scale, tasks, seed)
        r = demo_router(lib, base, list(skills), recipe, ui, executor)
        em = _exact_match(load_routed(base, r, skills), base, tasks, n, seed)
        out["router"] = {
            "exact_match": em,
            "normalised": normalised(em, alone),
            "merge_error": None,
            "stored_error": 0.0,
            "seconds": round(time.perf_counter() - t0, 2),
            "train_seconds": r.metrics["train"]["seconds"],
            "ref": r.ref,
            "mean_alpha": r.metrics["mean_alpha"],
            "train": {"steps": recipe.steps, "lr": recipe.lr, "batch_size": recipe.batch_size},
        }
    for entry in out.values():
        vals = [v for v in entry["normalised"].values() if v is not None]
        entry["min_normalised"] = min(vals) if len(vals) == len(entry["normalised"]) else None
        entry["mean_normalised"] = sum(vals) / len(vals) if vals else None
    return {
        "tasks": list(tasks),
        "members": [s.ref for s in skills],
        "alone": alone,
        "methods": out,
        "target": TARGET,
        "n_eval": n,
        "world": WORLD,
        "scale": asdict(scale),
    }


def table_and_sections(figures: dict, out_dir: Path, title: str) -> tuple[tuple, list[Section]]:
    tasks, methods = figures["tasks"], figures["methods"]
    header = ["method", *tasks, "min", "merge error", "seconds"]
    rows = [["alone (exact match)", *[figures["alone"][t] for t in tasks], None, None, None]]
    rows += [
        [
            m,
            *[e["normalised"][t] for t in tasks],
            e["min_normalised"],
            e["merge_error"],
            e["seconds"],
        ]
        for m, e in methods.items()
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    png = "composition_normalised.png"
    heatmap(
        [[e["normalised"][t] for t in tasks] for e in methods.values()],
        list(methods),
        tasks,
        out_dir / png,
        "normalised accuracy (composed / member alone)",
        vmin=0.0,
        vmax=1.0,
    )
    text = (
        f"Normalised accuracy = exact match of the composition on a member's task / the member "
        f"alone, {figures['n_eval']} held-out inputs per task. "
        "Merge error = ‖ΔW − Σ ΔW_i‖/‖Σ ΔW_i‖ "
        "(0 for exact merges; none for the router, which acts per input). Target: the router "
        f"≥ {TARGET:.0%} on every task."
    )
    return (header, rows), [Section(title, text=text, table=(header, rows), images=[png])]


def run(lib, ui, out_dir: Path, seed: int = 0, quick: bool = False) -> Outcome:
    torch.set_num_threads(1)
    if quick:
        from ..acquire.pretrain import BaseRecipe

        cfg = DemoConfig(
            base=BaseRecipe(size="tiny", steps=20, pool=200), steps=6, rank=4, seed=seed
        )
    else:
        cfg = DemoConfig(seed=seed)
    base, skills = demo_skills(lib, cfg, ui)
    methods = [*merge_specs(1, 1, seed), "lorahub", *VARIANTS, "router"]
    figures = compare(lib, base, skills, cfg.tasks, methods, QUICK if quick else FULL, seed, ui)
    tab, sections = table_and_sections(figures, out_dir, "Normalised accuracy: methods × tasks")
    notes = (
        "LoRAHub is run once per member task from that task's few examples and evaluated on "
        "that task only."
    )
    if quick:
        notes += " Quick run: tiny base and barely trained skills; figures not comparable."
    return Outcome(figures=figures, holds=holds(figures), table=tab, sections=sections, notes=notes)


def composition_section(
    lib,
    base: Base,
    skills: Sequence[Skill],
    tasks: Sequence[str],
    out_dir: Path,
    ui,
    router: RouterRecipe,
    n_eval: int = 200,
    seed: int = 0,
    executor=None,
    alone: dict[str, float] | None = None,
) -> tuple[dict, list[Section]]:
    """For the demo: router, linear, ties (PEFT convention) and cat on the demo's skills, as
    ``(figures, sections)``; nearly all of its time is the router's training (a ``route``
    job on ``executor``). ``alone``: the members' own exact match, as :func:`compare`.
    ``figures["router_meets_target"]`` applies this module's rule."""
    figures = compare(lib, base, skills, tasks, ["linear", "ties-peft", "cat", "router"],
                      Scale(n_eval=n_eval), seed, ui, router=router, executor=executor,
                      alone=alone)
    figures["router_meets_target"] = holds(figures)
    _, sections = table_and_sections(figures, out_dir, "Composition: normalised accuracy")
    return figures, sections
