"""Sweeps: the planned jobs, the same numbers as the direct calls, resume, and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from run_helpers import TASKS, small_sweep
from typer.testing import CliRunner

from skillbank.cli import app
from skillbank.compose.ops import MergeSpec, merge_skills
from skillbank.evaluate.suites import eval_matrix
from skillbank.run import get_executor
from skillbank.skill import SkillError
from skillbank.sweep import Plan, run_sweep


def test_sweep_stores_what_the_direct_calls_make(lib):
    with get_executor() as ex:
        summary = run_sweep(lib, small_sweep(), ex)
    assert (summary["jobs"], summary["done"], summary["skipped"], summary["failed"]) == (8, 8, 0, 0)
    assert [r["label"] for r in summary["results"][:3]] == [
        "train rot", "compose rot-half", "eval base rot seed 0"]
    rot, half = lib.get("rot"), lib.get("rot-half")
    assert rot.recipe["steps"] == 4 and half.lineage == ["rot@1"]
    # the composition is merge_skills on the trained member, exactly
    again = merge_skills("rot-half", [rot], MergeSpec("linear", weights=[0.5]))
    assert all(torch.equal(again.tensors[k], half.tensors[k]) for k in half.tensors)
    # every eval cell equals eval_matrix's (which loads the base afresh per subject)
    stored = {(r["subject"], r["task"]): r["metrics"] for r in lib.results()}
    assert set(stored) == {(s, t) for s in ("base:tiny", "rot@1", "rot-half@1") for t in TASKS}
    direct = eval_matrix(lib, lib.base("tiny"), [rot, half], "strings", TASKS, n=4, seed=0)
    assert {(s, t): m for s, row in direct.items() for t, m in row.items()} == stored
    assert stored[("rot@1", "rot")] != stored[("base:tiny", "rot")]  # the skill acts


def test_resume_skips_done_jobs(lib):
    with get_executor() as ex:
        first = run_sweep(lib, small_sweep(seeds=[0]), ex)
        again = run_sweep(lib, small_sweep(seeds=[0]), ex)
        more = run_sweep(lib, small_sweep(seeds=[0, 1]), ex)  # one more seed: only it runs
    assert first["done"] == 8
    assert (again["done"], again["skipped"]) == (0, 8)
    assert (more["done"], more["skipped"]) == (6, 8)
    evals = {r["label"]: r["status"] for r in more["results"][2:]}
    assert len(evals) == 12
    assert all(status == ("skipped" if label.endswith("seed 0") else "done")
               for label, status in evals.items())
    assert len(lib.results()) == 12 and [r.version for r in lib.versions("rot")] == [1]
    # a changed recipe is a new job (and a new version)
    cfg = small_sweep()
    cfg["train"][0]["steps"] = 5
    cfg["compose"], cfg["eval"] = [], {}
    with get_executor() as ex:
        changed = run_sweep(lib, cfg, ex)
    assert changed["done"] == 1 and [r.version for r in lib.versions("rot")] == [1, 2]


def _diverging(monkeypatch):
    """Training of `broken` fails at run time, as a run that diverges to NaN does (a valid
    config is planned; what fails while running is reported per job)."""
    import skillbank.acquire.jobs as train_jobs

    real = train_jobs.train_lora

    def train_lora(name, *args, **kw):
        if name == "broken":
            raise SkillError(f"skill {name}: tensor x holds NaN or Inf")
        return real(name, *args, **kw)

    monkeypatch.setattr(train_jobs, "train_lora", train_lora)


def test_failed_train_job_fails_its_dependents_only(lib, monkeypatch):
    _diverging(monkeypatch)
    cfg = small_sweep()
    cfg["train"].append({"name": "broken", "task": "rot", "steps": 2})
    cfg["eval"]["subjects"].append("broken")
    with get_executor() as ex:
        summary = run_sweep(lib, cfg, ex)
    failed = {r["label"]: r for r in summary["results"] if r["status"] == "failed"}
    assert set(failed) == {"train broken", "eval broken rot seed 0", "eval broken rev seed 0"}
    train = failed["train broken"]
    assert train["attempts"] == 2 and "NaN or Inf" in train["error"]
    assert failed["eval broken rot seed 0"]["error"] == f"no skill named 'broken' in {lib.home}"
    assert summary["done"] == 8


@pytest.mark.parametrize("change, message", [
    ({"base": "nope"}, "no base named 'nope'"),
    ({"bogus": 1}, r"unknown key\(s\) bogus"),
    ({"world": "nowhere"}, "unknown world 'nowhere'"),
    ({"train": [{"name": "x", "task": "rot", "stepz": 3}]}, r"train x: unknown field\(s\) stepz"),
    ({"train": [{"task": "rot"}]}, "each with a `name`"),
    ({"eval": {"subjects": ["base"]}}, "needs `tasks`"),
    ({"train": [{"name": "x", "task": "nosuchtask"}]}, "unknown task 'nosuchtask'"),
    ({"train": [{"name": "x", "task": "rot", "steps": 0}]}, "steps must be an integer ≥ 1, got 0"),
    ({"train": [{"name": "x", "task": "rot", "steps": -1}]}, "steps must be an integer ≥ 1, got -1"),
    ({"train": [{"name": "x", "task": "rot", "batch_size": 0}]}, "batch_size must be an integer ≥ 1"),
    ({"train": [{"name": "x", "task": "rot", "lr": "fast"}]}, "lr must be a finite number"),
    ({"train": [{"name": "-x", "task": "rot"}]}, "invalid skill name '-x'"),
    ({"train": [{"name": "x", "task": "3", "world": "arith"}]}, "unknown task '3'"),
    ({"eval": {"subjects": ["base"], "tasks": ["nope"]}}, "unknown task 'nope'"),
    ({"eval": {"subjects": ["base"], "tasks": ["rot"], "n": "many"}}, "eval n: expected an integer"),
    ({"eval": {"subjects": ["base"], "tasks": ["rot"], "seeds": ["x"]}}, "eval seeds: expected an integer"),
    ({"compose": [{"name": "c", "from": ["a", "b"], "method": "linear", "weights": [float("nan"), 1]}]},
     "weights must be finite"),
    ({"compose": [{"name": "c", "from": ["a", "b"], "method": "nope"}]}, "unknown merge method"),
    ({"compose": [{"name": "c", "from": "ab", "method": "linear"}]}, "`from`: expected a list"),
    ({"localize": [{"skill": "a", "n_eval": "x"}]}, "n_eval: expected an integer"),
    ({"world_args": [1]}, "`world_args` is a mapping"),
])
def test_bad_config_is_one_clear_error(lib, change, message):
    with pytest.raises(ValueError, match=message):  # SkillError or the world's ValueError
        Plan(lib, {**small_sweep(), **change})


def test_cli_sweep_json_then_resume(tmp_path, lib):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(small_sweep()))
    runner = CliRunner()
    args = ["--home", str(lib.home), "sweep", str(config), "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert (data["executor"], data["done"], data["failed"]) == ("local", 8, 0)
    second = json.loads(runner.invoke(app, args).stdout)
    assert (second["done"], second["skipped"]) == (0, 8)
    table = runner.invoke(app, ["--home", str(lib.home), "sweep", str(config)])
    assert table.exit_code == 0 and "skipped 8 (already in the library)" in table.stdout


def test_cli_reports_failures_with_exit_1_and_bad_input_with_exit_2(tmp_path, lib, monkeypatch,
                                                                       capsys):
    from skillbank.cli import main

    cfg = small_sweep()
    _diverging(monkeypatch)
    cfg["train"][0]["name"] = "broken"
    cfg["compose"], cfg["eval"] = [], {}
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["--home", str(lib.home), "sweep", str(config), "--json"])
    assert res.exit_code == 1 and json.loads(res.stdout)["failed"] == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    for argv, msg in [([str(bad)], "malformed YAML at line 2"),
                      ([str(tmp_path / "none.yaml")], "no such sweep config"),
                      ([str(config), "--executor", "slurm"], "unknown executor 'slurm'")]:
        monkeypatch.setattr("sys.argv", ["skillbank", "--home", str(lib.home), "sweep", *argv])
        with pytest.raises(SystemExit) as e:
            main()
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and msg in err and "\n" not in err


def test_cli_eval_on_an_executor_matches_in_process(lib):
    cfg = small_sweep()
    cfg["eval"] = {}
    with get_executor() as ex:
        run_sweep(lib, cfg, ex)
    runner = CliRunner()
    args = ["--home", str(lib.home), "eval", "rot", "rot-half", "--tasks", "rot,rev", "--n", "4",
            "--json"]
    plain = runner.invoke(app, args)
    jobs = runner.invoke(app, [*args, "--executor", "local"])
    assert plain.exit_code == jobs.exit_code == 0, jobs.output
    assert json.loads(jobs.stdout) == json.loads(plain.stdout)
    assert set(json.loads(jobs.stdout)) == {"base:tiny", "rot@1", "rot-half@1"}
    assert len(lib.results()) == 12  # both runs stored their 6 rows
