"""The demo and `transfer --verify` through an executor: a local pool of 2 processes (one
pool for the whole module) and the in-process executor give the same skills, matrix and
verified accuracies as the default in-process run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from skillbank.acquire.lora import LoraRecipe, train_lora
from skillbank.acquire.pretrain import BaseRecipe, ensure_base
from skillbank.cli import app
from skillbank.cli.core import Ui
from skillbank.demo import DemoConfig, run_demo
from skillbank.library import Library
from skillbank.run import get_executor
from skillbank.transfer.jobs import verify_on

DEMO = ["demo", "--size", "tiny", "--base-steps", "30", "--steps", "10", "--n", "8",
        "--tasks", "rot,shift", "--no-composition", "--no-localization"]
DEMO_CFG = dict(base=BaseRecipe(size="tiny", steps=30, seed=0), tasks=["rot", "shift"], steps=10,
                n_eval=8, seed=0, composition=False, localization=False)  # what DEMO asks for


def cli(home: Path, *args):
    result = CliRunner().invoke(app, ["--home", str(home), *map(str, args)])
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    return result


def skill_hashes(home: Path) -> dict:
    with Library.open(home) as lib:
        return {r.name: (r.version, r.content_hash) for r in lib.list()}


def without_seconds(skills: dict) -> dict:
    return {k: {f: v for f, v in s.items() if f != "train_seconds"} for k, s in skills.items()}


@pytest.fixture(scope="module")
def pool():
    """One local process pool (2 spawned workers) shared by the module: start-up is costly."""
    with get_executor("local", workers=2) as ex:
        yield ex


def test_demo_on_a_process_pool_matches_in_process(tmp_path, pool):
    home_a, out_a = tmp_path / "a" / "home", tmp_path / "a" / "out"
    res_a = cli(home_a, *DEMO, "--workers", "1", "--out", out_a)  # everything in this process
    a = json.loads((out_a / "summary.json").read_text())
    assert "local × 1" in res_a.stderr and "(2 trained now)" in res_a.stdout

    home_b, out_b = tmp_path / "b" / "home", tmp_path / "b" / "out"
    with Library.open(home_b) as lib:
        b = run_demo(lib, out_b, DemoConfig(**DEMO_CFG, workers=2), Ui(True), executor=pool)
        assert len(lib.results()) == 3 * 2  # the eval jobs wrote the result rows
    assert json.loads((out_b / "summary.json").read_text())["matrix"] == b["matrix"]
    assert set(a["matrix"]) == {"base:strings-tiny", "strings-rot@1", "strings-shift@1"}
    assert a["matrix"] == b["matrix"]
    assert without_seconds(a["skills"]) == without_seconds(b["skills"])
    assert set(a) == set(b)  # the summary has the same keys either way
    assert skill_hashes(home_a) == skill_hashes(home_b)  # bit-identical skills

    # the CLI options reach the executor: skills re-used by recipe, the matrix as eval jobs
    res_c = cli(home_b, *DEMO, "--executor", "local", "--out", tmp_path / "c")
    c = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert "(0 trained now)" in res_c.stdout and c["matrix"] == a["matrix"]
    assert without_seconds(c["skills"]) == without_seconds(a["skills"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    home = tmp_path_factory.mktemp("verify") / "home"
    torch.set_num_threads(1)
    with Library.open(home) as lib:
        base, _ = ensure_base(lib, "strings-tiny", BaseRecipe(size="tiny", steps=4, batch_size=8,
                                                              pool=32))
        refs = [lib.add(train_lora(f"strings-{t}", base, LoraRecipe(
            world="strings", task=t, rank=2, alpha=4, steps=2, batch_size=8, pool=32))).ref
            for t in ("rot", "shift")]
    return home, refs


def test_transfer_verify_on_a_process_pool_matches_in_process(tiny, pool):
    home, refs = tiny
    args = ["transfer", "rot+shift", "--candidates", ",".join(refs), "--n", "8", "--verify",
            "--steps", "3", "--n-eval", "8", "--json"]
    a = json.loads(cli(home, *args).stdout)["verified"]  # default: in this process
    c = json.loads(cli(home, *args, "--executor", "local").stdout)["verified"]  # verify jobs
    with Library.open(home) as lib:
        skills = [lib.get(r) for r in refs]
        b = verify_on(pool, home, lib.base_of(skills[0]), skills, "strings", "rot+shift", 3,
                      n_eval=8, seed=0)
    assert list(b) == [*refs, "scratch"] and set(a) == set(b) == set(c)
    for subject in a:
        for key in ("exact_match", "token_accuracy", "mean_logprob", "final_loss"):
            assert a[subject][key] == b[subject][key] == c[subject][key], (subject, key)


def test_executor_options_without_verify_or_unknown_are_errors(tiny, monkeypatch, capsys):
    from skillbank.cli.core import main

    home, refs = tiny
    for extra, msg in ((["--workers", "2"], "add --verify"),
                       (["--verify", "--executor", "slurm"], "unknown executor 'slurm'")):
        monkeypatch.setattr(sys, "argv", ["skillbank", "--home", str(home), "transfer", "rot",
                                          "--candidates", refs[0], *extra])
        with pytest.raises(SystemExit) as exit_info:
            main()
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and msg in err and len(err.splitlines()) == 1
