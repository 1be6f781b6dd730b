"""Sweeps: many train / compose / eval jobs from one YAML file, on any executor."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .core import JsonOpt, Ui, app, emit, lib, out, table

ExecutorOpt = Annotated[str | None, typer.Option(
    "--executor", envvar="SKILLBANK_EXECUTOR",
    help="local (in-process; a process pool with --workers N) or ray. "
         "Default: ray when --address is given, else local.")]
AddressOpt = Annotated[str | None, typer.Option(
    "--address", help="Ray cluster address (ray://host:10001 or host:6379); "
                      "default RAY_ADDRESS, else a Ray instance on this machine.")]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", min=1, help="Parallel workers (default: 1 locally, one per CPU on Ray).")]


PANEL = "Scale out"


@app.command("sweep", rich_help_panel=PANEL)
def sweep_cmd(config: Annotated[Path, typer.Argument(
                  help="Sweep config (YAML): base, world, train, localize, compose, eval.")],
              executor: ExecutorOpt = None, address: AddressOpt = None, workers: WorkersOpt = None,
              as_json: JsonOpt = False) -> None:
    """Run a declarative sweep (train, localize, compose, eval); resumable.

    Re-running skips the jobs whose results are in the library.

    Stages run in order (train, localize, compose, eval); each stage's jobs run in
    parallel on the executor. A job that fails (or whose worker dies) is tried once
    more, then reported failed while the rest complete; the exit code is then 1."""
    from ..run import get_executor
    from ..sweep import Plan, load_config, run_sweep

    cfg = load_config(config)
    library = lib(create=True)
    total = Plan(library, cfg).total  # a bad config fails here, before any worker starts
    ui = Ui(as_json)
    with get_executor(executor, address, workers) as ex, ui.bar(f"sweep ({ex.name})", total) as bar:
        summary = run_sweep(library, cfg, ex, progress=lambda done, _: bar(done, None))
    if as_json:
        emit(summary)
    else:
        table(f"sweep {config.name}: {summary['jobs']} jobs on {summary['executor']} "
              f"× {summary['workers']}", ["job", "status", "result"],
              [[r["label"], r["status"], r["error"] or _short(r["result"])]
               for r in summary["results"]])
        rate = summary["jobs_per_second"]
        out.print(f"done {summary['done']}, skipped {summary['skipped']} (already in the library), "
                  f"failed {summary['failed']}; {summary['seconds']} s"
                  + (f", {rate} jobs/s" if rate else ""))
    if summary["failed"]:
        raise typer.Exit(1)


def _short(result: dict | None) -> str:
    if not result:
        return ""
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in result.items() if k not in ("subject", "task"))
