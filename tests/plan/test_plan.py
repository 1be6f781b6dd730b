"""Planning end to end on a tiny base whose skills are scripted to answer exactly: the plan
found, the chain skill stored and evaluated, distilled by practice, and refusals; the
usefulness features and the affordance calibration by hand."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from skillbank.cli import app
from skillbank.evaluate import chain as chain_mod
from skillbank.evaluate.suites import load_subject
from skillbank.plan import planner
from skillbank.plan.affordance import Affordance, calibration_inputs
from skillbank.plan.usefulness import UsefulnessModel, features
from skillbank.skill import Skill, SkillError
from skillbank.worlds import get_world
from skillbank.worlds.strings import apply_chain

WORLD = get_world("strings")
TASKS = ("rot", "swap", "dup")


def scripted_greedy(model, tok, prompts, max_new_tokens, batch_size=256):
    """Every skill answers its prompt ``task:x=`` exactly (whatever its tensors)."""
    out = []
    for p in prompts:
        task, x = p[:-1].split(":", 1)
        out.append(tok.encode(apply_chain(task, x), add_special_tokens=False))
    return out


@pytest.fixture
def library(tmp_path, monkeypatch):
    from tests.tinyskills import random_lora, tiny_strings_library

    lib, base, _ = tiny_strings_library(tmp_path)
    skills = []
    for i, t in enumerate(TASKS):
        s = random_lora(lib, base, f"raw-{t}", seed=i, scale=0.01)
        skills.append(lib.add(Skill(f"s-{t}", "lora", base.fingerprint, s.tensors, config=s.config,
                                    recipe={"method": "lora", "world": "strings", "task": t})))
    for mod in (planner, chain_mod):
        monkeypatch.setattr(mod, "greedy", scripted_greedy)
    monkeypatch.setattr(chain_mod, "sampled", lambda model, tok, prompts, max_new, temperature, batch_size=1024:
                        scripted_greedy(model, tok, prompts, max_new))
    monkeypatch.setattr(planner, "step_confidence",
                        lambda model, tok, prompts, answers: [(-0.1, -0.3)] * len(prompts))
    return lib, base, skills


def _pairs(task, n=6, seed=0):
    return [(WORLD.input_of(e.prompt), e.target) for e in WORLD.examples(task, n, seed=seed)]


def test_the_plan_found_is_the_chain_that_fits(library):
    lib, base, skills = library
    rec = planner.PlanRecipe(depth=3, beam=9, usefulness_examples=400, affordance_examples=16)
    found = planner.plan(base, skills, _pairs("swap+dup"), rec)   # beam 9: every 2-step plan kept
    assert found["fit"] == 1.0
    assert "+".join(found["steps"]) in ("swap+dup", "dup+swap") or \
        all(apply_chain("+".join(found["steps"]), x) == y for x, y in _pairs("swap+dup", 20, 3))
    assert found["members"] == [f"s-{t}@1" for t in found["steps"]]
    assert found["calls"] > 0 and found["examples"] == 6


def test_a_chain_is_stored_evaluated_and_distilled(library, tmp_path):
    lib, base, skills = library
    rec = planner.PlanRecipe(depth=2, beam=3, usefulness_examples=400, affordance_examples=16)
    chain, found = planner.make_chain(lib, "c", base, skills, _pairs("rot+swap"), rec)
    assert chain.kind == "chain" and chain.tensors == {} and chain.version == 1
    assert chain.config["steps"] == found["steps"] and chain.lineage == sorted(found["members"])
    again = lib.get("c")
    assert again.config == chain.config and again.recipe["examples"][0] == list(_pairs("rot+swap")[0])
    runner = chain_mod.load_chain(lib, base, again, WORLD)
    m = chain_mod.evaluate_chain(runner, WORLD, "rot+swap", 10, 0)
    assert m["exact_match"] == 1.0 and "mean_logprob" not in m
    with pytest.raises(SkillError, match="applied per input"):
        chain.delta()
    with pytest.raises(SkillError, match="call by call"):
        load_subject(lib, base, [chain])
    # through the CLI: the eval matrix, and practice distilling the chain into one LoRA
    home = lib.home
    r = CliRunner().invoke(app, ["--home", str(home), "eval", "c", "--tasks", "+".join(found["steps"]),
                                 "--base", base.name, "--n", "8", "--json"])
    assert r.exit_code == 0, r.output
    cell = json.loads(r.stdout)["c@1"]["+".join(found["steps"])]
    assert cell["exact_match"] == 1.0
    r = CliRunner().invoke(app, ["--home", str(home), "practice", "d", "--base", base.name, "--teacher", "c",
                                 "--rounds", "1", "--inputs", "6", "--samples", "1", "--steps", "1",
                                 "--n", "2", "--json"])
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)["rounds"]
    assert row["tasks"] == ["+".join(found["steps"])] and row["accepted"] == 6 and row["stored"] == "d@1"
    assert lib.get("d").recipe["teacher"] == "c@1"


def test_examples_no_plan_explains_store_nothing(library):
    lib, base, skills = library
    rec = planner.PlanRecipe(depth=2, beam=2, usefulness_examples=400, affordance_examples=16, min_fit=0.5)
    pairs = [(x, "a" * len(x)) for x, _ in _pairs("rot")]
    with pytest.raises(SkillError, match="no plan of up to 2 steps explains the examples"):
        planner.make_chain(lib, "none", base, skills, pairs, rec)
    from skillbank.library import LibraryError

    with pytest.raises(LibraryError):
        lib.get("none")


@pytest.mark.parametrize("pairs, match", [
    ([], "no examples"),
    ([("ab1", "ba")], "not in the world's alphabet"),
    ([("", "a")], "non-empty"),
    ([("abcdefghabcdefgh", "a")], "longer than"),
    ([("abcd", "a" * 129)], "target longer than 4 steps"),
])
def test_bad_examples_are_refused(library, pairs, match):
    _, base, skills = library
    with pytest.raises(SkillError, match=match):
        planner.plan(base, skills, pairs, planner.PlanRecipe())


def test_features_by_hand():
    f = features("abcd", "bcda", "abcdefgh")
    # [len c, len t, diff, ratio, distinct c, distinct t, repeats c, repeats t, equal, anagram,
    #  same position, reversed (c = c at 1, a = a at 3), cycled, ...]
    assert f[:13].tolist() == [4, 4, 0, 1.0, 4, 4, 0, 0, 0.0, 1.0, 0.0, 0.5, 0.0]
    # offset +1: target[i] == cur[i + 1] for i = 0..2 (3 of 4); cyclically for all 4
    assert f[13 + 2 * 3] == pytest.approx(3 / 4) and f[13 + 2 * 3 + 1] == 1.0
    assert features("ab", "abab", "abcdefgh")[12] == 1.0          # dup: target cycles cur
    assert features("", "ab", "abcdefgh")[:4].tolist() == [0, 2, 2, 0.0]   # no division by zero


def test_usefulness_learns_single_steps_and_affordance_calibrates():
    model = UsefulnessModel(WORLD, list(TASKS), depth=1, n=600, seed=0)
    cur = [WORLD.input_of(e.prompt) for e in WORLD.examples("rot", 30, seed=5, split="eval")]
    p = model(cur * 3, [apply_chain(t, x) for t in TASKS for x in cur])
    assert p.shape == (90, 3) and np.allclose(p.sum(1), 1.0)
    assert (p.argmax(1) == np.repeat(np.arange(3), 30)).mean() > 0.9
    xs = calibration_inputs(WORLD, list(TASKS), 40, 0)
    assert len(xs) == 40 and max(map(len, xs)) > WORLD.max_len     # some went through dup

    def call(i, inputs):   # skill 0 is right exactly when it is confident (short inputs)
        outs = [apply_chain(TASKS[i], x) if len(x) <= 6 or i else "zz" for x in inputs]
        conf = [(-0.05, -0.1) if len(x) <= 6 else (-2.0, -4.0) for x in inputs]
        return outs, conf

    aff = Affordance(WORLD, list(TASKS), call, n=40, seed=0)
    hi, lo = aff.log_prob(0, [(-0.05, -0.1), (-2.0, -4.0)], ["abcd", "abcdefgh"])
    assert hi > np.log(0.7) and lo < np.log(0.3)
    assert aff.models[1] is None and aff.log_prob(1, [(-2.0, -4.0)], ["abcdefgh"])[0] == \
        pytest.approx(np.log(1 - 1e-3))   # always right: a constant just below 1
    torch.manual_seed(0)


def _cli(home, *args):
    return CliRunner().invoke(app, ["--home", str(home), *map(str, args)])


def _one_line(home, args, message, capsys, monkeypatch):
    import sys

    from skillbank.cli import main

    monkeypatch.setattr(sys, "argv", ["skillbank", "--home", str(home), *map(str, args)])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err


def test_plan_cli_stores_a_chain_and_refuses_in_one_line(library, tmp_path, capsys, monkeypatch):
    lib, base, skills = library
    ex = tmp_path / "ex.jsonl"
    ex.write_text("".join(json.dumps({"input": x, "target": y}) + "\n" for x, y in _pairs("rot+dup")))
    r = _cli(lib.home, "plan", "p", "--base", base.name, "--examples", ex, "--depth", 2, "--beam", 9, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["skill"] == "p@1" and got["fit"] == 1.0 and len(got["steps"]) == 2
    shown = _cli(lib.home, "show", "p", "--json")
    assert json.loads(shown.stdout)["kind"] == "chain"
    text = _cli(lib.home, "plan", "p", "--base", base.name, "--examples", ex, "--depth", 2, "--beam", 9)
    assert text.exit_code == 0 and "fits 100%" in text.stdout
    assert len(lib.versions("p")) == 1                     # the same plan: no new version
    out = tmp_path / "exported"
    assert _cli(lib.home, "export", "p", out).exit_code == 0
    manifest = json.loads((out / "chain.json").read_text())
    assert manifest["config"]["steps"] == got["steps"] and manifest["kind"] == "chain"
    assert sorted(p.name for p in (out / "members").iterdir()) == sorted(set(got["members"]))
    assert (out / "members" / got["members"][0] / "adapter_model.safetensors").is_file()
    verify = _cli(lib.home, "verify", "--json")
    assert verify.exit_code == 0, verify.output

    bad_letters = tmp_path / "bad.jsonl"
    bad_letters.write_text('{"input": "ab9", "target": "b"}\n')
    not_json = tmp_path / "x.jsonl"
    not_json.write_text("{nope\n")
    no_cols = tmp_path / "c.jsonl"
    no_cols.write_text('{"text": "a", "label": "b"}\n')
    huge = tmp_path / "h.jsonl"
    huge.write_text('{"input": "ab", "target": "ba"}\n' * 40_000)
    for args, message in [
        (["--examples", tmp_path / "missing.jsonl"], "file not found"),
        (["--examples", bad_letters], "not in the world's alphabet"),
        (["--examples", not_json], "line 1"),
        (["--examples", no_cols], "input"),
        (["--examples", huge], "KiB"),
        (["--examples", tmp_path / "ex.jsonl.gz"], ".jsonl or .csv"),
        (["--examples", ex, "--score", "magic"], "unknown plan score"),
        (["--examples", ex, "--depth", 0], "depth"),
        (["--examples", ex, "--skills", "nope"], "nope"),
        (["--examples", ex, "--world", "arith"], "no single-task skill of world 'arith'"),
        (["--examples", ex, "--world", "arith", "--skills", "s-rot"], "chain call by call"),
        (["--examples", ex, "--world", "nowhere"], "unknown world"),
    ]:
        _one_line(lib.home, ["plan", "q", "--base", base.name, *args], message, capsys, monkeypatch)
    _one_line(lib.home, ["practice", "z", "--base", base.name, "--teacher", "s-rot", "--rounds", 1],
              "takes a chain skill", capsys, monkeypatch)
    _one_line(lib.home, ["eval", "p", "--tasks", "rot", "--metric", "pass-until"], "is a chain of calls",
              capsys, monkeypatch)
    _one_line(lib.home, ["localize", "p", "--steps", 1], "no weights of its own", capsys, monkeypatch)
    _one_line(lib.home, ["compose", "m", "--from", "p,s-rot"], "not as ΔW", capsys, monkeypatch)
    gone = got["members"][0]
    _one_line(lib.home, ["rm", gone], "chain p@1 applies", capsys, monkeypatch)  # refused
    with sqlite3.connect(lib.home / "catalog.sqlite") as db:  # removed behind rm's back:
        name, version = gone.split("@")
        db.execute("DELETE FROM skills WHERE name=? AND version=?", (name, int(version)))
    _one_line(lib.home, ["eval", "p", "--tasks", "rot", "--n", 2], name, capsys, monkeypatch)
