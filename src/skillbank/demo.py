"""``skillbank demo``: a base model gains skills, each stored, evaluated and reported.

From an empty home it trains the embedded base (or re-uses it by recipe), acquires six
strings skills as LoRAs, evaluates the base and every skill on every task (a skill ×
task matrix on held-out inputs), composes the skills (a learned router beside
training-free merges; ``summary["composition"]``), localizes each in 1% of the weights
(``summary["localization"]``), and writes ``summary.json`` and ``report.html``.

With an executor (``DemoConfig.executor``, ``address`` or ``workers``; see ``skillbank.run``)
the skills are trained as ``train`` jobs and the skill × task matrix is evaluated as one
``eval`` job per cell (``run.sweep.eval_matrix_on``), with the same skills, results and
summary; without one (the default) everything runs in this process as before. Base
training, composition and localization always run in this process.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .acquire.lora import LoraRecipe, train_lora
from .acquire.pretrain import BaseRecipe, ensure_base, find_base
from .base import Base
from .evaluate.suites import eval_matrix
from .library import Library
from .report.html import Section, write_report
from .report.plots import curves, heatmap
from .skill import Skill

TARGET_SKILL_EM = 0.90
TARGET_BASE_EM = 0.20


@dataclass
class DemoConfig:
    base: BaseRecipe = field(default_factory=BaseRecipe)
    tasks: list[str] = field(default_factory=lambda: ["rot", "shift", "dedup", "drop", "swap", "dup"])
    steps: int = 300
    rank: int = 8
    n_eval: int = 200
    seed: int = 0
    composition: bool = True  # router and training-free merges of the skills (repro composition)
    localization: bool = True  # a 1% graft of each skill and their overlap (repro graft)
    graft_steps: int | None = None  # mask-training steps (None: GraftRecipe's default)
    router_steps: int | None = None  # router training steps (None: repro composition's default)
    executor: str | None = None  # "local" | "ray"; None (with no address/workers): in-process
    address: str | None = None  # Ray cluster address (implies executor "ray")
    workers: int | None = None  # parallel workers of the executor

    @property
    def uses_executor(self) -> bool:
        return bool(self.executor or self.address or self.workers)


def demo_executor(cfg: DemoConfig):
    """The executor ``cfg`` names (a context manager), or a null context yielding None."""
    if not cfg.uses_executor:
        return nullcontext(None)
    from .run import get_executor

    return get_executor(cfg.executor, cfg.address, cfg.workers)


def ensure_demo_skills(lib: Library, cfg: DemoConfig, ui,
                       executor=None) -> tuple[Base, list[Skill]]:
    """The demo's base and one LoRA skill per task, trained now or re-used by recipe.

    Reproductions (``skillbank repro``) start from the same skills, so the figures they
    report are about the skills the demo shows. Skills to train go to ``executor`` (or the
    one ``cfg`` names) as ``train`` jobs; with neither they are trained in this process.
    """
    if executor is None and cfg.uses_executor:
        with demo_executor(cfg) as ex:
            return ensure_demo_skills(lib, cfg, ui, ex)
    base_name = f"strings-{cfg.base.size}"
    if find_base(lib, cfg.base) is not None:  # re-used: no progress bar stuck at 0
        base, base_log = ensure_base(lib, base_name, cfg.base)
    else:
        with ui.bar(f"base {cfg.base.size}", cfg.base.steps) as step:
            base, base_log = ensure_base(lib, base_name, cfg.base, progress=step)
    ui.say(f"base {base.name} {base.short} " + ("trained" if base_log else "re-used (same recipe)"))

    skills, trained = [], {}
    pending: list[tuple[int, str, LoraRecipe]] = []  # (index in skills, name, recipe)
    for task in cfg.tasks:
        recipe = LoraRecipe(world=cfg.base.world, task=task, rank=cfg.rank, alpha=2 * cfg.rank,
                            steps=cfg.steps, seed=cfg.seed)
        name = f"{cfg.base.world}-{task}"
        ref = lib.find(name, base.fingerprint, recipe.as_dict())
        skill = lib.get(ref) if ref else None
        if skill is None and executor is not None:
            pending.append((len(skills), name, recipe))
        elif skill is None:
            with ui.bar(f"skill {name}", recipe.steps) as step:
                skill = lib.add(train_lora(name, base, recipe, lib.home / "checkpoints", progress=step))
            trained[skill.ref] = True
        skills.append(skill)
    if pending:
        skills = _train_on(executor, lib, base, skills, pending, ui, trained)
    ui.say(f"skills: {', '.join(s.ref for s in skills)} ({len(trained)} trained now)")
    return base, skills


def _train_on(executor, lib: Library, base: Base, skills: list, pending, ui,
              trained: dict) -> list[Skill]:
    """Train the ``pending`` skills as one ``train`` job each on ``executor``."""
    from .run import Job

    jobs = [Job("train", {"name": name, "base": base.name, "recipe": asdict(recipe)},
                f"train {name}") for _, name, recipe in pending]
    count = iter(range(1, len(jobs) + 1))
    with ui.bar(f"skills ({executor.name} × {executor.workers})", len(jobs)) as step:
        done = executor.run_all(lib.home, jobs, "training",
                                on_result=lambda _: step(next(count), None))
    skills = list(skills)
    for (i, _, _), r in zip(pending, done, strict=True):
        skills[i] = lib.get(r.result["ref"])
        trained[skills[i].ref] = True
    return skills


def run_demo(lib: Library, out_dir: Path, cfg: DemoConfig, ui, executor=None) -> dict[str, Any]:
    """Run the whole demo; ``ui`` supplies progress bars (see cli.Ui) and messages.

    Skill training and the matrix run on ``executor`` (left open, so a caller can reuse
    its workers) or on the one ``cfg`` names; with neither, in this process."""
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    with nullcontext(executor) if executor is not None else demo_executor(cfg) as ex:
        base, skills = ensure_demo_skills(lib, cfg, ui, ex)

        total = (len(skills) + 1) * len(cfg.tasks)
        with ui.bar("evaluate", total) as step:
            counter = iter(range(1, total + 1))
            if ex is not None:
                from .run.sweep import eval_matrix_on

                matrix = eval_matrix_on(ex, lib, base, [s.ref for s in skills], cfg.base.world,
                                        cfg.tasks, cfg.n_eval, cfg.seed,
                                        progress=lambda i, _: step(i, None))
            else:
                matrix = eval_matrix(lib, base, skills, cfg.base.world, cfg.tasks, n=cfg.n_eval,
                                     seed=cfg.seed, progress=lambda *_: step(next(counter), None))

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
    extra = []
    if cfg.composition:
        from .repro.composition import composition_section

        summary["composition"], sections = composition_section(
            lib, base, skills, cfg.tasks, out_dir, ui, n_eval=cfg.n_eval, seed=cfg.seed,
            **({} if cfg.router_steps is None else {"router_steps": cfg.router_steps}))
        extra += sections
    if cfg.localization:
        from .repro.graft import localization_section

        summary["localization"], sections = localization_section(
            lib, base, skills, cfg.tasks, out_dir, ui, cfg.seed, n_eval=cfg.n_eval, steps=cfg.graft_steps)
        extra += sections
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    write_demo_report(out_dir, summary, skills, base, cfg, extra)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
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
