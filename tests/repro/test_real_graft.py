"""`skillbank repro graft --profile real`: the summary arithmetic by hand, and the quick
profile end to end on a tiny BERT registered as the library's `minilm` base with the
shipped Debian data (few-shot full fine-tunes and LoRAs, each grafted at two sparsities)."""

from __future__ import annotations

import pytest

from skillbank.library import Library
from skillbank.repro import profiles
from skillbank.repro.real import graft
from tinyskills import run_quick_real


def _fig(gain: dict, ece_red: dict) -> dict:
    return {"relative_gain": {"learned": gain["learned"], "top_delta": gain["top"], "random": 0.0},
            "ece_reduction": {"learned": ece_red, "top_delta": None, "random": None}}


def test_summary_and_rule_by_hand():
    assert profiles("graft") == ["embedded", "real"]
    assert graft.ece_reduction(0.20, 0.05) == pytest.approx(0.75)
    assert graft.ece_reduction(0.10, 0.15) == pytest.approx(-0.5)
    assert graft.ece_reduction(0.0, 0.1) is None
    per = {"a": {"1e-05": _fig({"learned": 0.5, "top": 0.1}, 0.2),
                 "0.0001": _fig({"learned": 0.94, "top": 0.3}, 0.5)},
           "b": {"1e-05": _fig({"learned": 0.7, "top": None}, None),
                 "0.0001": _fig({"learned": 1.0, "top": 0.5}, 0.3)}}
    s = graft.summarise(per, ["1e-05", "0.0001"])
    assert s["mean_relative_gain"]["learned"] == pytest.approx({"1e-05": 0.6, "0.0001": 0.97})
    assert s["mean_relative_gain"]["top_delta"] == pytest.approx({"1e-05": 0.1, "0.0001": 0.4})
    assert s["mean_ece_reduction"]["learned"] == pytest.approx({"1e-05": 0.2, "0.0001": 0.4})
    assert s["crossing"] == {"0.90": 1e-4, "0.95": 1e-4}
    assert s["measurable"] == ["a", "b"]
    per["b"]["1e-05"]["measurable"] = False          # b's gap is under 2 stderr
    sure = graft.summarise(per, ["1e-05", "0.0001"])
    assert sure["measurable"] == ["a"]
    assert sure["mean_relative_gain_measurable"] == pytest.approx({"1e-05": 0.5, "0.0001": 0.94})
    assert sure["mean_relative_gain"] == s["mean_relative_gain"]   # the rule's mean: all
    figures = {"families": {"full 64-shot": s}}
    assert graft.holds(figures)                       # 0.97 > 0.95 and 0.40 ≥ 0.40
    s["mean_ece_reduction"]["learned"]["0.0001"] = 0.39
    assert not graft.holds(figures)
    s["mean_ece_reduction"]["learned"]["0.0001"] = 0.9
    s["mean_relative_gain"]["learned"]["0.0001"] = 0.95   # the paper's "> 95%"
    assert not graft.holds(figures)
    assert graft.crossing({"1e-05": 0.96, "0.01": 0.99}, 0.95) == 1e-5
    assert graft.crossing({"1e-05": None, "0.01": 0.5}, 0.9) is None


def test_quick_real_graft(tmp_path):
    home, res = run_quick_real(tmp_path, "graft")
    assert res["profile"] == "real" and res["quick"] is True and res["holds"] is False
    fam = res["figures"]["families"]
    assert set(fam) == set(graft.FAMILIES)
    for f in fam.values():
        assert set(f["skills"]) in (
            {"debian-full-64shot-labelhead-media", "debian-full-64shot-labelhead-net"},
            {"debian-64shot-labelhead-media", "debian-64shot-labelhead-net"})
        for per in f["skills"].values():
            assert set(per) == {"0.001", "0.01"}
            for g in per.values():
                assert g["size"] >= 1 and 0 < g["fraction"] <= 0.011
                assert set(g["accuracy"]) == {"base", "skill", "learned", "top_delta", "random"}
        assert len(f["overlap"]["0.001"]) == 2 and f["overlap"]["0.01"][0][0] == pytest.approx(1.0)
    assert (tmp_path / "out" / "relative_gain.png").exists()
    with Library.open(home) as lib:
        few = lib.get("debian-full-64shot-labelhead-media")
        assert few.kind == "delta" and few.recipe["world_args"]["shots"] == 64
        assert few.recipe["head"] == "labels"
        assert lib.get("debian-full-64shot-labelhead-media-graft-0.01").kind == "sparse"
