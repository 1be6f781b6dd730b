"""Measure a family of bases (or one skill on each of them) the two ways a scaling study
needs: greedy decoding with every generation metric (exact match beside the continuous
ones) and PassUntil — both as find-or-make jobs, so a second study re-uses the first's
rows. ``fit_and_predict`` then holds out the largest member and predicts it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..library import Library
from ..run import Executor, ensure
from ..skill import canonical_json
from .jobs import eval_job, passuntil_job
from .passuntil import PassUntilConfig
from .scaling import bootstrap_prediction, fit_law, log_error, loglog, predict

GREEDY_KEYS = ("exact_match", "exact_match_stderr", "token_accuracy", "edit_distance",
               "mean_logprob")


def measure(lib: Library, subjects: Sequence[tuple[str, str]], world: str, tasks: Sequence[str],
            n: int, cfg: PassUntilConfig, executor: Executor,
            progress: Callable[[int, int], None] | None = None,
            n_greedy: int | None = None) -> list[dict[str, dict]]:
    """Per ``(base name, subject)`` pair: ``{task: {"greedy": {...}, "pass_until": {...}}}``:
    PassUntil on ``n`` held-out inputs, greedy decoding on ``n_greedy`` (default ``n``;
    seed ``cfg.seed``)."""
    jobs = []
    for base_name, subject in subjects:
        base = lib.base(base_name)
        for t in tasks:
            jobs.append(eval_job(subject, base, world, t, n_greedy or n, cfg.seed))
            jobs.append(passuntil_job(subject, base, world, t, n, cfg))
    done = ensure(executor, lib, jobs, progress=progress, what="measurement")
    rows = {r["id"]: r["metrics"] for r in lib.results()}
    out: list[dict[str, dict]] = []
    it = iter(done)
    for _ in subjects:
        cells: dict[str, dict] = {}
        for t in tasks:
            greedy, until = rows[next(it).result["result_id"]], rows[next(it).result["result_id"]]
            cells[t] = {"greedy": {k: greedy[k] for k in GREEDY_KEYS if k in greedy},
                        "pass_until": until}
        out.append(cells)
    return out


def fit_and_predict(params: Sequence[int], cells: Sequence[dict], seed: int = 0) -> dict:
    """Fit the task law on every member but the largest and predict the largest's PassUntil
    pass rate; beside it, whether greedy exact match could have been fitted at all.

    Two errors, since each is lenient where the other is strict: ``log_error`` =
    |Δ log p| (a factor on the pass rate: strict at small p, near 0 for any p close to 1)
    and ``loglog_error`` = |Δ log(−log p)| (a factor on −log p, about the failure rate
    1 − p near 1: strict there, lenient at small p); absent when the largest member's pass
    rate is 0 or 1."""
    pu = [c["pass_until"]["pass_rate"] for c in cells]
    em = [c["greedy"]["exact_match"] for c in cells]
    small = [i for i in range(len(cells) - 1) if 0 < pu[i] < 1]
    out: dict = {"pass_rate": [round(p, 6) for p in pu], "exact_match": em,
                 "parameters": list(params), "fitted_on": [params[i] for i in small],
                 "actual": pu[-1], "exact_match_smaller_max": max(em[:-1])}
    em_fit = [i for i in range(len(cells) - 1) if 0 < em[i] < 1]
    out["exact_match_fittable"] = len(em_fit) >= 3
    if len(small) < 3:
        out["error"] = (f"only {len(small)} smaller member(s) have a pass rate strictly between "
                        "0 and 1; a fit needs 3")
        return out
    fit = fit_law([params[i] for i in small], [pu[i] for i in small])
    pred = predict(fit, params[-1])
    boot = bootstrap_prediction([params[i] for i in small],
                                [[r["p"] for r in cells[i]["pass_until"]["per_instance"]] for i in small],
                                params[-1], seed=seed)
    out.update({"fit": {k: round(v, 4) if isinstance(v, float) else v for k, v in fit.items()},
                "predicted": pred["pass_rate"], "interval90": pred["interval"],
                "bootstrap": boot,
                "inside_interval": pred["interval"][0] <= pu[-1] <= pred["interval"][1]})
    if 0 < pu[-1] and pred["pass_rate"] > 0:
        out["log_error"] = round(log_error(pred["pass_rate"], pu[-1]), 4)
    if 0 < pu[-1] < 1:   # the error in the law's own space: −log p (the failure rate near 1)
        out["loglog_error"] = round(abs(pred["loglog"] - loglog(pu[-1])), 4)
    if out["exact_match_fittable"]:
        em_pred = predict(fit_law([params[i] for i in em_fit], [em[i] for i in em_fit]), params[-1])
        out["exact_match_predicted"] = em_pred["pass_rate"]
    return out


def family_members(lib: Library, family: str) -> list[dict]:
    """The stored members of ``family`` (bases ``FAMILY-WIDTHxDEPTH`` with a pretrain recipe),
    smallest first: ``{"size", "base", "parameters"}``."""
    from ..acquire.family import member_name, parameters
    from ..acquire.pretrain import SHAPE, BaseRecipe

    found = []
    for b in lib.bases():
        size = b.name[len(family) + 1:]
        recipe = b.meta.get("recipe") or {}
        if b.name == member_name(family, size) and SHAPE.match(size) and recipe.get("method") == "pretrain":
            fields = {k: v for k, v in recipe.items() if k != "method"}
            found.append({"size": size, "base": b.name, "parameters": parameters(BaseRecipe(**fields)),
                          "world": recipe.get("world")})
    return sorted(found, key=lambda m: m["parameters"])


def members_up_to(lib: Library, family: str, task: str, size: str) -> tuple[list[dict], int]:
    """The stored members of ``family`` a prediction for shape ``size`` measures (those
    smaller, and ``size`` itself when stored) and the parameters of ``size``; ValueError
    for an unknown family, shape or task."""
    from dataclasses import replace

    from ..acquire.family import parameters
    from ..acquire.pretrain import BaseRecipe, shape_of
    from ..worlds import get_world

    shape_of(size)
    members = family_members(lib, family)
    if not members:
        raise ValueError(f"no family {family!r}: no base named {family}-WIDTHxDEPTH "
                         "(make one with `skillbank base family`)")
    shared = {canonical_json({k: v for k, v in lib.base(m["base"]).meta["recipe"].items()
                              if k not in ("size", "steps")}) for m in members}
    if len(shared) != 1:
        raise ValueError(f"family {family!r} mixes recipes (its members differ in more than "
                         "size and steps): a law across them would not be one family's")
    worlds = {m["world"] for m in members}
    get_world(worlds.pop()).examples(task, 1, seed=0)   # an unknown task: before any job
    recipe = lib.base(members[0]["base"]).meta["recipe"]
    target = parameters(replace(BaseRecipe(**{k: v for k, v in recipe.items() if k != "method"}),
                                size=size))
    smaller = [m for m in members if m["parameters"] < target]
    if len(smaller) < 3:
        raise ValueError(f"a scaling-law fit needs at least 3 members smaller than {size}; "
                         f"family {family!r} has {len(smaller)}")
    return smaller + [m for m in members if m["size"] == size], target


def predict_size(lib: Library, family: str, task: str, size: str, n: int, cfg: PassUntilConfig,
                 executor: Executor, progress: Callable[[int, int], None] | None = None) -> dict:
    """The pass rate the law fitted on ``family``'s stored members smaller than ``size``
    predicts for a member of shape ``size`` (trained or not); its measured pass rate too
    when that member is stored. PassUntil rows are found or made (``members_up_to`` says
    which members, two jobs each)."""
    todo, target = members_up_to(lib, family, task, size)
    cells = measure(lib, [(m["base"], f"base:{m['base']}") for m in todo], todo[0]["world"] if todo
                    else "strings", [task], n, cfg, executor, progress)
    rates = [c[task]["pass_until"]["pass_rate"] for c in cells]
    smaller = [(m, p) for m, p in zip(todo, rates, strict=True) if m["size"] != size]
    usable = [(m["parameters"], p) for m, p in smaller if 0 < p < 1]
    if len(usable) < 3:
        raise ValueError(f"a scaling-law fit needs at least 3 members smaller than {size} with a "
                         f"pass rate strictly between 0 and 1 on {task!r}; family {family!r} has "
                         f"{len(usable)} (of {len(smaller)} smaller)")
    fit = fit_law([x for x, _ in usable], [p for _, p in usable])
    pred = predict(fit, target)
    out = {"family": family, "task": task, "size": size, "parameters": target,
           "predicted": pred["pass_rate"], "interval90": pred["interval"],
           "fit": {k: fit[k] for k in ("a", "b", "alpha", "b_stderr", "r2", "points")},
           "members": [{**m, "pass_rate": p, "exact_match": c[task]["greedy"]["exact_match"]}
                       for m, p, c in zip(todo, rates, cells, strict=True)]}
    if todo and todo[-1]["size"] == size:
        out["measured"] = rates[-1]
    return out
