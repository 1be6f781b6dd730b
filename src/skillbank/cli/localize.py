"""Localize skills: grafting and overlap."""

from __future__ import annotations

from typing import Annotated

import typer

from .core import JsonOpt, Ui, app, csv_list, emit, lib, out, table

# -- localize ------------------------------------------------------------------------
_Opt = typer.Option


PANEL = "Localize"


@app.command("localize", rich_help_panel=PANEL)
def localize_cmd(
        skill: Annotated[str, typer.Argument(help="Skill to localize (NAME or NAME@VERSION).")],
        sparsity: Annotated[float, _Opt(help="Graft size / eligible (block) params.")] = 0.01,
        steps: Annotated[int, _Opt(min=0, help="Mask-training steps (minibatches).")] = 200,
        lr: Annotated[float, _Opt(min=0.0, help="Plain gradient-descent step on S.")] = 1e6,
        b: Annotated[float, _Opt(help="Bias b in γ(S) = γ_base + (1 − 2γ_base)·σ(S − b).")] = 10.0,
        budget: Annotated[bool, _Opt("--budget/--no-budget", help=(
            "Keep at most the target size (--no-budget: the authors' plain rounding; "
            "the graft may grow)."))] = True,
        rebase_every: Annotated[int, _Opt(min=0, help=(
            "Restart S around the current graft every N steps (0: never, as the authors)."
        ))] = 25,
        world: Annotated[str | None, _Opt(help="World (default: the skill's).")] = None,
        task: Annotated[str | None, _Opt(help="Task (default: the skill's).")] = None,
        name: Annotated[str | None, _Opt(help="Sparse skill's name (default NAME-graft).")] = None,
        n: Annotated[int, _Opt(min=1, help="Held-out examples for the evaluation.")] = 200,
        n_train: Annotated[int, _Opt(min=1, help="Training examples for the mask.")] = 512,
        n_val: Annotated[int, _Opt(min=1, help="Validation examples to pick the mask.")] = 256,
        seed: int = 0, as_json: JsonOpt = False) -> None:
    """Find where a skill lives: train a sparse graft of its ΔW and store it as a sparse skill.

    Prints the learned graft against the top-|Δ| and random masks of the same size."""
    from ..localize.ops import GraftRecipe, localize

    library = lib()
    src = library.get(skill)
    recipe = GraftRecipe(sparsity=sparsity, steps=steps, lr=lr, b=b, budget=budget,
                         rebase_every=rebase_every, n_train=n_train, n_val=n_val, seed=seed,
                         world=world, task=task)
    ui = Ui(as_json)
    with ui.bar(f"localize {src.ref}", steps) as step:
        made = localize(library.base_of(src), src, recipe, name=name, n_eval=n, progress=step)
    stored = library.add(made)
    if as_json:
        return emit(stored.manifest())
    m = stored.metrics["localization"]
    out.print(f"stored {stored.ref} (sparse): {m['size']} of {m['n_eligible']} eligible "
              f"parameters ({m['fraction']:.3%}), {m['seconds']} s")
    rows = []
    for label in ("base", "skill", "learned", "top_delta", "random"):
        r = m["subjects"][label]
        gain = r.get("relative_gain", {}).get("exact_match")
        shown = "-" if label in ("base", "skill") else ("n/a" if gain is None else gain)
        rows.append([label, r.get("size", "-"), r["exact_match"], shown, r["mean_logprob"],
                     r["token_ece"]])
    table(f"{m['task']}: {m['n_eval']} held-out inputs",
          ["subject", "size", "exact match", "relative gain", "mean target log-prob",
           "token ECE"], rows)


@app.command("overlap", rich_help_panel=PANEL)
def overlap_cmd(skills: Annotated[str, typer.Argument(help="Comma-separated sparse skills a,b,c.")],
                as_json: JsonOpt = False) -> None:
    """Where skills live relative to each other: |γ_i ∩ γ_j| / |γ_j| for sparse skills."""
    from ..localize.ops import overlap_skills

    library = lib()
    res = overlap_skills([library.get(r) for r in csv_list(skills)])
    if as_json:
        return emit(res)
    refs = res["skills"]
    table("overlap |γ_row ∩ γ_col| / |γ_col|", ["skill", "size", *refs],
          [[r, size, *["n/a" if v is None else v for v in row]]
           for r, size, row in zip(refs, res["sizes"], res["matrix"], strict=True)])
