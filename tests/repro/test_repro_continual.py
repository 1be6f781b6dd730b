"""`skillbank repro continual --quick`: runs in seconds, the reproduction JSON (docs/methods.md)."""

import json

from skillbank.cli.core import Ui
from skillbank.library import Library
from skillbank.repro import available, run_repro

STRATEGIES = {"seq", "replay", "ewc", "olora", "expand"}


def test_quick_run_schema_and_rule(tmp_path):
    assert "continual" in available()
    lib = Library.open(tmp_path / "home")
    res, outcome = run_repro("continual", lib, tmp_path / "out", Ui(True), quick=True)
    assert set(res) >= {"name", "paper", "claim", "figures", "holds", "seed", "wall_seconds"}
    assert res["name"] == "continual" and isinstance(res["holds"], bool)
    fig = res["figures"]
    assert set(fig["strategies"]) == STRATEGIES
    T = len(fig["tasks"])
    for s in fig["strategies"].values():
        assert len(s["R"]) == T and all(len(row) == T for row in s["R"])
        for key in (
            "acc",
            "bwt",
            "fwt",
            "bwt_gem_code",
            "fwt_gem_code",
            "forgetting_avalanche",
            "forgetting_chaudhry",
            "intransigence_mean",
            "libero",
            "efficiency",
        ):
            assert key in s, key
    ex = fig["strategies"]["expand"]
    assert ex["forgetting_chaudhry"] == 0.0 and ex["members_bit_identical"]
    assert fig["checks"]["expand_acc_equals_alone"]
    # the rule is the conjunction of the stated checks
    assert res["holds"] == all(fig["checks"].values())
    assert len(fig["joint_reference"]) == T
    assert (tmp_path / "out" / "report.html").is_file()
    assert (tmp_path / "out" / "continual_seq.png").is_file()
    assert json.loads((tmp_path / "out" / "continual.json").read_text())["name"] == "continual"
    assert lib.results("repro:continual")
    assert len(outcome.table[1]) == len(STRATEGIES)
