"""``skillbank repro composition --profile real``: merging classifiers on a pretrained encoder.

Setting (the merging papers' own): four classification skills on all-MiniLM-L6-v2, one per
Debian task (``repro.real.TASKS``), each with its own head; a
merge shares one encoder and keeps each member's head (``compose.heads``), and answers
every member task with it. FusionBench (CLIP ViT-B/32, 8 tasks) reports, in average
accuracy: RegMean 82.4 > TIES 72.2 > Fisher 70.6 > task arithmetic 68.0 > simple average
66.5, against 90.3 for the individual fine-tunes.

Methods (``compose/ops.py``, one ``MergeSpec`` each): simple average (weights 1/n), task
arithmetic (λ = 0.3, FusionBench's) and the plain sum (λ = 1), TIES (density 0.2 and 0.5),
DARE-TIES (0.5), magnitude pruning (0.2), KnOTS (TIES inside, 0.2), RegMean (α = 0.9) and
Fisher merging (statistics on 64 unlabeled train texts per member, kept with the member),
and the advisor (``compose --method auto``: the grid of ``compose.advisor``, chosen on 50
held-out texts per task drawn with its own seed — the eval split is small, so its row is
slightly optimistic). Beside them PSEC's router (``compose.route_classify``): α(x) from
the unchanged base's sentence embedding, trained on the member tasks' labelled train rows
through their frozen heads (so, unlike the merges, it learns from labels); LoRAHub
(``compose.lorahub``: per task, its weights searched on 5 train rows of that task, read by
its member's head — one model per task, as LoRAHub composes for one task); and, on the
LoRA members, ScaLearn (``compose.scalearn``: per-module output scales on 300 train rows
per task, 300 steps). AdaMerging learns from generated answers and does not apply to
classifiers.

Two families of members, both measured: full fine-tunes of the encoder blocks (as
FusionBench fine-tunes; ``ClassifierRecipe(full=True)``, stored as exact ``delta`` skills)
and rank-8 LoRAs. "heads only" (every weight 0) is the floor: each member's head on the
unchanged encoder.

Figures: per family and method, accuracy and normalised accuracy (merged / member alone)
per task on every held-out row (at most ``n_eval``), their mean, seconds; the members
alone; the norm of each member's ΔW and their pairwise cosines; the logistic-regression
probe on frozen embeddings.

``holds`` rule (FusionBench's order on the methods both have, on the full fine-tunes):
mean normalised accuracy RegMean ≥ TIES (0.2) ≥ simple average.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from ...acquire.probe import probe
from ...compose.advisor import advise, candidates
from ...compose.lorahub import lorahub
from ...compose.measure import normalised, score_by_task
from ...compose.ops import MergeSpec, diagnostics, merge_skills
from ...compose.route_classify import ClassifierRouterRecipe, train_classifier_router
from ...compose.scalearn import ScaLearnRecipe, train_scalearn
from ...report.html import Section
from ...report.plots import heatmap
from ...worlds import get_world
from .. import Outcome
from . import TASKS, real_skills

PAPER = ("RegMean (Jin et al. 2023), TIES (Yadav et al. 2023), Fisher merging (Matena & Raffel "
         "2022), KnOTS (Stoica et al. 2025); FusionBench (Tang et al. 2024)")
CLAIM = ("on a pretrained encoder, merges of classifiers keep FusionBench's order: "
         "RegMean ≥ TIES ≥ simple average")


def specs(n: int, seed: int) -> dict[str, MergeSpec]:
    return {
        "heads only (no ΔW)": MergeSpec("linear", weights=[0.0] * n, seed=seed),
        "simple average": MergeSpec("linear", weights=[1.0 / n] * n, seed=seed),
        "task arithmetic (λ 0.3)": MergeSpec("linear", weights=[0.3] * n, seed=seed),
        "sum (λ 1)": MergeSpec("linear", seed=seed),
        "ties 0.2": MergeSpec("ties", density=0.2, seed=seed),
        "ties 0.5": MergeSpec("ties", density=0.5, seed=seed),
        "dare_ties 0.5": MergeSpec("dare_ties", density=0.5, seed=seed),
        "magnitude_prune 0.2": MergeSpec("magnitude_prune", density=0.2, seed=seed),
        "knots": MergeSpec("knots", density=0.2, seed=seed),
        "regmean": MergeSpec("regmean", alpha=0.9, seed=seed),
        "fisher": MergeSpec("fisher", seed=seed),
    }


def holds(figures: dict) -> bool:
    """FusionBench's order on the full fine-tunes (FusionBench fine-tunes fully)."""
    m = figures["full"]["methods"]
    return m["regmean"]["mean"] >= m["ties 0.2"]["mean"] >= m["simple average"]["mean"]


def _row(base, merged, tasks, n_eval, seed, alone, t0, lib=None) -> dict:
    acc = score_by_task(base, [merged], "debian", tasks, n_eval, seed, lib=lib)
    norm = normalised(acc, alone)
    vals = [v for v in norm.values() if v is not None]
    return {"accuracy": acc, "normalised": norm, "mean": sum(vals) / len(vals) if vals else 0.0,
            "merge_error": merged.metrics.get("merge_error", {}).get("mean"),
            "seconds": round(time.perf_counter() - t0, 1)}


def family(lib, ui, base, skills, tasks, n_eval: int, seed: int, quick: bool, what: str,
           alone: dict[str, float] | None = None, learned: bool = True) -> dict:
    """Every merge of one family of members (LoRA or full fine-tunes), the advisor and the
    router, and (``learned``) LoRAHub and ScaLearn; ``alone`` (each member's accuracy on its
    task, same rows) is measured unless given."""
    if alone is None:
        alone = {t: score_by_task(base, [s], "debian", [t], n_eval, seed)[t]
                 for s, t in zip(skills, tasks, strict=True)}
    out: dict = {"members": [s.ref for s in skills], "alone": alone, "methods": {},
                 "delta_norm": {s.ref: float(sum(float(d.double().norm() ** 2)
                                                 for d in s.delta().values()) ** 0.5)
                                for s in skills},
                 "cosine": diagnostics(skills)["cosine"]}
    grid = specs(len(skills), seed)
    if quick:   # statistics of 8 texts per member, not 64
        grid = {k: replace(v, examples=8) for k, v in grid.items()}
    with ui.bar(f"merges ({what})", len(grid) + (4 if learned else 2)) as step:
        for i, (label, spec) in enumerate(grid.items()):
            t0 = time.perf_counter()
            merged = merge_skills("real-merge", skills, spec, base, lib=lib)
            out["methods"][label] = _row(base, merged, tasks, n_eval, seed, alone, t0)
            step(i + 1, None)
        t0 = time.perf_counter()
        chosen = advise("real-merge", base, skills, "debian", k=8 if quick else 50, seed=seed,
                        grid=[replace(c, examples=8) if quick else c
                              for c in candidates(len(skills), seed)], lib=lib)
        pick = chosen.metrics["advisor"]["chosen"]
        out["methods"]["auto"] = {**_row(base, chosen, tasks, n_eval, seed, alone, t0),
                                  "chosen": {"method": pick["method"], "settings": pick["settings"]}}
        step(len(grid) + 1, None)
        t0 = time.perf_counter()
        recipe = ClassifierRouterRecipe("debian", tuple(tasks), seed=seed,
                                        steps=4 if quick else ClassifierRouterRecipe.steps)
        router = train_classifier_router("real-router", base, skills, recipe)
        out["methods"][ROUTER] = {**_row(base, router, tasks, n_eval, seed, alone, t0, lib),
                                  "mean_alpha": router.metrics["mean_alpha"]}
        step(len(grid) + 2, None)
        if not learned:
            return out
        t0 = time.perf_counter()
        per_task = {}
        for t in tasks:   # LoRAHub composes for one task from its few examples
            hub = lorahub(f"real-lorahub-{t}", base, skills, "debian", t,
                          steps=4 if quick else 40, seed=seed)
            per_task[t] = score_by_task(base, [hub], "debian", [t], n_eval, seed)[t]
            out.setdefault("lorahub_weights", {})[t] = hub.recipe["weights"]
        norm = normalised(per_task, alone)
        vals = [v for v in norm.values() if v is not None]
        out["methods"][LORAHUB] = {"accuracy": per_task, "normalised": norm,
                                   "mean": sum(vals) / len(vals) if vals else 0.0,
                                   "merge_error": 0.0,
                                   "seconds": round(time.perf_counter() - t0, 1)}
        step(len(grid) + 3, None)
        if what == "LoRA":   # ScaLearn scales LoRA outputs (B·A·x): LoRA members only
            t0 = time.perf_counter()
            scaled = train_scalearn("real-scalearn", base, skills, "debian", tasks,
                                    ScaLearnRecipe(steps=4 if quick else 300, seed=seed))
            out["methods"][SCALEARN] = _row(base, scaled, tasks, n_eval, seed, alone, t0)
        step(len(grid) + 4, None)
    return out


ROUTER = "PSEC router α(x)"
LORAHUB = "LoRAHub (per task, 5 examples)"
SCALEARN = "ScaLearn"


def run(lib, ui, out_dir: Path, seed: int = 0, quick: bool = False, executor=None) -> Outcome:
    n_eval = 8 if quick else 200
    tasks = TASKS[:2] if quick else TASKS
    base, lora = real_skills(lib, ui, tasks, seed, quick, executor)
    _, full = real_skills(lib, ui, tasks, seed, quick, executor, full=True)
    world = get_world("debian")
    probes = {t: probe(base, world, t, world.labels(t), n_eval, seed)["accuracy"] for t in tasks}
    figures: dict = {"base": base.fingerprint, "tasks": list(tasks), "n_eval": n_eval,
                     "probe": probes,
                     "lora": family(lib, ui, base, lora, tasks, n_eval, seed, quick, "LoRA"),
                     "full": family(lib, ui, base, full, tasks, n_eval, seed, quick, "full")}
    header = ["members", "method", *tasks, "mean normalised", "s"]
    rows = [["-", "probe (frozen embeddings)", *[probes[t] for t in tasks], "-", "-"]]
    for what in ("full", "lora"):
        fam = figures[what]
        rows.append([what, "member alone (accuracy)", *[fam["alone"][t] for t in tasks], 1.0, "-"])
        rows += [[what, label + (f" → {m['chosen']['method']}" if "chosen" in m else ""),
                  *[m["normalised"][t] for t in tasks], m["mean"], m["seconds"]]
                 for label, m in fam["methods"].items()]
    images = []
    for what in ("full", "lora"):
        png = f"composition_real_{what}.png"
        methods = figures[what]["methods"]
        heatmap([[methods[m]["normalised"][t] for t in tasks] for m in methods], list(methods),
                list(tasks), out_dir / png, f"normalised accuracy of each merge ({what} members)",
                vmax=1.1)
        images.append(png)
    text = (f"Normalised accuracy (merged / member alone, each task answered with its own "
            f"head) on {n_eval} held-out rows at most per task, base all-MiniLM-L6-v2 "
            f"{base.short}; members fully fine-tuned (encoder blocks) and rank-8 LoRA. "
            "'heads only' is the floor: every member's head on the unchanged encoder.")
    notes = "quick: 2 tasks, 4 training steps, 8 rows; not comparable with a full run." if quick else ""
    return Outcome(figures=figures, holds=holds(figures), table=(header, rows),
                   sections=[Section("merges of real classifiers", text=text,
                                     table=(header, rows), images=images)], notes=notes)
