"""`skillbank repro composition --profile real` end to end, quick, on a tiny BERT registered
as the library's `minilm` base (the profile uses that base when there is one), with the
shipped Debian data: every merge and the advisor answer each task with its own head."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from skillbank.cli import app
from skillbank.library import Library
from skillbank.repro import available, profiles
from skillbank.repro.real import composition
from tinyskills import tiny_encoder


def test_real_profile_listed_and_holds_rule_by_hand():
    assert "composition" in available() and "real" not in available()
    assert profiles("composition") == ["embedded", "real"] and profiles("lora") == ["embedded"]
    methods = {"regmean": {"mean": 0.9}, "ties 0.2": {"mean": 0.8}, "simple average": {"mean": 0.8}}
    assert composition.holds({"full": {"methods": methods}})
    methods["simple average"]["mean"] = 0.81
    assert not composition.holds({"full": {"methods": methods}})


def test_quick_real_composition(tmp_path):
    home = tmp_path / "home"
    with Library.open(home) as lib:
        lib.add_base("minilm", tiny_encoder(tmp_path / "enc"))
    r = CliRunner().invoke(app, ["--home", str(home), "repro", "composition", "--profile", "real",
                                 "--quick", "--out", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["profile"] == "real" and res["quick"] is True
    fig = res["figures"]
    assert fig["tasks"] == ["media", "net"]
    for what in ("lora", "full"):
        fam = fig[what]
        assert set(fam["methods"]) == set(composition.specs(2, 0)) | {"auto", composition.ROUTER}
        assert len(fam["methods"][composition.ROUTER]["mean_alpha"]["net"]) == 2
        for m in fam["methods"].values():
            assert set(m["normalised"]) == {"media", "net"}
        assert fam["methods"]["auto"]["chosen"]["method"]
        assert (tmp_path / "out" / f"composition_real_{what}.png").exists()
    with Library.open(home) as lib:
        assert lib.get("debian-media").kind == "lora" and lib.get("debian-full-net").kind == "delta"
        # a full fine-tune changes every encoder-block weight and nothing else
        full = lib.get("debian-full-media")
        assert full.delta() and all(k.startswith("encoder.layer.") for k in full.delta())
