"""``skillbank repro graft``: a tiny graft of a skill's parameter changes carries the skill.

Panigrahi et al. 2023 (docs/methods.md §5) graft a small learned fraction of a fine-tuned
model's changes onto the pre-trained model and recover most of its performance, better
calibrated; grafts of different tasks barely overlap, and overlap tracks task similarity.

At CPU scale on the demo (``standard.demo_skills``: the ``mini`` strings base and six
rank-8 LoRA skills), for every skill and every sparsity in ``SPARSITIES`` (1e-4 … 1e-1
of the 160,128 eligible block parameters) ``localize.ops.localize`` trains a graft and
measures, on held-out inputs, exact match, relative gain (P_graft − P_base)/(P_skill −
P_base) and token-level ECE of the base, the skill, the learned graft, and the top-|Δ| and
random masks of the same size. Grafts are stored as ``sparse`` skills named
``SKILL-graft-SPARSITY`` and re-used when the same recipe was run before. Then at 1%:

- the overlap matrix |γ_i ∩ γ_j|/|γ_j| and its Spearman correlation with zero-shot
  transfer (``localize.overlap``: the share of skill j's own log-prob gain on its task
  that skill i's full ΔW brings);
- the union of the six grafts as one merge (``compose`` method ``graft_union``): its
  normalised accuracy (``compose.measure``) against each graft alone and each LoRA alone,
  beside the ΔW sum of the six LoRAs (``task_arithmetic``) for comparison.

Steps per sparsity (``STEPS``): 200 at 1% (the default recipe, so the demo's section and
this run share the stored 1% grafts), fewer elsewhere to bound the run: 100 at 1e-4 and
150 at 1e-3 (nothing reaches a gain above 0.005 there), 100 at 1e-1 (the best mask came at
step 50–95 for every skill). ``prepare`` makes the 24 grafts as ``localize`` jobs on an
executor (``--workers 2``); with the grafts stored, a re-run only evaluates the overlap,
transfer and union. Settings and figures: docs/methods.md §5.

``holds`` rule: for every demo skill, the best learned graft at a sparsity ≤ 1e-2 has a
relative gain in exact match ≥ 0.90 (``TARGET``). The figures also give, per skill, the
smallest measured sparsity where the learned graft reaches 0.90 (``crossing``).
"""

from __future__ import annotations

import statistics
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from ..acquire.pretrain import BaseRecipe
from ..compose.measure import normalised, normalised_accuracy
from ..compose.ops import MergeSpec, merge_skills
from ..library import Library
from ..localize.jobs import ensure_graft, localize_job, recipe_for
from ..localize.overlap import overlap_vs_transfer
from ..report.html import Section
from ..report.plots import heatmap, sparsity_curves
from ..run import ensure, get_executor
from ..skill import Skill
from ..standard import DemoConfig, demo_skills
from . import Outcome

PAPER = "Panigrahi et al. 2023, Task-Specific Skill Localization in Fine-tuned Language Models"
CLAIM = "≤1% of eligible parameters, grafted, recover ≥90% of every skill's gain"
TARGET = 0.90
SPARSITIES = (1e-4, 1e-3, 1e-2, 1e-1)
STEPS = {1e-4: 100, 1e-3: 150, 1e-2: 200, 1e-1: 100}
MASKS = ("learned", "top_delta", "random")
QUICK = {"sparsities": (1e-2, 1e-1), "steps": 5, "n_train": 32, "n_val": 16, "n_eval": 8}


def graft_figures(g: Skill) -> dict[str, Any]:
    """The numbers of one stored graft: sizes, exact match, gains, ECE, seconds."""
    m = g.metrics["localization"]
    sub = m["subjects"]
    return {
        "ref": g.ref, "size": m["size"], "fraction": m["fraction"], "n_eligible": m["n_eligible"],
        "exact_match": {k: sub[k]["exact_match"] for k in ("base", "skill", *MASKS)},
        "relative_gain": {k: sub[k]["relative_gain"]["exact_match"] for k in MASKS},
        "relative_gain_logprob": {k: sub[k]["relative_gain"]["mean_logprob"] for k in MASKS},
        "token_ece": {k: sub[k]["token_ece"] for k in ("base", "skill", *MASKS)},
        "best_step": m["best_step"], "seconds": m["seconds"], "train_seconds": m["train_seconds"],
    }


def localization_jobs(base, skills, seed: int, n_eval: int = 200, steps: int | None = None):
    """The demo's grafts: one ``localize`` job per skill at 1% (``steps`` overrides the
    mask-training steps)."""
    extra = {} if steps is None else {"steps": steps}
    return [localize_job(base, s, 1e-2, n_eval, seed=seed, **extra) for s in skills]


def localization_section(lib: Library, base, skills, tasks, out_dir: Path, ui, seed: int,
                         n_eval: int = 200, steps: int | None = None, executor=None,
                         ) -> tuple[dict, list[Section]]:
    """The demo's ``localization`` summary and report sections: each skill grafted at 1%
    (a ``localize`` job on ``executor``, default in this process; stored grafts re-used by
    recipe), its gains and ECE, and the overlap of the grafts.

    ``steps`` overrides the mask-training steps (the demo's tiny test configuration)."""
    jobs = localization_jobs(base, skills, seed, n_eval, steps)
    with (get_executor() if executor is None else nullcontext(executor)) as ex, \
            ui.jobs(f"grafts ({ex.name} × {ex.workers})", len(jobs)) as progress:
        done = ensure(ex, lib, jobs, progress, what="localize")
    grafts = [lib.get(r.result["ref"]) for r in done]
    per = {s.name: {"task": t, **graft_figures(g)}
           for s, t, g in zip(skills, tasks, grafts, strict=True)}
    world = skills[0].recipe.get("world") if skills else "strings"
    rel = overlap_vs_transfer(base, skills, grafts, world, n=n_eval, seed=seed)
    summary = {"sparsity": 1e-2, "target_relative_gain": TARGET, "skills": per,
               "all_targets_met": all((p["relative_gain"]["learned"] or 0) >= TARGET
                                      for p in per.values()),
               "overlap": {"skills": [s.name for s in skills], "matrix": rel["overlap"]},
               "transfer": rel["transfer"], "correlation": rel["correlation"]}
    names = [s.name for s in skills]
    heatmap(rel["overlap"], names, names, out_dir / "graft_overlap.png",
            "graft overlap |γ_row ∩ γ_col| / |γ_col| (1% grafts)")
    rows = [[n, p["task"], p["size"], p["exact_match"]["base"], p["exact_match"]["skill"],
             p["exact_match"]["learned"], p["relative_gain"]["learned"],
             p["relative_gain"]["top_delta"], p["relative_gain"]["random"],
             p["token_ece"]["base"], p["token_ece"]["skill"], p["token_ece"]["learned"],
             p["seconds"]] for n, p in per.items()]
    c = rel["correlation"]
    sections = [
        Section("Where skills live: grafts of 1%", text=(
            f"Each skill's ΔW restricted to a learned mask of 1% of the eligible block "
            f"parameters (Panigrahi et al. 2023), against the top-|Δ| and random masks of "
            f"the same size, on {n_eval} held-out inputs. Relative gain = (graft − base) / "
            f"(skill − base) in exact match; target ≥ {TARGET:.2f}. ECE is token-level "
            "(teacher-forced next-token distribution over answer tokens)."),
            table=(["skill", "task", "entries", "base EM", "skill EM", "graft EM", "gain learned",
                    "gain top-|Δ|", "gain random", "ECE base", "ECE skill", "ECE graft", "s"],
                   rows)),
        Section("Overlap between grafts", text=(
            "Overlap |γ_i ∩ γ_j| / |γ_j| of the 1% grafts. Against zero-shot transfer (the "
            "share of skill j's own log-prob gain on its task that skill i brings), Spearman "
            f"ρ = {_fmt(c['spearman'])}, p = {_fmt(c['p_value'])} over {c['n_pairs']} ordered "
            "pairs."), images=["graft_overlap.png"]),
    ]
    return summary, sections


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def union_figures(base, skills, grafts, world: str, n: int, seed: int) -> dict[str, Any]:
    """Normalised accuracy of the union of the grafts (and, for comparison, of the ΔW sum of
    the full skills) against each graft alone and each skill alone."""
    union = merge_skills("graft-union", grafts, MergeSpec(method="graft_union"))
    res = normalised_accuracy(base, union, grafts, world, n=n, seed=seed)
    lora_alone = {g.metrics["localization"]["task"]: g.metrics["localization"]["subjects"]
                  ["skill"]["exact_match"] for g in grafts}
    summed = merge_skills("lora-sum", skills, MergeSpec(method="task_arithmetic"))
    res_sum = normalised_accuracy(base, summed, skills, world, n=n, seed=seed, alone=lora_alone)
    return {"union": {"composed": res["composed"], "graft_alone": res["alone"],
                      "normalised_vs_graft": res["normalised"],
                      "normalised_vs_skill": normalised(res["composed"], lora_alone),
                      **union.metrics["graft_union"]},
            "lora_sum": {"composed": res_sum["composed"],
                         "normalised_vs_skill": res_sum["normalised"]}}


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def quick_demo_config(seed: int) -> DemoConfig:
    """The tiny demo the quick run uses (a tiny base, two skills, 10 LoRA steps)."""
    return DemoConfig(base=BaseRecipe(size="tiny", steps=30), tasks=["rot", "shift"],
                      steps=10, n_eval=QUICK["n_eval"], seed=seed)


def settings(seed: int, quick: bool) -> tuple[DemoConfig, tuple[float, ...], dict[str, Any]]:
    """(demo config, sparsities, ``GraftRecipe`` fields other than the defaults) of a run."""
    if quick:
        return quick_demo_config(seed), QUICK["sparsities"], {
            "steps": QUICK["steps"], "n_train": QUICK["n_train"], "n_val": QUICK["n_val"]}
    return DemoConfig(seed=seed), SPARSITIES, {}


def fields_at(sparsity: float, over: dict[str, Any]) -> dict[str, Any]:
    """The ``GraftRecipe`` fields of the graft at ``sparsity`` (``STEPS`` unless overridden)."""
    return over | {"steps": over.get("steps", STEPS.get(sparsity, 200))}


def prepare(lib: Library, ui, seed: int, quick: bool, executor) -> None:
    """Make on ``executor`` what :func:`run` would make in-process: the demo's skills
    (``train`` jobs, if absent) and every graft (one ``localize`` job per skill × sparsity,
    stored ones skipped by the worker); :func:`run` then re-uses them all by recipe, so its
    figures are those of an in-process run."""
    cfg, sparsities, over = settings(seed, quick)
    base, skills = demo_skills(lib, cfg, ui, executor)
    jobs = [localize_job(base, s, sp, cfg.n_eval, seed=seed, **fields_at(sp, over))
            for s in skills for sp in sparsities]
    with ui.jobs(f"grafts ({executor.name} × {executor.workers})", len(jobs)) as progress:
        ensure(executor, lib, jobs, progress, what="localize")


def run(lib: Library, ui, out_dir: Path, seed: int = 0, quick: bool = False) -> Outcome:
    torch.set_num_threads(1)
    cfg, sparsities, over = settings(seed, quick)
    base, skills = demo_skills(lib, cfg, ui)
    world, n = cfg.base.world, cfg.n_eval
    per: dict[str, dict] = {}
    at_1pct: list[Skill] = []
    for s in skills:
        per[s.name] = {"task": s.recipe.get("task"), "by_sparsity": {}}
        for sp in sparsities:
            recipe = recipe_for(s, sp, seed, **fields_at(sp, over))
            with ui.bar(f"localize {s.name} at {sp:g}", recipe.steps) as step:
                g, _ = ensure_graft(lib, base, s, recipe, n, step)
            per[s.name]["by_sparsity"][f"{sp:g}"] = graft_figures(g)
            if sp == 1e-2:
                at_1pct.append(g)
    for p in per.values():
        ok = [float(k) for k, f in p["by_sparsity"].items()
              if (f["relative_gain"]["learned"] or 0) >= TARGET]
        p["crossing"] = min(ok) if ok else None
        p["best_learned_at_most_1pct"] = max(
            ((f["relative_gain"]["learned"] or 0) for k, f in p["by_sparsity"].items()
             if float(k) <= 1e-2), default=None)
    keys = [f"{sp:g}" for sp in sparsities]
    mean_gain = {m: {k: _mean(p["by_sparsity"][k]["relative_gain"][m] for p in per.values())
                     for k in keys} for m in MASKS}
    secs = [f["seconds"] for p in per.values() for f in p["by_sparsity"].values()]
    figures: dict[str, Any] = {
        "sparsities": list(sparsities), "steps": {k: fields_at(sp, over)["steps"]
                                                  for k, sp in zip(keys, sparsities, strict=True)},
        "n_eval": n, "target": TARGET, "skills": per, "mean_relative_gain": mean_gain,
        "seconds_per_localization": {"mean": _mean(secs), "max": max(secs, default=None),
                                     "note": "as stored when each graft was made"},
    }
    sections: list[Section] = []
    if at_1pct:
        rel = overlap_vs_transfer(base, skills, at_1pct, world, n=n, seed=seed)
        figures["overlap"] = {k: rel[k] for k in ("skills", "grafts", "graft_sizes", "overlap",
                                                   "transfer", "correlation", "definition")}
        figures.update(union_figures(base, skills, at_1pct, world, n, seed))
        names = [s.name for s in skills]
        heatmap(rel["overlap"], names, names, out_dir / "overlap.png",
                "graft overlap |γ_row ∩ γ_col| / |γ_col| (1%)")
        heatmap(rel["transfer"], names, names, out_dir / "transfer.png",
                "zero-shot transfer: share of col skill's log-prob gain from row skill",
                vmin=min(-1.0, *[v for r in rel["transfer"] for v in r if v is not None]))
        c = rel["correlation"]
        u = figures["union"]
        sections.append(Section("Overlap vs transfer", text=(
            f"Spearman ρ = {_fmt(c['spearman'])}, p = {_fmt(c['p_value'])} over {c['n_pairs']} "
            f"ordered pairs. {rel['definition']}."), images=["overlap.png", "transfer.png"]))
        sections.append(Section("Union of the 1% grafts as one merge", text=(
            f"{u['entries']} entries, {u['overlapping_entries']} held by ≥ 2 grafts "
            f"(averaged there). Normalised accuracy = union's exact match / graft alone (and "
            "/ LoRA alone); the ΔW sum of the full LoRAs for comparison."), table=(
            ["task", "graft alone", "union", "union / graft", "union / LoRA", "LoRA sum / LoRA"],
            [[t, u["graft_alone"][t], u["composed"][t], u["normalised_vs_graft"][t],
              u["normalised_vs_skill"][t], figures["lora_sum"]["normalised_vs_skill"][t]]
             for t in u["graft_alone"]])))
    series = {f"mean {m}": [(sp, mean_gain[m][k]) for sp, k in zip(sparsities, keys, strict=True)]
              for m in MASKS}
    series |= {f"{name} learned": [(sp, p["by_sparsity"][k]["relative_gain"]["learned"])
                                   for sp, k in zip(sparsities, keys, strict=True)]
               for name, p in per.items()}
    sparsity_curves(series, out_dir / "relative_gain.png",
                    "relative gain (exact match) against graft sparsity", target=TARGET)
    sections.insert(0, Section("Relative gain against sparsity", images=["relative_gain.png"]))
    rows = []
    for name, p in per.items():
        for k in keys:
            f = p["by_sparsity"][k]
            rows.append([name, k, f["size"], f["exact_match"]["base"], f["exact_match"]["skill"],
                         *[f["relative_gain"][m] for m in MASKS],
                         f["token_ece"]["base"], f["token_ece"]["skill"], f["token_ece"]["learned"],
                         f["seconds"]])
    holds = bool(per) and all((p["best_learned_at_most_1pct"] or 0) >= TARGET for p in per.values())
    notes = ("quick: tiny base, 2 skills, 5 steps, 8 inputs — not comparable with a full run"
             if quick else f"steps per sparsity {figures['steps']}")
    return Outcome(figures=figures, holds=holds, notes=notes, sections=sections, table=(
        ["skill", "sparsity", "entries", "base EM", "skill EM", "gain learned", "gain top-|Δ|",
         "gain random", "ECE base", "ECE skill", "ECE graft", "s"], rows))
