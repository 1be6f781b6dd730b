"""`skillbank repro graft --quick`: the JSON schema, the figures, the holds rule, re-use of
stored grafts, and the demo's localization section — on a tiny base."""

from __future__ import annotations

import json

import pytest
from repro_helpers import SCHEMA, quick_run

from skillbank.cli.core import Ui
from skillbank.library import Library
from skillbank.repro import graft as rg
from skillbank.repro import run_repro
from skillbank.standard import demo_skills


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("rg")
    lib, res, outcome = quick_run("graft", root)
    yield lib, root, res, outcome
    lib.close()


def test_quick_json_schema_and_figures(quick):
    lib, root, res, _ = quick
    assert SCHEMA <= set(res) and res["name"] == "graft" and res["quick"] is True
    assert json.loads((root / "out" / "graft.json").read_text())["holds"] == res["holds"]
    f = res["figures"]
    assert set(f) >= {"sparsities", "steps", "skills", "mean_relative_gain", "overlap", "union",
                      "lora_sum", "seconds_per_localization", "target"}
    assert set(f["skills"]) == {"strings-rot", "strings-shift"}
    for p in f["skills"].values():
        assert set(p["by_sparsity"]) == {"0.01", "0.1"}
        for g in p["by_sparsity"].values():
            assert set(g["relative_gain"]) == set(rg.MASKS)
            assert set(g["token_ece"]) == {"base", "skill", *rg.MASKS}
            assert all(0 <= v <= 1 for v in g["token_ece"].values())
        assert p["by_sparsity"]["0.1"]["size"] > p["by_sparsity"]["0.01"]["size"]
    # the holds rule, recomputed from the figures
    want = all(max((g["relative_gain"]["learned"] or 0) for k, g in p["by_sparsity"].items()
                   if float(k) <= 0.01) >= rg.TARGET for p in f["skills"].values())
    assert res["holds"] == want
    ov = f["overlap"]
    assert len(ov["overlap"]) == 2 and ov["overlap"][0][0] == 1.0 and ov["transfer"][1][1] == 1.0
    assert ov["correlation"]["n_pairs"] <= 2 and ov["correlation"]["spearman"] is None
    u = f["union"]
    assert u["entries"] == sum(u["member_entries"]) - u["overlapping_entries"]
    assert set(u["normalised_vs_graft"]) == {"rot", "shift"}
    page = (root / "out" / "report.html").read_text()
    assert "relative_gain.png" in page and "overlap.png" in page
    assert (root / "out" / "relative_gain.png").stat().st_size > 0


def test_stored_grafts_are_reused_and_section(quick):
    lib, root, _, _ = quick
    before = len(lib.versions("strings-rot-graft-0.01"))
    run_repro("graft", lib, root / "out2", Ui(True), seed=0, quick=True)
    assert len(lib.versions("strings-rot-graft-0.01")) == before == 1
    cfg = rg.quick_demo_config(0)
    base, skills = demo_skills(lib, cfg, Ui(True))
    summary, sections = rg.localization_section(lib, base, skills, cfg.tasks, root / "demo",
                                                Ui(True), 0, n_eval=8, steps=3)
    assert set(summary["skills"]) == {"strings-rot", "strings-shift"}
    assert summary["sparsity"] == 0.01 and len(summary["overlap"]["matrix"]) == 2
    assert summary["all_targets_met"] == all(
        (p["relative_gain"]["learned"] or 0) >= 0.9 for p in summary["skills"].values())
    assert [s.title for s in sections][1] == "Overlap between grafts"
    assert (root / "demo" / "graft_overlap.png").exists()


def test_grafts_made_on_an_executor_give_the_same_figures(quick, tmp_path):
    """``prepare`` makes the skills and every graft as jobs on an executor; ``run`` then
    re-uses each of them (none is made twice) and reports the in-process figures."""
    from skillbank.run import get_executor

    _, _, res, _ = quick
    grafts = [f"strings-{t}-graft-{sp}" for t in ("rot", "shift") for sp in ("0.01", "0.1")]
    with Library.open(tmp_path / "home") as lib:
        with get_executor("local") as ex:
            rg.prepare(lib, Ui(True), seed=0, quick=True, executor=ex)
        made = {g: lib.versions(g)[0].content_hash for g in grafts}
        got, _ = run_repro("graft", lib, tmp_path / "out", Ui(True), seed=0, quick=True)
        assert {g: [v.content_hash for v in lib.versions(g)] for g in grafts} == \
            {g: [h] for g, h in made.items()}
    for name, p in res["figures"]["skills"].items():
        for sp, g in p["by_sparsity"].items():
            mine = got["figures"]["skills"][name]["by_sparsity"][sp]
            assert mine["relative_gain"] == g["relative_gain"] and mine["size"] == g["size"]
