"""Compose skills: ΔW-space merges, learned weights (LoRAHub, ScaLearn) and learned routing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..skill import SkillError, check_name
from .core import JsonOpt, Ui, app, csv_list, emit, lib, out, table, world_of

LEARNED = ("lorahub", "scalearn", "scalearn-uniform", "scalearn++", "scalearn-uniform++",
           "adamerging", "adamerging-task")


PANEL = "Compose"


@app.command("compose", rich_help_panel=PANEL)
def compose_cmd(new: Annotated[str, typer.Argument(help="Name of the composed skill.")],
                members: Annotated[str, typer.Option("--from", help="Comma-separated skills NAME[@VERSION].")],
                method: Annotated[str, typer.Option(help="Merge: linear, ties, dare_linear, dare_ties, magnitude_prune, cat, layer_swap, knots. Data-aware: regmean, fisher. Learned: lorahub, scalearn, scalearn-uniform, scalearn++, scalearn-uniform++, adamerging (layer-wise λ), adamerging-task. auto: try the merges, keep the best.")] = "linear",
                weights: Annotated[str | None, typer.Option(help="Comma-separated weight per skill (default 1 each).")] = None,
                density: Annotated[float, typer.Option(help="Fraction kept by ties/dare/magnitude_prune.")] = 0.2,
                rank: Annotated[int | None, typer.Option(help="Re-factor to a LoRA of this rank (SVD); default: exact delta.")] = None,
                rank_budget: Annotated[float | None, typer.Option(help="Re-factor to the smallest LoRA rank whose relative error is ≤ this (e.g. 0.05).")] = None,
                convention: Annotated[str, typer.Option(help="TIES convention: peft or mergekit.")] = "peft",
                sign_method: Annotated[str, typer.Option(help="TIES sign vote: total or frequency.")] = "total",
                swap: Annotated[str | None, typer.Option(help="layer_swap: member index per layer, e.g. 0,0,1.")] = None,
                world: Annotated[str | None, typer.Option(help="World of the examples and of --eval (default: the members').")] = None,
                data: Annotated[Path | None, typer.Option(help="Data file for --world files (default: the members').")] = None,
                task: Annotated[str | None, typer.Option(help="lorahub: the new task whose few examples pick the weights.")] = None,
                tasks: Annotated[str | None, typer.Option(help="scalearn*: target tasks (default: the members' tasks).")] = None,
                examples: Annotated[int | None, typer.Option(min=1, max=10_000, help="lorahub: examples of the new task (default 5); auto: held-out inputs per member task that pick the merge (default 50).")] = None,
                inner: Annotated[str, typer.Option(help="knots: merge of the aligned vectors, ties or linear.")] = "ties",
                alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="regmean: off-diagonal shrinkage of the Gram matrices.")] = 0.9,
                stat_examples: Annotated[int, typer.Option(min=1, max=100_000, help="regmean, fisher: unlabeled inputs per member for its statistics.")] = 64,
                steps: Annotated[int | None, typer.Option(min=1, help="Learned methods: search steps (lorahub, default 40) or training steps (scalearn*, default 300).")] = None,
                lr: Annotated[float | None, typer.Option(min=0.0, help="scalearn*: learning rate of ω (default 5e-2); adamerging: of λ (default 1e-3).")] = None,
                pool: Annotated[int, typer.Option(min=1, help="scalearn*: training examples per target task.")] = 300,
                evaluate: Annotated[bool, typer.Option("--eval", help="Measure normalised accuracy on the members' tasks.")] = False,
                dry_run: Annotated[bool, typer.Option("--dry-run", help="Say beforehand which pairs will interfere (cosine, sign disagreement); merge and store nothing.")] = False,
                n: Annotated[int, typer.Option(min=1, help="Held-out examples per task for --eval (policy skills: held-out goals, at most 25).")] = 200,
                seed: int = 0, as_json: JsonOpt = False) -> None:
    """Compose skills into a new one: a ΔW-space merge, a data-aware merge, or learned weights.

    RegMean and Fisher use statistics of each member on its task's unlabeled inputs (kept
    with the member for later merges); LoRAHub learns merge weights from a few examples of a
    new task; ScaLearn a per-layer scaling of each member's output; AdaMerging λ per member
    (and layer) by entropy minimisation; auto tries the merges and keeps the best. Every result
    is stored with its recipe, lineage, diagnostics and merge error."""
    from ..compose.measure import member_tasks, normalised_accuracy
    from ..compose.ops import METHODS, MergeSpec, merge_skills

    if method not in METHODS + LEARNED + ("auto",):
        raise SkillError(f"unknown method {method!r}; choose from {', '.join(METHODS + LEARNED)} or auto")
    library = lib(write=not dry_run)
    skills = [library.get(r) for r in csv_list(members)]
    if dry_run:
        from ..compose.ops import check_members, interference

        check_members(skills)
        rows = interference(skills)
        if as_json:
            return emit({"pairs": rows})
        return table("before merging: pairwise interference (sign disagreement among shared entries)",
                     ["pair", "cosine", "sign disagreement", "shared entries"],
                     [[" + ".join(r["pair"]), r["cosine"], r["sign_disagreement"], r["shared_entries"]]
                      for r in sorted(rows, key=lambda r: -r["sign_disagreement"])])
    base = library.base_of(skills[0])
    if base.kind == "policy":
        from .policy import check_compose_method

        check_compose_method(method)
        world, wargs = "metaworld", {}
    else:
        world, wargs = world_of(library, skills, world, data)
    if base.kind == "encoder" and method.startswith("adamerging"):
        raise SkillError(f"{method} learns from generated answers; on an encoder base "
                         "(classifiers) use a merge method, regmean, fisher, lorahub, "
                         "scalearn or auto")
    ui = Ui(as_json)
    if method == "lorahub":
        from ..compose.lorahub import lorahub

        if not task:
            raise SkillError("lorahub needs --task: the new task whose examples pick the weights")
        total = steps or 40
        with ui.bar(f"lorahub {new}", total) as step:
            merged = lorahub(new, base, skills, world, task, examples=examples or 5, steps=total,
                             seed=seed, progress=step, world_args=wargs)
    elif method == "auto":
        from ..compose.advisor import advise, candidates

        grid = candidates(len(skills), seed)
        with ui.bar(f"auto {new}", len(grid)) as step:
            merged = advise(new, base, skills, world, k=examples or 50, seed=seed, grid=grid,
                            progress=step, lib=library, world_args=wargs)
    elif method.startswith("adamerging"):
        from ..compose.adamerging import AdaMergingRecipe, train_adamerging

        recipe = AdaMergingRecipe(granularity="task" if method.endswith("-task") else "layer",
                                  steps=steps or 100, lr=1e-3 if lr is None else lr,
                                  examples=stat_examples, seed=seed)
        with ui.bar(f"{method} {new}", recipe.steps) as step:
            merged = train_adamerging(new, base, skills, recipe, progress=step)
    elif method in LEARNED:
        from ..compose.scalearn import ScaLearnRecipe, train_scalearn

        task_list = csv_list(tasks) if tasks else member_tasks(skills)
        if None in task_list:
            raise SkillError("some members have no task in their recipe: pass --tasks")
        recipe = ScaLearnRecipe(variant=method, steps=steps or 300, lr=5e-2 if lr is None else lr,
                                pool=pool, seed=seed)
        with ui.bar(f"{method} {new}", recipe.steps) as step:
            merged = train_scalearn(new, base, skills, world, task_list, recipe, progress=step,
                                    world_args=wargs)
    else:
        try:
            w = [float(x) for x in csv_list(weights)] if weights else None
            sw = [int(x) for x in csv_list(swap)] if swap else None
        except ValueError:
            raise SkillError("--weights are numbers and --swap are integers, comma-separated") from None
        spec = MergeSpec(method=method, weights=w, density=density, rank=rank, seed=seed,
                         sign_method=sign_method, convention=convention, swap=sw, inner=inner,
                         alpha=alpha, examples=stat_examples, rank_budget=rank_budget)
        merged = merge_skills(new, skills, spec, base, lib=library)
    if evaluate and base.kind == "policy":
        from .policy import composition_success

        merged.metrics["composition"] = composition_success(base, merged, skills, min(n, 25),
                                                            seed)
    elif evaluate:
        merged.metrics["composition"] = normalised_accuracy(
            base, merged, skills, world, n=n, seed=seed, world_args=wargs)
        if method == "lorahub" and task not in member_tasks(skills):
            from ..compose.measure import score_by_task

            merged.metrics["composition"]["new_task"] = {
                task: score_by_task(base, [merged], world, [task], n, seed, world_args=wargs)[task]}
    merged = library.add(merged)
    if as_json:
        return emit(merged.manifest())
    err_ = merged.metrics["merge_error"]
    out.print(f"stored {merged.ref} ({merged.kind}); merge error max {err_['max']:.4f} mean {err_['mean']:.4f}")
    if method == "lorahub":
        hub = merged.metrics["lorahub"]
        table(f"LoRAHub weights for {task} (objective {hub['objective_at_start']:.4f} at w=0 → {hub['objective']:.4f})",
              ["member", "weight"], [[s.ref, w] for s, w in zip(skills, merged.recipe["weights"], strict=True)])
    elif method.startswith("adamerging"):
        table(f"{method}: mean λ per member", ["member", "mean λ"],
              [[k, v] for k, v in merged.metrics["lambda_mean"].items()])
    elif method in LEARNED:
        table(f"{method}: mean ω per member", ["member", "mean ω"],
              [[k, v] for k, v in merged.metrics["omega_mean"].items()])
    elif method == "auto":
        adv = merged.metrics["advisor"]
        tasks_ = list(adv["alone"])
        table(f"merge advisor: normalised accuracy on {adv['k']} selection inputs per task "
              f"(chosen: {adv['chosen']['method']} {adv['chosen']['settings'] or ''})",
              ["method", "settings", *tasks_, "mean", "s"],
              [[r["method"], _short_settings(r["settings"]),
                *[r["normalised"][t] for t in tasks_], r["mean"], r["seconds"]] for r in adv["tried"]])
    diag = merged.metrics["diagnostics"]
    if diag["cosine"]:
        table("pairwise cosine of ΔW", ["pair", "cosine"], [[k, v] for k, v in diag["cosine"].items()])
        out.print(f"mean sign-conflict share per matrix: {diag['mean_sign_conflict']:.3f}")
    if evaluate:
        comp = merged.metrics["composition"]
        table("normalised accuracy (composed / member alone)", ["task", "composed", "alone", "normalised"],
              [[t, comp["composed"][t], comp["alone"][t], comp["normalised"][t]] for t in comp["alone"]])
        for t, em in comp.get("new_task", {}).items():
            out.print(f"exact match on the new task {t}: {em:.3f}")


def _short_settings(settings: dict) -> str:
    """``w=0.5 density=0.5``: a candidate's settings in a table cell (equal weights once)."""
    parts = []
    for k, v in settings.items():
        if k == "weights" and v and len(set(v)) == 1:
            parts.append(f"w={v[0]:.3g}")
        else:
            parts.append(f"{k}={v}")
    return " ".join(parts) or "-"


@app.command("route", rich_help_panel=PANEL)
def route_cmd(new: Annotated[str, typer.Argument(help="Name of the router skill.")],
              members: Annotated[str, typer.Option("--from", help="Comma-separated member skills.")],
              world: Annotated[str | None, typer.Option(help="World of the routing examples (default: the members').")] = None,
              data: Annotated[Path | None, typer.Option(help="Data file for --world files (default: the members').")] = None,
              tasks: Annotated[str | None, typer.Option(help="Tasks to route over (default: the members' tasks).")] = None,
              steps: Annotated[int | None, typer.Option(min=1, help="Training steps (default: RouterRecipe's).")] = None,
              lr: Annotated[float | None, typer.Option(min=0.0, help="Learning rate (default: RouterRecipe's).")] = None,
              distil: Annotated[bool, typer.Option(help="Also store a static linear merge at the router's mean α.")] = False,
              n: Annotated[int, typer.Option(min=1, help="Held-out examples per task for the evaluation.")] = 200,
              demos: Annotated[int, typer.Option(min=1, help="Policy skills: demonstrations of the task that train α(s).")] = 5,
              new_rank: Annotated[int, typer.Option(min=0, help="Policy skills: rank of a new LoRA trained beside α(s) (0: none).")] = 0,
              episodes: Annotated[int, typer.Option(min=1, max=25, help="Policy skills: held-out goals for the evaluation.")] = 20,
              seed: int = 0, as_json: JsonOpt = False) -> None:
    """Learn per-input routing over frozen skills (PSEC); only the router trains. On
    classifiers, α(x) from the base's sentence embedding, each task read by its member's
    head; on policy skills, α(s) per state for one task (--tasks), from its demonstrations."""
    from ..compose.measure import member_tasks, normalised_accuracy
    from ..compose.ops import MergeSpec, merge_skills
    from ..compose.route import RouterRecipe, distil_weights, train_router

    check_name(new, "skill name")  # before any training
    library = lib(write=True)
    skills = [library.get(r) for r in csv_list(members)]
    if skills and library.base_of(skills[0]).kind == "policy":
        from .policy import route

        return route(library, library.base_of(skills[0]), new, skills,
                     csv_list(tasks) if tasks else None, demos, steps, lr, new_rank, episodes,
                     seed, as_json)
    task_list = csv_list(tasks) if tasks else member_tasks(skills)
    if None in task_list:
        raise SkillError("some members have no task in their recipe: pass --tasks")
    base = library.base_of(skills[0])
    if base.kind not in ("causal", "encoder"):
        raise SkillError(f"route learns routing over generation or classification skills; "
                         f"base {base.name} is a {base.kind} model")
    if distil and base.kind == "encoder":
        raise SkillError("--distil is for generation skills; merge classifiers with compose")
    world, wargs = world_of(library, skills, world, data)
    ui = Ui(as_json)
    given = {k: v for k, v in {"steps": steps, "lr": lr}.items() if v is not None}
    if base.kind == "encoder":
        from ..compose.route_classify import ClassifierRouterRecipe, train_classifier_router

        recipe = ClassifierRouterRecipe(world, tuple(task_list), seed=seed, world_args=wargs,
                                        **given)
        trainer = train_classifier_router
    else:
        recipe = RouterRecipe(world, tuple(task_list), seed=seed, world_args=wargs, **given)
        trainer = train_router
    with ui.bar(f"route {new}", recipe.steps) as step:
        router = trainer(new, base, skills, recipe, progress=step)
    router = library.add(router)
    result = {"router": router.ref, "composition": normalised_accuracy(
        base, router, skills, world, n=n, seed=seed, lib=library, world_args=wargs)}
    if distil:
        static = library.add(merge_skills(f"{new}-distilled", skills,
                                          MergeSpec("linear", weights=distil_weights(router))))
        result["distilled"] = {"ref": static.ref, "composition": normalised_accuracy(
            base, static, skills, world, n=n, seed=seed, alone=result["composition"]["alone"],
            world_args=wargs)}
    library.add_result(router.ref, world, ",".join(task_list), result)
    if as_json:
        return emit(result)
    rows = []
    for t in result["composition"]["alone"]:
        row = [t, result["composition"]["alone"][t], result["composition"]["composed"][t],
               result["composition"]["normalised"][t]]
        if distil:
            row += [result["distilled"]["composition"]["normalised"][t]]
        rows.append(row)
    table(f"{router.ref}: normalised accuracy (composed / member alone)",
          ["task", "alone", "routed", "routed norm.", *(["distilled norm."] if distil else [])], rows)
