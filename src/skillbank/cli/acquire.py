"""Acquire and measure: train a base or a skill, evaluate, run the demo."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..skill import SkillError
from .core import (
    AddressOpt,
    JsonOpt,
    Ui,
    WorkersOpt,
    app,
    base_app,
    csv_list,
    emit,
    lib,
    out,
    table,
    world_of,
)


@base_app.command("train")
def base_train(name: str,
               world: Annotated[str, typer.Option(help="World whose base tasks it learns (metaworld: a policy base).")] = "strings",
               tasks: Annotated[str | None, typer.Option(help="Comma-separated base tasks (default copy,rev,sort; metaworld: reach-v3,push-v3,pick-place-v3).")] = None,
               size: Annotated[str, typer.Option(help="tiny, mini, small or large.")] = "mini",
               steps: Annotated[int | None, typer.Option(min=1, help="Default 800 (metaworld 3000).")] = None,
               lr: Annotated[float | None, typer.Option(min=0.0, help="Default 5e-3 (metaworld 1e-3).")] = None,
               demos: Annotated[int, typer.Option(min=1, help="metaworld: expert demonstrations per base task.")] = 25,
               seed: int = 0, as_json: JsonOpt = False) -> None:
    """Train the embedded default base (a tiny transformer) and register it; re-used by recipe.

    ``--world metaworld``: a policy base cloned from Meta-World's scripted experts."""
    from ..acquire.pretrain import BaseRecipe, ensure_base
    from ..worlds import get_world

    if world == "metaworld":
        from .policy import base_train as policy_base_train

        return policy_base_train(name, tasks, steps, lr, seed, demos, as_json)
    steps = steps or 800
    recipe = BaseRecipe(world=world, tasks=csv_list(tasks or "copy,rev,sort"), size=size,
                        steps=steps, lr=5e-3 if lr is None else lr, seed=seed)
    w = get_world(world)
    for t in recipe.tasks:
        w.examples(t, 1, seed=0)  # unknown task: one-line error before any training
    ui, library = Ui(as_json), lib(create=True)
    with ui.bar(f"base {name}", steps) as step:
        b, log = ensure_base(library, name, recipe, progress=step)
    row = {"name": b.name, "fingerprint": b.fingerprint, "trained": log is not None,
           "recipe": b.meta.get("recipe")}
    emit(row) if as_json else out.print(
        f"base {b.name} {b.short} " + ("trained" if log else "already in the library (same recipe)"))


PANEL = "Acquire and evaluate"


@app.command("train", rich_help_panel=PANEL)
def train_cmd(skill: Annotated[str, typer.Argument(help="Name of the new skill.")],
              base: Annotated[str, typer.Option(help="Registered base.")],
              task: Annotated[str, typer.Option(help="Task to learn, e.g. rot or rev+sort.")],
              world: Annotated[str | None, typer.Option(help="strings, lego, arith, debian or files (default: files with --data, else strings).")] = None,
              data: Annotated[Path | None, typer.Option(help="Data file for --world files.")] = None,
              shots: Annotated[int, typer.Option(min=0, help="debian/files classification: train on a fixed k rows per label (0: all).")] = 0,
              rank: Annotated[int, typer.Option(min=1)] = 8,
              steps: Annotated[int | None, typer.Option(min=1, help="Training steps (default 300; classifiers 150, a ceiling: see --val-every).")] = None,
              lr: Annotated[float | None, typer.Option(min=0.0, help="Default 5e-3 (LoRA); 1e-4 with --full.")] = None,
              batch_size: Annotated[int | None, typer.Option(min=1, help="Default 64; classifiers 32.")] = None,
              full: Annotated[bool, typer.Option("--full", help="Classification: fine-tune every encoder-block weight (stored as an exact delta skill) instead of a LoRA.")] = False,
              head: Annotated[str, typer.Option(help="Classification: 'linear' (a new head, trained) or 'labels' (the label names' embeddings, frozen: a zero-shot start, only the encoder learns).")] = "linear",
              max_length: Annotated[int, typer.Option(
                  min=1, help="Classification: tokens per text.")] = 64,
              val_every: Annotated[int, typer.Option(min=0, help="Classification: score a validation slice of the train split every N steps and stop when it stalls (0: never; --steps is then exact).")] = 25,
              patience: Annotated[int, typer.Option(min=1, help="Classification: validation scores without improvement before stopping.")] = 3,
              probe: Annotated[bool, typer.Option(help="Classification: score the skill and a logistic-regression probe on frozen embeddings on held-out rows.")] = True,
              n_eval: Annotated[int, typer.Option("--n", min=1, help="Classification: held-out rows for that comparison.")] = 200,
              demos: Annotated[int, typer.Option(min=1, help="Policy skills: expert demonstrations to clone.")] = 10,
              speed: Annotated[float, typer.Option(help="Policy skills: the hand's speed multiplier (a dynamics shift).")] = 1.0,
              seed: int = 0, as_json: JsonOpt = False) -> None:
    """Train a LoRA skill through PEFT (resumes an interrupted run) and store it.

    On an encoder base the task must be a classification task (a files world of
    task,text,label rows): the skill is LoRA on attention plus its own linear head. On a
    policy base (``--world metaworld``) it is a Meta-World task cloned from ``--demos``
    expert demonstrations."""
    from ..acquire.classify import ClassifierRecipe, train_classifier
    from ..acquire.lora import LoraRecipe, train_lora
    from ..skill import check_name
    from ..worlds import get_world

    check_name(skill, "skill name")
    if world == "metaworld" or (world is None and data is None and _is_policy(base)):
        from .policy import train_skill

        return train_skill(skill, base, task, demos, rank, steps, lr, batch_size, speed, seed, as_json)
    world = world or ("files" if data is not None else "strings")
    world_args = {"path": str(data.resolve())} if data is not None else {}
    if shots:
        world_args["shots"] = shots
    w = get_world(world, **world_args)
    w.examples(task, 1, seed=0)
    library = lib(write=True)
    b = library.base(base)
    classify = getattr(w, "kind", "") == "classification"
    if b.kind == "policy":
        raise SkillError(f"base {b.name} is a policy: it learns Meta-World tasks "
                         f"(--world metaworld), not world {world!r}'s")
    if b.kind == "encoder" and not classify:
        raise SkillError(f"base {b.name} is an encoder: it learns classification tasks "
                         "(--world files with task,text,label rows), not the generation "
                         f"task {task!r}")
    if b.kind != "encoder" and classify:
        raise SkillError(f"task {task!r} is a classification task but base {b.name} is {b.kind}; "
                         "classification skills need an encoder base")
    if full and not classify:
        raise SkillError("--full fine-tunes classifiers on an encoder base; generation skills are LoRAs")
    if head != "linear" and not classify:
        raise SkillError("--head applies to classifiers on an encoder base")
    steps = steps or (150 if classify else 300)
    lr = lr if lr is not None else (1e-4 if full else 5e-3)
    batch_size = batch_size or (32 if classify else 64)
    if classify:
        trainer, recipe = train_classifier, ClassifierRecipe(
            task=task, world=world, world_args=world_args, rank=rank, alpha=2 * rank, steps=steps,
            lr=lr, batch_size=batch_size, max_length=max_length, seed=seed,
            val_every=val_every, patience=patience, full=full, head=head)
    else:
        trainer, recipe = train_lora, LoraRecipe(
            world=world, task=task, rank=rank, alpha=2 * rank, steps=steps, lr=lr,
            batch_size=batch_size, seed=seed, world_args=world_args)
    ui = Ui(as_json)
    with ui.bar(f"train {skill}", steps) as step:
        s = library.add(trainer(skill, b, recipe, library.home / "checkpoints", progress=step))
    beside = _against_probe(library, b, s, w, world, task, n_eval, seed) if classify and probe else None
    if as_json:
        return emit({**s.manifest(), **({"held_out": beside} if beside else {})})
    t = s.metrics["train"]
    out.print(f"stored {s.ref}: final loss {t['final_loss']:.4f}, {t['seconds']} s"
              + (f" (resumed from step {t['resumed_from']})" if t["resumed_from"] else ""))
    if beside:
        sk, pr = beside["skill"], beside["probe"]
        out.print(f"held-out accuracy on {task} ({pr['eval_rows']} rows): {s.ref} "
                  f"{sk['accuracy']:.3f}±{sk['accuracy_stderr']:.3f}, logistic-regression probe "
                  f"on frozen embeddings {pr['accuracy']:.3f}±{pr['accuracy_stderr']:.3f}"
                  + ("" if sk["accuracy"] >= pr["accuracy"] else " (the probe is better)"))


def _is_policy(base: str) -> bool:
    """Whether ``base`` names a registered policy base (False where it cannot be read: the
    strings path then gives its own one-line error)."""
    try:
        return lib().base(base).kind == "policy"
    except SkillError:
        return False


def _against_probe(library, base, skill, world, world_name: str, task: str, n: int,
                   seed: int) -> dict | None:
    """The new classifier and the user's alternative (a probe on frozen embeddings) on the
    same held-out rows, both stored as results; None when the task has no held-out rows."""
    from ..acquire.probe import probe
    from ..evaluate.suites import evaluate_cell, result_spec

    if not world.examples(task, 1, seed=seed, split="eval"):
        return None
    metrics, _ = evaluate_cell(library, base, skill.ref, [skill], world_name, world, task, n, seed,
                               skill.recipe.get("world_args"))
    found = probe(base, world, task, world.labels(task), n, seed,
                  int(skill.config.get("max_length") or 64))
    library.add_result(f"probe:{base.name}", world_name, task, found,
                       result_spec(base, n, seed, skill.recipe.get("world_args"),
                                   predictor="logistic regression on mean-pooled embeddings"))
    return {"skill": {k: metrics[k] for k in ("accuracy", "accuracy_stderr", "ece")}, "probe": found}


@app.command("eval", rich_help_panel=PANEL)
def eval_cmd(skills: Annotated[list[str], typer.Argument(help="Skills NAME[@VERSION] (none: base only).")] = None,
             base: Annotated[str | None, typer.Option(help="Base (default: the skills' base).")] = None,
             world: Annotated[str | None, typer.Option(help="World of the tasks (default: the skills').")] = None,
             data: Annotated[Path | None, typer.Option(help="Data file for --world files (default: the skills').")] = None,
             tasks: Annotated[str | None, typer.Option(help="Comma-separated tasks (default: the skills' tasks).")] = None,
             n: Annotated[int, typer.Option(min=1, help="Held-out examples per task.")] = 200,
             seed: int = 0, as_json: JsonOpt = False,
             executor: Annotated[str | None, typer.Option(
                 help="Run one job per subject × task on local (--workers N) or ray; "
                      "default: in this process.")] = None,
             address: AddressOpt = None,
             workers: WorkersOpt = None,
             metric: Annotated[str, typer.Option(help="greedy (exact match beside the continuous metrics) or pass-until (sample each input until it passes: pass rates far below 1/n).")] = "greedy",
             cap: Annotated[int, typer.Option(help="pass-until: most samples per input.")] = 10_000,
             passes: Annotated[int, typer.Option(help="pass-until: stop an input at this many passes (2: unbiased).")] = 2,
             temperature: Annotated[float, typer.Option(help="pass-until: sampling temperature.")] = 1.0,
             episodes: Annotated[int, typer.Option(help="Policy skills: held-out goals per task, one episode each (≤ 25).")] = 20,
             horizon: Annotated[int, typer.Option(help="Policy skills: steps per episode (≤ 500).")] = 200,
             speed: Annotated[float, typer.Option(help="Policy skills: the hand's speed multiplier.")] = 1.0,
             ) -> None:
    """Evaluate the base alone and each skill on each task; results go to the library.

    ``--metric pass-until`` samples each held-out input until it passes (PassUntil): it
    resolves pass rates that greedy exact match shows as 0."""
    from ..base import check_base
    from ..evaluate.jobs import eval_matrix_on
    from ..run import get_executor
    from ..worlds import get_world
    from ..worlds.base import check_n

    library = lib(write=True)
    loaded = [library.get(r) for r in (skills or [])]
    if base is None and not loaded:
        raise SkillError("give at least one skill or --base")
    b = library.base(base) if base else library.base_of(loaded[0])
    for s in loaded:   # a skill made on another base, or a lost member: one line before any job runs
        check_base(s, b)
        for ref in s.config.get("members", []) if s.kind in ("router", "chain") else []:
            library.get(ref)
    if b.kind == "policy" or world == "metaworld":
        from .policy import evaluate as policy_evaluate

        if b.kind != "policy":
            raise SkillError(f"base {b.name} is a {b.kind} model; --world metaworld evaluates policies")
        return policy_evaluate(library, b, loaded, tasks, episodes, seed, horizon, speed,
                               executor, address, workers, as_json)
    task_list = csv_list(tasks) if tasks else sorted(
        {t for s in loaded for t in (s.heads() or [s.recipe.get("task")]) if isinstance(t, str)})
    if not task_list:
        raise SkillError("no tasks: pass --tasks")
    ui = Ui(as_json)
    total = (len(loaded) + 1) * len(task_list)
    world, world_args = world_of(library, loaded, world, data)
    w = get_world(world, **world_args)
    check_n(n)
    for t in task_list:
        w.examples(t, 1, seed=0)  # an unknown task: one line before any job runs
    if metric not in ("greedy", "pass-until"):
        raise SkillError(f"unknown metric {metric!r}; choose greedy or pass-until")
    if metric == "pass-until":
        return _pass_until(ui, library, b, loaded, world, world_args, task_list, n, seed, cap,
                           passes, temperature, get_executor(executor, address, workers), as_json)
    with ui.jobs("evaluate", total) as progress, get_executor(executor, address, workers) as ex:
        matrix = eval_matrix_on(ex, library, b, [s.ref for s in loaded], world, task_list,
                                n, seed, world_args, progress=progress)
    if as_json:
        return emit(matrix)
    first = next(c for row in matrix.values() for c in row.values() if c is not None)
    key = "accuracy" if "accuracy" in first else "exact_match"

    def cell(c: dict | None) -> str:
        return "n/a" if c is None else f"{c[key]:.3f}±{c[key + '_stderr']:.3f}"

    table(f"{key.replace('_', ' ')} ± stderr ({n} held-out per task; n/a: no head for the task)",
          ["subject", *task_list], [[s, *[cell(row[t]) for t in task_list]] for s, row in matrix.items()])


def _pass_until(ui, library, base, loaded, world, world_args, tasks, n, seed, cap, passes,
                temperature, ex_ctx, as_json) -> None:
    from ..evaluate.jobs import passuntil_matrix_on
    from ..evaluate.passuntil import PassUntilConfig

    cfg = PassUntilConfig(cap=cap, passes=passes, temperature=temperature, seed=seed)
    if base.kind != "causal":
        raise SkillError(f"pass-until samples answers; base {base.name} is a classifier ({base.kind})")
    chains = [s.ref for s in loaded if s.kind == "chain"]
    if chains:
        raise SkillError(f"pass-until samples one model; {', '.join(chains)} is a chain of calls; "
                         "use --metric greedy")
    subjects = [f"base:{base.name}", *(s.ref for s in loaded)]
    with ui.jobs("pass-until", len(subjects) * len(tasks)) as progress, ex_ctx as ex:
        matrix = passuntil_matrix_on(ex, library, base, subjects, world, tasks, n, cfg,
                                     world_args, progress=progress)
    if as_json:
        return emit({s: {t: {k: v for k, v in c.items() if k != "per_instance"}
                         for t, c in row.items()} for s, row in matrix.items()})

    def cell(c: dict) -> str:
        return f"{c['pass_rate']:.2e}±{c['pass_rate_stderr']:.1e} ({c['draws']:,} draws)"

    table(f"PassUntil pass rate ± stderr ({n} held-out inputs per task, until {passes} "
          f"pass(es) or {cap:,} draws, T={temperature})",
          ["subject", *tasks], [[s, *[cell(row[t]) for t in tasks]] for s, row in matrix.items()])


@app.command("demo", rich_help_panel=PANEL)
def demo_cmd(out_dir: Annotated[Path, typer.Option("--out", help="Where report.html and summary.json go.")] = Path("skillbank-demo"),
             steps: Annotated[int | None, typer.Option(min=1, help="Training steps per skill (default: 300; policy: 1000).")] = None,
             base_steps: Annotated[int | None, typer.Option(min=1, help="Base pre-training steps (default: 800; policy: 3000).")] = None,
             n: Annotated[int, typer.Option(min=1, help="Held-out examples per task.")] = 200,
             size: Annotated[str, typer.Option(help="Base size: tiny, mini, small, large.")] = "mini",
             profile: Annotated[str, typer.Option(help="embedded (the tiny base, strings skills), real (all-MiniLM-L6-v2 on Debian text; pip install 'skillbank[real]') or policy (robot policies on Meta-World; pip install 'skillbank[policy]').")] = "embedded",
             tasks: Annotated[str | None, typer.Option(help="Skills to acquire (default: rot,shift,dedup,drop,swap,dup; real: media,net,science,desktop; policy: door-open-v3,drawer-open-v3,button-press-topdown-v3,window-open-v3).")] = None,
             episodes: Annotated[int, typer.Option(min=1, max=25, help="Policy profile: held-out goals per task.")] = 20,
             composition: Annotated[bool, typer.Option(help="Compose the skills (router and merges).")] = True,
             localization: Annotated[bool, typer.Option(help="Graft each skill into 1% of the weights.")] = True,
             graft_steps: Annotated[int | None, typer.Option(min=1, help="Mask-training steps per graft (default: the graft recipe's).")] = None,
             router_steps: Annotated[int | None, typer.Option(min=1, help="Router training steps (default: RouterRecipe's).")] = None,
             seed: int = 0, as_json: JsonOpt = False,
             executor: Annotated[str | None, typer.Option(
                 help="Run the demo's jobs (skills, matrix, router, grafts) on local "
                      "(--workers N) or ray; default: local.")] = None,
             address: AddressOpt = None,
             workers: Annotated[int, typer.Option(
                 min=1, help="Parallel workers (default: one per core, at most 2; 1 runs "
                             "everything in this process).")] = min(2, os.cpu_count() or 1),
             ) -> None:
    """The main job: a base gains skills, each stored, evaluated, composed, localized and reported."""
    from ..acquire.pretrain import BaseRecipe
    from ..demo import DemoConfig, run_demo

    if profile == "real":
        return _real_demo(out_dir, tasks, n, composition, localization, graft_steps, seed,
                          executor, address, workers, as_json)
    if profile == "policy":
        from .policy import demo as policy_demo

        return policy_demo(out_dir, tasks, steps, base_steps, episodes, composition, seed,
                            executor, address, workers, as_json)
    if profile != "embedded":
        raise SkillError(f"unknown profile {profile!r}; choose from embedded, real, policy")
    tasks = tasks or "rot,shift,dedup,drop,swap,dup"
    cfg = DemoConfig(base=BaseRecipe(size=size, steps=base_steps or 800, seed=seed),
                     tasks=csv_list(tasks), steps=steps or 300, n_eval=n, seed=seed, composition=composition, localization=localization,
                     graft_steps=graft_steps, router_steps=router_steps,
                     executor=executor, address=address,
                     workers=None if workers == 1 and not (executor or address) else workers)
    summary = run_demo(lib(create=True), out_dir, cfg, Ui(as_json))
    if as_json:
        return emit(summary)
    table("skills on their own tasks (held-out exact match)",
          ["skill", "task", "exact match", "± stderr", "base alone", "target met"],
          [[k, s["task"], s["exact_match"], s["stderr"], s["base_exact_match"],
            "yes" if s["meets_target"] else "NO"] for k, s in summary["skills"].items()])
    tasks_ = cfg.tasks
    table("skill × task matrix (exact match)", ["subject", *tasks_],
          [[subj, *[row[t] for t in tasks_]] for subj, row in summary["matrix"].items()])
    if "composition" in summary:
        methods = summary["composition"]["methods"]
        table("composition: normalised accuracy (composed / member alone)", ["method", *tasks_],
              [[m, *["n/a" if r["normalised"][t] is None else r["normalised"][t] for t in tasks_]]
               for m, r in methods.items()])
    if "localization" in summary:
        loc = summary["localization"]
        table(f"localization: relative gain of a {loc['sparsity']:.0%} graft (target ≥ {loc['target_relative_gain']:.2f})",
              ["skill", "learned", "top-|Δ|", "random", "ECE skill", "ECE graft"],
              [[k, *["n/a" if p["relative_gain"][m] is None else p["relative_gain"][m]
                     for m in ("learned", "top_delta", "random")],
                p["token_ece"]["skill"], p["token_ece"]["learned"]] for k, p in loc["skills"].items()])
    out.print(f"report: {out_dir / 'report.html'}  summary: {out_dir / 'summary.json'}  "
              f"wall time {summary['wall_seconds']} s")


def _real_demo(out_dir, tasks, n, composition, localization, graft_steps, seed, executor,
               address, workers, as_json) -> None:
    from ..demo_real import RealDemoConfig, run_real_demo
    from ..repro.real import TASKS

    names = tuple(csv_list(tasks)) if tasks else TASKS
    from ..worlds import get_world

    world = get_world("debian")
    for t in names:
        world.examples(t, 1, seed=0)   # an unknown task: one line before any work
    cfg = RealDemoConfig(tasks=names, n_eval=n, seed=seed, composition=composition,
                         localization=localization, graft_steps=graft_steps or 40,
                         executor=executor, address=address,
                         workers=None if workers == 1 and not (executor or address) else workers)
    summary = run_real_demo(lib(create=True), out_dir, cfg, Ui(as_json))
    if as_json:
        return emit(summary)
    table("skills on their own tasks (held-out accuracy)",
          ["skill", "task", "accuracy", "± stderr", "probe", "majority class", "≥ probe"],
          [[k, s["task"], s["accuracy"], s["stderr"], s["probe"], s["majority_baseline"],
            "yes" if s["meets_target"] else "NO"] for k, s in summary["skills"].items()])
    table("skill × task matrix (accuracy; n/a: no head for the task)", ["subject", *names],
          [[subj, *["n/a" if row[t] is None else row[t] for t in names]]
           for subj, row in summary["matrix"].items()])
    if "composition" in summary:
        methods = summary["composition"]["methods"]
        table("composition: normalised accuracy (merged / member alone)", ["method", *names, "mean"],
              [[m, *[r["normalised"][t] for t in names], r["mean"]] for m, r in methods.items()])
    if "localization" in summary:
        loc = summary["localization"]
        table(f"localization: {loc['sparsity']:.0%} grafts (accuracy; relative gain)",
              ["skill", "base", "skill", "graft", "gain", "gain random", "ECE skill", "ECE graft"],
              [[k, p["accuracy"]["base"], p["accuracy"]["skill"], p["accuracy"]["learned"],
                "n/a" if p["relative_gain"]["learned"] is None else p["relative_gain"]["learned"],
                "n/a" if p["relative_gain"]["random"] is None else p["relative_gain"]["random"],
                p["ece"]["skill"], p["ece"]["learned"]] for k, p in loc["skills"].items()])
    out.print(f"report: {out_dir / 'report.html'}  summary: {out_dir / 'summary.json'}  "
              f"wall time {summary['wall_seconds']} s")

