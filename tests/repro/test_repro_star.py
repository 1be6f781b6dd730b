"""`skillbank repro star --quick`: the JSON, the variants, and the rule applied to the figures."""

from __future__ import annotations

from repro_helpers import SCHEMA

from skillbank.cli.core import Ui
from skillbank.library import Library
from skillbank.repro import run_repro
from skillbank.repro.star import RISE, TARGET, VARIANTS


def test_star_quick(tmp_path):
    with Library.open(tmp_path / "home") as lib:
        res, _ = run_repro("star", lib, tmp_path / "out", Ui(True), seed=0, quick=True)
    assert SCHEMA <= set(res) and res["name"] == "star"
    f = res["figures"]
    assert set(f["final_exact_match"]) == {*VARIANTS, "supervised", "start"}
    assert set(f["per_round"]) == set(VARIANTS) and len(f["runs"]) == 1
    assert set(f["final_by_task"]) == set(f["tasks"])
    s = f["final_exact_match"]
    assert res["holds"] == (s["star"] is not None and s["star"] >= TARGET and s["star"] >= s["start"] + RISE)
