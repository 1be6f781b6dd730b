"""Transfer: rank library skills as starting points for a target task (and verify the ranking)."""

from __future__ import annotations

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
    csv_list,
    emit,
    lib,
    out,
    table,
    world_of,
)

PANEL = "Transfer"


@app.command("transfer", rich_help_panel=PANEL)
def transfer_cmd(task: Annotated[str, typer.Argument(help="Target task, e.g. rot+shift.")],
                 candidates: Annotated[str, typer.Option(help="Comma-separated candidate skills (NAME or NAME@VERSION).")],
                 world: Annotated[str | None, typer.Option(help="World of the target task (default: the candidates').")] = None,
                 data: Annotated[Path | None, typer.Option(help="Data file for --world files (default: the candidates').")] = None,
                 estimator: Annotated[str, typer.Option(
                     help="Ranking estimator: logme, tmi, leep, hscore or hscore-shrunk (all are computed).")] = "logme",
                 n: Annotated[int, typer.Option(min=2, help="Target training inputs to score on.")] = 256,
                 positions: Annotated[str, typer.Option(
                     help="answer: every answer position; first: the first answer token only.")] = "answer",
                 verify: Annotated[bool, typer.Option(
                     "--verify", help="Fine-tune from each candidate (and from scratch) and "
                                      "report Kendall's τ, weighted τ, top-1 hit.")] = False,
                 steps: Annotated[int | None, typer.Option(min=1, help="--verify: training steps per run (default 150; policy skills 1000).")] = None,
                 demos: Annotated[int, typer.Option(min=1, help="Policy skills: demonstrations of TASK to score on and learn from.")] = 10,
                 episodes: Annotated[int, typer.Option(min=1, max=25, help="Policy skills, --verify: held-out goals.")] = 20,
                 n_eval: Annotated[int, typer.Option(min=1, help="--verify: held-out examples.")] = 200,
                 seed: int = 0, as_json: JsonOpt = False,
                 executor: Annotated[str | None, typer.Option(
                     help="--verify: one job per fine-tune on local (--workers N) or ray; "
                          "default: in this process.")] = None,
                 address: AddressOpt = None,
                 workers: WorkersOpt = None,
                 ) -> None:
    """Score each candidate skill's features on TASK's inputs (LogME, TMI, LEEP, H-score) and rank them."""
    from ..run import EXECUTORS, get_executor
    from ..transfer.estimators import ESTIMATORS
    from ..transfer.jobs import verify_on
    from ..transfer.rank import POSITIONS, compare, score_candidates
    from ..worlds import get_world

    library = lib(write=True)
    skills = [library.get(r) for r in csv_list(candidates)]
    if skills and library.base_of(skills[0]).kind == "policy":
        from .policy import transfer

        return transfer(library, library.base_of(skills[0]), task, skills, estimator, verify,
                        steps or 1000, demos, episodes, seed, executor, address, workers,
                        as_json)
    steps = steps or 150
    if estimator not in ESTIMATORS:
        raise SkillError(f"unknown estimator {estimator!r}; choose from {', '.join(ESTIMATORS)}")
    if positions not in POSITIONS:
        raise SkillError(f"unknown positions {positions!r}; choose from {', '.join(POSITIONS)}")
    world, world_args = world_of(library, skills, world, data)
    get_world(world, **world_args).examples(task, 1, seed=0)   # unknown task: fail before work
    base = library.base_of(skills[0])
    if executor is not None and executor not in EXECUTORS:
        raise SkillError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    if (executor or address or workers) and not verify:
        raise SkillError("--executor, --address and --workers run the --verify fine-tunes; "
                         "add --verify")
    ui = Ui(as_json)
    with ui.bar("score candidates", len(skills) + 1) as step:
        scored = score_candidates(base, skills, world, task, n=n, seed=seed, positions=positions,
                                  world_args=world_args, progress=step)
    result = {**scored, "task": task, "world": world, "base": base.name, "estimator": estimator,
              "rankings": scored["ranking"], "ranking": scored["ranking"][estimator]}
    if verify:
        with get_executor(executor, address, workers) as ex, \
                ui.jobs(f"verify (fine-tune from each, {ex.name} × {ex.workers})",
                        len(skills) + 1) as progress:
            verified = verify_on(ex, library.home, base, skills, world, task, steps,
                                 n_eval=n_eval, seed=seed, world_args=world_args,
                                 batch_size=32 if base.kind == "encoder" else 64,
                                 progress=progress)
    if verify:
        result["verified"] = verified
        result["agreement"] = compare(scored, verified)
        vsec = sum(v["train_seconds"] + v["eval_seconds"] for k, v in verified.items() if k != "scratch")
        result["seconds"]["verify_candidates"] = round(vsec, 3)
        result["seconds"]["score_over_verify"] = round(scored["seconds"]["total"] / vsec, 4) if vsec else None
    library.add_result(f"transfer:{task}", world, task, result,
                       {"candidates": [s.ref for s in skills], "seed": seed, "n": n})
    if as_json:
        return emit(result)
    est = list(result["rankings"])
    rows = []
    for rank, ref in enumerate(result["ranking"], 1):
        row = [rank, ref, *[scored["scores"][ref][e] for e in est]]
        if verify:
            row += [result["verified"][ref]["exact_match"]]
        rows.append(row)
    rows.append(["-", "base (reference)", *[scored["scores"]["base"][e] for e in est]]
                + ([result["verified"]["scratch"]["exact_match"]] if verify else []))
    classify = base.kind == "encoder"
    table(f"candidates for {task} ranked by {estimator} ({scored['rows']} "
          f"{'texts' if classify else 'answer rows'}, {scored['seconds']['total']:.1f} s)",
          ["rank", "skill", *est]
          + ([f"{'accuracy' if classify else 'exact match'} after fine-tune"] if verify else []),
          rows)
    if verify:
        table(f"score vs fine-tuned {'accuracy' if classify else 'exact match'} ({steps} steps; scratch "
              f"{result['verified']['scratch']['exact_match']:.3f})",
              ["estimator", "kendall τ", "weighted τ", "top-1 hit"],
              [[e, a["kendall_tau"], a["weighted_tau"], "yes" if a["top1"] else "no"]
               for e, a in result["agreement"].items()])
        out.print(f"scoring {scored['seconds']['total']:.1f} s vs verifying "
                  f"{result['seconds']['verify_candidates']:.1f} s")
