"""Plan: chain library skills to fit a few examples of a new task (SayCan's usefulness × affordance)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..skill import SkillError
from .core import JsonOpt, Ui, app, csv_list, emit, lib, out

PANEL = "Compose"
MAX_EXAMPLES_BYTES = 2**20


def read_examples(path: Path) -> list[tuple[str, str]]:
    """(input, target) pairs from a .jsonl or .csv file with ``input`` and ``target`` columns."""
    from ..worlds.files import read_records

    if path.suffix not in (".jsonl", ".csv"):
        raise SkillError(f"{path}: examples are a .jsonl or .csv file")
    if path.is_file() and path.stat().st_size > MAX_EXAMPLES_BYTES:
        raise SkillError(f"{path}: more than {MAX_EXAMPLES_BYTES // 2**10} KiB; a plan needs a few examples")
    try:
        rows, _ = read_records(path)
    except ValueError as e:
        raise SkillError(str(e)) from None
    pairs = []
    for line, row in rows:
        x, y = row.get("input"), row.get("target")
        if not isinstance(x, str) or not isinstance(y, str):
            raise SkillError(f"{path}: line {line}: needs string 'input' and 'target' columns")
        pairs.append((x.strip(), y.strip()))
    return pairs


@app.command("plan", rich_help_panel=PANEL)
def plan_cmd(
        name: Annotated[str, typer.Argument(help="The chain skill to store.")],
        base: Annotated[str, typer.Option(help="Registered base.")],
        examples: Annotated[Path, typer.Option(help="A .jsonl/.csv of input,target pairs of the new task (no task name).")],
        world: Annotated[str, typer.Option(help="World whose prompts the skills answer.")] = "strings",
        skills: Annotated[str | None, typer.Option(help="Comma-separated skills to plan with (default: every single-task skill of this world on the base).")] = None,
        depth: Annotated[int, typer.Option(help="Longest plan.")] = 4,
        beam: Annotated[int, typer.Option(help="Plans kept at each length.")] = 4,
        score: Annotated[str, typer.Option(help="both (usefulness × affordance), usefulness or affordance.")] = "both",
        min_fit: Annotated[float, typer.Option(help="Least share of the examples the plan must reproduce.")] = 0.5,
        seed: int = 0, as_json: JsonOpt = False) -> None:
    """Search chains of library skills, applied call by call, for one that reproduces the
    examples; store it as a `chain` skill (evaluate it with `skillbank eval`)."""
    from ..plan.planner import PlanRecipe, make_chain
    from ..skill import check_name
    from ..worlds import get_world

    check_name(name, "skill name")
    get_world(world)   # an unknown world: one line before any work
    recipe = PlanRecipe(world=world, depth=depth, beam=beam, score=score, min_fit=min_fit, seed=seed)
    pairs = read_examples(examples)
    library = lib(write=True)
    b = library.base(base)
    if skills is not None:
        chosen = [library.get(r) for r in csv_list(skills)]
    else:
        chosen = []
        for row in library.list():
            s = library.get(f"{row.name}@{row.version}")
            task = s.recipe.get("task")
            if s.base == b.fingerprint and s.kind in ("lora", "delta", "sparse") \
                    and s.recipe.get("world") == world and isinstance(task, str) and "," not in task:
                chosen.append(s)
        if not chosen:
            raise SkillError(f"no single-task skill of world {world!r} on base {b.name} to plan with")
    ui = Ui(as_json)
    ui.say(f"planning over {len(chosen)} skills, depth ≤ {depth}, beam {beam}, score {score}")
    skill, found = make_chain(library, name, b, chosen, pairs, recipe)
    row = {"skill": skill.ref, **found}
    if as_json:
        return emit(row)
    out.print(f"{skill.ref}: {' → '.join(f'{s} ({m})' for s, m in zip(found['steps'], found['members'], strict=True))}")
    out.print(f"fits {found['fit']:.0%} of {found['examples']} examples; score {found['score']:.3f}; "
              f"{found['calls']} skill calls in the search")
