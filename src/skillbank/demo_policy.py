"""``skillbank demo --profile policy``: the demo on a robot policy (docs/methods.md §16).

The same story as the embedded demo (``demo.py``) in PSEC's own domain, Meta-World: a
policy base cloned from the experts of reach, push and pick-place; one LoRA policy skill per
task from 10 demonstrations (re-used by recipe); the success matrix (every subject on every
task, 20 held-out goals); a new task (window-close, which the base alone fails) learnt from 3
demonstrations by composition — PSEC's
α(s) over the skills with a new LoRA beside it, α(s) alone, the new LoRA alone and three
static merges of the skills and the new LoRA; the report with training curves, success
curves (fraction of episodes succeeded by step t) and a strip of rendered frames per skill.
Training, routing, merging and evaluation run as jobs on one executor (two worker
processes by default). Rendering needs an offscreen OpenGL (Debian's ``libosmesa6``);
without it the report says so in one line and has no frames.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .compose.jobs import compose_job
from .compose.ops import MergeSpec
from .library import Library
from .policy import require
from .policy.bc import PolicyBaseRecipe, PolicyLoraRecipe, ensure_policy_base
from .policy.env import EVAL_GOALS
from .policy.evaluate import actor, success_curve
from .policy.frames import NoRenderer, episode_frames, save_strip
from .policy.jobs import policy_route_job, policy_train_job, subject_policy, success_matrix
from .policy.routed import StateRouterRecipe
from .report.html import Section, write_report
from .report.plots import curves, heatmap
from .run import ensure, get_executor

TASKS = ("door-open-v3", "drawer-open-v3", "button-press-topdown-v3", "window-open-v3")
NEW_TASK = "window-close-v3"  # the base alone fails it (drawer-close it solves)


def _merges(n: int) -> dict[str, MergeSpec]:
    """The static merges of ``n`` library skills and the new LoRA (repro psec's)."""
    return {"linear": MergeSpec("linear"),
            "task_arithmetic": MergeSpec("task_arithmetic", weights=[0.3] * n + [1.0]),
            "ties": MergeSpec("ties", density=0.2)}


@dataclass(frozen=True)
class PolicyDemoConfig:
    base: PolicyBaseRecipe = field(default_factory=PolicyBaseRecipe)
    tasks: tuple[str, ...] = TASKS
    demos: int = 10
    rank: int = 6
    steps: int = 1000
    new_task: str = NEW_TASK
    new_demos: int = 3
    router_steps: int = 1000
    episodes: int = 20
    composition: bool = True
    frames: bool = True
    seed: int = 0
    executor: str | None = None
    address: str | None = None
    workers: int | None = 2

    def lora(self, task: str, demos: int) -> PolicyLoraRecipe:
        return PolicyLoraRecipe(task, demos=demos, rank=self.rank, alpha=2 * self.rank,
                                steps=self.steps, seed=self.seed, horizon=self.base.horizon)

    def router(self, new_rank: int) -> StateRouterRecipe:
        return StateRouterRecipe(self.new_task, demos=self.new_demos, steps=self.router_steps,
                                 new_rank=new_rank, seed=self.seed, horizon=self.base.horizon)


def quick_config(**kw) -> PolicyDemoConfig:
    """Tiny sizes for smoke tests: the figures mean nothing."""
    return PolicyDemoConfig(base=PolicyBaseRecipe(tasks=("reach-v3",), demos=1, steps=10,
                                                  width=32, blocks=1, horizon=150),
                            tasks=TASKS[:2], demos=1, rank=2, steps=5, new_demos=1,
                            router_steps=5, episodes=1, **kw)


def run_policy_demo(lib: Library, out_dir: Path, cfg: PolicyDemoConfig, ui) -> dict[str, Any]:
    """Run the policy demo; write ``summary.json`` and ``report.html`` to ``out_dir``."""
    require()
    t0 = time.perf_counter()
    phases: dict[str, float] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks, h = list(cfg.tasks), cfg.base.horizon
    with ui.bar("policy base", cfg.base.steps) as step:
        base, _ = ensure_policy_base(lib, f"policy-demo-s{cfg.seed}", cfg.base, progress=step)
    phases["base"] = round(time.perf_counter() - t0, 1)
    with get_executor(cfg.executor, cfg.address, cfg.workers) as ex:
        t = time.perf_counter()
        jobs = [policy_train_job(f"policy-{task.removesuffix('-v3')}", base,
                                 cfg.lora(task, cfg.demos)) for task in tasks]
        with ui.jobs(f"skills ({ex.name} × {ex.workers})", len(jobs)) as progress:
            skills = [lib.get(r.result["ref"]) for r in ensure(ex, lib, jobs, progress,
                                                               what="training")]
        phases["skills"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        subjects = [f"base:{base.name}", *[s.ref for s in skills]]
        columns = [*tasks, cfg.new_task]
        with ui.jobs("evaluate", len(subjects) * len(columns)) as progress:
            matrix = success_matrix(ex, lib, base, subjects, columns, cfg.episodes, cfg.seed, h,
                                    progress=progress)
        phases["evaluation"] = round(time.perf_counter() - t, 1)
        summary = _summary(base, skills, tasks, columns, matrix, cfg)
        sections: list[Section] = []
        if cfg.composition:
            t = time.perf_counter()
            summary["composition"], composed = _composition(ex, lib, ui, base, skills, cfg)
            sections.append(_composition_section(summary["composition"], cfg))
            phases["composition"] = round(time.perf_counter() - t, 1)
    series = {s.name: success_curve(matrix[s.ref][task], h)
              for s, task in zip(skills, tasks, strict=True)}
    if cfg.composition:
        series.update({f"{k} ({cfg.new_task})": success_curve(v["result"], h)
                       for k, v in composed.items()})
    t = time.perf_counter()
    summary["frames"] = _frames(lib, base, skills, tasks, cfg, out_dir) if cfg.frames else \
        {"images": [], "note": "frames not asked for"}
    phases["frames"] = round(time.perf_counter() - t, 1)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    summary["phase_seconds"] = phases
    _report(out_dir, summary, skills, base, columns, series, sections)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def _summary(base, skills, tasks, columns, matrix, cfg) -> dict[str, Any]:
    base_subject = f"base:{base.name}"
    out: dict[str, Any] = {
        "profile": "policy",
        "base": {"name": base.name, "fingerprint": base.fingerprint,
                 "tasks": list(cfg.base.tasks)},
        "world": "metaworld", "demos": cfg.demos, "episodes": cfg.episodes,
        "horizon": cfg.base.horizon,
        "skills": {},
        "matrix": {s: {t: matrix[s][t]["success"] for t in columns} for s in matrix},
        "errors": sum(cell["errors"] for row in matrix.values() for cell in row.values()),
        "targets": {"skill_above_base": True},
    }
    for skill, task in zip(skills, tasks, strict=True):
        own, alone = matrix[skill.ref][task], matrix[base_subject][task]
        train = skill.metrics["train"]
        out["skills"][skill.name] = {
            "ref": skill.ref, "task": task, "success": own["success"], "stderr": own["stderr"],
            "base_success": alone["success"],
            "parameters": train["parameters"],
            "fraction": round(train["parameters"] / train["base_parameters"], 4),
            "train_seconds": train["seconds"], "meets_target": own["success"] > alone["success"]}
    out["all_targets_met"] = all(s["meets_target"] for s in out["skills"].values())
    return out


def _composition(ex, lib, ui, base, skills, cfg) -> tuple[dict, dict]:
    """The new task from ``new_demos`` demonstrations: the new LoRA alone, α(s) with and
    without a new LoRA, and the static merges; each subject's success on the new task."""
    members = [s.ref for s in skills]
    jobs = [policy_train_job(f"policy-{cfg.new_task.removesuffix('-v3')}-few", base,
                             cfg.lora(cfg.new_task, cfg.new_demos)),
            policy_route_job("policy-alpha-new", base, members, cfg.router(cfg.rank)),
            policy_route_job("policy-alpha", base, members, cfg.router(0))]
    with ui.jobs("compose: new LoRA and α(s)", len(jobs)) as progress:
        new, alpha_new, alpha = (r.result for r in ensure(ex, lib, jobs, progress,
                                                          what="composition"))
    specs = _merges(len(members))
    merge_jobs = [compose_job(f"policy-merge-{k}", [*members, new["ref"]], spec, base)
                  for k, spec in specs.items()]
    with ui.jobs("compose: static merges", len(merge_jobs)) as progress:
        merged = [r.result["ref"] for r in ensure(ex, lib, merge_jobs, progress, what="merge")]
    subjects = {"base alone": f"base:{base.name}", "new LoRA": new["ref"],
                "α(s)": alpha["ref"], "α(s) + new LoRA": alpha_new["ref"],
                **dict(zip(specs, merged, strict=True))}
    with ui.jobs(f"evaluate on {cfg.new_task}", len(subjects)) as progress:
        m = success_matrix(ex, lib, base, list(subjects.values()), [cfg.new_task],
                           cfg.episodes, cfg.seed, cfg.base.horizon, progress=progress)
    methods = {k: {"ref": ref, "success": m[ref][cfg.new_task]["success"],
                   "stderr": m[ref][cfg.new_task]["stderr"]} for k, ref in subjects.items()}
    best_static = max(methods[k]["success"] for k in ("new LoRA", *specs))
    comp = {"task": cfg.new_task, "demos": cfg.new_demos, "methods": methods,
            "alpha_new_beats_static": methods["α(s) + new LoRA"]["success"] > best_static}
    curves_of = {k: {"result": m[ref][cfg.new_task]} for k, ref in subjects.items()
                 if k in ("new LoRA", "α(s) + new LoRA")}
    return comp, curves_of


def _composition_section(comp: dict, cfg) -> Section:
    rows = [[k, v["success"], v["stderr"]] for k, v in comp["methods"].items()]
    return Section(f"Composition: a new task ({comp['task']}) from {comp['demos']} "
                   "demonstrations", text=(
        "PSEC's context-aware composition α(s): a small MLP over the state weights each "
        "library skill's ΔW per state (no softmax), with or without a new LoRA trained beside "
        "it; against the new LoRA alone on the same demonstrations and static merges of the "
        "library skills and the new LoRA (linear average, task arithmetic λ = 0.3 on the "
        f"skills and 1 on the new LoRA, TIES at density 0.2). {cfg.episodes} held-out goals."),
        table=(["subject", "success", "± stderr"], rows))


def _frames(lib, base, skills, tasks, cfg, out_dir: Path) -> dict:
    """One strip per skill on its own task (the first held-out goal)."""
    images, rows = [], []
    for skill, task in zip(skills, tasks, strict=True):
        act = actor(subject_policy(lib, base, skill.ref))
        try:
            shots, ok = episode_frames(act, task, cfg.seed, EVAL_GOALS[0],
                                       horizon=cfg.base.horizon)
        except NoRenderer as e:
            return {"images": [], "note": str(e)}
        name = f"frames-{skill.name}.png"
        save_strip(shots, out_dir / name)
        images.append(name)
        rows.append({"skill": skill.name, "task": task, "image": name, "success": ok})
    return {"images": images, "strips": rows, "note": ""}


def _report(out_dir: Path, summary: dict, skills, base, columns, series, extra) -> Path:
    subjects = list(summary["matrix"])
    heatmap([[summary["matrix"][s][t] for t in columns] for s in subjects], subjects, columns,
            out_dir / "matrix.png", "success rate: subject × task (held-out goals)", vmax=1.0)
    curves({s.name: [tuple(p) for p in s.metrics["train"]["curve"]] for s in skills},
           out_dir / "training.png", "behaviour-cloning loss (MSE on actions)", "step", "loss",
           logy=True)
    curves(series, out_dir / "success.png", "fraction of episodes succeeded by step t",
           "environment step", "success")
    rows = [[n, s["task"], s["success"], s["stderr"], s["base_success"], s["fraction"],
             s["train_seconds"], "yes" if s["meets_target"] else "NO"]
            for n, s in summary["skills"].items()]
    frames = summary["frames"]
    strips = [Section(f"{r['skill']} on {r['task']}" + ("" if r["success"] else " (failed)"),
                      images=[r["image"]]) for r in frames.get("strips", [])]
    sections = [
        Section("Overview", text=(
            f"Policy base {base.name} ({base.fingerprint[:12]}) cloned from expert "
            f"demonstrations of {', '.join(summary['base']['tasks'])}; {len(skills)} LoRA policy "
            f"skills, each from {summary['demos']} demonstrations, on Meta-World; every "
            f"success rate over {summary['episodes']} "
            f"held-out goals, {summary['horizon']} steps per episode. Wall time "
            f"{summary['wall_seconds']} s.")),
        Section("Skills on their own tasks", table=(
            ["skill", "task", "success", "stderr", "base alone", "params (of base)", "train s",
             "> base"], rows)),
        Section("Success matrix", images=["matrix.png"]),
        Section("Success curves", images=["success.png"]),
        Section("Training curves", images=["training.png"]),
        *extra,
        Section("Rendered episodes", text=frames["note"] or (
            "Six frames evenly spaced over each skill's episode on the first held-out goal "
            "(MuJoCo offscreen, camera corner2).")),
        *strips,
    ]
    return write_report(out_dir, "skillbank demo (policy)", sections)

