"""The worker state every executor runs jobs with, and the check that it shares the home.

A job is ``(kind, spec)``: the spec names the library home, skills by ref and data by
world/task/seed, never tensors. A :class:`Worker` lives as long as its process (an
in-process loop, a pool process or a Ray actor) and keeps what is costly to rebuild: an
open library per home and each base model it has loaded, so a stream of evaluation jobs
on one base pays for loading the base once. What a kind does is looked up in
``run.registry``; the kinds themselves live with their operations.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..base import Base, apply_skill
from ..library import Library
from ..skill import Skill, SkillError
from .registry import resolve

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

    def run(self, target: str, spec: dict) -> dict:
        """Run one job: ``target`` is ``registry.target(kind, module)``."""
        lib = self.library(spec["home"], spec.get("probe"))
        return resolve(target)(self, lib, spec)


class JobsBar:
    """What every ``ui`` adds to its ``bar(desc, total)`` (yielding ``step(n, loss)``): a bar
    over jobs whose callback is the executors' ``progress(done, total)``."""

    @contextmanager
    def jobs(self, desc: str, total: int):
        with self.bar(desc, total) as step:
            yield lambda done, _total: step(done, None)


class QuietUi(JobsBar):
    """The ``ui`` the library's long-running functions take, in a worker: no bars, no
    messages."""

    @contextmanager
    def bar(self, desc: str, total: int):
        yield lambda step, loss: None

    def say(self, msg: str) -> None:
        pass
