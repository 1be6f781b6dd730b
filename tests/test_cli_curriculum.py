"""`skillbank curriculum` and `skillbank select` through the CLI: --json, storage, errors."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from skillbank.acquire.pretrain import BaseRecipe, ensure_base
from skillbank.cli import app
from skillbank.library import Library


@pytest.fixture
def home_with_bases(home):
    with Library.open(home) as lib:
        ensure_base(lib, "lego-t", BaseRecipe(world="lego", tasks=["1"], size="tiny", steps=2,
                                              batch_size=2, pool=8))
        ensure_base(lib, "strings-t", BaseRecipe(size="tiny", steps=2, batch_size=2, pool=8))
    return home


def invoke(home, *args):
    return CliRunner().invoke(app, ["--home", str(home), *map(str, args)])


def test_curriculum_json_and_stored(home_with_bases):
    r = invoke(home_with_bases, "curriculum", "--world", "lego", "--method", "stratified", "--base", "lego-t",
               "--steps", 2, "--round-steps", 1, "--batch-size", 2, "--n", 3, "--pool", 6, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["skill"] == "lego-curriculum-stratified@1" and res["method"] == "stratified"
    assert set(res["accuracy"]) == {"1", "2", "3"}  # default: LEGO k=3, clauses in chain order
    with Library.open(home_with_bases) as lib:
        skill = lib.get(res["skill"])
        assert skill.kind == "delta" and skill.recipe["method"] == "curriculum:stratified"
        assert skill.recipe["world_args"] == {"k": 3, "ordered": True}
        assert len(lib.results(res["skill"])) == 3 and lib.results("curriculum:stratified")
    r = invoke(home_with_bases, "curriculum", "--method", "skill-it", "--base", "lego-t", "--steps", 2,
               "--round-steps", 1, "--batch-size", 2, "--graph-steps", 1, "--n", 3, "--pool", 6)
    assert r.exit_code == 0, r.output
    assert "skill-it on lego" in r.stdout and "skills graph" in r.stdout
    r = invoke(home_with_bases, "curriculum", "--method", "random", "--base", "lego-t", "--k", 5, "--shuffled",
               "--steps", 2, "--round-steps", 1, "--batch-size", 2, "--n", 3, "--pool", 6, "--name", "l3", "--json")
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.stdout)["accuracy"]) == {"1", "2", "3", "4", "5"}
    with Library.open(home_with_bases) as lib:
        assert lib.get("l3").recipe["world_args"] == {"k": 5, "ordered": False}


def test_select_json_and_stored(home_with_bases):
    r = invoke(home_with_bases, "select", "--pool", "rot,dup", "--target", "rot", "--world", "strings",
               "--fraction", 0.25, "--per-task", 8, "--n-target", 2, "--dim", 8, "--epochs", 1, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["base"] == "strings-t" and res["selected"] == 4 == sum(res["make_up"].values())
    with Library.open(home_with_bases) as lib:
        [row] = lib.results("select:rot")
        assert row["metrics"]["indices"] == res["indices"] and row["spec"]["recipe"]["method"] == "less"


@pytest.mark.parametrize("args, message", [
    (["curriculum", "--method", "bogus"], "unknown method 'bogus'"),
    (["curriculum", "--world", "strings"], "--base is required"),
    (["curriculum", "--world", "strings", "--ordered"], "lego world only"),
    (["select", "--pool", "rot,nope", "--target", "rot"], "unknown task"),
    (["select", "--pool", "rot", "--target", "rot", "--world", "arith"], "unknown task"),
])
def test_errors_one_line(args, message, home, capsys, monkeypatch):
    from skillbank.cli import main

    monkeypatch.setattr(sys, "argv", ["skillbank", "--home", str(home), *args])
    with pytest.raises(SystemExit) as e:
        main()
    captured = capsys.readouterr()
    assert e.value.code == 2 and captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1 and message in captured.err


def test_help():
    for cmd in ("curriculum", "select"):
        r = CliRunner().invoke(app, [cmd, "--help"])
        assert r.exit_code == 0 and "--json" in r.stdout
