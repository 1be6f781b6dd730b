"""Data for a skill: a Skill-it curriculum over a world's skills, and LESS data selection."""

from __future__ import annotations

from typing import Annotated

import typer

from ..skill import SkillError
from .core import JsonOpt, Ui, app, csv_list, emit, lib, out, table


def _base_for(library, base: str | None, world: str, ui: Ui):
    """The named base, or for ``lego`` the embedded LEGO base (trained once if absent)."""
    if base is not None:
        return library.base(base)
    if world != "lego":
        raise SkillError(f"--base is required for world {world!r} (only lego has an embedded default here)")
    from ..repro.skill_it import lego_base

    return lego_base(library, ui, quick=False)


PANEL = "Data: curricula and selection"


@app.command("curriculum", rich_help_panel=PANEL)
def curriculum_cmd(
        world: Annotated[str, typer.Option(help="World whose tasks are the skills (lego, strings, ...).")] = "lego",
        method: Annotated[str, typer.Option(help="skill-it, random (natural mixture) or stratified (uniform).")] = "skill-it",
        steps: Annotated[int, typer.Option(min=1, help="Training steps (same budget for every method).")] = 300,
        round_steps: Annotated[int, typer.Option(min=1, help="Steps per round between re-mixings.")] = 50,
        batch_size: Annotated[int, typer.Option(min=1)] = 32,
        graph_steps: Annotated[int, typer.Option(min=1, help="Skill-it: steps on each skill alone to estimate the graph.")] = 30,
        n: Annotated[int, typer.Option(min=1, help="Held-out examples per skill.")] = 200,
        pool: Annotated[int, typer.Option(min=1, help="Training examples generated per skill.")] = 2000,
        base: Annotated[str | None, typer.Option(help="Registered base (default for lego: the embedded LEGO base).")] = None,
        k: Annotated[int | None, typer.Option(min=1, help="lego only: number of variables (skills); default 3.")] = None,
        ordered: Annotated[bool | None, typer.Option("--ordered/--shuffled", help="lego only: clauses in chain "
                                                     "order (default) or shuffled. The default k=3 ordered is the "
                                                     "setting `repro skill-it` uses; shuffled k=5 is not learnt at "
                                                     "this model size.")] = None,
        name: Annotated[str | None, typer.Option(help="Name of the stored skill (default WORLD-curriculum-METHOD).")] = None,
        seed: int = 0, as_json: JsonOpt = False) -> None:
    """Skill-it: fine-tune on all of a world's skills with an online, random or stratified mixture.

    Prints per-skill accuracy; stores the result as a delta skill and results."""
    import torch

    from ..acquire.curriculum import METHODS, CurriculumConfig, run_curriculum
    from ..skill import Skill, check_name
    from ..worlds import get_world

    if method not in METHODS:
        raise SkillError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    skill_name = check_name(name or f"{world}-curriculum-{method}", "skill name")
    if world != "lego" and (k is not None or ordered is not None):
        raise SkillError("--k and --ordered/--shuffled apply to the lego world only")
    world_args = {"k": 3 if k is None else k, "ordered": ordered is not False} if world == "lego" else {}
    get_world(world, **world_args)
    ui = Ui(as_json)
    library = lib(create=True)
    b = _base_for(library, base, world, ui)
    if b.kind != "causal":
        raise SkillError(f"base {b.name} is {b.kind}; a curriculum trains a causal base")
    cfg = CurriculumConfig(world=world, method=method, steps=steps, round_steps=round_steps,
                           batch_size=batch_size, graph_steps=graph_steps, n_eval=n, pool=pool, seed=seed,
                           world_args=world_args)
    model, tokenizer = b.load_model(), b.load_tokenizer()
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    n_skills = len(get_world(world, **world_args).tasks())
    total = steps + (graph_steps * n_skills if method == "skill-it" else 0)
    with ui.bar(f"{method} on {world}", total) as step:
        res = run_curriculum(model, tokenizer, cfg, progress=step)
    tensors = {k: (v.detach() - start[k]) for k, v in model.named_parameters()}
    metrics = {"accuracy": res["accuracy"], "mean_accuracy": res["mean_accuracy"], "loss": res["loss"],
               "curve_accuracy": res["curve_accuracy"], "mixtures": res["mixtures"], "graph": res["graph"],
               "graph_steps": res["graph_steps"], "seconds": res["seconds"]}
    skill = library.add(Skill(name=skill_name, kind="delta", base=b.fingerprint,
                              tensors={k: v.contiguous() for k, v in tensors.items() if torch.any(v != 0)},
                              recipe=cfg.as_dict(), metrics={"curriculum": metrics}))
    spec = {"n": n, "seed": seed, "base": b.fingerprint, "recipe": cfg.as_dict()}
    for task, acc in res["accuracy"].items():
        library.add_result(skill.ref, world, task, {"exact_match": acc, "loss": res["loss"][task]}, spec)
    library.add_result(f"curriculum:{method}", world, "", metrics | {"skill": skill.ref}, spec)
    if as_json:
        return emit({"skill": skill.ref, "world": world, "method": method, **metrics})
    tasks = res["skills"]
    table(f"{method} on {world}: held-out exact match ({n} per skill, {steps} steps)",
          ["skill", *tasks, "mean"], [[skill.ref, *[res["accuracy"][t] for t in tasks], res["mean_accuracy"]]])
    if res["graph"] is not None:
        table("skills graph A[i, j] (train on i, loss drop on j)", ["i \\ j", *tasks],
              [[t, *row] for t, row in zip(tasks, res["graph"], strict=True)])


@app.command("select", rich_help_panel=PANEL)
def select_cmd(
        pool: Annotated[str, typer.Option(help="Comma-separated tasks mixed into the pool.")],
        target: Annotated[str, typer.Option(help="The task to select data for.")],
        world: Annotated[str, typer.Option(help="World of the tasks.")] = "strings",
        fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of the pool kept.")] = 0.05,
        per_task: Annotated[int, typer.Option(min=1, help="Pool examples per task.")] = 200,
        n_target: Annotated[int, typer.Option(min=1, help="Target examples whose gradients are matched.")] = 16,
        dim: Annotated[int, typer.Option(min=1, help="Random projection dimension.")] = 512,
        epochs: Annotated[int, typer.Option(min=1, help="Warm-up epochs (one checkpoint each).")] = 4,
        base: Annotated[str | None, typer.Option(help="Registered base (default: the first, by name, embedded base of --world).")] = None,
        seed: int = 0, as_json: JsonOpt = False) -> None:
    """LESS: select the share of a mixed pool whose training gradients best match a target task.

    Adam-preconditioned LoRA gradients, randomly projected; prints what was selected and
    stores the selection as a result."""
    from ..acquire.select import SelectConfig, select, work_units
    from ..worlds import get_world

    tasks = csv_list(pool)
    w = get_world(world)
    for t in [*tasks, target]:
        w.examples(t, 1, seed=0)  # unknown task: one-line error before any work
    if fraction <= 0:
        raise SkillError("--fraction must be > 0")
    library = lib(create=True)
    if base is None:
        causal = [b for b in library.bases() if b.kind == "causal"
                  and b.meta.get("recipe", {}).get("world") == world]
        if not causal:
            raise SkillError(f"no embedded {world} base in the library; pass --base or train one "
                             f"with `skillbank base train NAME --world {world}`")
        b = causal[0]
    else:
        b = library.base(base)
    cfg = SelectConfig(world=world, pool_tasks=tasks, target=target, per_task=per_task,
                       n_target=n_target, fraction=fraction, warmup_epochs=epochs, dim=dim, seed=seed)
    ui = Ui(as_json)
    with ui.bar(f"LESS for {target}", work_units(cfg)) as step:
        sel = select(b, cfg, progress=step)
    pool_ex = sel["pool"]
    summary = {"target": target, "world": world, "base": b.name, "pool_size": sel["pool_size"],
               "selected": len(sel["selected"]), "make_up": sel["make_up"],
               "share_target": round(sel["make_up"].get(target, 0) / len(sel["selected"]), 4),
               "indices": sel["selected"], "scores": sel["scores"],
               "top": [{"task": pool_ex[i].task, "prompt": pool_ex[i].prompt, "target": pool_ex[i].target}
                       for i in sel["selected"][:5]]}
    rid = library.add_result(f"select:{target}", world, target, summary,
                             {"recipe": cfg.as_dict(), "base": b.fingerprint})
    summary["result_id"] = rid
    if as_json:
        return emit(summary)
    table(f"LESS: {len(sel['selected'])} of {sel['pool_size']} pool examples for {target!r}",
          ["pool task", "selected", "share"],
          [[t, k, k / len(sel["selected"])] for t, k in sel["make_up"].items()])
    out.print(f"stored as result {rid} (subject select:{target})")
