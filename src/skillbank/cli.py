"""The command line: parse, call the library, print a table or JSON. Nothing else."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .library import Library, LibraryError, default_home
from .skill import SkillError

app = typer.Typer(help="skillbank: a versioned library of neural-network skills.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
base_app = typer.Typer(help="Register and list base models.", no_args_is_help=True)
app.add_typer(base_app, name="base")

out = Console()
err = Console(stderr=True)
_state: dict[str, Any] = {"home": None}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]


@app.callback()
def _main(home: Annotated[Path | None, typer.Option(
        "--home", envvar="SKILLBANK_HOME",
        help="Library home directory (default ~/.skillbank; env SKILLBANK_HOME).")] = None) -> None:
    _state["home"] = home


def lib() -> Library:
    return Library.open(_state["home"] or default_home())


def emit(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title)
    for h in header:
        t.add_column(h)
    for r in rows:
        t.add_row(*[f"{x:.3f}" if isinstance(x, float) else str(x) for x in r])
    out.print(t)


def fmt_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# -- bases ---------------------------------------------------------------------------
@base_app.command("add")
def base_add(name: str,
             source: Annotated[Path, typer.Option("--from", help="A local Hugging Face model directory.")],
             kind: Annotated[str | None, typer.Option(help="causal or encoder (default: from config).")] = None,
             as_json: JsonOpt = False) -> None:
    """Register a local Hugging Face model directory as a base (copied into the library)."""
    b = lib().add_base(name, source, kind)
    row = {"name": b.name, "fingerprint": b.fingerprint, "kind": b.kind, "path": str(b.path)}
    emit(row) if as_json else out.print(f"base {b.name} ({b.kind}) fingerprint {b.short}")


@base_app.command("list")
def base_list(as_json: JsonOpt = False) -> None:
    """List registered bases."""
    rows = [{"name": b.name, "fingerprint": b.fingerprint, "kind": b.kind, "path": str(b.path)}
            for b in lib().bases()]
    if as_json:
        return emit(rows)
    table("bases", ["name", "kind", "fingerprint"], [[r["name"], r["kind"], r["fingerprint"][:12]] for r in rows])


# -- skills --------------------------------------------------------------------------
@app.command("import")
def import_cmd(directory: Path,
               name: Annotated[str, typer.Option(help="Name of the new skill.")],
               base: Annotated[str, typer.Option(help="Registered base the adapter was trained on.")],
               as_json: JsonOpt = False) -> None:
    """Import a PEFT LoRA adapter directory as a new skill version."""
    from .peft_io import import_peft

    library = lib()
    skill = library.add(import_peft(directory, name, library.base(base)))
    if as_json:
        return emit(dict(skill.manifest(), new=library.last_add_new))
    if library.last_add_new:
        out.print(f"imported {skill.ref} ({skill.num_params():,} parameters)")
    else:
        out.print(f"{skill.ref} already holds this content; no new version")


@app.command("export")
def export_cmd(ref: Annotated[str, typer.Argument(help="NAME[@VERSION|@ALIAS]")], directory: Path) -> None:
    """Export a LoRA skill as a PEFT adapter directory with a model card."""
    from .peft_io import export_peft

    library = lib()
    skill = library.get(ref)
    export_peft(skill, library.base_of(skill), directory)
    out.print(f"exported {skill.ref} to {directory}")


@app.command("list")
def list_cmd(as_json: JsonOpt = False) -> None:
    """List skills: name, latest version, kind, base, size, tags."""
    library = lib()
    rows = [{"name": r.name, "version": r.version, "kind": r.kind, "base": r.base, "size": r.size,
             "tags": library.tags(r.name), "created": r.created} for r in library.list()]
    if as_json:
        return emit(rows)
    table("skills", ["name", "latest", "kind", "base", "size", "tags"],
          [[r["name"], r["version"], r["kind"], r["base"][:12], fmt_size(r["size"]), ",".join(r["tags"])]
           for r in rows])


@app.command("show")
def show_cmd(ref: Annotated[str, typer.Argument(help="NAME[@VERSION|@ALIAS]")], as_json: JsonOpt = False) -> None:
    """Show a skill's manifest, metrics and lineage."""
    library = lib()
    row = library.resolve(ref)
    manifest = dict(row.manifest, tags=library.tags(row.name, row.version), size=row.size)
    if as_json:
        return emit(manifest)
    out.print(f"[bold]{row.name}@{row.version}[/bold]  kind={row.kind}  base={row.base[:12]}  "
              f"size={fmt_size(row.size)}  tags={','.join(manifest['tags']) or '-'}")
    for key in ("created", "content_hash", "lineage", "recipe", "metrics", "config"):
        out.print(f"[bold]{key}[/bold]: {json.dumps(manifest.get(key), sort_keys=True, default=str)}")


@app.command("versions")
def versions_cmd(name: str, as_json: JsonOpt = False) -> None:
    """List every version of a skill."""
    library = lib()
    rows = [{"version": r.version, "created": r.created, "content_hash": r.content_hash,
             "size": r.size, "tags": library.tags(r.name, r.version)} for r in library.versions(name)]
    if as_json:
        return emit(rows)
    table(name, ["version", "created", "hash", "size", "tags"],
          [[r["version"], r["created"], r["content_hash"][:12], fmt_size(r["size"]), ",".join(r["tags"])]
           for r in rows])


@app.command("lineage")
def lineage_cmd(ref: str, as_json: JsonOpt = False) -> None:
    """Show the ancestry of a skill and the recipe that made each one."""
    rows = lib().lineage(ref)
    if as_json:
        return emit([{"depth": d, "ref": r, "recipe": rec} for d, r, rec in rows])
    for depth, r, recipe in rows:
        out.print("  " * depth + f"{r}  {recipe.get('method', '?') if not recipe.get('missing') else '(not in library)'}")


@app.command("tag")
def tag_cmd(ref: Annotated[str, typer.Argument(help="NAME@VERSION")], alias: str) -> None:
    """Point an alias (a movable tag) at one version."""
    row = lib().tag(ref, alias)
    out.print(f"{row.name}@{alias} -> version {row.version}")


@app.command("rm")
def rm_cmd(ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION")]) -> None:
    """Remove a version (or all versions) of a skill; `gc` frees the space."""
    rows = lib().rm(ref)
    out.print("removed " + ", ".join(f"{r.name}@{r.version}" for r in rows))


@app.command("verify")
def verify_cmd(as_json: JsonOpt = False) -> None:
    """Re-hash every blob; exit 1 if anything is damaged or missing."""
    problems = lib().verify()
    if as_json:
        emit({"ok": not problems, "problems": problems})
    elif problems:
        table("damage", ["what", "problem"], [[p["what"], p["problem"]] for p in problems])
    else:
        out.print("library verified: every blob matches its hash")
    if problems:
        raise typer.Exit(1)


@app.command("gc")
def gc_cmd(as_json: JsonOpt = False) -> None:
    """Remove blobs that no skill references."""
    r = lib().gc()
    emit(r) if as_json else out.print(f"removed {r['blobs_removed']} blobs, freed {fmt_size(r['bytes_freed'])}")


# -- acquire, evaluate, demo ---------------------------------------------------------
class Ui:
    """Progress bars (loss and ETA) on stderr, messages on stdout; quiet under --json."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def say(self, msg: str) -> None:
        if not self.quiet:
            out.print(msg)

    @contextmanager
    def bar(self, desc: str, total: int):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        if self.quiet:
            yield lambda step, loss: None
            return
        cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), TextColumn("eta"),
                TimeRemainingColumn()]
        with Progress(*cols, console=err, transient=False) as p:
            task = p.add_task(desc, total=total, loss="")

            def update(step: int, loss: float | None) -> None:
                p.update(task, completed=step, loss=f"loss {loss:.4f}" if loss is not None else "")

            yield update


def _csv(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise SkillError(f"expected a comma-separated list, got {value!r}")
    return items


@base_app.command("train")
def base_train(name: str,
               world: Annotated[str, typer.Option(help="World whose base tasks it learns.")] = "strings",
               tasks: Annotated[str, typer.Option(help="Comma-separated base tasks.")] = "copy,rev,sort",
               size: Annotated[str, typer.Option(help="tiny, mini, small or large.")] = "mini",
               steps: Annotated[int, typer.Option(min=1)] = 800,
               lr: Annotated[float, typer.Option(min=0.0)] = 5e-3,
               seed: int = 0, as_json: JsonOpt = False) -> None:
    """Train the embedded default base (a tiny transformer) and register it; re-used by recipe."""
    from .acquire.pretrain import BaseRecipe, ensure_base
    from .worlds import get_world

    recipe = BaseRecipe(world=world, tasks=_csv(tasks), size=size, steps=steps, lr=lr, seed=seed)
    w = get_world(world)
    for t in recipe.tasks:
        w.examples(t, 1, seed=0)  # unknown task: one-line error before any training
    ui = Ui(as_json)
    with ui.bar(f"base {name}", steps) as step:
        b, log = ensure_base(lib(), name, recipe, progress=step)
    row = {"name": b.name, "fingerprint": b.fingerprint, "trained": log is not None,
           "recipe": b.meta.get("recipe")}
    emit(row) if as_json else out.print(
        f"base {b.name} {b.short} " + ("trained" if log else "already in the library (same recipe)"))


@app.command("train")
def train_cmd(skill: Annotated[str, typer.Argument(help="Name of the new skill.")],
              base: Annotated[str, typer.Option(help="Registered base.")],
              task: Annotated[str, typer.Option(help="Task to learn, e.g. rot or rev+sort.")],
              world: Annotated[str, typer.Option(help="strings, lego, arith or files.")] = "strings",
              data: Annotated[Path | None, typer.Option(help="Data file for --world files.")] = None,
              rank: Annotated[int, typer.Option(min=1)] = 8,
              steps: Annotated[int, typer.Option(min=1)] = 300,
              lr: Annotated[float, typer.Option(min=0.0)] = 5e-3,
              batch_size: Annotated[int, typer.Option(min=1)] = 64,
              max_length: Annotated[int, typer.Option(
                  min=1, help="Classification: tokens per text.")] = 64,
              seed: int = 0, as_json: JsonOpt = False) -> None:
    """Train a LoRA skill through PEFT (resumes an interrupted run) and store it.

    On an encoder base the task must be a classification task (a files world of
    task,text,label rows): the skill is LoRA on attention plus its own linear head."""
    from .acquire.classify import ClassifierRecipe, train_classifier
    from .acquire.lora import LoraRecipe, train_lora
    from .skill import check_name
    from .worlds import get_world

    check_name(skill, "skill name")
    world_args = {"path": str(data.resolve())} if data is not None else {}
    w = get_world(world, **world_args)
    w.examples(task, 1, seed=0)
    library = lib()
    b = library.base(base)
    classify = getattr(w, "kind", "") == "classification"
    if b.kind == "encoder" and not classify:
        raise SkillError(f"base {b.name} is an encoder: it learns classification tasks "
                         "(--world files with task,text,label rows), not the generation "
                         f"task {task!r}")
    if b.kind != "encoder" and classify:
        raise SkillError(f"task {task!r} is a classification task but base {b.name} is {b.kind}; "
                         "classification skills need an encoder base")
    if classify:
        trainer, recipe = train_classifier, ClassifierRecipe(
            task=task, world=world, world_args=world_args, rank=rank, alpha=2 * rank, steps=steps,
            lr=lr, batch_size=batch_size, max_length=max_length, seed=seed)
    else:
        trainer, recipe = train_lora, LoraRecipe(
            world=world, task=task, rank=rank, alpha=2 * rank, steps=steps, lr=lr,
            batch_size=batch_size, seed=seed, world_args=world_args)
    ui = Ui(as_json)
    with ui.bar(f"train {skill}", steps) as step:
        s = library.add(trainer(skill, b, recipe, library.home / "checkpoints", progress=step))
    if as_json:
        return emit(s.manifest())
    t = s.metrics["train"]
    out.print(f"stored {s.ref}: final loss {t['final_loss']:.4f}, {t['seconds']} s"
              + (f" (resumed from step {t['resumed_from']})" if t["resumed_from"] else ""))


@app.command("eval")
def eval_cmd(skills: Annotated[list[str], typer.Argument(help="Skills NAME[@VERSION] (none: base only).")] = None,
             base: Annotated[str | None, typer.Option(help="Base (default: the skills' base).")] = None,
             world: str = "strings",
             data: Annotated[Path | None, typer.Option(help="Data file for --world files.")] = None,
             tasks: Annotated[str | None, typer.Option(help="Comma-separated tasks (default: the skills' tasks).")] = None,
             n: Annotated[int, typer.Option(min=1, help="Held-out examples per task.")] = 200,
             seed: int = 0, as_json: JsonOpt = False) -> None:
    """Evaluate the base alone and each skill on each task; results go to the library."""
    from .evaluate.suites import eval_matrix

    library = lib()
    loaded = [library.get(r) for r in (skills or [])]
    if base is None and not loaded:
        raise SkillError("give at least one skill or --base")
    b = library.base(base) if base else library.base_of(loaded[0])
    task_list = _csv(tasks) if tasks else sorted({s.recipe.get("task") for s in loaded if s.recipe.get("task")})
    if not task_list:
        raise SkillError("no tasks: pass --tasks")
    ui = Ui(as_json)
    total = (len(loaded) + 1) * len(task_list)
    with ui.bar("evaluate", total) as step:
        counter = iter(range(1, total + 1))
        matrix = eval_matrix(library, b, loaded, world, task_list, n=n, seed=seed,
                             world_args={"path": str(data.resolve())} if data is not None else None,
                             progress=lambda *_: step(next(counter), None))
    if as_json:
        return emit(matrix)
    first = next(iter(next(iter(matrix.values())).values()))
    key = "accuracy" if "accuracy" in first else "exact_match"
    table(f"{key.replace('_', ' ')} ± stderr ({n} held-out per task)", ["subject", *task_list],
          [[s, *[f"{row[t][key]:.3f}±{row[t][key + '_stderr']:.3f}" for t in task_list]]
           for s, row in matrix.items()])


@app.command("demo")
def demo_cmd(out_dir: Annotated[Path, typer.Option("--out", help="Where report.html and summary.json go.")] = Path("skillbank-demo"),
             steps: Annotated[int, typer.Option(min=1, help="Training steps per skill.")] = 300,
             base_steps: Annotated[int, typer.Option(min=1, help="Base pre-training steps.")] = 800,
             n: Annotated[int, typer.Option(min=1, help="Held-out examples per task.")] = 200,
             size: Annotated[str, typer.Option(help="Base size: tiny, mini, small, large.")] = "mini",
             tasks: Annotated[str, typer.Option(help="Skills to acquire (strings tasks).")] = "rot,shift,dedup,drop,swap,dup",
             seed: int = 0, as_json: JsonOpt = False) -> None:
    """The main job: a base gains skills, each stored, evaluated and reported."""
    from .acquire.pretrain import BaseRecipe
    from .demo import DemoConfig, run_demo

    cfg = DemoConfig(base=BaseRecipe(size=size, steps=base_steps, seed=seed), tasks=_csv(tasks),
                     steps=steps, n_eval=n, seed=seed)
    summary = run_demo(lib(), out_dir, cfg, Ui(as_json))
    if as_json:
        return emit(summary)
    table("skills on their own tasks (held-out exact match)",
          ["skill", "task", "exact match", "± stderr", "base alone", "target met"],
          [[k, s["task"], s["exact_match"], s["stderr"], s["base_exact_match"],
            "yes" if s["meets_target"] else "NO"] for k, s in summary["skills"].items()])
    tasks_ = cfg.tasks
    table("skill × task matrix (exact match)", ["subject", *tasks_],
          [[subj, *[row[t] for t in tasks_]] for subj, row in summary["matrix"].items()])
    out.print(f"report: {out_dir / 'report.html'}  summary: {out_dir / 'summary.json'}  "
              f"wall time {summary['wall_seconds']} s")


@app.command("compose")
def compose_cmd(new: Annotated[str, typer.Argument(help="Name of the composed skill.")],
                members: Annotated[str, typer.Option("--from", help="Comma-separated skills NAME[@VERSION].")],
                method: Annotated[str, typer.Option(help="linear, ties, dare_linear, dare_ties, magnitude_prune, cat, layer_swap.")] = "linear",
                weights: Annotated[str | None, typer.Option(help="Comma-separated weight per skill (default 1 each).")] = None,
                density: Annotated[float, typer.Option(help="Fraction kept by ties/dare/magnitude_prune.")] = 0.2,
                rank: Annotated[int | None, typer.Option(help="Re-factor to a LoRA of this rank (SVD); default: exact delta.")] = None,
                convention: Annotated[str, typer.Option(help="TIES convention: peft or mergekit.")] = "peft",
                sign_method: Annotated[str, typer.Option(help="TIES sign vote: total or frequency.")] = "total",
                swap: Annotated[str | None, typer.Option(help="layer_swap: member index per layer, e.g. 0,0,1.")] = None,
                evaluate: Annotated[bool, typer.Option("--eval", help="Measure normalised accuracy on the members' tasks.")] = False,
                n: Annotated[int, typer.Option(min=1, help="Held-out examples per task for --eval.")] = 200,
                seed: int = 0, as_json: JsonOpt = False) -> None:
    """Merge skills in ΔW space into a new skill (diagnostics and merge error are stored)."""
    from .compose.measure import normalised_accuracy
    from .compose.ops import MergeSpec, merge_skills

    library = lib()
    skills = [library.get(r) for r in _csv(members)]
    try:
        w = [float(x) for x in _csv(weights)] if weights else None
        sw = [int(x) for x in _csv(swap)] if swap else None
    except ValueError:
        raise SkillError("--weights are numbers and --swap are integers, comma-separated") from None
    spec = MergeSpec(method=method, weights=w, density=density, rank=rank, seed=seed,
                     sign_method=sign_method, convention=convention, swap=sw)
    merged = merge_skills(new, skills, spec)
    base = library.base_of(skills[0])
    if evaluate:
        world = skills[0].recipe.get("world", "strings")
        merged.metrics["composition"] = normalised_accuracy(base, merged, skills, world, n=n, seed=seed)
    merged = library.add(merged)
    if as_json:
        return emit(merged.manifest())
    err_ = merged.metrics["merge_error"]
    out.print(f"stored {merged.ref} ({merged.kind}); merge error max {err_['max']:.4f} mean {err_['mean']:.4f}")
    diag = merged.metrics["diagnostics"]
    if diag["cosine"]:
        table("pairwise cosine of ΔW", ["pair", "cosine"], [[k, v] for k, v in diag["cosine"].items()])
        out.print(f"mean sign-conflict share per matrix: {diag['mean_sign_conflict']:.3f}")
    if evaluate:
        comp = merged.metrics["composition"]
        table("normalised accuracy (composed / member alone)", ["task", "composed", "alone", "normalised"],
              [[t, comp["composed"][t], comp["alone"][t], comp["normalised"][t]] for t in comp["alone"]])


@app.command("route")
def route_cmd(new: Annotated[str, typer.Argument(help="Name of the router skill.")],
              members: Annotated[str, typer.Option("--from", help="Comma-separated member skills.")],
              world: Annotated[str, typer.Option(help="World of the routing examples.")] = "strings",
              tasks: Annotated[str | None, typer.Option(help="Tasks to route over (default: the members' tasks).")] = None,
              steps: Annotated[int, typer.Option(min=1)] = 800,
              lr: Annotated[float, typer.Option(min=0.0)] = 2e-2,
              distil: Annotated[bool, typer.Option(help="Also store a static linear merge at the router's mean α.")] = False,
              n: Annotated[int, typer.Option(min=1, help="Held-out examples per task for the evaluation.")] = 200,
              seed: int = 0, as_json: JsonOpt = False) -> None:
    """Learn per-input routing over frozen skills (PSEC); only the router trains."""
    from .compose.measure import member_tasks, normalised_accuracy
    from .compose.ops import MergeSpec, merge_skills
    from .compose.route import distil_weights, train_router

    library = lib()
    skills = [library.get(r) for r in _csv(members)]
    task_list = _csv(tasks) if tasks else member_tasks(skills)
    if None in task_list:
        raise SkillError("some members have no task in their recipe: pass --tasks")
    base = library.base_of(skills[0])
    ui = Ui(as_json)
    with ui.bar(f"route {new}", steps) as step:
        router = train_router(new, base, skills, world, task_list, steps=steps, lr=lr, seed=seed,
                              progress=step)
    router = library.add(router)
    result = {"router": router.ref, "composition": normalised_accuracy(
        base, router, skills, world, n=n, seed=seed, lib=library)}
    if distil:
        static = library.add(merge_skills(f"{new}-distilled", skills,
                                          MergeSpec("linear", weights=distil_weights(router))))
        result["distilled"] = {"ref": static.ref, "composition": normalised_accuracy(
            base, static, skills, world, n=n, seed=seed, alone=result["composition"]["alone"])}
    library.add_result(router.ref, world, ",".join(task_list), result)
    if as_json:
        return emit(result)
    rows = []
    for t in result["composition"]["alone"]:
        row = [t, result["composition"]["alone"][t], result["composition"]["composed"][t],
               result["composition"]["normalised"][t]]
        if distil:
            row += [result["distilled"]["composition"]["normalised"][t]]
        rows.append(row)
    table(f"{router.ref}: normalised accuracy (composed / member alone)",
          ["task", "alone", "routed", "routed norm.", *(["distilled norm."] if distil else [])], rows)


# -- localize ------------------------------------------------------------------------
_Opt = typer.Option


@app.command("localize")
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
    from .localize.ops import GraftRecipe, localize

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


@app.command("overlap")
def overlap_cmd(skills: Annotated[str, typer.Argument(help="Comma-separated sparse skills a,b,c.")],
                as_json: JsonOpt = False) -> None:
    """Where skills live relative to each other: |γ_i ∩ γ_j| / |γ_j| for sparse skills."""
    from .localize.ops import overlap_skills

    library = lib()
    res = overlap_skills([library.get(r) for r in _csv(skills)])
    if as_json:
        return emit(res)
    refs = res["skills"]
    table("overlap |γ_row ∩ γ_col| / |γ_col|", ["skill", "size", *refs],
          [[r, size, *["n/a" if v is None else v for v in row]]
           for r, size, row in zip(refs, res["sizes"], res["matrix"], strict=True)])


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import warnings

    warnings.filterwarnings("ignore")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        app()
    except (SkillError, LibraryError, ValueError, FileNotFoundError) as e:
        err.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
