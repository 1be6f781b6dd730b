"""`skillbank repro less --quick`: the reproduction JSON (docs/methods.md, Reproductions), the three trainings, the rule."""

from __future__ import annotations

from repro_helpers import SCHEMA

from skillbank.cli.core import Ui
from skillbank.library import Library
from skillbank.repro import run_repro
from skillbank.repro.less import MARGIN, POOL, TARGET, related


def test_related():
    assert related("shift+rev", "shift") and related("shift", "shift") and not related("rot", "shift")


def test_less_quick(tmp_path):
    with Library.open(tmp_path / "home") as lib:
        res, outcome = run_repro("less", lib, tmp_path / "out", Ui(True), seed=0, quick=True)
    assert SCHEMA <= set(res) and res["name"] == "less"
    f = res["figures"]
    assert f["target"] == TARGET and f["pool_tasks"] == POOL
    assert set(f["accuracy"]) == {"less_5pct", "random_5pct", "full_pool"}
    assert f["selected"] == round(0.05 * f["pool_size"]) == sum(f["less_make_up"].values())
    assert f["less_share_target"] == round(f["less_make_up"].get(TARGET, 0) / f["selected"], 4)
    acc = f["accuracy"]
    assert res["holds"] == (acc["less_5pct"] >= acc["random_5pct"]
                            and acc["less_5pct"] >= acc["full_pool"] - MARGIN)
