"""The ``eval`` and ``passuntil`` job kinds: one subject on one task, its result row
stored; already stored when a row with the same subject, world, task and spec (n, seed,
base, data; for PassUntil also its settings) exists.

The result id comes back from the write that made it (``evaluate_cell``), so concurrent
jobs for other seeds can never be mistaken for this one."""

from __future__ import annotations

from collections.abc import Callable

from ..base import Base
from ..library import Library
from ..run import Executor, Job, register
from ..skill import SkillError, canonical_json
from ..worlds import get_world
from .suites import evaluate_cell, result_spec


def eval_job(subject: str, base: Base, world: str, task: str, n: int, seed: int,
             world_args: dict | None = None, label: str = "") -> Job:
    return EVAL.job({"subject": subject, "base": base.name, "world": world,
                     "world_args": dict(world_args or {}), "task": task, "n": n, "seed": seed},
                    label or f"eval {subject} {task}")


def _stored_row(lib: Library, spec: dict, result_spec_: dict) -> dict | None:
    """The stored result of ``spec``'s subject, world and task whose spec is ``result_spec_``."""
    want = canonical_json(result_spec_)
    for r in lib.results(spec["subject"]):
        if r["world"] == spec["world"] and r["task"] == spec["task"] \
                and canonical_json(r["spec"]) == want:
            return {"subject": spec["subject"], "task": spec["task"], "result_id": r["id"],
                    "new": False}
    return None


def _stored(lib: Library, spec: dict) -> dict | None:
    base = lib.base(spec["base"])
    return _stored_row(lib, spec, result_spec(base, spec["n"], spec["seed"], spec.get("world_args")))


def _run(worker, lib: Library, spec: dict) -> dict:
    base = lib.base(spec["base"])
    subject, task, n, seed = spec["subject"], spec["task"], spec["n"], spec["seed"]
    world_args = spec.get("world_args") or {}
    skills = [] if subject.startswith("base:") else [lib.get(subject)]
    world = get_world(spec["world"], **world_args)
    model = tok = None
    if base.kind == "causal" and world.kind != "classification" \
            and all(s.kind not in ("router", "chain") for s in skills):
        model, tok = worker.model(base, skills)  # the worker's cached base, skills applied
    metrics, rid = evaluate_cell(lib, base, subject, skills, spec["world"], world, task, n,
                                 seed, world_args, model, tok)
    if metrics is None:   # a classifier without a head for this task: not applicable
        return {"subject": subject, "task": task, "result_id": None, "applicable": False}
    key = "accuracy" if "accuracy" in metrics else "exact_match"
    return {"subject": subject, "task": task, "result_id": rid, key: metrics[key]}


EVAL = register("eval", _run, _stored)


def eval_matrix_on(executor: Executor, lib: Library, base: Base, refs: list[str], world: str,
                   tasks: list[str], n: int, seed: int, world_args: dict | None = None,
                   include_base: bool = True, progress: Callable[[int, int], None] | None = None,
                   ) -> dict[str, dict[str, dict]]:
    """``suites.eval_matrix`` as one job per subject × task on ``executor``: the same
    ``{subject: {task: metrics}}`` (None where a classifier has no head for the task) and
    the same result rows in the library."""
    subjects = ([f"base:{base.name}"] if include_base else []) + list(refs)
    jobs = [eval_job(s, base, world, t, n, seed, world_args) for s in subjects for t in tasks]
    done = executor.run_all(lib.home, jobs, "evaluation", progress=progress)
    rows = {r["id"]: r["metrics"] for r in lib.results()}
    out: dict[str, dict[str, dict]] = {s: {} for s in subjects}
    for r in done:
        rid = r.result["result_id"]
        out[r.job.spec["subject"]][r.job.spec["task"]] = None if rid is None else rows[rid]
    return out


def passuntil_job(subject: str, base: Base, world: str, task: str, n: int, cfg,
                  world_args: dict | None = None) -> Job:
    """PassUntil (``evaluate.passuntil``) of one subject on ``n`` held-out inputs of ``task``."""
    return PASSUNTIL.job({"subject": subject, "base": base.name, "world": world,
                          "world_args": dict(world_args or {}), "task": task, "n": n,
                          "config": cfg.as_dict()}, f"pass-until {subject} {task}")


def passuntil_spec(base: Base, spec: dict) -> dict:
    return result_spec(base, spec["n"], spec["config"]["seed"], spec.get("world_args"),
                       metric="pass-until", config=spec["config"])


def _pu_stored(lib: Library, spec: dict) -> dict | None:
    return _stored_row(lib, spec, passuntil_spec(lib.base(spec["base"]), spec))


def _pu_run(worker, lib: Library, spec: dict) -> dict:
    from .passuntil import PassUntilConfig, pass_until
    from .suites import load_subject

    base = lib.base(spec["base"])
    subject = spec["subject"]
    skills = [] if subject.startswith("base:") else [lib.get(subject)]
    world = get_world(spec["world"], **(spec.get("world_args") or {}))
    if base.kind != "causal" or world.kind == "classification":
        raise SkillError("PassUntil samples answers from a generator; "
                         f"{base.name} on {spec['world']} is a classifier")
    if any(s.kind == "chain" for s in skills):
        raise SkillError(f"PassUntil samples one model; {subject} is a chain of calls")
    if all(s.kind != "router" for s in skills):
        model, tok = worker.model(base, skills)
    else:
        model, tok = load_subject(lib, base, skills), base.load_tokenizer()
    found = pass_until(model, tok, world, spec["task"], spec["n"], PassUntilConfig(**spec["config"]))
    rid = lib.add_result(subject, spec["world"], spec["task"], found, passuntil_spec(base, spec))
    return {"subject": subject, "task": spec["task"], "result_id": rid,
            "pass_rate": found["pass_rate"], "draws": found["draws"]}


PASSUNTIL = register("passuntil", _pu_run, _pu_stored)


def passuntil_matrix_on(executor: Executor, lib: Library, base: Base, subjects: list[str],
                        world: str, tasks: list[str], n: int, cfg, world_args: dict | None = None,
                        progress: Callable[[int, int], None] | None = None) -> dict[str, dict[str, dict]]:
    """``{subject: {task: PassUntil result}}``, one find-or-make job per cell."""
    from ..run import ensure

    jobs = [passuntil_job(s, base, world, t, n, cfg, world_args) for s in subjects for t in tasks]
    done = ensure(executor, lib, jobs, progress=progress, what="PassUntil")
    rows = {r["id"]: r["metrics"] for r in lib.results()}
    out: dict[str, dict[str, dict]] = {s: {} for s in subjects}
    for r in done:
        out[r.job.spec["subject"]][r.job.spec["task"]] = rows[r.result["result_id"]]
    return out
