"""The local executor: jobs in this process (the default), or in a pool of processes.

In-process, one :class:`~skillbank.run.worker.Worker` lives as long as the executor, so
loaded bases are reused across jobs and sweeps. With ``workers > 1`` each of N spawned
processes holds its own Worker and runs one job at a time; a process that dies (killed,
out of memory) breaks the pool, which is rebuilt. A broken pool fails every job running on
it, and it cannot say which one killed it: so a death beside other jobs costs none of them
an attempt; each is re-run alone, where a death is its own (and counts: retried once). In-
process there is no one left to retry when the process dies: that is what the pool and the
Ray executor are for.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from . import Attempts, Executor, Job, JobResult, OnResult, job_spec, one_line
from .worker import Worker

_worker: Worker | None = None  # the pool process's worker


def _init(threads: int) -> None:
    global _worker
    import warnings

    # libraries' deprecation chatter (transformers, PEFT) would interleave with the driver's
    # progress bars; the driver decides what the user sees
    warnings.simplefilter("ignore", FutureWarning)
    warnings.simplefilter("ignore", DeprecationWarning)
    _worker = Worker(threads)


def _noop() -> None:
    pass


def _pool_run(target: str, spec: dict) -> dict:
    return _worker.run(target, spec)


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, workers: int | None = None, threads: int | None = None):
        self.workers = workers or 1
        self.threads = threads
        self.worker = Worker(threads) if self.workers == 1 else None
        self.pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Spawn the pool's processes now (they import torch while the caller works on)."""
        if self.worker is None and self.pool is None:
            self.pool = self._new_pool()
            for _ in range(self.workers):
                self.pool.submit(_noop)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init, initargs=(self.threads or 1,))

    def _run(self, home: str, probe: str, jobs: list[Job], on_result: OnResult) -> list[JobResult]:
        state = Attempts(jobs, on_result)
        if self.worker is not None:
            while state.queue:
                i = state.next()
                try:
                    state.done(i, self.worker.run(jobs[i].target, job_spec(jobs[i], home, probe)))
                except Exception as e:  # noqa: BLE001 - reported per job, the sweep goes on
                    state.failed(i, one_line(e))
            return state.finished()
        running: dict[Future, tuple[int, ProcessPoolExecutor]] = {}
        alone: set[int] = set()   # jobs that were running when a pool died: next time, run alone
        crowd: dict[ProcessPoolExecutor, int] = {}   # jobs running on a pool when it broke
        while state.queue or running:
            if self.pool is None:
                self.pool = self._new_pool()
            while state.queue and len(running) < self.workers:
                suspect = state.queue[-1] in alone or any(j in alone for j, _ in running.values())
                if running and suspect:
                    break   # a suspect runs with nothing beside it
                i = state.next()
                spec = job_spec(jobs[i], home, probe)
                try:
                    running[self.pool.submit(_pool_run, jobs[i].target, spec)] = (i, self.pool)
                except BrokenProcessPool:  # broke before this job started: not its attempt
                    state.tries[i] -= 1
                    state.queue.append(i)
                    self._drop_pool()
                    break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            sharing = Counter(p for _, p in running.values())   # jobs on each pool now
            for fut in finished:
                i, pool = running.pop(fut)
                try:
                    state.done(i, fut.result())
                except BrokenProcessPool:
                    crowd.setdefault(pool, sharing[pool])   # counted at its first failure
                    if crowd[pool] > 1 and i not in alone:   # maybe not the one that died
                        state.spare(i)
                        alone.add(i)
                    else:
                        state.failed(i, "worker process died while running the job")
                    if pool is self.pool:
                        self._drop_pool()
                except Exception as e:  # noqa: BLE001 - reported per job, the sweep goes on
                    state.failed(i, one_line(e))
        return state.finished()

    def _drop_pool(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def close(self) -> None:
        self._drop_pool()
