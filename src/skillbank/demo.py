"""``skillbank demo``: a base model gains skills, each stored, evaluated and reported.

From an empty home it trains the embedded base (or re-uses it by recipe), acquires six
strings skills as LoRAs, evaluates the base and every skill on every task (a skill ×
task matrix on held-out inputs), composes the skills (a learned router beside
training-free merges; ``summary["composition"]``), localizes each in 1% of the weights
(``summary["localization"]``), and writes ``summary.json`` and ``report.html``. The
recipes and their find-or-make are ``standard``; skills, the matrix, the router and the
grafts are jobs on one executor (``DemoConfig.executor``/``workers``; in this process by
default), with the same skills, results and summary wherever they run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .base import Base
from .evaluate.jobs import eval_matrix_on
from .library import Library
from .report.html import Section, write_report
from .report.plots import curves, heatmap
from .run import ensure
from .skill import Skill
from .standard import DemoConfig, demo_skills, executor_for, router_job

TARGET_SKILL_EM = 0.90
TARGET_BASE_EM = 0.20

__all__ = ["DemoConfig", "run_demo"]


def run_demo(lib: Library, out_dir: Path, cfg: DemoConfig, ui, executor=None) -> dict[str, Any]:
    """Run the whole demo; ``ui`` supplies progress bars (see cli.Ui) and messages.

    Every job runs on ``executor`` (left open, so a caller can reuse its workers) or on
    the one ``cfg`` names (in this process unless it names workers)."""
    t0 = time.perf_counter()
    phases: dict[str, float] = {}

    def phase(name: str, since: float) -> float:
        now = time.perf_counter()
        phases[name] = round(now - since, 1)
        return now

    out_dir.mkdir(parents=True, exist_ok=True)
    with executor_for(cfg, executor) as ex:
        base, skills = demo_skills(lib, cfg, ui, ex)
        t = phase("base_and_skills", t0)
        total = (len(skills) + 1) * len(cfg.tasks)
        with ui.jobs("evaluate", total) as progress:
            matrix = eval_matrix_on(ex, lib, base, [s.ref for s in skills], cfg.base.world,
                                    list(cfg.tasks), cfg.n_eval, cfg.seed,
                                    progress=progress)
        t = phase("evaluation", t)
        _make_router_and_grafts(lib, base, skills, cfg, ui, ex)
        t = phase("router_and_grafts", t)
        summary, extra = _summary(lib, base, skills, matrix, cfg), []
        if cfg.composition:
            from .repro.composition import composition_section

            alone = {t: matrix[s.ref][t]["exact_match"]   # the matrix's diagonal
                     for s, t in zip(skills, cfg.tasks, strict=True)}
            summary["composition"], sections = composition_section(
                lib, base, skills, cfg.tasks, out_dir, ui, cfg.router_recipe(), n_eval=cfg.n_eval,
                seed=cfg.seed, executor=ex, alone=alone)
            extra += sections
            t = phase("composition", t)
        if cfg.localization:
            from .repro.graft import localization_section

            summary["localization"], sections = localization_section(
                lib, base, skills, cfg.tasks, out_dir, ui, cfg.seed, n_eval=cfg.n_eval,
                steps=cfg.graft_steps, executor=ex)
            extra += sections
            t = phase("localization", t)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    summary["phase_seconds"] = phases
    write_demo_report(out_dir, summary, skills, base, cfg, extra)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def _make_router_and_grafts(lib: Library, base: Base, skills: list[Skill], cfg: DemoConfig, ui,
                            ex) -> None:
    """The router and the 1% grafts, the demo's longest jobs, made together on ``ex`` (the
    router first: it is the longest) so that both cores stay busy; the sections after find
    them stored."""
    from .repro.graft import localization_jobs

    jobs = ([router_job(base, skills, cfg.router_recipe())] if cfg.composition else []) \
        + (localization_jobs(base, skills, cfg.seed, cfg.n_eval, cfg.graft_steps)
           if cfg.localization else [])
    with ui.jobs(f"router and grafts ({ex.name} × {ex.workers})", len(jobs)) as progress:
        ensure(ex, lib, jobs, progress, what="router and graft")


def _summary(lib: Library, base: Base, skills: list[Skill], matrix: dict, cfg: DemoConfig
             ) -> dict[str, Any]:
    """The summary's base, skills, matrix and targets (sections are added by the caller)."""
    base_subject = f"base:{base.name}"
    summary: dict[str, Any] = {
        "base": {"name": base.name, "fingerprint": base.fingerprint, "recipe": base.meta.get("recipe")},
        "skills": {},
        "matrix": {s: {t: m["exact_match"] for t, m in row.items()} for s, row in matrix.items()},
        "targets": {"skill_exact_match": TARGET_SKILL_EM, "base_exact_match": TARGET_BASE_EM},
    }
    for skill, task in zip(skills, cfg.tasks, strict=True):
        own, base_m = matrix[skill.ref][task], matrix[base_subject][task]
        summary["skills"][skill.name] = {
            "ref": skill.ref, "task": task,
            "exact_match": own["exact_match"], "stderr": own["exact_match_stderr"],
            "base_exact_match": base_m["exact_match"], "base_stderr": base_m["exact_match_stderr"],
            "token_accuracy": own["token_accuracy"], "edit_distance": own["edit_distance"],
            "mean_logprob": own["mean_logprob"], "base_mean_logprob": base_m["mean_logprob"],
            "train_seconds": skill.metrics.get("train", {}).get("seconds"),
            "meets_target": own["exact_match"] >= TARGET_SKILL_EM and base_m["exact_match"] <= TARGET_BASE_EM,
        }
    summary["all_targets_met"] = all(s["meets_target"] for s in summary["skills"].values())
    summary["n_eval"] = cfg.n_eval
    return summary


def write_demo_report(out_dir: Path, summary: dict, skills, base, cfg: DemoConfig,
                      extra: list[Section] = ()) -> Path:
    subjects = list(summary["matrix"])
    grid = [[summary["matrix"][s][t] for t in cfg.tasks] for s in subjects]
    heatmap(grid, subjects, cfg.tasks, out_dir / "matrix.png", "exact match: subject × task (held-out)")
    series = {s.name: [tuple(p) for p in s.metrics.get("train", {}).get("curve", [])] for s in skills}
    curves(series, out_dir / "training.png", "LoRA training loss (answer tokens)", "step", "loss", logy=True)
    base_curve = base.meta.get("train", {}).get("curve", [])
    images = ["training.png"]
    if base_curve:
        curves({base.name: [tuple(p) for p in base_curve]}, out_dir / "base_training.png",
               "base pre-training loss", "step", "loss", logy=True)
        images.append("base_training.png")
    rows = [[name, s["task"], s["exact_match"], s["stderr"], s["base_exact_match"], s["token_accuracy"],
             s["mean_logprob"], "yes" if s["meets_target"] else "NO"] for name, s in summary["skills"].items()]
    sections = [
        Section("Overview", text=(
            f"Base {base.name} ({base.fingerprint[:12]}), {len(skills)} LoRA skills of the "
            f"{cfg.base.world} world, each evaluated on {cfg.n_eval} held-out inputs per task. "
            f"Targets: skill ≥ {TARGET_SKILL_EM:.0%} exact match on its task, base ≤ "
            f"{TARGET_BASE_EM:.0%}. Wall time {summary['wall_seconds']} s.")),
        Section("Skills on their own tasks", table=(
            ["skill", "task", "exact match", "stderr", "base exact match", "token accuracy",
             "mean log-prob", "target met"], rows)),
        Section("Skill × task matrix", images=["matrix.png"]),
        Section("Training curves", images=images),
        *extra,
    ]
    return write_report(out_dir, "skillbank demo", sections)
