"""`skillbank repro transfer --profile real`: the rule by hand, and the quick profile end to
end on a tiny BERT registered as the library's `minilm` base with the shipped Debian data
(real LoRA candidates scored and verified on the few-shot held-out task)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from skillbank.cli import app
from skillbank.library import Library
from skillbank.repro import profiles
from skillbank.repro.real import transfer
from tinyskills import tiny_encoder


def test_rule_by_hand():
    assert profiles("transfer") == ["embedded", "real"]
    assert transfer.TARGET not in transfer.CANDIDATES
    agree = {"logme": {"kendall_tau": 0.6}, "leep": {"kendall_tau": 1.0}}
    assert transfer.holds(agree, 5)
    assert not transfer.holds(agree, 4)                      # too few candidates
    agree["logme"]["kendall_tau"] = 0.5                      # "> 0.5", not ≥
    assert not transfer.holds(agree, 5)
    agree["logme"]["kendall_tau"] = None                     # undefined (all tied)
    assert not transfer.holds(agree, 5)


def test_quick_real_transfer(tmp_path):
    home = tmp_path / "home"
    with Library.open(home) as lib:
        lib.add_base("minilm", tiny_encoder(tmp_path / "enc"))
    r = CliRunner().invoke(app, ["--home", str(home), "repro", "transfer", "--profile", "real",
                                 "--quick", "--out", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    fig = res["figures"]
    assert res["profile"] == "real" and fig["target"] == "writing" and fig["shots"] == 4
    assert fig["candidates"] == ["debian-media@1", "debian-net@1", "debian-science@1"]
    assert fig["rows"] == 16                                  # 4 labels × 4 shots
    assert set(fig["verified_accuracy"]) == set(fig["candidates"])
    assert all(0.0 <= a <= 1.0 for a in fig["verified_accuracy"].values())
    assert set(fig["agreement"]) == set(fig["scores"])
    assert res["holds"] is False                             # 3 candidates: never enough
