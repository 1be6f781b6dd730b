"""Shared by the tests of skillbank.run: a home with the tiny base, a small sweep, and job
kinds that misbehave on purpose (imported by Ray workers through PYTHONPATH)."""

from __future__ import annotations

import os
from pathlib import Path

from skillbank.library import Library

TASKS = ["rot", "rev"]


def make_home(home: Path, model_dir: Path) -> Path:
    with Library.open(home) as lib:
        lib.add_base("tiny", model_dir, kind="causal")
    return home


def small_sweep(**eval_overrides) -> dict:
    """One train job, one compose job and 3 subjects × 2 tasks of evaluation."""
    return {
        "base": "tiny",
        "train": [{"name": "rot", "task": "rot", "rank": 2, "alpha": 4, "steps": 4,
                   "batch_size": 4, "pool": 32, "target_modules": ["q_proj", "v_proj"]}],
        "compose": [{"name": "rot-half", "from": ["rot"], "method": "linear", "weights": [0.5]}],
        "eval": {"subjects": ["base", "rot", "rot-half"], "tasks": TASKS, "n": 4, "seed": 0,
                 **eval_overrides},
    }


def crash_once(worker, lib, spec: dict) -> dict:
    """Kill this worker's process the first time (a marker file remembers), then succeed."""
    marker = Path(spec["marker"])
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)
    return {"pid": os.getpid(), "value": spec["value"]}


def always_fails(worker, lib, spec: dict) -> dict:
    raise RuntimeError(f"job {spec['value']} always fails")


def echo(worker, lib, spec: dict) -> dict:
    return {"pid": os.getpid(), "value": spec["value"]}


def crash_always(worker, lib, spec: dict) -> dict:
    """Kill this worker's process every time."""
    os._exit(1)
