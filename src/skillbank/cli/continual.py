"""``skillbank continual``: learn tasks in sequence with one or several strategies; print R
and the metrics. Each strategy is one ``continual`` job (``continual.jobs.CONTINUAL``) on
an executor (in this process by default)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from ..skill import SkillError
from .core import AddressOpt, JsonOpt, Ui, WorkersOpt, app, csv_list, emit, lib, out, table

PANEL = "Acquire and evaluate"


@app.command("continual", rich_help_panel=PANEL)
def continual_cmd(
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks, learned in this order.")],
    strategy: Annotated[str, typer.Option(help=(
        "seq, replay, ewc, olora or expand; several, comma-separated (seq,replay,ewc), "
        "run one continual job each."))] = "seq",
    world: Annotated[str, typer.Option(help="World of the tasks.")] = "strings",
    base: Annotated[
        str | None, typer.Option(help="Base name or fingerprint (default: the demo's base).")
    ] = None,
    steps: Annotated[int | None, typer.Option(min=1, help=(
        "Optimiser steps per task, the same for every strategy (default 100; metaworld 1000)."))
    ] = None,
    batch_size: Annotated[int | None, typer.Option(
        min=1, help="Examples per step (default 64; metaworld 128).")] = None,
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
        typer.Option("--out", help=(
            "Report directory (default ./skillbank-continual/STRATEGY, or S1-S2-… for "
            "several)."))] = None,
    as_json: JsonOpt = False,
    executor: Annotated[str | None, typer.Option(
        help="Run one job per strategy on local (--workers N) or ray; "
             "default: in this process.")] = None,
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    episodes: Annotated[int, typer.Option(
        min=1, max=25, help="--world metaworld: held-out goals per measurement.")] = 10,
    demos: Annotated[int, typer.Option(
        min=1, help="--world metaworld: demonstrations per task.")] = 10,
) -> None:
    """Learn skills one after another and measure forgetting and transfer.

    Fills R[t][i] (accuracy on task i after task t) and reports ACC, BWT, FWT, forgetting
    (avalanche and Chaudhry) and, with --joint, intransigence.

    Each strategy's whole sequence is one job (as in `skillbank sweep`; in this process
    unless --executor / --address / --workers say otherwise); the joint reference (--joint)
    is trained once, in this process, and shared by every job."""
    from ..continual.strategies import ContinualConfig, joint_reference

    strategies = list(dict.fromkeys(csv_list(strategy)))
    if world == "metaworld":  # policy skills: seq, replay, ewc, expand, in this process
        if base is None:
            raise SkillError("--world metaworld needs --base (a policy base: `skillbank base "
                             "train NAME --world metaworld`)")
        from .policy import continual

        library = lib()
        return continual(library, library.base(base), csv_list(tasks), strategies,
                         steps or 1000, batch_size or 128, episodes, demos, curve_points, seed,
                         as_json)
    cfg = ContinualConfig(
        tasks=csv_list(tasks),
        strategy=strategies[0],
        world=world,
        steps=steps or 100,
        batch_size=batch_size or 64,
        n_eval=n_eval,
        ewc_lambda=ewc_lambda,
        olora_lambda=olora_lambda,
        curve_points=curve_points,
        seed=seed,
    )
    for s in strategies:
        replace(cfg, strategy=s).check()
    from ..run import EXECUTORS

    if executor is not None and executor not in EXECUTORS:  # before any training
        raise SkillError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    from ..worlds import get_world

    w = get_world(world)
    for t in cfg.tasks:
        w.examples(t, 1, seed=0)  # unknown task: one-line error before any training
    library = lib(create=True)
    b_ = _base(library, base)
    ui = Ui(as_json)
    a_star = joint_reference(library, b_, cfg, ui) if joint else None
    _continual_jobs(library, b_, cfg, strategies, a_star, out_dir, executor, address, workers,
                    as_json)


def _continual_jobs(library, base, cfg, strategies: list[str], a_star, out_dir,
                    executor: str | None, address: str | None, workers: int | None,
                    as_json: bool) -> None:
    """One ``continual`` job per strategy on an executor; R and metrics of each, one report."""
    from ..continual.jobs import continual_job
    from ..continual.strategies import ContinualRun
    from ..report.html import write_report
    from ..repro.continual import continual_sections
    from ..run import get_executor

    jobs = [continual_job(base, replace(cfg, strategy=s), a_star) for s in strategies]
    ui = Ui(as_json)
    with get_executor(executor, address, workers) as ex, \
            ui.jobs(f"continual {','.join(strategies)} ({ex.name} × {ex.workers})",
                    len(jobs)) as progress:
        done = ex.run(library.home, jobs, progress=progress)
        ex_name, ex_workers = ex.name, ex.workers
    runs, failed = [], []
    for s, r in zip(strategies, done, strict=True):
        if r.status == "done":
            runs.append(ContinualRun(**r.result))
        else:
            failed.append({"strategy": s, "label": r.job.label, "error": r.error})
    report = None
    if runs:
        report_dir = out_dir or Path("skillbank-continual") / "-".join(strategies)
        report = str(write_report(report_dir, f"skillbank continual {', '.join(strategies)}",
                                  continual_sections(report_dir, runs)))
    if as_json and len(strategies) == 1 and runs:
        (run,) = runs
        emit({"strategy": strategies[0], "tasks": cfg.tasks, "R": run.R,
              "R_stderr": run.R_stderr, "b": run.b, "joint": a_star, "metrics": run.metrics,
              "skills": run.skills, "extra": run.extra, "curves": run.curves,
              "report": report, "executor": ex_name, "workers": ex_workers})
    elif as_json:
        emit({"strategies": strategies, "tasks": cfg.tasks, "joint": a_star,
              "executor": ex_name, "workers": ex_workers,
              "runs": {run.config["strategy"]: {
                  "R": run.R, "R_stderr": run.R_stderr, "b": run.b, "metrics": run.metrics,
                  "skills": run.skills, "extra": run.extra, "curves": run.curves}
                  for run in runs},
              "failed": failed, "report": report})
    else:
        for run in runs:
            print_run(run)
        for f in failed:
            out.print(f"failed {f['label']}: {f['error']}")
        if report:
            out.print(f"report: {report}")
    if failed:
        raise typer.Exit(1)


def _base(library, name: str | None):
    if name is not None:
        return library.base(name)
    from ..acquire.pretrain import find_base
    from ..standard import DemoConfig

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
