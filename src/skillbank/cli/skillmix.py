"""Measuring composition (``skillmix``) and output-space composition (``upscale``)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..skill import SkillError
from .core import JsonOpt, Ui, app, csv_list, emit, lib, table


def _ks(value: str) -> list[int]:
    try:
        ks = [int(k) for k in csv_list(value)]
    except ValueError:
        raise SkillError(f"--k expects comma-separated integers, got {value!r}") from None
    if any(k < 1 for k in ks):
        raise SkillError(f"every k must be at least 1, got {value!r}")
    return ks


def _pairs(value: str | None) -> set[tuple[str, str]]:
    out = set()
    for item in csv_list(value) if value else []:
        parts = item.split("+")
        if len(parts) != 2 or not all(parts):
            raise SkillError(f"a pair is written a+b, got {item!r}")
        out.add((parts[0], parts[1]))
    return out


PANEL = "Compose"


@app.command("skillmix", rich_help_panel=PANEL)
def skillmix_cmd(
        skill: Annotated[str | None, typer.Option(
            "--skill", help="Score this skill (NAME or NAME@VERSION) answering each whole chain 'a+b+c:x=' in one go.")] = None,
        chain_call: Annotated[str | None, typer.Option(
            "--chain-call", help="Score these single-task skills chained one call at a time "
                                 "(comma-separated; each skill's recipe task is its primitive; "
                                 "a call's output is the next call's input).")] = None,
        base: Annotated[str | None, typer.Option(help="Base (default: the skills' base); alone, scores the base.")] = None,
        world: Annotated[str, typer.Option(help="A world whose tasks chain with '+' (strings).")] = "strings",
        k: Annotated[str, typer.Option("--k", help="Chain lengths, comma-separated.")] = "1,2,3,4",
        primitives: Annotated[str | None, typer.Option(
            help="Primitives to chain (default: the --chain-call skills' tasks, else "
                 "rot,shift,dedup,drop,swap,dup).")] = None,
        with_pairs: Annotated[str | None, typer.Option(
            "--with-pairs", help="Only chains holding one of these adjacent pairs, e.g. rot+dup,swap+shift.")] = None,
        without_pairs: Annotated[str | None, typer.Option(
            "--without-pairs", help="Only chains holding none of these adjacent pairs.")] = None,
        n: Annotated[int, typer.Option(min=1, help="Chains (each with one held-out input) per k.")] = 100,
        seed: Annotated[int, typer.Option(help="Seed for chains and inputs.")] = 0,
        as_json: JsonOpt = False) -> None:
    """Skill-Mix: how well a skill (or call-by-call chaining) composes k primitives.

    Ratio of Full Marks (whole chain exactly right) and Skill Fraction (most steps whose in-order application explains the answer) for ordered chains
    of k distinct primitives, plus the mean edit distance to the target; call-by-call runs
    also report call accuracy (each call judged on the input it got). Results go to the
    library as task ``skillmix:k=K``."""
    from ..evaluate.skillmix import (
        DEFAULT_PRIMITIVES,
        CallByCall,
        OneShot,
        check_chain_world,
        skill_mix,
        touches,
    )
    from ..evaluate.suites import load_subject
    from ..worlds import get_world

    if skill and chain_call:
        raise SkillError("give --skill or --chain-call, not both")
    library = lib(create=True)
    w = get_world(world)
    check_chain_world(w)
    ks = _ks(k)
    held_in, held_out = _pairs(with_pairs), _pairs(without_pairs)
    if skill:
        loaded = [library.get(skill)]
    elif chain_call:
        loaded = [library.get(r) for r in csv_list(chain_call)]
    elif base:
        loaded = []
    else:
        raise SkillError("give --skill, --chain-call, or --base (to score the base alone)")
    b = library.base(base) if base else library.base_of(loaded[0])
    tok = b.load_tokenizer()
    if chain_call:
        tasks = [s.recipe.get("task") for s in loaded]
        bad = [s.ref for s, t in zip(loaded, tasks, strict=True) if t not in w.tasks()]
        if bad:
            raise SkillError(f"--chain-call needs single-primitive skills; {', '.join(bad)} "
                             f"have no primitive task of world {world!r}")
        runner = CallByCall({t: load_subject(library, b, [s]) for s, t in zip(loaded, tasks, strict=True)}, tok)
        prims = csv_list(primitives) if primitives else tasks
        subject = "chain-call:" + ",".join(s.ref for s in loaded)
    else:
        runner = OneShot(load_subject(library, b, loaded), tok)
        prims = csv_list(primitives) if primitives else list(DEFAULT_PRIMITIVES)
        subject = loaded[0].ref if loaded else f"base:{b.name}"
    if max(ks) > len(prims):
        raise SkillError(f"k = {max(ks)} needs at least {max(ks)} primitives; have {len(prims)}")

    def keep(chain) -> bool:
        return (not held_in or touches(chain, held_in)) and not touches(chain, held_out)

    with Ui(as_json).bar("skill-mix", len(ks)) as step:
        res = skill_mix(runner, w, prims, ks, n, seed, keep, progress=lambda d: step(d, None))
    for kk, m in res.items():
        if m is not None:
            library.add_result(subject, world, f"skillmix:k={kk}", m,
                               {"n": n, "seed": seed, "primitives": prims, "base": b.fingerprint,
                                "with_pairs": sorted(held_in), "without_pairs": sorted(held_out)})
    if as_json:
        return emit({"subject": subject, "world": world, "primitives": prims, "seed": seed, "n": n,
                     "results": res})
    calls = any(m and "call_accuracy" in m for m in res.values())
    rows = [[kk, "no chain" if m is None else m["n"],
             *(["—"] * 3 if m is None else
               [f"{m['ratio_of_full_marks']:.3f}±{m['ratio_of_full_marks_stderr']:.3f}",
                f"{m['skill_fraction']:.3f}±{m['skill_fraction_stderr']:.3f}", m["edit_distance"]]),
             *([("—" if m is None else m.get("call_accuracy", "—"))] if calls else [])]
            for kk, m in res.items()]
    table(f"skill-mix: {subject} on {world} ({', '.join(prims)})",
          ["k", "n", "ratio of full marks", "skill fraction", "edit distance",
           *(["call accuracy"] if calls else [])], rows)


@app.command("upscale", rich_help_panel=PANEL)
def upscale_cmd(
        skill: Annotated[str, typer.Option("--skill", help="Skill(s) made on the small base, comma-separated.")],
        large_base: Annotated[str, typer.Option("--large-base", help="The larger base to up-scale onto (same vocabulary).")],
        task: Annotated[str, typer.Option(help="Task to score on (held-out inputs).")],
        small_base: Annotated[str | None, typer.Option(
            "--small-base", help="The skills' base (default: the first skill's base).")] = None,
        world: Annotated[str, typer.Option(help="World of the task.")] = "strings",
        weight: Annotated[str, typer.Option(help="Weight per skill, comma-separated (default 1 each).")] = "",
        n: Annotated[int, typer.Option(min=1, help="Held-out examples.")] = 100,
        seed: int = 0, as_json: JsonOpt = False) -> None:
    """EFT up-scaling: move a small base's skill onto a larger base by logit arithmetic.

    Decodes log p = log p_large + Σ w·(log p_small+skill − log p_small), renormalised per
    token, greedily; print exact match and the smooth measures of the
    large base alone, the small base, the small base with the skill(s), and the up-scaled
    composition."""
    from ..base import check_base
    from ..compose.logits import check_shared_vocab, upscale_eval
    from ..worlds import get_world

    library = lib(write=True)
    skills = [library.get(r) for r in csv_list(skill)]
    try:
        weights = [float(x) for x in csv_list(weight)] if weight else [1.0] * len(skills)
    except ValueError:
        raise SkillError(f"--weight expects comma-separated numbers, got {weight!r}") from None
    if len(weights) != len(skills):
        raise SkillError(f"{len(skills)} skill(s) but {len(weights)} weight(s)")
    small = library.base(small_base) if small_base else library.base_of(skills[0])
    large = library.base(large_base)
    for s in skills:  # refuse before any progress bar starts
        check_base(s, small)
    check_shared_vocab(small.load_tokenizer(), large.load_tokenizer(),
                       names=(f"small base {small.name}", f"large base {large.name}"))
    with Ui(as_json).bar("up-scaled decoding", n) as step:
        res = upscale_eval(small, large, skills, weights, get_world(world), task, n=n, seed=seed,
                           progress=lambda d: step(d, None))
    if as_json:
        return emit({"small_base": small.name, "large_base": large.name, "skills": [s.ref for s in skills],
                     "weights": weights, "world": world, "task": task, "n": n, "seed": seed, "results": res})
    table(f"EFT up-scaling of {', '.join(s.ref for s in skills)} from {small.name} onto {large.name} "
          f"({task}, {n} held-out)",
          ["model", "exact match", "token accuracy", "edit distance", "mean log-prob"],
          [[who, f"{m['exact_match']:.3f}±{m['exact_match_stderr']:.3f}", m["token_accuracy"],
            m["edit_distance"], m["mean_logprob"]] for who, m in res.items()])
