"""Compose skills: ΔW-space merges and learned routing."""

from __future__ import annotations

from typing import Annotated

import typer

from ..skill import SkillError
from .core import JsonOpt, Ui, app, csv_list, emit, lib, out, table


@app.command("compose")
def compose_cmd(new: Annotated[str, typer.Argument(help="Name of the composed skill.")],
                members: Annotated[str, typer.Option("--from", help="Comma-separated skills NAME[@VERSION].")],
                method: Annotated[str, typer.Option(help="linear, ties, dare_linear, dare_ties, magnitude_prune, cat, layer_swap.")] = "linear",
                weights: Annotated[str | None, typer.Option(help="Comma-separated weight per skill (default 1 each).")] = None,
                density: Annotated[float, typer.Option(help="Fraction kept by ties/dare/magnitude_prune.")] = 0.2,
                rank: Annotated[int | None, typer.Option(help="Re-factor to a LoRA of this rank (SVD); default: exact delta.")] = None,
                convention: Annotated[str, typer.Option(help="TIES convention: peft or mergekit.")] = "peft",
                sign_method: Annotated[str, typer.Option(help="TIES sign vote: total or frequency.")] = "total",
                swap: Annotated[str | None, typer.Option(help="layer_swap: member index per layer, e.g. 0,0,1.")] = None,
                evaluate: Annotated[bool, typer.Option("--eval", help="Measure normalised accuracy on the members' tasks.")] = False,
                n: Annotated[int, typer.Option(min=1, help="Held-out examples per task for --eval.")] = 200,
                seed: int = 0, as_json: JsonOpt = False) -> None:
    """Merge skills in ΔW space into a new skill (diagnostics and merge error are stored)."""
    from ..compose.measure import normalised_accuracy
    from ..compose.ops import MergeSpec, merge_skills

    library = lib()
    skills = [library.get(r) for r in csv_list(members)]
    try:
        w = [float(x) for x in csv_list(weights)] if weights else None
        sw = [int(x) for x in csv_list(swap)] if swap else None
    except ValueError:
        raise SkillError("--weights are numbers and --swap are integers, comma-separated") from None
    spec = MergeSpec(method=method, weights=w, density=density, rank=rank, seed=seed,
                     sign_method=sign_method, convention=convention, swap=sw)
    merged = merge_skills(new, skills, spec)
    base = library.base_of(skills[0])
    if evaluate:
        world = skills[0].recipe.get("world", "strings")
        merged.metrics["composition"] = normalised_accuracy(base, merged, skills, world, n=n, seed=seed)
    merged = library.add(merged)
    if as_json:
        return emit(merged.manifest())
    err_ = merged.metrics["merge_error"]
    out.print(f"stored {merged.ref} ({merged.kind}); merge error max {err_['max']:.4f} mean {err_['mean']:.4f}")
    diag = merged.metrics["diagnostics"]
    if diag["cosine"]:
        table("pairwise cosine of ΔW", ["pair", "cosine"], [[k, v] for k, v in diag["cosine"].items()])
        out.print(f"mean sign-conflict share per matrix: {diag['mean_sign_conflict']:.3f}")
    if evaluate:
        comp = merged.metrics["composition"]
        table("normalised accuracy (composed / member alone)", ["task", "composed", "alone", "normalised"],
              [[t, comp["composed"][t], comp["alone"][t], comp["normalised"][t]] for t in comp["alone"]])


@app.command("route")
def route_cmd(new: Annotated[str, typer.Argument(help="Name of the router skill.")],
              members: Annotated[str, typer.Option("--from", help="Comma-separated member skills.")],
              world: Annotated[str, typer.Option(help="World of the routing examples.")] = "strings",
              tasks: Annotated[str | None, typer.Option(help="Tasks to route over (default: the members' tasks).")] = None,
              steps: Annotated[int, typer.Option(min=1)] = 800,
              lr: Annotated[float, typer.Option(min=0.0)] = 2e-2,
              distil: Annotated[bool, typer.Option(help="Also store a static linear merge at the router's mean α.")] = False,
              n: Annotated[int, typer.Option(min=1, help="Held-out examples per task for the evaluation.")] = 200,
              seed: int = 0, as_json: JsonOpt = False) -> None:
    """Learn per-input routing over frozen skills (PSEC); only the router trains."""
    from ..compose.measure import member_tasks, normalised_accuracy
    from ..compose.ops import MergeSpec, merge_skills
    from ..compose.route import distil_weights, train_router

    library = lib()
    skills = [library.get(r) for r in csv_list(members)]
    task_list = csv_list(tasks) if tasks else member_tasks(skills)
    if None in task_list:
        raise SkillError("some members have no task in their recipe: pass --tasks")
    base = library.base_of(skills[0])
    ui = Ui(as_json)
    with ui.bar(f"route {new}", steps) as step:
        router = train_router(new, base, skills, world, task_list, steps=steps, lr=lr, seed=seed,
                              progress=step)
    router = library.add(router)
    result = {"router": router.ref, "composition": normalised_accuracy(
        base, router, skills, world, n=n, seed=seed, lib=library)}
    if distil:
        static = library.add(merge_skills(f"{new}-distilled", skills,
                                          MergeSpec("linear", weights=distil_weights(router))))
        result["distilled"] = {"ref": static.ref, "composition": normalised_accuracy(
            base, static, skills, world, n=n, seed=seed, alone=result["composition"]["alone"])}
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
