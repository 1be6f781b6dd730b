"""Job kinds and the worker state that runs them: what every executor calls.

A job is ``(kind, spec)``: the spec names the library home, skills by ref and data by
world/task/seed, never tensors. A :class:`Worker` lives as long as its process (an
in-process loop, a pool process or a Ray actor) and keeps what is costly to rebuild: an
open library per home and each base model it has loaded, so a stream of evaluation jobs
on one base pays for loading the base once.

The kinds call the existing functions: ``train`` → ``acquire.lora.train_lora`` +
``Library.add``; ``compose`` → ``compose.ops.merge_skills`` + ``Library.add``; ``eval``
→ ``evaluate.suites.evaluate_model`` + ``Library.add_result`` (with the spec row that
``eval_matrix`` writes, so the two count as the same result when a sweep resumes);
``verify`` → ``transfer.rank.verify_run`` (one fine-tune of ``transfer --verify``; it
stores nothing, the result is returned); ``localize`` → ``repro.graft.ensure_graft`` (a
stored graft of the skill made by the same recipe and ``n_eval`` is re-used, else
``localize.ops.localize`` + ``Library.add`` as ``SKILL-graft-SPARSITY``); ``continual``
→ ``acquire.continual.run_continual`` (one strategy's whole sequence).
"""

from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..base import Base, apply_skill
from ..library import Library
from ..skill import Skill, SkillError

PROBE_PREFIX = "probe-"


class HomeNotShared(SkillError):
    """A worker cannot see the library home the driver uses."""


def probe_path(home: Path, token: str) -> Path:
    # named `<pid>-…` like every tmp file, so `gc` clears it once the driver has exited
    return home / "tmp" / token


def write_probe(home: Path) -> str:
    """Leave a file in ``home`` that a worker must see to prove it shares the storage."""
    token = f"{os.getpid()}-{PROBE_PREFIX}{os.urandom(6).hex()}"
    probe_path(home, token).write_text(socket.gethostname())
    return token


def check_home(home: str | Path, probe: str | None) -> None:
    """Raise :class:`HomeNotShared` unless this process sees the driver's library home.

    Checked before the library is opened: ``Library.open`` would create an empty home."""
    home = Path(home)
    where = f"worker {socket.gethostname()} (pid {os.getpid()})"
    hint = ("the library home must be on storage every worker shares (a network file "
            "system mounted at the same path), or run with --executor local")
    if not (home / "catalog.sqlite").is_file():
        raise HomeNotShared(f"{where} cannot see the library home {home}: {hint}")
    if probe is not None and not probe_path(home, probe).is_file():
        raise HomeNotShared(f"{where} sees a different directory at {home} than the driver "
                            f"(the driver's probe file is missing): {hint}")


class Worker:
    """Per-process state reused across jobs: open libraries and loaded base models."""

    def __init__(self, threads: int | None = None):
        if threads:
            # Ray sets OMP_NUM_THREADS=1 for tasks without num_cpus; say what we want
            torch.set_num_threads(threads)
        self.libs: dict[str, Library] = {}
        self.models: dict[str, tuple[Any, Any, dict, tuple]] = {}  # fingerprint → cached

    def library(self, home: str, probe: str | None) -> Library:
        if home not in self.libs:
            check_home(home, probe)
            self.libs[home] = Library.open(home)
        return self.libs[home]

    def check(self, home: str, probe: str | None) -> dict:
        """Open ``home`` (raising if it is not shared); who and where this worker is."""
        self.library(home, probe)
        return {"host": socket.gethostname(), "pid": os.getpid(),
                "threads": torch.get_num_threads()}

    def model(self, base: Base, skills: list[Skill]):
        """The base with ``skills`` applied, equal to ``base.load_model(skills)``: the base
        is loaded once per worker and its pristine weights restored between subjects."""
        refs = tuple(s.ref for s in skills)
        if base.fingerprint not in self.models:
            model = base.load_model()
            pristine = {k: v.clone() for k, v in model.state_dict().items()}
            self.models[base.fingerprint] = (model, base.load_tokenizer(), pristine, ())
        model, tok, pristine, applied = self.models[base.fingerprint]
        if applied != refs:
            model.load_state_dict(pristine)
            self.models[base.fingerprint] = (model, tok, pristine, ())  # consistent if it fails
            for s in skills:
                apply_skill(model, s, base)
            self.models[base.fingerprint] = (model, tok, pristine, refs)
        return model, tok

    def run(self, kind: str, spec: dict) -> dict:
        lib = self.library(spec["home"], spec.get("probe"))
        return job_function(kind)(self, lib, spec)


# -- kinds --------------------------------------------------------------------------------
def train_job(worker: Worker, lib: Library, spec: dict) -> dict:
    """Train one LoRA skill (resuming from its checkpoint if a worker died) and store it."""
    from ..acquire.lora import LoraRecipe, train_lora

    base = lib.base(spec["base"])
    recipe = LoraRecipe(**spec["recipe"])
    skill = lib.add(train_lora(spec["name"], base, recipe, lib.home / "checkpoints"))
    return {"ref": skill.ref, "new": bool(lib.last_add_new),
            "final_loss": skill.metrics["train"]["final_loss"]}


def compose_job(worker: Worker, lib: Library, spec: dict) -> dict:
    """Merge member skills (by ref) into a new skill and store it."""
    from ..compose.ops import MergeSpec, merge_skills

    members = [lib.get(r) for r in spec["members"]]
    skill = lib.add(merge_skills(spec["name"], members, MergeSpec(**spec["merge"])))
    return {"ref": skill.ref, "new": bool(lib.last_add_new),
            "merge_error": skill.metrics["merge_error"]["max"]}


def eval_spec(base: Base, n: int, seed: int, world_args: dict | None) -> dict:
    """The spec row of a stored result, exactly as ``eval_matrix`` writes it."""
    return {"n": n, "seed": seed, "base": base.fingerprint, "world_args": world_args or {}}


def eval_job(worker: Worker, lib: Library, spec: dict) -> dict:
    """Evaluate one subject (``base:<name>`` or a skill ref) on one task; store the row."""
    from ..evaluate.suites import eval_matrix, evaluate_model
    from ..worlds import get_world

    base = lib.base(spec["base"])
    subject, task, n, seed = spec["subject"], spec["task"], spec["n"], spec["seed"]
    world_args = spec.get("world_args") or {}
    skills = [] if subject.startswith("base:") else [lib.get(subject)]
    world = get_world(spec["world"], **world_args)
    static = all(s.kind != "router" for s in skills)
    if base.kind == "causal" and static and getattr(world, "kind", "") != "classification":
        model, tok = worker.model(base, skills)
        metrics = evaluate_model(model, tok, world, task, n, seed)
        rid = lib.add_result(subject, spec["world"], task, metrics,
                             eval_spec(base, n, seed, world_args))
    else:  # routers and classification: the general path, which loads the model itself
        cell = eval_matrix(lib, base, skills, spec["world"], [task], n, seed, world_args,
                           include_base=not skills)
        metrics = next(iter(cell.values()))[task]
        rid = [r["id"] for r in lib.results(subject) if r["task"] == task][-1]
    key = "accuracy" if "accuracy" in metrics else "exact_match"
    return {"subject": subject, "task": task, "result_id": rid, key: metrics[key]}


def verify_job(worker: Worker, lib: Library, spec: dict) -> dict:
    """Fine-tune a target task from one candidate skill (by ref), or from scratch with its
    rank, alpha and modules, and evaluate it: one run of ``transfer.rank.verify``."""
    from ..transfer.rank import verify_run
    from ..worlds import get_world

    base = lib.base(spec["base"])
    world_args = spec.get("world_args") or {}
    return verify_run(base, lib.get(spec["source"]), bool(spec["scratch"]),
                      get_world(spec["world"], **world_args), base.load_tokenizer(),
                      spec["world"], spec["task"], spec["steps"], spec["n_eval"], spec["seed"],
                      spec["lr"], spec["batch_size"], world_args)


class _QuietUi:
    """The ``ui`` the library's long-running functions take, in a worker: no bars, no
    messages. ``worked`` records whether a bar was opened, i.e. whether something was made
    rather than re-used (``ensure_graft`` opens one only to localize)."""

    def __init__(self):
        self.worked = False

    @contextmanager
    def bar(self, desc: str, total: int):
        self.worked = True
        yield lambda step, loss: None

    def say(self, msg: str) -> None:
        pass


def localize_job(worker: Worker, lib: Library, spec: dict) -> dict:
    """Graft one skill (by ref) at one sparsity with a full ``GraftRecipe`` (as
    ``repro.graft.recipe_for`` fills it in) and store it, or re-use the stored graft."""
    from ..localize.ops import GraftRecipe
    from ..repro.graft import ensure_graft

    skill = lib.get(spec["source"])
    ui = _QuietUi()
    g = ensure_graft(lib, lib.base(spec["base"]), skill, GraftRecipe(**spec["recipe"]),
                     int(spec["n_eval"]), ui)
    m = g.metrics["localization"]
    return {"ref": g.ref, "new": ui.worked, "size": m["size"], "fraction": m["fraction"],
            "relative_gain": m["relative_gain"]}


def continual_job(worker: Worker, lib: Library, spec: dict) -> dict:
    """One strategy's whole task sequence: ``acquire.continual.run_continual`` for the
    ``ContinualConfig`` in ``spec["config"]`` (a dict) on base ``spec["base"]`` (by name),
    with the optional joint reference ``spec["joint"]`` (accuracy per task). It stores the
    skills and the result as in-process; the run's fields (R, b, metrics, refs) come back."""
    from dataclasses import asdict

    from ..acquire.continual import ContinualConfig, run_continual

    cfg = ContinualConfig(**spec["config"])
    run = run_continual(lib, lib.base(spec["base"]), cfg, _QuietUi(),
                        joint=spec.get("joint"))
    return asdict(run)


KINDS: dict[str, Callable[[Worker, Library, dict], dict]] = {
    "train": train_job, "compose": compose_job, "eval": eval_job, "verify": verify_job,
    "localize": localize_job, "continual": continual_job,
}


def job_function(kind: str) -> Callable[[Worker, Library, dict], dict]:
    """A built-in kind, or ``package.module:function`` importable on every worker."""
    if kind in KINDS:
        return KINDS[kind]
    module, sep, name = kind.partition(":")
    if not sep:
        raise SkillError(f"unknown job kind {kind!r}; known: {', '.join(KINDS)} or module:function")
    return getattr(importlib.import_module(module), name)
