"""Evaluation jobs: each job's result id comes back from the write that made it, so jobs for
several seeds running at once never take each other's rows; and a data file is named by
its content, so an edited file is never mistaken for the one a skill was trained on."""

from __future__ import annotations

import pytest

from skillbank.acquire.lora import LoraRecipe
from skillbank.evaluate.jobs import eval_job
from skillbank.run import ensure, get_executor
from skillbank.skill import SkillError
from skillbank.worlds import get_world


def test_concurrent_eval_jobs_for_several_seeds_each_get_their_own_row(lib):
    base = lib.base("tiny")
    jobs = [eval_job(f"base:{base.name}", base, "strings", "rot", 3, seed) for seed in range(6)]
    with get_executor("local", workers=2) as pool:
        done = ensure(pool, lib, jobs, what="eval")
    rows = {r["id"]: r for r in lib.results()}
    assert len(rows) == 6 and len({r.result["result_id"] for r in done}) == 6
    for job, r in zip(jobs, done, strict=True):
        assert rows[r.result["result_id"]]["spec"]["seed"] == job.spec["seed"]
    # the same jobs again are found stored: the same ids, nothing re-run
    with get_executor() as ex:
        again = ensure(ex, lib, jobs)
    assert [r.status for r in again] == ["skipped"] * 6
    assert [r.result["result_id"] for r in again] == [r.result["result_id"] for r in done]


def test_a_changed_data_file_is_a_new_recipe(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"task": "t", "input": "ab", "target": "ba"}\n' * 3)
    first = LoraRecipe("files", "t", world_args={"path": str(data)})
    assert first.world_args["sha256"] and first == LoraRecipe("files", "t",
                                                              world_args={"path": str(data)})
    data.write_text('{"task": "t", "input": "ab", "target": "ab"}\n' * 3)
    second = LoraRecipe("files", "t", world_args={"path": str(data)})
    assert second.as_dict() != first.as_dict()
    with pytest.raises(ValueError, match="the data file changed since the recipe"):
        get_world("files", **first.world_args)  # training the old recipe now would be wrong


def test_recipe_values_are_checked():
    with pytest.raises(SkillError, match="steps must be an integer ≥ 1"):
        LoraRecipe("strings", "rot", steps=0)
    with pytest.raises(SkillError, match="lr must be a finite number"):
        LoraRecipe("strings", "rot", lr=float("nan"))
