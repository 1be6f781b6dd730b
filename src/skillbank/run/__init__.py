"""One executor interface: run many small jobs in-process, on local cores, or on Ray.

A :class:`Job` is small and pure: a kind (``train``, ``compose``, ``eval``, …, each
registered by the operation that owns it; see ``run.registry``) and a JSON-able spec that
names skills and data by id. The worker that runs it opens the library, loads what the
spec names, writes its results back through the library and returns a small dict. So a job ships only ids, and a sweep can stop and
resume at any point: everything it made is already in the library.

``get_executor("local")`` runs jobs in this process (the default), or with
``workers=N > 1`` in a pool of N processes on this machine; ``get_executor("ray",
address)`` runs them on an actor pool of a Ray cluster (``address`` or ``RAY_ADDRESS``;
none starts one on this machine). Ray is imported only then (``pip install
skillbank[ray]``). Every executor retries a job that fails or whose worker dies once,
then reports it failed with its error while the other jobs complete; the library's
atomic writes mean a dead worker leaves nothing half-written.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..skill import SkillError
from .registry import JobKind, kind_of, register, target
from .worker import HomeNotShared, JobsBar, QuietUi, check_home, write_probe
from .worker import probe_path as _probe_path

MAX_ATTEMPTS = 2  # a job is tried once more after a failure or a dead worker
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Job:
    """``kind`` names a job function; ``spec`` (JSON-able) names everything it reads."""

    kind: str
    spec: dict[str, Any] = field(hash=False)
    label: str = ""  # for progress and error reports
    module: str = ""  # the module that registers ``kind`` (imported by a fresh worker)

    @property
    def target(self) -> str:
        """What a worker is sent to look the kind up (``run.registry.resolve``)."""
        return target(self.kind, self.module)


@dataclass
class JobResult:
    job: Job
    status: str  # "done" | "failed"
    result: dict[str, Any] | None = None
    error: str | None = None
    attempts: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.job.kind, "label": self.job.label, "status": self.status,
                "result": self.result, "error": self.error, "attempts": self.attempts}


OnResult = Callable[[JobResult], None]
Progress = Callable[[int, int], None]  # (done, total)


def one_line(e: BaseException) -> str:
    """An exception as the one-line message a report shows."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return msg if isinstance(e, SkillError) and msg else f"{type(e).__name__}: {msg}".rstrip(": ")


class Executor:
    """Runs jobs against one library home; subclasses implement :meth:`_run`."""

    name = "executor"
    workers = 1

    def run(self, home: str | Path, jobs: Sequence[Job], on_result: OnResult | None = None,
            progress: Progress | None = None) -> list[JobResult]:
        """Run ``jobs`` (in any order); results come back in job order. ``on_result`` is
        called once per job as it finishes, ``progress(done, total)`` after it (a progress
        bar). The home must already exist."""
        home = Path(home).resolve()
        check_home(home, None)
        if not jobs:
            return []
        count = 0

        def finished(r: JobResult) -> None:
            nonlocal count
            count += 1
            if on_result is not None:
                on_result(r)
            if progress is not None:
                progress(count, len(jobs))

        probe = write_probe(home)  # workers prove they see this very directory
        try:
            return self._run(str(home), probe, list(jobs), finished)
        finally:
            _probe_path(home, probe).unlink(missing_ok=True)

    def run_all(self, home: str | Path, jobs: Sequence[Job], what: str,
                progress: Progress | None = None) -> list[JobResult]:
        """:meth:`run` for jobs that must all succeed: ``SkillError`` naming how many of the
        ``what`` jobs failed and the first one's error (after every job has run)."""
        return all_done(self.run(home, jobs, progress=progress), what)

    def _run(self, home: str, probe: str, jobs: list[Job], on_result: OnResult) -> list[JobResult]:
        raise NotImplementedError

    def start(self) -> None:
        """Get the workers ready ahead of the first jobs (a no-op where there is nothing to
        start); the caller goes on meanwhile."""

    def close(self) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def job_spec(job: Job, home: str, probe: str) -> dict[str, Any]:
    return {**job.spec, "home": home, "probe": probe}


def all_done(results: list[JobResult], what: str) -> list[JobResult]:
    """``results`` if none failed, else a ``SkillError`` naming how many of the ``what``
    jobs failed and the first one's error."""
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise SkillError(f"{len(failed)} of {len(results)} {what} jobs failed; first: "
                         f"{failed[0].job.label}: {failed[0].error}")
    return results


class Attempts:
    """Bookkeeping every executor shares: retry once, then fail; results in job order."""

    def __init__(self, jobs: list[Job], on_result: OnResult):
        self.jobs, self.on_result = jobs, on_result
        self.tries = [0] * len(jobs)
        self.spared = [0] * len(jobs)   # runs that ended through no fault the job was shown to have
        self.results: list[JobResult | None] = [None] * len(jobs)
        self.queue = list(range(len(jobs)))[::-1]  # pop() takes the next job in order

    def next(self) -> int:
        i = self.queue.pop()
        self.tries[i] += 1
        return i

    def done(self, i: int, result: dict[str, Any]) -> None:
        self.results[i] = JobResult(self.jobs[i], "done", result, None, self.tries[i])
        self.on_result(self.results[i])

    def spare(self, i: int) -> None:
        """Run job ``i`` again without counting the run that just ended against it."""
        self.spared[i] += 1
        self.queue.append(i)

    def failed(self, i: int, error: str) -> None:
        if self.tries[i] - self.spared[i] >= MAX_ATTEMPTS:
            self.results[i] = JobResult(self.jobs[i], "failed", None, error, self.tries[i])
            self.on_result(self.results[i])
        else:
            self.queue.append(i)  # retried next

    def finished(self) -> list[JobResult]:
        return [r for r in self.results if r is not None]


def ensure(executor: Executor, lib, jobs: Sequence[Job],
           progress: Progress | None = None, what: str | None = None) -> list[JobResult]:
    """Find or make: the one way every operation re-uses what the library already holds.

    A job whose kind says its output is stored (``JobKind.stored``) is not run: it comes
    back ``skipped`` with the stored result; the others run on ``executor`` against
    ``lib`` (a :class:`~skillbank.library.Library`). Results are in
    job order; ``progress(done, total)`` counts both. With ``what``, a failed job is a
    ``SkillError`` (as :meth:`Executor.run_all`) after every job has run."""
    settled: dict[int, JobResult] = {}
    for i, job in enumerate(jobs):
        kind = kind_of(job.kind, job.module)
        found = kind.stored(lib, job.spec) if kind is not None and kind.stored else None
        if found is not None:
            settled[i] = JobResult(job, "skipped", found, attempts=0)
    todo = [i for i in range(len(jobs)) if i not in settled]
    total = len(jobs)
    if progress is not None and settled:
        progress(len(settled), total)
    ran = executor.run(lib.home, [jobs[i] for i in todo],
                       progress=None if progress is None else
                       (lambda d, _t: progress(len(settled) + d, total)))
    out = [settled.get(i) for i in range(len(jobs))]
    for i, r in zip(todo, ran, strict=True):
        out[i] = r
    return out if what is None else all_done(out, what)


def get_executor(name: str | None = None, address: str | None = None,
                 workers: int | None = None, threads: int | None = None) -> Executor:
    """``local`` (default; ``workers > 1`` for a process pool) or ``ray``.

    An ``address`` (or ``name="ray"`` with ``RAY_ADDRESS`` set) connects to an existing
    Ray cluster; ``ray`` without either starts a local one. ``threads`` is torch's thread
    count per worker (default 1 in pool processes and Ray actors, unchanged in-process)."""
    name = name or ("ray" if address else "local")
    if workers is not None and workers < 1:
        raise SkillError(f"workers must be ≥ 1, got {workers}")
    if name == "local":
        if address:
            raise SkillError("--address names a Ray cluster; use it with --executor ray")
        from .local import LocalExecutor

        return LocalExecutor(workers=workers, threads=threads)
    if name == "ray":
        if importlib.util.find_spec("ray") is None:  # not imported here: see run/ray.py
            raise SkillError("the ray executor needs Ray: pip install 'skillbank[ray]'")
        from .ray import RayExecutor

        return RayExecutor(address=address or os.environ.get("RAY_ADDRESS"), workers=workers,
                           threads=threads or 1)
    raise SkillError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "MAX_ATTEMPTS", "Executor", "HomeNotShared", "Job", "JobKind",
           "JobResult", "JobsBar", "QuietUi", "all_done", "ensure", "get_executor", "register"]
