"""Library commands: bases, import/export, list, show, versions, lineage, tag, rm, verify, gc."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..catalog import CatalogDamaged, diagnose_file
from .core import JsonOpt, _home, app, base_app, emit, fmt_size, lib, out, table


# -- bases ---------------------------------------------------------------------------
@base_app.command("add")
def base_add(name: str,
             source: Annotated[Path, typer.Option("--from", help="A local Hugging Face model directory.")],
             kind: Annotated[str | None, typer.Option(help="causal, encoder or policy (default: from config).")] = None,
             as_json: JsonOpt = False) -> None:
    """Register a local Hugging Face model directory as a base (copied into the library)."""
    b = lib(create=True).add_base(name, source, kind)
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
PANEL = "Library"


@app.command("import", rich_help_panel=PANEL)
def import_cmd(directory: Path,
               name: Annotated[str, typer.Option(help="Name of the new skill.")],
               base: Annotated[str, typer.Option(help="Registered base the adapter was trained on.")],
               as_json: JsonOpt = False) -> None:
    """Import a PEFT LoRA adapter directory as a new skill version."""
    from ..peft_io import import_peft

    library = lib(create=True)
    skill, new = library.store(import_peft(directory, name, library.base(base)))
    if as_json:
        return emit(dict(skill.manifest(), new=new))
    if new:
        out.print(f"imported {skill.ref} ({skill.num_params():,} parameters)")
    else:
        out.print(f"{skill.ref} already holds this content; no new version")


@app.command("export", rich_help_panel=PANEL)
def export_cmd(ref: Annotated[str, typer.Argument(help="NAME[@VERSION|@ALIAS]")], directory: Path) -> None:
    """Export a LoRA skill as a PEFT adapter directory with a model card (a chain skill: its
    manifest as chain.json and each member as an adapter under members/)."""
    from ..peft_io import export_chain, export_peft

    library = lib()
    skill = library.get(ref)
    if skill.kind == "chain":
        members = [library.get(r) for r in skill.config["members"]]
        export_chain(skill, members, library.base_of(skill), directory, home=library.home)
    else:
        export_peft(skill, library.base_of(skill), directory, home=library.home)
    out.print(f"exported {skill.ref} to {directory}")


@app.command("list", rich_help_panel=PANEL)
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


@app.command("show", rich_help_panel=PANEL)
def show_cmd(ref: Annotated[str, typer.Argument(help="NAME[@VERSION|@ALIAS]")], as_json: JsonOpt = False) -> None:
    """Show a skill's manifest, metrics and lineage."""
    library = lib()
    row = library.resolve(ref)
    manifest = dict(row.manifest, tags=library.tags(row.name, row.version), size=row.size)
    if as_json:
        return emit(manifest)
    out.print(Text.assemble((f"{row.name}@{row.version}", "bold"),
                            f"  kind={row.kind}  base={row.base[:12]}  size={fmt_size(row.size)}  "
                            f"tags={','.join(manifest['tags']) or '-'}"))
    for key in ("created", "content_hash", "lineage", "recipe", "metrics", "config"):
        value = json.dumps(manifest.get(key), sort_keys=True, default=str)
        out.print(Text.assemble((key, "bold"), f": {value}"))  # data as text, never as markup


@app.command("versions", rich_help_panel=PANEL)
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


@app.command("lineage", rich_help_panel=PANEL)
def lineage_cmd(ref: str, as_json: JsonOpt = False) -> None:
    """Show the ancestry of a skill and the recipe that made each one."""
    rows = lib().lineage(ref)
    if as_json:
        return emit([{"depth": d, "ref": r, "recipe": rec} for d, r, rec in rows])
    for depth, r, recipe in rows:
        out.print("  " * depth + f"{r}  {recipe.get('method', '?') if not recipe.get('missing') else '(not in library)'}")


@app.command("tag", rich_help_panel=PANEL)
def tag_cmd(ref: Annotated[str, typer.Argument(help="NAME@VERSION")], alias: str) -> None:
    """Point an alias (a movable tag) at one version."""
    row = lib(write=True).tag(ref, alias)
    out.print(f"{row.name}@{alias} -> version {row.version}")


@app.command("rm", rich_help_panel=PANEL)
def rm_cmd(ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION")]) -> None:
    """Remove a version (or all versions) of a skill; `gc` frees the space."""
    rows = lib(write=True).rm(ref)
    out.print("removed " + ", ".join(f"{r.name}@{r.version}" for r in rows))


@app.command("verify", rich_help_panel=PANEL)
def verify_cmd(as_json: JsonOpt = False) -> None:
    """Check the catalog, re-hash every blob and base; exit 1 if anything is wrong."""
    try:
        problems = lib().verify()
    except CatalogDamaged:  # verify's job is to say what is damaged, not to fail
        problems = diagnose_file(_home() / "catalog.sqlite")
    if as_json:
        emit({"ok": not problems, "problems": problems})
    elif problems:
        table("damage", ["what", "problem"], [[p["what"], p["problem"]] for p in problems])
    else:
        out.print("library verified: the catalog is sound and every blob and base matches its hash")
    if problems:
        raise typer.Exit(1)


@app.command("gc", rich_help_panel=PANEL)
def gc_cmd(as_json: JsonOpt = False) -> None:
    """Remove blobs that no skill references (refused while `verify` finds a problem)."""
    r = lib(write=True).gc()
    if as_json:
        return emit(r)
    out.print(f"removed {r['blobs_removed']} blobs, freed {fmt_size(r['bytes_freed'])}")
    if r["left"]:
        out.print(f"left {len(r['left'])} entries skillbank did not make: "
                  + ", ".join(r["left"][:5]) + (" ..." if len(r["left"]) > 5 else ""), markup=False)
