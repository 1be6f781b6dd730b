"""The Ray executor: an actor pool on a Ray cluster; each actor is a long-lived worker.

Imported only when ``--executor ray`` is chosen. ``RayExecutor(address)`` connects to the
cluster at ``address`` (``ray.init(address=...)``; ``RAY_ADDRESS`` works too) or, with
none, starts Ray on this machine. It starts one actor per ``threads`` CPUs of the
cluster (or ``workers`` actors); each holds a :class:`~skillbank.run.worker.Worker`, so a
base is loaded once per actor and a job ships only ids. An actor runs one job at a time,
so a dead actor costs exactly the job it held: the actor is replaced and that job tried
once more. Every actor first proves it sees the driver's library home (the home must be
on storage the whole cluster shares); one that does not stops the run with that error.

Ray sets ``OMP_NUM_THREADS=1`` for tasks without ``num_cpus``; the actors reserve
``threads`` CPUs and set torch's thread count to it explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path


def _attach_auth_token() -> None:
    """Send this machine's Ray token when joining a running cluster.

    Ray ≥ 2.59 turns token authentication on for a head started with ``ray start --head``
    whenever a token file exists (``~/.ray/auth_token``), but ``ray.init(address=...)``
    attaches the token only when ``RAY_AUTH_MODE=token`` is set — a known Ray issue, noted
    in the review of ray-project/ray#64755 — so joining fails with "InvalidAuthToken". The
    variable is read when ``ray`` is imported, hence this runs before the import. Measured
    here on Ray 2.60: a sweep with ``--address`` of such a head fails without it and runs
    with it. An explicit ``RAY_AUTH_MODE`` is left alone."""
    has_token = (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                 or (Path.home() / ".ray" / "auth_token").is_file())
    if has_token and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"


_attach_auth_token()

import ray  # noqa: E402  (after the token check above)
from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError  # noqa: E402

from ..skill import SkillError  # noqa: E402
from . import Attempts, Executor, Job, JobResult, OnResult, job_spec, one_line  # noqa: E402
from .worker import Worker  # noqa: E402


@ray.remote(max_restarts=0)
class _Actor:
    def __init__(self, threads: int):
        self.worker = Worker(threads)

    def check(self, home: str, probe: str) -> dict:
        return self.worker.check(home, probe)

    def run(self, target: str, spec: dict) -> dict:
        return self.worker.run(target, spec)


def _cause(e: RayTaskError) -> str:
    """The worker's own exception, in one line (not Ray's traceback wrapper)."""
    cause = getattr(e, "cause", None)
    return one_line(cause) if isinstance(cause, BaseException) else one_line(e)


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None,
                 threads: int = 1):
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            try:
                # the driver's stdout stays ours (--json); worker logs stay in Ray's log dir
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise SkillError(f"cannot connect to Ray at {address or 'a new local cluster'}: "
                                 f"{one_line(e)}") from None
        self.threads = threads
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or max(1, cpus // threads)
        self.actors: list = []
        self.address = address

    def _new_actor(self):
        return _Actor.options(num_cpus=self.threads).remote(self.threads)

    def _check(self, home: str, probe: str) -> None:
        """Fill the pool; stop with the worker's message if any cannot see ``home``."""
        while len(self.actors) < self.workers:
            self.actors.append(self._new_actor())
        errors = []
        for ref in [a.check.remote(home, probe) for a in self.actors]:
            try:  # every answer is collected, so Ray logs no "unhandled error" for the rest
                ray.get(ref)
            except RayTaskError as e:
                errors.append(_cause(e))
        if errors:
            raise SkillError(errors[0])

    def _run(self, home: str, probe: str, jobs: list[Job], on_result: OnResult) -> list[JobResult]:
        self._check(home, probe)
        state = Attempts(jobs, on_result)
        idle = list(self.actors)
        running: dict = {}  # object ref → (job index, actor)
        while state.queue or running:
            while state.queue and idle:
                actor, i = idle.pop(), state.next()
                ref = actor.run.remote(jobs[i].target, job_spec(jobs[i], home, probe))
                running[ref] = (i, actor)
            [ref], _ = ray.wait(list(running), num_returns=1)
            i, actor = running.pop(ref)
            try:
                state.done(i, ray.get(ref))
                idle.append(actor)
            except (RayActorError, WorkerCrashedError) as e:
                # the actor died with the job: nothing was committed (atomic library writes)
                replacement = self._new_actor()
                self.actors = [replacement if a is actor else a for a in self.actors]
                idle.append(replacement)
                state.failed(i, f"worker died while running the job ({type(e).__name__})")
            except RayTaskError as e:
                idle.append(actor)
                state.failed(i, _cause(e))
        return state.finished()

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.actors = []
        if self.owns_ray:
            ray.shutdown()
