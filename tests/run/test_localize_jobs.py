"""Localize as jobs: the sweep's localize stage and the multi-sparsity ``localize`` CLI."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from run_helpers import small_sweep
from typer.testing import CliRunner

from skillbank.cli import app
from skillbank.localize.jobs import recipe_for
from skillbank.localize.ops import localize
from skillbank.run import get_executor
from skillbank.sweep import Plan, run_sweep

# a graft recipe small enough for the tiny base: 3 mask steps, 4 held-out inputs
SMALL = {"steps": 3, "n_train": 16, "n_val": 8, "batch_size": 8}
N_EVAL = 4


def sweep(sparsity, **fields) -> dict:
    cfg = small_sweep()
    cfg["compose"], cfg["eval"] = [], {}
    cfg["localize"] = [{"skill": "rot", "sparsity": sparsity, "n_eval": N_EVAL,
                        **SMALL, **fields}]
    return cfg


def direct(lib, sparsity: float):
    """The graft made in this process by ``localize`` itself, stored as the job names it."""
    rot = lib.get("rot")
    recipe = replace(recipe_for(rot, sparsity, 0), **SMALL)
    made = localize(lib.base("tiny"), rot, recipe, name=f"rot-graft-{sparsity:g}",
                    n_eval=N_EVAL)
    return lib.store(made)


def test_sweep_localize_stage_equals_in_process_and_resumes(lib):
    with get_executor() as ex:
        first = run_sweep(lib, sweep([0.01, 0.05]), ex)
    labels = [(r["label"], r["status"]) for r in first["results"]]
    assert labels == [("train rot", "done"), ("localize rot-graft-0.01", "done"),
                      ("localize rot-graft-0.05", "done")]
    made = {r["label"]: r["result"] for r in first["results"][1:]}
    assert all(r["new"] for r in made.values())
    g01, g05 = lib.get("rot-graft-0.01"), lib.get("rot-graft-0.05")
    assert g01.kind == g05.kind == "sparse" and g01.lineage == ["rot@1"]
    assert g01.recipe["source"] == "rot@1" and g01.recipe["steps"] == 3
    assert g01.metrics["localization"]["n_eval"] == N_EVAL
    assert g05.metrics["localization"]["size"] > g01.metrics["localization"]["size"]
    # the job's graft is the one localize makes in this process: same content hash
    again, new = direct(lib, 0.01)
    assert new is False and again.content_hash == g01.content_hash
    assert [r.version for r in lib.versions("rot-graft-0.01")] == [1]

    with get_executor() as ex:
        resumed = run_sweep(lib, sweep([0.01, 0.05]), ex)
        changed = run_sweep(lib, sweep([0.01], steps=4), ex)  # another recipe: a new job
    assert (resumed["done"], resumed["skipped"]) == (0, 3)
    assert resumed["results"][1]["result"] == {"ref": "rot-graft-0.01@1", "new": False}
    assert (changed["done"], changed["skipped"]) == (1, 1)
    assert changed["results"][1]["label"] == "localize rot-graft-0.01"


def test_sweep_localize_config_errors(lib):
    with pytest.raises(ValueError, match=r"localize rot: unknown field\(s\) stepz"):
        Plan(lib, sweep(0.01, stepz=3))
    with pytest.raises(ValueError, match=r"sparsity must be in \(0, 1\]"):
        Plan(lib, sweep([0.01, 2.0]))
    with pytest.raises(ValueError, match="each with a `skill`"):
        Plan(lib, {**sweep(0.01), "localize": [{"sparsity": 0.01}]})
    cfg = sweep(0.01)
    cfg["train"] = []  # rot is never made: the localize job fails, the sweep reports it
    with get_executor() as ex:
        summary = run_sweep(lib, cfg, ex)
    assert summary["failed"] == 1 and "no skill named 'rot'" in summary["results"][0]["error"]


def test_cli_localize_several_sparsities_one_graft_each(lib):
    with get_executor() as ex:
        run_sweep(lib, sweep([]), ex)  # trains rot only
    runner = CliRunner()
    small = ["--steps", "3", "--n-train", "16", "--n-val", "8", "--n", str(N_EVAL)]
    args = ["--home", str(lib.home), "localize", "rot", "--sparsity", "0.02,0.03", *small,
            "--json"]
    pooled = runner.invoke(app, [*args, "--workers", "2"])  # a local pool of 2 processes
    assert pooled.exit_code == 0, pooled.output
    data = json.loads(pooled.stdout)
    assert (data["executor"], data["workers"], data["failed"]) == ("local", 2, [])
    assert [(g["sparsity"], g["ref"], g["new"]) for g in data["grafts"]] == [
        (0.02, "rot-graft-0.02@1", True), (0.03, "rot-graft-0.03@1", True)]
    assert lib.get("rot-graft-0.02").metrics["localization"]["target_sparsity"] == 0.02
    # again, in this process: both re-used, nothing new stored
    plain = json.loads(runner.invoke(app, args).stdout)
    assert [(g["ref"], g["new"]) for g in plain["grafts"]] == [
        ("rot-graft-0.02@1", False), ("rot-graft-0.03@1", False)]
    assert direct(lib, 0.02)[0].content_hash == lib.get("rot-graft-0.02").content_hash
    # one sparsity: the same job, the graft's manifest (re-used: made by the same recipe)
    one = runner.invoke(app, ["--home", str(lib.home), "localize", "rot", "--sparsity",
                              "0.02", *small, "--json"])
    made = json.loads(one.stdout)
    assert one.exit_code == 0 and (made["name"], made["version"], made["new"]) == \
        ("rot-graft-0.02", 1, False)
    table = runner.invoke(app, ["--home", str(lib.home), "localize", "rot", "--sparsity",
                                "0.02,0.03", *small])
    assert table.exit_code == 0 and "stored 0 new graft(s); re-used 2" in table.stdout


@pytest.mark.parametrize("extra, message", [
    (["--sparsity", "0.01,abc"], "--sparsity: expected numbers"),
    (["--sparsity", "0.01,0.02", "--name", "g"], "--name names one graft"),
    (["--sparsity", "0.01,1.5"], r"sparsity must be in \(0, 1\]"),
    (["--executor", "slurm"], "unknown executor 'slurm'"),
])
def test_cli_localize_bad_input_is_one_line_exit_2(lib, monkeypatch, capsys, extra, message):
    from skillbank.cli import main

    with get_executor() as ex:
        run_sweep(lib, sweep([]), ex)
    capsys.readouterr()  # the training's own output
    monkeypatch.setattr("sys.argv", ["skillbank", "--home", str(lib.home), "localize", "rot",
                                     *extra])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert re.search(message, err)
