"""Reproductions: ``skillbank repro NAME`` re-runs one seed paper's claim at CPU scale."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .core import AddressOpt, JsonOpt, Ui, WorkersOpt, app, emit, lib, out, table

PANEL = "Reproduce the papers"


@app.command("repro", rich_help_panel=PANEL)
def repro_cmd(name: Annotated[str, typer.Argument(help="Which claim; `skillbank repro list` lists them.")],
              out_dir: Annotated[Path | None, typer.Option("--out", help="Report directory (default ./skillbank-repro/NAME).")] = None,
              seed: Annotated[int, typer.Option(help="Seed for every random choice.")] = 0,
              quick: Annotated[bool, typer.Option("--quick", help="Tiny sizes for a smoke test; figures not comparable.")] = False,
              profile: Annotated[str, typer.Option(help="embedded (the tiny base) or real (all-MiniLM-L6-v2 on Debian text; `repro list` says which claims have it).")] = "embedded",
              executor: Annotated[str | None, typer.Option(help="Make the long part (skills, grafts) as jobs: local or ray (repro graft).")] = None,
              address: AddressOpt = None, workers: WorkersOpt = None,
              as_json: JsonOpt = False) -> None:
    """Re-run a seed paper's headline claim on the library's skills; print the figures and whether it holds."""
    from contextlib import nullcontext

    from ..repro import available, load, profiles, require_prepare, run_repro

    if name == "list":
        found = {n: profiles(n) for n in available()}
        if as_json:
            return emit({"reproductions": available(), "profiles": found})
        return table("reproductions", ["name", "profiles"], [[n, ", ".join(p)] for n, p in found.items()])
    load(name, profile)   # an unknown name or profile: one line before any work
    ui = Ui(as_json)
    if executor or address or workers:
        from ..run import get_executor

        if profile == "embedded":
            require_prepare(name)  # before starting any worker
        ex_ctx = get_executor(executor, address, workers)
    else:
        ex_ctx = nullcontext(None)
    with ex_ctx as ex:
        default = Path("skillbank-repro") / (name if profile == "embedded" else f"{name}-{profile}")
        res, outcome = run_repro(name, lib(create=True), out_dir or default, ui,
                                 seed=seed, quick=quick, executor=ex, profile=profile)
    if as_json:
        emit(res)
        return
    verdict = "holds" if res["holds"] else "does NOT hold at this scale"
    out.print(f"{res['paper']}\nclaim: {res['claim']} — {verdict} ({res['wall_seconds']} s)",
              markup=False, highlight=False, soft_wrap=True)
    table(f"repro {name}", *outcome.table)
