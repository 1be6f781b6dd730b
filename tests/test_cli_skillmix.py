"""`skillbank skillmix` and `skillbank upscale` through the CLI: --help, --json, one-line errors."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from skillbank.acquire.lora import LoraRecipe, train_lora
from skillbank.acquire.pretrain import BaseRecipe, ensure_base
from skillbank.cli import app
from skillbank.library import Library

TINY = BaseRecipe(size="tiny", steps=3, batch_size=8, pool=32, tasks=["copy"])


@pytest.fixture(scope="module")
def mix_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("mix") / "home"
    with Library.open(home) as lib:
        small, _ = ensure_base(lib, "small", TINY)
        ensure_base(lib, "large", BaseRecipe(**{**TINY.__dict__, "size": "mini"}))
        for t in ("rot", "shift", "dup"):
            lib.add(train_lora(t, small, LoraRecipe("strings", t, rank=2, alpha=4, steps=2, batch_size=4,
                                                    pool=16, target_modules=["q_proj"])))
        # a mixture recipe (comma-separated tasks) trains on all of them
        lib.add(train_lora("mix", small, LoraRecipe("strings", "rot,rot+shift", rank=2, alpha=4, steps=2,
                                                    batch_size=4, pool=16, target_modules=["q_proj"])))
    return home


def run_json(home, *args):
    result = CliRunner().invoke(app, ["--home", str(home), *map(str, args), "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def test_help():
    for cmd in ("skillmix", "upscale"):
        result = CliRunner().invoke(app, [cmd, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.stdout
    assert "--chain-call" in CliRunner().invoke(app, ["skillmix", "--help"]).stdout


def test_skillmix_one_shot_chain_call_and_base(mix_home):
    res = run_json(mix_home, "skillmix", "--skill", "mix", "--k", "1,2", "--n", "3",
                   "--primitives", "rot,shift")
    assert res["subject"] == "mix@1" and set(res["results"]) == {"1", "2"}
    for m in res["results"].values():
        assert m["n"] == 3 and 0 <= m["ratio_of_full_marks"] <= m["skill_fraction"] <= 1
        assert "call_accuracy" not in m
    calls = run_json(mix_home, "skillmix", "--chain-call", "rot,shift,dup", "--k", "3", "--n", "2")
    assert calls["primitives"] == ["rot", "shift", "dup"] and "call_accuracy" in calls["results"]["3"]
    base = run_json(mix_home, "skillmix", "--base", "small", "--k", "2", "--n", "2",
                    "--primitives", "rot,shift,dup", "--with-pairs", "rot+dup")
    assert base["subject"] == "base:small" and base["results"]["2"]["n"] == 2
    none = run_json(mix_home, "skillmix", "--base", "small", "--k", "1", "--n", "2",
                    "--primitives", "rot,shift", "--with-pairs", "rot+shift")
    assert none["results"]["1"] is None  # a 1-chain has no pair
    with Library.open(mix_home) as lib:
        assert any(r["task"] == "skillmix:k=2" for r in lib.results("mix@1"))
    table = CliRunner().invoke(app, ["--home", str(mix_home), "skillmix", "--skill", "mix", "--k", "1",
                                     "--n", "2", "--primitives", "rot"])
    assert table.exit_code == 0 and "ratio of full marks" in table.stdout


def test_upscale(mix_home):
    res = run_json(mix_home, "upscale", "--skill", "rot", "--large-base", "large", "--task", "rot",
                   "--n", "3")
    assert set(res["results"]) == {"large_base", "small_base", "small_skill", "upscaled"}
    assert res["weights"] == [1.0] and res["small_base"] == "small"
    assert all(m["n"] == 3 for m in res["results"].values())


@pytest.mark.parametrize("args,message", [
    (["skillmix"], "give --skill, --chain-call, or --base"),
    (["skillmix", "--skill", "rot", "--chain-call", "rot"], "not both"),
    (["skillmix", "--skill", "rot", "--k", "1,x"], "comma-separated integers"),
    (["skillmix", "--chain-call", "rot,shift", "--k", "3"], "needs at least 3 primitives"),
    (["skillmix", "--chain-call", "mix"], "single-primitive skills"),
    (["skillmix", "--skill", "rot", "--world", "lego", "--primitives", "rot"], "chain with '+'"),
    (["skillmix", "--skill", "rot", "--with-pairs", "rot"], "a pair is written a+b"),
    (["upscale", "--skill", "rot", "--large-base", "large", "--task", "rot", "--weight", "1,2"],
     "1 skill(s) but 2 weight(s)"),
    (["upscale", "--skill", "rot", "--large-base", "small", "--small-base", "large", "--task", "rot"],
     "refusing"),
])
def test_errors_one_line_exit_2(args, message, mix_home, capsys, monkeypatch):
    from skillbank.cli import main

    monkeypatch.setattr(sys, "argv", ["skillbank", "--home", str(mix_home), *args])
    with pytest.raises(SystemExit) as e:
        main()
    captured = capsys.readouterr()
    assert e.value.code == 2 and "Traceback" not in captured.err
    assert captured.err.startswith("error: ") and message in captured.err, captured.err
