"""Practice: a skill trained on its own attempts that an evaluator accepts (STaR, B-STaR, PAE)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..skill import SkillError
from .core import JsonOpt, Ui, app, csv_list, emit, lib, out, table

PANEL = "Acquire and evaluate"


@app.command("practice", rich_help_panel=PANEL)
def practice_cmd(
        name: Annotated[str, typer.Argument(help="The skill; each round is stored as its next version.")],
        base: Annotated[str, typer.Option(help="Registered base.")],
        world: Annotated[str, typer.Option(help="World whose grader judges attempts.")] = "strings",
        tasks: Annotated[str | None, typer.Option(help="Comma-separated tasks to practise.")] = None,
        propose: Annotated[bool, typer.Option("--propose", help="Let the proposer pick tasks whose pass rate lies in --band.")] = False,
        start: Annotated[str | None, typer.Option(help="Start from this LoRA skill (default: the base).")] = None,
        rounds: Annotated[int, typer.Option(min=1)] = 4,
        samples: Annotated[int, typer.Option(help="Attempts per input (K).")] = 8,
        temperature: Annotated[float, typer.Option(help="Sampling temperature (fixed unless --balance).")] = 1.0,
        balance: Annotated[bool, typer.Option("--balance", help="B-STaR: pick each round's temperature by the balance score.")] = False,
        evaluator: Annotated[str, typer.Option(help="grader (the world's) or learned (a classifier on graded attempts).")] = "grader",
        inputs: Annotated[int, typer.Option(min=1, help="Train inputs attempted per round.")] = 128,
        steps: Annotated[int, typer.Option(min=1, help="LoRA steps per round.")] = 100,
        band: Annotated[str, typer.Option(help="Proposer's learnable band of pass rates, LOW,HIGH.")] = "0.05,0.95",
        n: Annotated[int, typer.Option(min=1, help="Held-out inputs per task.")] = 200,
        teacher: Annotated[str | None, typer.Option(help="A chain skill whose outputs are the attempts: distil it into one LoRA (tasks default to the chain's steps joined with '+').")] = None,
        seed: int = 0, as_json: JsonOpt = False) -> None:
    """Practise a skill without labels: attempt, keep what the evaluator accepts, train, repeat.

    No target is ever trained on: only the attempts the evaluator accepts — the model's own,
    or with --teacher a chain skill's, which distils the chain into one call.
    `skillbank versions NAME` is then the practice history."""
    from ..practice.loop import PracticeRecipe, practise
    from ..skill import check_name

    check_name(name, "skill name")
    if samples < 1:
        raise SkillError(f"--samples must be at least 1, got {samples}")
    try:
        lo, hi = (float(x) for x in band.split(","))
    except ValueError:
        raise SkillError(f"--band takes LOW,HIGH (e.g. 0.05,0.95), got {band!r}") from None
    library = lib(write=True)
    chain = None
    if teacher is not None:
        chain = library.get(teacher)
        if chain.kind != "chain":
            raise SkillError(f"--teacher takes a chain skill; {chain.ref} is a {chain.kind}")
        if tasks is None and not propose:
            tasks = "+".join(chain.config["steps"])
    recipe = PracticeRecipe(world=world, tasks=tuple(csv_list(tasks)) if tasks else (),
                            propose=propose, band=(lo, hi), rounds=rounds, inputs=inputs,
                            samples=samples, temperature=temperature, balance=balance,
                            evaluator=evaluator, steps=steps, n_eval=n, seed=seed,
                            teacher=chain.ref if chain else None)
    b = library.base(base)
    if b.kind != "causal":
        raise SkillError(f"practice samples answers from a generator; base {b.name} is {b.kind}")
    first = library.get(start) if start else None
    ui = Ui(as_json)
    history = practise(library, name, b, recipe, start=first, ui=ui)
    if as_json:
        return emit({"skill": name, "rounds": history})
    def f(x):
        return "—" if x is None else f"{x:.3f}"

    table(f"practice {name} ({recipe.evaluator} evaluator, K={samples}; --json for every monitor)",
          ["round", "tasks", "T", "pass@K", "accepted", "precision", "held-out EM", "stored"],
          [[r["round"], ",".join(r["tasks"]), f"{r['temperature']:g}", f(r["pass_at_k"]),
            r["accepted"], f(r["precision"]), f(r.get("held_out_mean")), r["stored"] or "nothing"]
           for r in history])
    if history and history[-1]["stored"] is None:
        out.print(f"round {history[-1]['round']}: the evaluator accepted no attempt; {name} keeps "
                  "its last version")
