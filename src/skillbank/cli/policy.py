"""Policy skills from the command line: the ``metaworld`` world behind ``base train``,
``train`` and ``eval`` (which call in here when the world is ``metaworld`` or the base is a
policy), and ``skillbank policy tasks``."""

from __future__ import annotations

import typer

from ..skill import SkillError
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


def route(library, base, new: str, skills, tasks: list[str] | None, demos: int, steps,
          lr, new_rank: int, episodes: int, seed: int, as_json: bool) -> None:
    """PSEC's α(s) over policy skills for one task (the ``policy-route`` job), then its
    success beside each member alone on that task."""
    from ..policy import require
    from ..policy.env import HORIZON, check_task, eval_goals
    from ..policy.jobs import policy_route_job, success_matrix
    from ..policy.routed import StateRouterRecipe
    from ..run import ensure, get_executor
    from ..skill import check_name

    require()
    check_name(new, "skill name")
    if not tasks or len(tasks) != 1:
        raise SkillError("a policy router learns one task: pass --tasks TASK (its "
                         "demonstrations train α(s))")
    check_task(tasks[0])
    eval_goals(episodes)
    given = {k: v for k, v in (("steps", steps), ("lr", lr)) if v is not None}
    recipe = StateRouterRecipe(tasks[0], demos=demos, new_rank=new_rank, seed=seed, **given)
    ui = Ui(as_json)
    with get_executor() as ex:
        with ui.jobs(f"route {new}", 1) as progress:
            (done,) = ensure(ex, library, [policy_route_job(new, base, [s.ref for s in skills],
                                                            recipe)], progress, what="routing")
        subjects = [done.result["ref"], *[s.ref for s in skills]]
        with ui.jobs("evaluate", len(subjects)) as progress:
            m = success_matrix(ex, library, base, subjects, tasks, episodes, seed, HORIZON,
                               progress=progress)
    result = {"router": done.result["ref"], "new_lora": done.result["new_lora"],
              "task": tasks[0], "episodes": episodes,
              "success": {s: m[s][tasks[0]]["success"] for s in subjects},
              "stderr": {s: m[s][tasks[0]]["stderr"] for s in subjects}}
    library.add_result(result["router"], "metaworld", tasks[0], result)
    if as_json:
        return emit(result)
    table(f"{result['router']} on {tasks[0]}: success over {episodes} held-out goals",
          ["subject", "success", "± stderr"],
          [[s, result["success"][s], result["stderr"][s]] for s in subjects])


def continual(library, base, tasks: list[str], strategies: list[str], steps: int,
              batch_size: int, episodes: int, demos: int, curve_points: int, seed: int,
              as_json: bool) -> None:
    """Policy tasks learnt one after another (``policy.continual``), in this process."""
    from ..policy import require
    from ..policy.bc import check_policy_base, demo_cache
    from ..policy.continual import PolicyContinualRecipe, run_policy_continual

    require()
    check_policy_base(base)
    recipe = PolicyContinualRecipe(tuple(tasks), tuple(strategies), demos=demos, steps=steps,
                                   batch_size=batch_size, episodes=episodes, seed=seed,
                                   curve_points=max(1, curve_points))
    ui = Ui(as_json)
    with ui.jobs(f"continual {','.join(strategies)}", len(strategies)) as progress:
        done = [0]

        def step(n):
            done[0] += n
            progress(done[0], len(strategies))
        res = run_policy_continual(base, recipe, cache=demo_cache(library), progress=step)
    if as_json:
        return emit(res)
    for name, r in res["strategies"].items():
        table(f"R ({name}): success on each task (column) after learning task (row); b = base",
              ["after", *tasks], [["b", *res["b"]], *[[t, *row] for t, row in
                                                     zip(tasks, r["R"], strict=True)]])
    table("metrics (LIBERO's FWT, NBT, AUC; Chaudhry's forgetting)",
          ["strategy", "ACC", "BWT", "forgetting", "FWT", "NBT", "AUC"],
          [[k, v["acc"], v["bwt"], v["forgetting"], v["fwt"], v["nbt"], v["auc"]]
           for k, v in res["strategies"].items()])


def transfer(library, base, task: str, skills, estimator: str, verify: bool, steps: int,
             demos: int, episodes: int, seed: int, executor, address, workers,
             as_json: bool) -> None:
    """Rank policy skills as starting points for ``task`` (``policy.transfer``); with
    ``verify``, learn it from each (one ``policy-verify`` job each) and compare the orders."""
    from ..policy import require
    from ..policy.bc import PolicyLoraRecipe, demo_cache
    from ..policy.env import check_task, eval_goals
    from ..policy.jobs import policy_verify_job
    from ..policy.transfer import POLICY_ESTIMATORS, score_policy_candidates
    from ..run import EXECUTORS, get_executor
    from ..transfer.rank import agreement

    require()
    check_task(task)
    eval_goals(episodes)
    if estimator not in POLICY_ESTIMATORS:
        raise SkillError(f"estimator {estimator!r} does not apply to policy skills (actions are "
                         f"not classes); choose from {', '.join(POLICY_ESTIMATORS)}")
    if executor is not None and executor not in EXECUTORS:
        raise SkillError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    if (executor or address or workers) and not verify:
        raise SkillError("--executor, --address and --workers run the --verify fine-tunes; "
                         "add --verify")
    for s in skills:
        if verify and s.kind != "lora":
            raise SkillError(f"verify fine-tunes from LoRA skills; {s.ref} is a {s.kind} skill")
    ui = Ui(as_json)
    with ui.jobs("score candidates", len(skills) + 1) as progress:
        scored = score_policy_candidates(base, skills, task, demos, seed, demo_cache(library),
                                         progress=progress)
    result = {**scored, "task": task, "world": "metaworld", "base": base.name,
              "estimator": estimator, "rankings": scored["ranking"],
              "ranking": scored["ranking"][estimator]}
    if verify:
        recipe = PolicyLoraRecipe(task, demos=demos, steps=steps, seed=seed)
        runs = [(s.ref, s.ref, False) for s in skills] + [("scratch", skills[0].ref, True)]
        jobs = [policy_verify_job(base, src, scratch, recipe, episodes) for _, src, scratch in runs]
        with get_executor(executor, address, workers) as ex, \
                ui.jobs(f"verify (learn {task} from each, {ex.name} × {ex.workers})",
                        len(jobs)) as progress:
            done = ex.run_all(library.home, jobs, "verify", progress=progress)
        result["verified"] = {subject: r.result for (subject, _, _), r in
                              zip(runs, done, strict=True)}
        refs = [s.ref for s in skills]
        success = [result["verified"][r]["success"] for r in refs]
        result["agreement"] = {e: agreement([scored["scores"][r][e] for r in refs], success)
                               for e in POLICY_ESTIMATORS} if len(refs) > 1 else {}
    library.add_result(f"transfer:{task}", "metaworld", task, result,
                       {"candidates": [s.ref for s in skills], "seed": seed, "demos": demos})
    if as_json:
        return emit(result)
    rows = [[i, ref, *[scored["scores"][ref][e] for e in POLICY_ESTIMATORS]]
            + ([result["verified"][ref]["success"]] if verify else [])
            for i, ref in enumerate(result["ranking"], 1)]
    rows.append(["-", "base (reference)", *[scored["scores"]["base"][e]
                                            for e in POLICY_ESTIMATORS]]
                + ([f"scratch {result['verified']['scratch']['success']}"] if verify else []))
    table(f"candidates for {task} ranked by {estimator} ({scored['rows']} demonstration states)",
          ["rank", "skill", *POLICY_ESTIMATORS, *(["success after learning"] if verify else [])],
          rows)
    if verify and result["agreement"]:
        table(f"score vs success after {steps} steps ({episodes} held-out goals)",
              ["estimator", "kendall τ", "weighted τ", "top-1 hit"],
              [[e, a["kendall_tau"], a["weighted_tau"], "yes" if a["top1"] else "no"]
               for e, a in result["agreement"].items()])


def demo(out_dir, tasks, steps, base_steps, episodes, composition, seed, executor,
         address, workers, as_json) -> None:
    """``skillbank demo --profile policy`` (``demo_policy``)."""
    from dataclasses import replace

    from ..demo_policy import PolicyDemoConfig, run_policy_demo
    from ..policy import require
    from ..policy.env import check_task

    require()
    cfg = PolicyDemoConfig(episodes=episodes, composition=composition, seed=seed,
                           executor=executor, address=address,
                           workers=None if workers == 1 and not (executor or address) else workers)
    if tasks:
        cfg = replace(cfg, tasks=tuple(csv_list(tasks)))
    for t in (*cfg.tasks, cfg.new_task):
        check_task(t)   # an unknown task: one line (naming the valid ones) before any work
    if len(set(cfg.tasks)) != len(cfg.tasks) or cfg.new_task in cfg.tasks:
        raise SkillError(f"the demo's tasks must differ from each other and from {cfg.new_task}")
    cfg = replace(cfg, base=replace(cfg.base, seed=seed, **({"steps": base_steps} if base_steps
                                                           else {})),
                  **({"steps": steps} if steps else {}))
    summary = run_policy_demo(lib(create=True), out_dir, cfg, Ui(as_json))
    if as_json:
        return emit(summary)
    table(f"policy skills on their own tasks (success over {episodes} held-out goals)",
          ["skill", "task", "success", "± stderr", "base alone", "params", "> base"],
          [[k, s["task"], s["success"], s["stderr"], s["base_success"], f"{s['fraction']:.1%}",
            "yes" if s["meets_target"] else "NO"] for k, s in summary["skills"].items()])
    cols = [*cfg.tasks, cfg.new_task]
    table("success matrix", ["subject", *cols],
          [[subj, *[row[t] for t in cols]] for subj, row in summary["matrix"].items()])
    if "composition" in summary:
        c = summary["composition"]
        table(f"composition on {c['task']} ({c['demos']} demonstrations)",
              ["subject", "success", "± stderr"],
              [[k, v["success"], v["stderr"]] for k, v in c["methods"].items()])
    if summary["frames"]["note"]:
        out.print(f"frames: {summary['frames']['note']}")
    out.print(f"report: {out_dir / 'report.html'}  summary: {out_dir / 'summary.json'}  "
              f"wall time {summary['wall_seconds']} s")


def check_compose_method(method: str) -> None:
    """Policy skills merge by the ΔW-space methods; the data-aware and learned ones read
    a world's examples, which a policy's tasks are not."""
    from ..compose.ops import DATA_AWARE, METHODS

    if method not in METHODS or method in DATA_AWARE:
        usable = [m for m in METHODS if m not in DATA_AWARE]
        raise SkillError(f"{method} does not apply to policy skills; merge them with one of "
                         f"{', '.join(usable)}, or compose per state with `skillbank route`")


def composition_success(base, merged, skills, episodes: int, seed: int) -> dict:
    """The merged policy's success on each member's task, beside the member alone:
    ``{"alone", "composed", "normalised"}`` by task (normalised: composed / alone)."""
    from ..policy import require
    from ..policy.evaluate import load_policy, success_rate

    require()
    model = base.load_model([merged])
    out: dict = {"alone": {}, "composed": {}, "normalised": {}, "episodes": episodes}
    for s in skills:
        task = s.recipe.get("task")
        if not isinstance(task, str) or task in out["alone"]:
            continue
        alone = success_rate(load_policy(base, s), task, episodes, seed)["success"]
        composed = success_rate(model, task, episodes, seed)["success"]
        out["alone"][task], out["composed"][task] = alone, composed
        out["normalised"][task] = round(composed / alone, 4) if alone else None
    return out
