"""Policy skills from the command line: the ``metaworld`` world behind ``base train``,
``train`` and ``eval`` (which call in here when the world is ``metaworld`` or the base is a
policy), and ``skillbank policy tasks``."""

from __future__ import annotations

import typer

from .core import JsonOpt, Ui, app, csv_list, emit, lib, out, table

policy_app = typer.Typer(help="Policy skills on Meta-World (needs the policy extra).",
                         no_args_is_help=True)
app.add_typer(policy_app, name="policy", rich_help_panel="Acquire and evaluate")


@policy_app.command("tasks")
def tasks_cmd(as_json: JsonOpt = False) -> None:
    """List the Meta-World v3 tasks with a scripted expert (MT10's first) and the library's
    policy skills on each."""
    from ..policy.env import MT10, tasks

    library = lib()
    known = tasks()
    rows = [t for t in MT10 if t in known] + [t for t in known if t not in MT10]
    policy = {b.fingerprint for b in library.bases() if b.kind == "policy"}
    have: dict[str, list[str]] = {}
    for r in library.list():
        task = (r.manifest.get("recipe") or {}).get("task")
        if r.base in policy and isinstance(task, str):
            have.setdefault(task, []).append(f"{r.name}@{r.version}")
    if as_json:
        return emit({"tasks": rows, "mt10": list(MT10), "skills": have})
    table("Meta-World tasks", ["task", "MT10", "skills"],
          [[t, "yes" if t in MT10 else "", ", ".join(have.get(t, []))] for t in rows])


def base_train(name: str, tasks: str | None, steps: int | None, lr: float | None, seed: int,
               demos: int, as_json: bool) -> None:
    from ..policy import require
    from ..policy.bc import PolicyBaseRecipe, ensure_policy_base

    require()
    extra = {k: v for k, v in (("steps", steps), ("lr", lr)) if v is not None}
    recipe = PolicyBaseRecipe(**({"tasks": tuple(csv_list(tasks))} if tasks else {}),
                              demos=demos, seed=seed, **extra)
    ui, library = Ui(as_json), lib(create=True)
    with ui.bar(f"policy base {name}", recipe.steps) as step:
        b, log = ensure_policy_base(library, name, recipe, progress=step)
    row = {"name": b.name, "fingerprint": b.fingerprint, "trained": log is not None,
           "recipe": b.meta.get("recipe")}
    emit(row) if as_json else out.print(
        f"policy base {b.name} {b.short} " + ("trained" if log else "already in the library (same recipe)"))


def train_skill(skill: str, base: str, task: str, demos: int, rank: int, steps: int | None,
                lr: float | None, batch_size: int | None, speed: float, seed: int,
                as_json: bool) -> None:
    from ..policy import require
    from ..policy.bc import PolicyLoraRecipe, check_policy_base, demo_cache, train_policy_lora
    from ..skill import check_name

    require()
    check_name(skill, "skill name")
    library = lib(write=True)
    b = library.base(base)
    check_policy_base(b)
    extra = {k: v for k, v in (("steps", steps), ("lr", lr), ("batch_size", batch_size))
             if v is not None}
    recipe = PolicyLoraRecipe(task, demos=demos, rank=rank, alpha=2 * rank, speed=speed,
                              seed=seed, **extra)
    ui = Ui(as_json)
    with ui.bar(f"train {skill}", recipe.steps) as step:
        s = library.add(train_policy_lora(skill, b, recipe, progress=step,
                                          cache=demo_cache(library)))
    if as_json:
        return emit(s.manifest())
    t = s.metrics["train"]
    out.print(f"stored {s.ref}: final loss {t['final_loss']:.4f}, {t['seconds']} s, "
              f"{t['parameters']:,} parameters ({t['parameters'] / t['base_parameters']:.1%} "
              f"of the base), {t['demo_steps']} demonstration steps")


def evaluate(library, b, loaded, tasks: str | None, episodes: int, seed: int, horizon: int,
             speed: float, executor, address, workers, as_json: bool) -> None:
    """Success rate ± stderr of the base and each skill on each task (one job per cell)."""
    from ..policy import require
    from ..policy.env import check_horizon, check_speed, check_task, eval_goals
    from ..policy.jobs import success_matrix
    from ..run import get_executor

    require()
    task_list = csv_list(tasks) if tasks else sorted(
        {s.recipe.get("task") for s in loaded if isinstance(s.recipe.get("task"), str)})
    if not task_list:
        from ..skill import SkillError

        raise SkillError("no tasks: pass --tasks (see `skillbank policy tasks`)")
    for t in task_list:
        check_task(t)
    eval_goals(episodes), check_horizon(horizon), check_speed(speed)
    subjects = [f"base:{b.name}"] + [s.ref for s in loaded]
    ui = Ui(as_json)
    with ui.jobs("evaluate", len(subjects) * len(task_list)) as progress, \
            get_executor(executor, address, workers) as ex:
        matrix = success_matrix(ex, library, b, subjects, task_list, episodes, seed, horizon,
                                speed, progress)
    if as_json:
        return emit(matrix)
    table(f"success rate ± stderr ({episodes} held-out goals per task, {horizon} steps, "
          f"hand speed ×{speed:g})", ["subject", *task_list],
          [[s, *(f"{matrix[s][t]['success']:.2f}±{matrix[s][t]['stderr']:.2f}"
                 + (f" ({matrix[s][t]['errors']} errors)" if matrix[s][t]["errors"] else "")
                 for t in task_list)] for s in subjects])
