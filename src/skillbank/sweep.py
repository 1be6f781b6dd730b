"""Declarative sweeps: skills to train and localize, compositions to build, evaluations to run.

A sweep config (YAML or a dict)::

    base: demo                  # a registered base
    world: strings              # world of every train and eval job (default strings)
    world_args: {}
    train:                      # LoRA skills: any field of acquire.lora.LoraRecipe
      - {name: rot, task: rot, steps: 300}
    localize:                   # grafts: one job per sparsity, any field of GraftRecipe
      - {skill: rot, sparsity: [0.001, 0.01], steps: 100}   # n_eval: held-out (200)
    compose:                    # merges: any field of compose.ops.MergeSpec, members in `from`
      - {name: rot-shift, from: [rot, shift], method: ties, density: 0.5}
    eval:                       # every subject × task × seed; `base` is the base alone
      subjects: [base, rot, rot-shift]
      tasks: [rot, shift]
      n: 200
      seeds: [0]                # or seed: 0

It runs in four stages (train, localize, compose, eval), each a batch of independent jobs
on one executor; skills are named by name in the config and by ``name@version`` in the
jobs, resolved when their stage starts. A localize entry grafts the latest version of
``skill`` at each ``sparsity`` (``localize.ops.localize``, the recipe filled in from the
skill as ``localize.jobs.recipe_for`` does) and stores it as ``SKILL-graft-SPARSITY``, the
name ``repro graft`` uses, so compose and eval entries can name the grafts. Resumable: every
job goes through ``run.ensure``, so it is skipped when its kind finds its output stored (a
skill of the same name, base and recipe; a graft with the same recipe, source and
``n_eval``; a result with the same subject, world, task and spec).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from .acquire.jobs import train_job
from .acquire.lora import LoraRecipe
from .compose.jobs import compose_job
from .compose.ops import MergeSpec
from .evaluate.jobs import eval_job
from .fields import build, check_size
from .library import Library, LibraryError
from .localize.jobs import localize_job
from .localize.ops import GraftRecipe
from .run import Executor, Job, JobResult, ensure
from .skill import SkillError, check_name

SECTIONS = {"base", "world", "world_args", "train", "localize", "compose", "eval"}


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a sweep config from YAML; a one-line SkillError for anything malformed."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SkillError(f"{path}: no such sweep config")
    try:
        config = check_size(yaml.safe_load(path.read_text()), str(path))
    except RecursionError:
        raise SkillError(f"{path}: nested too deeply") from None
    except UnicodeDecodeError:
        raise SkillError(f"{path}: not UTF-8 text, so not YAML") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SkillError(f"{path}: malformed YAML{where}") from None
    if not isinstance(config, dict):
        keys = ", ".join(sorted(SECTIONS))
        raise SkillError(f"{path}: a sweep config is a mapping with keys {keys}")
    return config


def _list(value: Any, what: str, scalar_ok: bool = False) -> list:
    if scalar_ok and not isinstance(value, list | dict):
        return [value]
    if not isinstance(value, list):
        raise SkillError(f"sweep {what}: expected a list, got {value!r}"[:200])
    return value


def _int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SkillError(f"sweep {what}: expected an integer ≥ {minimum}, got {value!r}"[:200])
    return value


def _entries(config: dict, section: str) -> list[dict]:
    items = config.get(section) or []
    if not isinstance(items, list) or not all(isinstance(x, dict) and "name" in x for x in items):
        raise SkillError(f"sweep `{section}` is a list of mappings, each with a `name`")
    return items


LOCALIZE_KEYS = {"skill", "sparsity", "n_eval"}  # besides the fields of GraftRecipe


def _sparsities(value: Any, what: str) -> list[float]:
    items = value if isinstance(value, list) else [value]
    try:
        return list(dict.fromkeys(float(x) for x in items))
    except (TypeError, ValueError):
        raise SkillError(f"{what}: sparsity is a number or a list of numbers, "
                         f"got {value!r}") from None


class Plan:
    """The jobs of one sweep, stage by stage, against one library."""

    def __init__(self, lib: Library, config: dict[str, Any]):
        unknown = sorted(set(config) - SECTIONS)
        if unknown:
            raise SkillError(f"sweep config: unknown key(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(SECTIONS))}")
        if "base" not in config:
            raise SkillError("sweep config needs `base`: a registered base")
        self.lib, self.config = lib, config
        self.base = lib.base(str(config["base"]))
        self.world = str(config.get("world", "strings"))
        if not isinstance(config.get("world_args") or {}, dict):
            raise SkillError("sweep `world_args` is a mapping of the world's arguments")
        self.world_args = dict(config.get("world_args") or {})
        from .worlds import get_world

        self._world = get_world(self.world, **self.world_args)  # unknown world: an error now
        ev = config.get("eval") or {}
        if not isinstance(ev, dict):
            raise SkillError("sweep `eval` is a mapping: subjects, tasks, n, seeds")
        self.subjects = list(dict.fromkeys(check_name(str(s), "eval subject")
                                           for s in _list(ev.get("subjects", ["base"]), "eval subjects")))
        self.tasks = list(dict.fromkeys(self._task(t, "eval") for t in _list(ev.get("tasks", []), "eval tasks")))
        if ev and not self.tasks:
            raise SkillError("sweep `eval` needs `tasks`")
        self.n = _int(ev.get("n", 200), "eval n", 1)
        seeds = ev.get("seeds", [ev.get("seed", 0)])
        self.seeds = list(dict.fromkeys(_int(s, "eval seeds", 0) for s in _list(seeds, "eval seeds", True)))
        self.train_entries = _entries(config, "train")
        self.compose_entries = _entries(config, "compose")
        self.localize_entries = self._localize_entries(config.get("localize") or [])
        self.train_specs = [self._train_spec(e) for e in self.train_entries]  # validate now
        for entry in self.compose_entries:  # every merge checked before the first job runs
            self._merge(entry)

    def _task(self, task: Any, what: str) -> str:
        """``task`` if the sweep's world knows it (one-line error otherwise, before any job)."""
        if not isinstance(task, str):
            raise SkillError(f"{what}: a task is a name, got {task!r}")
        self._world.examples(task, 1, seed=0)
        return task

    def _merge(self, entry: dict) -> tuple[str, list[str], MergeSpec]:
        name = check_name(str(entry["name"]), "compose name")
        members = _list(entry.get("from"), f"compose {name}: `from`")
        if not members or not all(isinstance(m, str) for m in members):
            raise SkillError(f"compose {name}: `from` is a list of skill names")
        kw = {k: v for k, v in entry.items() if k not in ("name", "from")}
        merge = build(MergeSpec, f"compose {name}", kw)
        try:
            merge.check(len(members))
        except SkillError as e:
            raise SkillError(f"compose {name}: {e}") from None
        return name, members, merge

    @property
    def total(self) -> int:
        n_eval = len(self.subjects) * len(self.tasks) * len(self.seeds)
        n_loc = sum(len(e["sparsity"]) for e in self.localize_entries)
        return len(self.train_entries) + n_loc + len(self.compose_entries) + n_eval

    def _localize_entries(self, items: Any) -> list[dict]:
        """Validated now (fields, sparsities); the skills are resolved when the stage starts."""
        if not isinstance(items, list) or not all(isinstance(x, dict) and "skill" in x
                                                  for x in items):
            raise SkillError("sweep `localize` is a list of mappings, each with a `skill`")
        known = {f.name for f in fields(GraftRecipe)} | LOCALIZE_KEYS
        entries = []
        for x in items:
            what = f"localize {x['skill']}"
            unknown = sorted(set(x) - known)
            if unknown:
                raise SkillError(f"{what}: unknown field(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(sorted(known))}")
            sparsities = _sparsities(x.get("sparsity", 0.01), what)
            rest = {k: v for k, v in x.items() if k not in LOCALIZE_KEYS}
            for sp in sparsities:  # every value checked before any job runs
                try:
                    build(GraftRecipe, what, {**rest, "sparsity": sp}).check()
                except TypeError as e:
                    raise SkillError(f"{what}: {e}") from None
            entries.append({"skill": str(x["skill"]), "sparsity": sparsities,
                            "n_eval": _int(x.get("n_eval", 200), f"{what}: n_eval", 1),
                            "fields": rest})
        return entries

    def _train_spec(self, entry: dict) -> dict:
        check_name(str(entry["name"]), "skill name")
        kw = {k: v for k, v in entry.items() if k != "name"}
        kw.setdefault("world", self.world)
        kw.setdefault("world_args", self.world_args)
        recipe = build(LoraRecipe, f"train {entry['name']}", kw)
        from .worlds import get_world

        world = get_world(recipe.world, **recipe.world_args)
        for task in recipe.task.split(","):  # a comma-separated task is a mixture
            world.examples(task, 1, seed=0)  # an unknown task: an error before any job
        return {"name": str(entry["name"]), "base": self.base.name, "recipe": asdict(recipe)}

    def train(self) -> tuple[list[Job], list[JobResult]]:
        return [train_job(spec["name"], self.base, LoraRecipe(**spec["recipe"]))
                for spec in self.train_specs], []

    def localize(self) -> tuple[list[Job], list[JobResult]]:
        """The graft jobs, and a failed result for each whose skill is not in the library."""
        jobs, failed = [], []
        for entry in self.localize_entries:
            try:
                skill = self.lib.get(self._ref(entry["skill"]))
            except LibraryError as e:
                for sp in entry["sparsity"]:
                    job = Job("localize", {"source": entry["skill"], "sparsity": sp},
                              f"localize {entry['skill']}-graft-{sp:g}")
                    failed.append(JobResult(job, "failed", error=str(e), attempts=0))
                continue
            jobs += [localize_job(self.base, skill, sp, entry["n_eval"], **entry["fields"])
                     for sp in entry["sparsity"]]
        return jobs, failed

    def compose(self) -> tuple[list[Job], list[JobResult]]:
        jobs, failed = [], []
        for entry in self.compose_entries:
            name, names, merge = self._merge(entry)
            try:
                members = [self._ref(m) for m in names]
            except LibraryError as e:
                job = Job("compose", {"name": name, "members": []}, f"compose {name}")
                failed.append(JobResult(job, "failed", error=str(e), attempts=0))
                continue
            jobs.append(compose_job(name, members, merge, self.base))
        return jobs, failed

    def _ref(self, name: str) -> str:
        row = self.lib.resolve(name)
        return f"{row.name}@{row.version}"

    def eval(self) -> tuple[list[Job], list[JobResult]]:
        jobs, failed = [], []
        for subject in self.subjects:
            for task in self.tasks:
                for seed in self.seeds:
                    label = f"eval {subject} {task} seed {seed}"
                    try:
                        ref = f"base:{self.base.name}" if subject == "base" else self._ref(subject)
                    except LibraryError as e:
                        job = Job("eval", {"subject": subject, "task": task, "seed": seed}, label)
                        failed.append(JobResult(job, "failed", error=str(e), attempts=0))
                        continue
                    jobs.append(eval_job(ref, self.base, self.world, task, self.n, seed,
                                         self.world_args, label))
        return jobs, failed


def run_sweep(lib: Library, config: dict[str, Any], executor: Executor,
              progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run (or resume) a sweep; ``progress(done, total)`` after every job.

    Returns a summary: counts, wall time, jobs per second of the jobs that ran, and one
    entry per job (status ``done``, ``skipped`` or ``failed`` with its error)."""
    plan = Plan(lib, config)
    total, count = plan.total, 0
    report: list[JobResult] = []
    t0 = time.perf_counter()

    def _set(done: int) -> None:
        nonlocal count
        count = done
        if progress is not None:
            progress(count, total)

    def tick(_: JobResult | None = None) -> None:
        _set(count + 1)

    for stage in (plan.train, plan.localize, plan.compose, plan.eval):
        jobs, failed = stage()  # planned only now: it sees what earlier stages stored
        for r in failed:
            tick(r)
        done_before = count
        report += failed + ensure(executor, lib, jobs,
                                  progress=lambda d, _t, b=done_before: _set(b + d))
    seconds = time.perf_counter() - t0
    status = [r.status for r in report]
    ran = status.count("done") + sum(1 for r in report if r.status == "failed" and r.attempts)
    return {"executor": executor.name, "workers": executor.workers, "jobs": len(report),
            "done": status.count("done"), "skipped": status.count("skipped"),
            "failed": status.count("failed"), "seconds": round(seconds, 3),
            "jobs_per_second": round(ran / seconds, 3) if ran and seconds > 0 else None,
            "results": [r.as_dict() for r in report]}
