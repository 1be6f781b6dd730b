"""The ``verify`` job kind: one fine-tune of ``transfer --verify`` (from a candidate skill,
or from scratch with its rank, alpha and modules), evaluated; it stores nothing, the
result is returned."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..base import Base
from ..library import Library
from ..run import register
from ..skill import Skill
from ..worlds import get_world
from .rank import check_verify, verify_run, verify_runs


def _run(worker, lib: Library, spec: dict) -> dict:
    base = lib.base(spec["base"])
    world_args = spec.get("world_args") or {}
    return verify_run(base, lib.get(spec["source"]), bool(spec["scratch"]),
                      get_world(spec["world"], **world_args), base.load_tokenizer(),
                      spec["world"], spec["task"], spec["steps"], spec["n_eval"], spec["seed"],
                      spec["lr"], spec["batch_size"], world_args)


VERIFY = register("verify", _run)


def verify_on(executor, home, base: Base, skills: Sequence[Skill], world_name: str, task: str,
              steps: int, n_eval: int = 200, seed: int = 0, lr: float = 5e-3,
              batch_size: int = 64, world_args: dict | None = None, scratch: bool = True,
              progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Fine-tune ``task`` from each candidate (and from scratch with the first one's rank,
    alpha and modules), the same recipe and budget each, as one ``verify`` job per run on
    ``executor`` (``skillbank.run``), each naming the base and the candidate by id in the
    library at ``home``; nothing is stored. ``{subject: {"exact_match", "token_accuracy",
    "mean_logprob", "train_seconds", "eval_seconds", "final_loss"}}`` with subjects the
    candidate refs and "scratch". ``progress(done, total)`` after every job; a failed job is
    a SkillError."""
    check_verify(skills)
    runs = verify_runs(skills, scratch)
    jobs = [VERIFY.job({"base": base.name, "source": src.ref, "scratch": subject == "scratch",
                        "world": world_name, "world_args": dict(world_args or {}),
                        "task": task, "steps": steps, "n_eval": n_eval, "seed": seed,
                        "lr": lr, "batch_size": batch_size}, f"verify {subject}")
            for subject, src in runs]
    done = executor.run_all(home, jobs, "verify", progress=progress)
    return {subject: r.result for (subject, _), r in zip(runs, done, strict=True)}
