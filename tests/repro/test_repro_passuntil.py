"""`skillbank repro passuntil --quick` and `repro mirage --quick`: the JSON, the rules applied
to the figures, mirage re-using passuntil's rows, and the jump share by hand."""

from __future__ import annotations

import math

import pytest
from repro_helpers import SCHEMA

from skillbank.cli.core import Ui
from skillbank.library import Library
from skillbank.repro import run_repro
from skillbank.repro.mirage import jump_share
from skillbank.repro.passuntil import FACTOR, TASKS


def test_jump_share_by_hand():
    assert jump_share([0, 0, 0.1, 0.9, 1.0]) == pytest.approx(0.8)
    assert jump_share([0.0, 0.25, 0.5, 0.75, 1.0]) == pytest.approx(0.25)
    assert jump_share([3, 3, 3]) == 0.0
    with pytest.raises(ValueError):
        jump_share([1.0])


def test_passuntil_then_mirage_quick(tmp_path):
    with Library.open(tmp_path / "home") as lib:
        res, _ = run_repro("passuntil", lib, tmp_path / "pu", Ui(True), seed=0, quick=True)
        rows = len(lib.results())
        mirage, _ = run_repro("mirage", lib, tmp_path / "mirage", Ui(True), seed=0, quick=True)
        assert len(lib.results()) == rows + 1      # only mirage's own result row: nothing re-measured
    assert SCHEMA <= set(res) and res["name"] == "passuntil"
    f = res["figures"]
    assert set(f["tasks"]) == set(TASKS) and len(f["family"]) == 4
    within = {t: max(x.get("log_error", math.inf), x.get("loglog_error", math.inf)) <= math.log(FACTOR)
              and not x["exact_match_fittable"] for t, x in f["tasks"].items()}
    assert f["within_factor"] == within and res["holds"] == (sum(within.values()) >= 2)
    assert (tmp_path / "pu" / "passuntil_scaling.png").stat().st_size > 0
    m = mirage["figures"]
    for t, x in m["tasks"].items():
        em = x["series"]["exact_match"]
        assert x["jump_share"]["exact_match"] == pytest.approx(jump_share(em), abs=1e-4)
        assert em == f["tasks"][t]["exact_match"]
    assert mirage["holds"] == (sum(m["holds_by_task"].values()) >= 2)
