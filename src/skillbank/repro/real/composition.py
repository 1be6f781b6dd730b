"""``skillbank repro composition --profile real``: merging classifiers on a pretrained encoder.

Setting (the merging papers' own): four classification skills on all-MiniLM-L6-v2, one per
Debian task (``repro.real.TASKS``), each a rank-8 LoRA on attention plus its own head; a
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
slightly optimistic). The learned router, LoRAHub, ScaLearn and AdaMerging learn from
generated answers and do not apply to classifiers yet.

Figures: per method, accuracy and normalised accuracy (merged / member alone) per task on
every held-out row (at most ``n_eval``), their mean, seconds; the members alone; the
logistic-regression probe on frozen embeddings beside each member; pairwise cosine of the
members' ΔW.

``holds`` rule (FusionBench's order on the methods both have): mean normalised accuracy
RegMean ≥ TIES (0.2) ≥ simple average.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from ...acquire.probe import probe
from ...compose.advisor import advise, candidates
from ...compose.measure import normalised, score_by_task
from ...compose.ops import MergeSpec, diagnostics, merge_skills
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
    m = figures["methods"]
    return m["regmean"]["mean"] >= m["ties 0.2"]["mean"] >= m["simple average"]["mean"]


def run(lib, ui, out_dir: Path, seed: int = 0, quick: bool = False, executor=None) -> Outcome:
    n_eval = 8 if quick else 200
    tasks = TASKS[:2] if quick else TASKS
    base, skills = real_skills(lib, ui, tasks, seed, quick, executor)
    world = get_world("debian")
    t0 = time.perf_counter()
    alone = {t: score_by_task(base, [s], "debian", [t], n_eval, seed)[t]
             for s, t in zip(skills, tasks, strict=True)}
    probes = {t: probe(base, world, t, world.labels(t), n_eval, seed)["accuracy"] for t in tasks}
    figures: dict = {"base": base.fingerprint, "tasks": list(tasks), "n_eval": n_eval,
                     "alone": alone, "probe": probes, "methods": {},
                     "alone_seconds": round(time.perf_counter() - t0, 1)}
    grid = specs(len(skills), seed)
    if quick:   # statistics of 8 texts per member, not 64
        grid = {k: replace(v, examples=8) for k, v in grid.items()}
    with ui.bar("merges", len(grid) + 1) as step:
        for i, (label, spec) in enumerate(grid.items()):
            t0 = time.perf_counter()
            merged = merge_skills("real-merge", skills, spec, base, lib=lib)
            acc = score_by_task(base, [merged], "debian", tasks, n_eval, seed)
            norm = normalised(acc, alone)
            vals = [v for v in norm.values() if v is not None]
            figures["methods"][label] = {
                "accuracy": acc, "normalised": norm, "mean": sum(vals) / len(vals) if vals else 0.0,
                "merge_error": merged.metrics["merge_error"]["mean"],
                "seconds": round(time.perf_counter() - t0, 1)}
            step(i + 1, None)
        t0 = time.perf_counter()
        k = 8 if quick else 50
        chosen = advise("real-merge", base, skills, "debian", k=k, seed=seed,
                        grid=[replace(c, examples=8) if quick else c
                              for c in candidates(len(skills), seed)], lib=lib)
        acc = score_by_task(base, [chosen], "debian", tasks, n_eval, seed)
        norm = normalised(acc, alone)
        vals = [v for v in norm.values() if v is not None]
        pick = chosen.metrics["advisor"]["chosen"]
        figures["methods"]["auto"] = {
            "accuracy": acc, "normalised": norm, "mean": sum(vals) / len(vals) if vals else 0.0,
            "chosen": {"method": pick["method"], "settings": pick["settings"]},
            "merge_error": chosen.metrics["merge_error"]["mean"],
            "seconds": round(time.perf_counter() - t0, 1)}
        step(len(grid) + 1, None)
    figures["cosine"] = diagnostics(skills)["cosine"]
    header = ["method", *tasks, "mean normalised", "s"]
    rows = [["member alone", *[alone[t] for t in tasks], 1.0, "-"],
            ["probe (frozen embeddings)", *[probes[t] for t in tasks], "-", "-"]]
    rows += [[label + (f" → {m['chosen']['method']}" if "chosen" in m else ""),
              *[m["normalised"][t] for t in tasks], m["mean"], m["seconds"]]
             for label, m in figures["methods"].items()]
    png = "composition_real.png"
    labels = list(figures["methods"])
    heatmap([[figures["methods"][m]["normalised"][t] for t in tasks] for m in labels], labels,
            list(tasks), out_dir / png, "normalised accuracy of each merge (real base)",
            vmax=1.1)
    text = (f"Accuracy of each member alone and of a probe on frozen embeddings (first two "
            f"rows), then each merge's normalised accuracy (merged / member alone, each task "
            f"answered with its own head) on {n_eval} held-out rows at most per task, "
            f"base all-MiniLM-L6-v2 {base.short}.")
    notes = "quick: 2 tasks, 4 training steps, 8 rows; not comparable with a full run." if quick else ""
    return Outcome(figures=figures, holds=holds(figures), table=(header, rows),
                   sections=[Section("merges of real classifiers", text=text,
                                     table=(header, rows), images=[png])], notes=notes)
