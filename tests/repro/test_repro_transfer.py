"""``skillbank repro transfer --quick``: runs in seconds, reports every figure the claim needs."""

from __future__ import annotations

import json

from skillbank.cli.core import Ui
from skillbank.library import Library
from skillbank.repro import available, run_repro


def test_repro_transfer_quick(home, tmp_path):
    assert "transfer" in available()
    lib = Library.open(home)
    res, outcome = run_repro("transfer", lib, tmp_path / "out", Ui(quiet=True), seed=0, quick=True)
    assert {"name", "paper", "claim", "figures", "holds", "seed", "wall_seconds"} <= set(res)
    f = res["figures"]
    for key in ("scores", "verified_exact_match", "scratch_exact_match", "agreement",
                "agreement_token_accuracy", "scoring_seconds", "verify_seconds",
                "score_over_verify", "chosen_estimator", "best_estimator", "candidates"):
        assert key in f, key
    assert len(f["candidates"]) >= 6
    assert set(f["scores"]) == set(f["agreement"]) == {"logme", "tmi", "leep", "hscore", "hscore-shrunk"}
    for est, scores in f["scores"].items():
        assert set(scores) == set(f["candidates"])
        assert {"kendall_tau", "weighted_tau", "top1"} <= set(f["agreement"][est])
    tau = f["agreement"][f["chosen_estimator"]]["kendall_tau"]
    assert res["holds"] == (tau is not None and tau > 0.5)   # the docstring's rule
    assert f["scoring_seconds"] > 0 and f["verify_seconds"] > 0 and f["score_over_verify"] > 0
    saved = json.loads((tmp_path / "out" / "transfer.json").read_text())
    assert saved["figures"]["candidates"] == f["candidates"]
    assert (tmp_path / "out" / "report.html").exists()
    assert outcome.table[0][0] == "estimator" and len(outcome.table[1]) == 5
