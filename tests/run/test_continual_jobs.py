"""Continual acquisition as jobs: one ``continual`` job per strategy equals ``run_continual``
in this process, through a pool and in-process; the CLI runs several strategies."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch
from typer.testing import CliRunner

from skillbank.cli import app
from skillbank.cli.core import Ui
from skillbank.continual.jobs import CONTINUAL
from skillbank.continual.strategies import ContinualConfig, run_continual
from skillbank.library import Library
from skillbank.run import Job, get_executor
from tinyskills import tiny_strings_library

TINY = {"tasks": ["rot", "shift"], "steps": 5, "batch_size": 8, "pool": 32, "n_eval": 6,
        "router_steps": 3, "fisher_batches": 2, "rank": 2, "alpha": 4}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    lib, base, _ = tiny_strings_library(tmp_path_factory.mktemp("continual-jobs"))
    return lib, base


@pytest.fixture(scope="module")
def pool():
    with get_executor("local", workers=2) as ex:
        yield ex


def _job(strategy: str, joint=None) -> Job:
    cfg = ContinualConfig(strategy=strategy, **TINY)
    return CONTINUAL.job({"config": asdict(cfg), "base": "tiny", "joint": joint},
                         f"continual {strategy}")


def test_continual_jobs_in_a_pool_equal_run_continual_in_process(tiny, pool):
    lib, base = tiny
    joint = [0.5, 0.25]  # a given reference: intransigence = joint − R[i][i]
    done = pool.run(lib.home, [_job("seq", joint), _job("ewc", joint)])
    assert [(r.job.label, r.status) for r in done] == [("continual seq", "done"),
                                                       ("continual ewc", "done")]
    for r, strategy in zip(done, ["seq", "ewc"], strict=True):
        here = run_continual(lib, base, ContinualConfig(strategy=strategy, **TINY), Ui(True),
                             joint=joint)
        got = r.result
        assert got["config"]["strategy"] == strategy
        assert got["R"] == here.R and got["b"] == here.b and got["R_stderr"] == here.R_stderr
        assert got["metrics"] == here.metrics
        assert got["metrics"]["intransigence_mean"] == pytest.approx(
            sum(j - here.R[i][i] for i, j in enumerate(joint)) / 2)
        # R is 0 on the untrained tiny base: the proof of equality is the skills. Versions are
        # content-addressed, so the in-process run gets @1 only if its tensors equal the job's
        # (different tensors would be stored as @2)
        assert got["skills"] == here.skills == [f"cl-{strategy}-rot@1", f"cl-{strategy}-shift@1"]
    # each job stored its result row as run_continual does (plus the in-process one)
    assert len(lib.results("continual:seq")) == 2 and len(lib.results("continual:ewc")) == 2


def test_cli_two_strategies_in_process_emit_both(tiny, tmp_path):
    lib, _ = tiny
    home = str(lib.home)
    args = ["--home", home, "continual", "--tasks", "rot,shift", "--strategy", "seq,replay",
            "--base", "tiny", "--steps", "3", "--batch-size", "8", "--n-eval", "4",
            "--executor", "local"]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r1"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["strategies"] == ["seq", "replay"] and set(data["runs"]) == {"seq", "replay"}
    assert (data["executor"], data["workers"], data["failed"]) == ("local", 1, [])
    with Library.open(home) as again:
        for s in ("seq", "replay"):
            row = again.results(f"continual:{s}")[-1]["metrics"]
            assert data["runs"][s]["R"] == row["R"] and data["runs"][s]["b"] == row["b"]
            assert data["runs"][s]["metrics"]["acc"] == row["acc"]
    assert (tmp_path / "r1" / "report.html").is_file()
    text = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r2")])
    assert text.exit_code == 0, text.output
    assert "R (seq)" in text.output and "R (replay)" in text.output
    bad = CliRunner().invoke(app, [*args[:-2], "--executor", "slurm"])
    assert bad.exit_code != 0 and "unknown executor" in str(bad.exception)
