"""Localize skills: grafting and overlap."""

from __future__ import annotations

from typing import Annotated

import typer

from ..skill import SkillError
from .core import AddressOpt, JsonOpt, Ui, WorkersOpt, app, csv_list, emit, lib, out, table

# -- localize ------------------------------------------------------------------------
_Opt = typer.Option


PANEL = "Localize"


@app.command("localize", rich_help_panel=PANEL)
def localize_cmd(
        skill: Annotated[str, typer.Argument(help="Skill to localize (NAME or NAME@VERSION).")],
        sparsity: Annotated[str, _Opt(help=(
            "Graft size / eligible (block) params; several, comma-separated "
            "(0.001,0.01,0.1), run one localize job each."))] = "0.01",
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
        name: Annotated[str | None, _Opt(help=(
            "Sparse skill's name (default NAME-graft-SPARSITY); one sparsity only."))] = None,
        n: Annotated[int, _Opt(min=1, help="Held-out examples for the evaluation.")] = 200,
        n_train: Annotated[int, _Opt(min=1, help="Training examples for the mask.")] = 512,
        n_val: Annotated[int, _Opt(min=1, help="Validation examples to pick the mask.")] = 256,
        seed: int = 0, as_json: JsonOpt = False,
        executor: Annotated[str | None, _Opt(
            help="Run one job per sparsity on local (--workers N) or ray; "
                 "default: in this process.")] = None,
        address: AddressOpt = None,
        workers: WorkersOpt = None,
        ) -> None:
    """Find where a skill lives: train a sparse graft of its ΔW and store it as a sparse skill.

    Prints the learned graft against the top-|Δ| and random masks of the same size.

    Each sparsity is one job (as in `skillbank sweep`; in this process unless --executor /
    --address / --workers say otherwise): its graft is stored as NAME-graft-SPARSITY (or
    --name), and a graft of the same skill version made by the same recipe and --n is
    re-used, not redone."""
    library = lib(write=True)
    sparsities = _sparsities(sparsity)
    if name is not None and len(sparsities) > 1:
        raise SkillError("--name names one graft; with several sparsities the grafts are "
                         "named NAME-graft-SPARSITY")
    src = library.get(skill)
    from ..localize.ops import check_localizable

    check_localizable(src)   # one line before any job runs
    fields = {"steps": steps, "lr": lr, "b": b, "budget": budget,
              "rebase_every": rebase_every, "n_train": n_train, "n_val": n_val, "seed": seed}
    fields |= {k: v for k, v in (("world", world), ("task", task)) if v is not None}
    _localize_jobs(library, src, sparsities, n, fields, name, executor, address, workers,
                   as_json)


def _sparsities(value: str) -> list[float]:
    try:
        return list(dict.fromkeys(float(v) for v in csv_list(value)))
    except ValueError:
        raise SkillError(f"--sparsity: expected numbers like 0.01 or 0.001,0.01, "
                         f"got {value!r}") from None


def _localize_jobs(library, src, sparsities: list[float], n_eval: int, fields: dict,
                   name: str | None, executor: str | None, address: str | None,
                   workers: int | None, as_json: bool) -> None:
    """One ``localize`` job per sparsity on an executor; a table (or JSON) of the grafts."""
    from ..localize.jobs import localize_job
    from ..run import ensure, get_executor

    base = library.base_of(src)
    jobs = [localize_job(base, src, s, n_eval, name, **fields) for s in sparsities]  # checked
    ui = Ui(as_json)
    with get_executor(executor, address, workers) as ex, \
            ui.jobs(f"localize {src.ref} ({ex.name} × {ex.workers})", len(jobs)) as progress:
        done = ensure(ex, library, jobs, progress)
        ex_name, ex_workers = ex.name, ex.workers
    grafts, failed = [], []
    for s, r in zip(sparsities, done, strict=True):
        if r.status == "failed":
            failed.append({"sparsity": s, "label": r.job.label, "error": r.error})
            continue
        m = library.get(r.result["ref"]).metrics["localization"]
        sub = m["subjects"]
        grafts.append({"sparsity": s, "ref": r.result["ref"], "new": r.result["new"],
                       "size": m["size"], "n_eligible": m["n_eligible"],
                       "fraction": m["fraction"], "task": m["task"], "n_eval": m["n_eval"],
                       "exact_match": {k: sub[k]["exact_match"] for k in sub},
                       "relative_gain": {k: sub[k]["relative_gain"]["exact_match"]
                                         for k in ("learned", "top_delta", "random")},
                       "seconds": m["seconds"]})
    if len(sparsities) == 1 and grafts:
        return _one_graft(library.get(grafts[0]["ref"]), grafts[0]["new"], as_json)
    if as_json:
        emit({"source": src.ref, "executor": ex_name, "workers": ex_workers,
              "grafts": grafts, "failed": failed})
    else:
        def gain(v):
            return "n/a" if v is None else v

        table(f"{src.ref} grafted at {len(sparsities)} sparsities ({ex_name} × {ex_workers}); "
              "relative gain in exact match", ["sparsity", "graft", "size", "exact match",
                                               "gain", "top-|Δ| gain", "random gain"],
              [[f"{g['sparsity']:g}", g["ref"], g["size"], g["exact_match"]["learned"],
                gain(g["relative_gain"]["learned"]), gain(g["relative_gain"]["top_delta"]),
                gain(g["relative_gain"]["random"])] for g in grafts])
        new = sum(g["new"] for g in grafts)
        out.print(f"stored {new} new graft(s); re-used {len(grafts) - new} made by the same "
                  "recipe before")
        for f in failed:
            out.print(f"failed {f['label']}: {f['error']}")
    if failed:
        raise typer.Exit(1)


def _one_graft(stored, new: bool, as_json: bool) -> None:
    """One graft: its manifest (``--json``), or its subjects against the base and skill."""
    if as_json:
        return emit(dict(stored.manifest(), new=new))
    m = stored.metrics["localization"]
    how = "stored" if new else "re-used (same recipe)"
    out.print(f"{how} {stored.ref} (sparse): {m['size']} of {m['n_eligible']} eligible "
              f"parameters ({m['fraction']:.3%}), {m['seconds']} s")
    rows = []
    policy = "success" in m["subjects"]["skill"]
    for label in ("base", "skill", "learned", "top_delta", "random"):
        r = m["subjects"][label]
        gain = r.get("relative_gain", {}).get("exact_match")
        shown = "-" if label in ("base", "skill") else ("n/a" if gain is None else gain)
        if policy:
            rows.append([label, r.get("size", "-"), r["success"], r["success_stderr"], shown])
            continue
        rows.append([label, r.get("size", "-"), r["exact_match"], shown, r["mean_logprob"],
                     r["ece"] if "ece" in r else r["token_ece"]])
    if policy:
        return table(f"{m['task']}: success over {m['n_eval']} held-out goals",
                     ["subject", "size", "success", "± stderr", "relative gain"], rows)
    classifier = "ece" in m["subjects"]["skill"]
    table(f"{m['task']}: {m['n_eval']} held-out inputs",
          ["subject", "size", "accuracy" if classifier else "exact match", "relative gain",
           "mean log-prob of the label" if classifier else "mean target log-prob",
           "ECE" if classifier else "token ECE"], rows)


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
