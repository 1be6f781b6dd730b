"""``skillbank continual``: learn tasks in sequence with one strategy; print R and the metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..skill import SkillError
from .core import JsonOpt, Ui, app, csv_list, emit, lib, out, table

PANEL = "Acquire and evaluate"


@app.command("continual", rich_help_panel=PANEL)
def continual_cmd(
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks, learned in this order.")],
    strategy: Annotated[str, typer.Option(help="seq, replay, ewc, olora or expand.")] = "seq",
    world: Annotated[str, typer.Option(help="World of the tasks.")] = "strings",
    base: Annotated[
        str | None, typer.Option(help="Base name or fingerprint (default: the demo's base).")
    ] = None,
    steps: Annotated[
        int, typer.Option(min=1, help="Optimiser steps per task (same for every strategy).")
    ] = 100,
    batch_size: Annotated[int, typer.Option(min=1, help="Examples per step.")] = 64,
    n_eval: Annotated[
        int, typer.Option("--n-eval", min=1, help="Held-out examples per task per evaluation.")
    ] = 200,
    ewc_lambda: Annotated[
        float,
        typer.Option(
            min=0.0, help="EWC penalty weight λ (large: F is tiny once a task is learned)."
        ),
    ] = 1e8,
    olora_lambda: Annotated[
        float, typer.Option(min=0.0, help="O-LoRA orthogonality weight λ.")
    ] = 0.5,
    curve_points: Annotated[
        int,
        typer.Option(
            min=0,
            help="Evaluate the current task this many times while learning it (LIBERO metrics).",
        ),
    ] = 0,
    joint: Annotated[
        bool,
        typer.Option("--joint", help="Also train a joint reference (T×steps) for intransigence."),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed for every random choice.")] = 0,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Report directory (default ./skillbank-continual/STRATEGY)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Learn skills one after another and measure forgetting and transfer.

    Fills R[t][i] (accuracy on task i after task t) and reports ACC, BWT, FWT, forgetting
    (avalanche and Chaudhry) and, with --joint, intransigence."""
    from ..acquire.continual import ContinualConfig, joint_reference, run_continual
    from ..report.html import write_report
    from ..repro.continual import continual_sections

    cfg = ContinualConfig(
        tasks=csv_list(tasks),
        strategy=strategy,
        world=world,
        steps=steps,
        batch_size=batch_size,
        n_eval=n_eval,
        ewc_lambda=ewc_lambda,
        olora_lambda=olora_lambda,
        curve_points=curve_points,
        seed=seed,
    )
    cfg.check()
    from ..worlds import get_world

    known = get_world(world).tasks()
    if world == "strings":
        bad = [t for t in cfg.tasks if t.split("+")[0] not in known]
    else:
        bad = [t for t in cfg.tasks if t not in known]
    if bad:
        raise SkillError(
            f"unknown task(s) {', '.join(bad)} in world {world}; known: {', '.join(known)}"
        )
    library = lib()
    b_ = _base(library, base)
    ui = Ui(as_json)
    a_star = joint_reference(library, b_, cfg, ui) if joint else None
    run = run_continual(library, b_, cfg, ui, joint=a_star)
    report_dir = out_dir or Path("skillbank-continual") / strategy
    report = write_report(
        report_dir, f"skillbank continual {strategy}", continual_sections(report_dir, [run])
    )
    result = {
        "strategy": strategy,
        "tasks": cfg.tasks,
        "R": run.R,
        "R_stderr": run.R_stderr,
        "b": run.b,
        "joint": a_star,
        "metrics": run.metrics,
        "skills": run.skills,
        "extra": run.extra,
        "curves": run.curves,
        "report": str(report),
    }
    if as_json:
        return emit(result)
    print_run(run)
    out.print(f"report: {report}")


def _base(library, name: str | None):
    if name is not None:
        return library.base(name)
    from ..acquire.pretrain import find_base
    from ..demo import DemoConfig

    found = find_base(library, DemoConfig().base)
    if found is None:
        raise SkillError("no demo base in this library: run `skillbank demo` first or pass --base")
    return found


def print_run(run) -> None:
    tasks = run.config["tasks"]
    table(
        f"R ({run.config['strategy']}): row t = after learning task t; b = base",
        ["after", *tasks],
        [["b", *run.b], *[[t, *row] for t, row in zip(tasks, run.R, strict=True)]],
    )
    m = run.metrics
    rows = [
        ["ACC", m["acc"]],
        ["BWT (paper)", m["bwt"]],
        ["BWT (GEM code, /T)", m["bwt_gem_code"]],
        ["FWT (paper)", m["fwt"]],
        ["FWT (GEM code, /T)", m["fwt_gem_code"]],
        ["forgetting, avalanche (mean)", m["forgetting_avalanche_mean"]],
        ["forgetting, Chaudhry", m["forgetting_chaudhry"]],
    ]
    if "intransigence_mean" in m:
        rows.append(["intransigence (mean)", m["intransigence_mean"]])
    for key in ("fwt", "nbt", "auc"):
        if "libero" in m:
            rows.append([f"LIBERO {key.upper()}", m["libero"][key]])
    for key in ("routed_acc", "members_bit_identical", "members_accuracy_unchanged"):
        if key in run.extra:
            rows.append([key.replace("_", " "), run.extra[key]])
    table("metrics", ["metric", "value"], rows)
