"""Scaling: a family of embedded bases at several sizes (``skillbank base family``)."""

from __future__ import annotations

from typing import Annotated

import typer

from .core import AddressOpt, JsonOpt, Ui, WorkersOpt, base_app, csv_list, emit, lib, out, table


@base_app.command("family")
def base_family(name: Annotated[str, typer.Argument(help="Family name; members are NAME-WIDTHxDEPTH.")],
                sizes: Annotated[str, typer.Option(help="Comma-separated WIDTHxDEPTH shapes, smallest first.")] = "16x2,24x2,32x2,48x3,64x3,96x4",
                world: Annotated[str, typer.Option(help="World whose base tasks every member learns.")] = "strings",
                tasks: Annotated[str, typer.Option(help="Comma-separated base tasks.")] = "copy,rev,sort",
                steps: Annotated[int, typer.Option(min=1, help="Steps of the smallest member.")] = 100,
                token_exponent: Annotated[float, typer.Option(help="Token budget rule: steps × (N/N_smallest)^x (0: the same tokens for all).")] = 0.0,
                lr: Annotated[float, typer.Option(min=0.0)] = 5e-3,
                seed: int = 0, as_json: JsonOpt = False,
                executor: Annotated[str | None, typer.Option(help="Train members as jobs on local (--workers N) or ray; default: in this process.")] = None,
                address: AddressOpt = None, workers: WorkersOpt = None) -> None:
    """Train a family of embedded bases that differ only in width and depth (one recipe,
    one token budget rule), for scaling laws; each member is re-used by its recipe."""
    from ..acquire.family import FamilyRecipe, check_family, ensure_family, member_name
    from ..acquire.pretrain import BaseRecipe
    from ..run import get_executor
    from ..skill import check_name
    from ..worlds import get_world

    check_name(name, "family name")
    recipe = FamilyRecipe(sizes=tuple(csv_list(sizes)), token_exponent=token_exponent,
                          base=BaseRecipe(world=world, tasks=csv_list(tasks), steps=steps, lr=lr,
                                          seed=seed))
    w = get_world(world)
    for t in recipe.base.tasks:
        w.examples(t, 1, seed=0)  # an unknown task: one line before any training
    check_family(recipe)
    for s in recipe.sizes:
        check_name(member_name(name, s), "member name")
    ui, library = Ui(as_json), lib(create=True)
    with ui.jobs(f"family {name}", len(recipe.sizes)) as progress, \
            get_executor(executor, address, workers) as ex:
        rows = ensure_family(library, name, recipe, ex, progress=progress)
    steps_of = {s: recipe.member(s).steps for s in recipe.sizes}
    if as_json:
        return emit({"family": name, "members": [{**r, "steps": steps_of[r["size"]]} for r in rows]})
    table(f"family {name} ({world}: {','.join(recipe.base.tasks)}; steps ∝ N^{token_exponent:g})",
          ["size", "base", "parameters", "steps", "fingerprint", "trained"],
          [[r["size"], r["base"], f"{r['parameters']:,}", steps_of[r["size"]], r["fingerprint"][:12],
            "yes" if r["trained"] else "re-used"] for r in rows])


@base_app.command("predict")
def base_predict(family: Annotated[str, typer.Argument(help="A family made by `base family`.")],
                 task: Annotated[str, typer.Option(help="Task whose pass rate to predict.")],
                 size: Annotated[str, typer.Option(help="WIDTHxDEPTH of the member to predict (it need not exist).")],
                 n: Annotated[int, typer.Option(min=1, help="Held-out inputs per member.")] = 30,
                 cap: Annotated[int, typer.Option(help="PassUntil: most samples per input.")] = 10_000,
                 seed: int = 0, as_json: JsonOpt = False,
                 executor: Annotated[str | None, typer.Option(help="Measure members as jobs on local (--workers N) or ray.")] = None,
                 address: AddressOpt = None, workers: WorkersOpt = None) -> None:
    """Predict a larger member's pass rate before training it: PassUntil on every stored
    smaller member, the task law log(−log PU) = a − α·log N fitted, evaluated at SIZE."""
    from ..evaluate.family import members_up_to, predict_size
    from ..evaluate.passuntil import PassUntilConfig
    from ..run import get_executor

    cfg = PassUntilConfig(cap=cap, seed=seed)
    library = lib(write=True)
    ui = Ui(as_json)
    todo, _ = members_up_to(library, family, task, size)
    with ui.jobs(f"measure {family}", 2 * len(todo)) as progress, \
            get_executor(executor, address, workers) as ex:
        found = predict_size(library, family, task, size, n, cfg, ex, progress)
    if as_json:
        return emit(found)
    table(f"family {family} on {task}: PassUntil ({n} inputs, cap {cap:,}) / greedy exact match",
          ["size", "parameters", "pass rate", "exact match"],
          [[m["size"], f"{m['parameters']:,}", f"{m['pass_rate']:.2e}", f"{m['exact_match']:.3f}"]
           for m in found["members"]])
    lo, hi = found["interval90"]
    f = found["fit"]
    out.print(f"law over {f['points']} members: log(-log PU) = {f['a']:.3f} - {f['alpha']:.3f}·log N "
              f"(±{f['b_stderr']:.3f}, r² {f['r2']:.3f}); predicted for {size} "
              f"({found['parameters']:,} parameters): {found['predicted']:.2e} "
              f"(90% interval {lo:.1e}–{hi:.1e})"
              + (f"; measured {found['measured']:.2e}" if "measured" in found else ""))
