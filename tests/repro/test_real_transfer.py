"""`skillbank repro transfer --profile real`: the rule by hand, and the quick profile end to
end on a tiny BERT registered as the library's `minilm` base with the shipped Debian data
(real LoRA candidates scored and verified on the few-shot held-out task)."""

from __future__ import annotations

from skillbank.repro import profiles
from skillbank.repro.real import transfer
from tinyskills import run_quick_real


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
    home, res = run_quick_real(tmp_path, "transfer")
    fig = res["figures"]
    assert res["profile"] == "real" and fig["target"] == "writing" and fig["shots"] == 4
    assert fig["candidates"] == ["debian-media@1", "debian-net@1", "debian-science@1"]
    assert fig["rows"] == 16                                  # 4 labels × 4 shots
    assert set(fig["verified_accuracy"]) == set(fig["candidates"])
    assert all(0.0 <= a <= 1.0 for a in fig["verified_accuracy"].values())
    assert set(fig["agreement"]) == set(fig["scores"])
    assert res["holds"] is False                             # 3 candidates: never enough
