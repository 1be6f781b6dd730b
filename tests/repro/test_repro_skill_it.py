"""`skillbank repro skill-it --quick`: the reproduction JSON (docs/methods.md, Reproductions), figures per method, the rule."""

from __future__ import annotations

import json

from repro_helpers import SCHEMA

from skillbank.cli.core import Ui
from skillbank.library import Library
from skillbank.repro import run_repro


def test_skill_it_quick(tmp_path):
    with Library.open(tmp_path / "home") as lib:
        res, outcome = run_repro("skill-it", lib, tmp_path / "out", Ui(True), seed=0, quick=True)
        assert lib.results("repro:skill-it")[0]["metrics"]["holds"] == res["holds"]
    assert SCHEMA <= set(res) and res["name"] == "skill-it" and res["quick"] is True
    f = res["figures"]
    assert f["seeds"] == [0, 1, 2] and f["skills"] == ["1", "2", "3"]  # LEGO k = 3, ordered
    assert f["world_args"] == {"k": 3, "ordered": True}
    for method in ("skill-it", "random", "stratified"):
        assert len(f[method]["mean_accuracy_per_seed"]) == 3
        assert set(f[method]["accuracy_per_skill"]) == set(f["skills"])
        assert 0 <= f[method]["mean_accuracy"] <= 1
    assert f["margin_vs_random"] == round(f["skill-it"]["mean_accuracy"] - f["random"]["mean_accuracy"], 4)
    d = [a - b for a, b in zip(f["skill-it"]["mean_accuracy_per_seed"],
                               f["random"]["mean_accuracy_per_seed"], strict=True)]
    mean = sum(d) / 3
    stderr = (sum((x - mean) ** 2 for x in d) / 2) ** 0.5 / 3 ** 0.5   # paired, by hand
    assert abs(f["margin_vs_random_stderr"] - stderr) < 1e-3
    assert res["holds"] == (f["margin_vs_random"] > 2 * f["margin_vs_random_stderr"])
    assert len(f["skill-it"]["graph_seed0"]) == 3 and f["graph_steps_skill_it"] == 3  # 1 step per skill
    saved = json.loads((tmp_path / "out" / "skill-it.json").read_text())
    assert saved["figures"]["margin_vs_random"] == f["margin_vs_random"]
    for png in ("skill_it_skill_it.png", "skill_it_random.png", "skill_it_stratified.png", "skill_it_graph.png"):
        assert (tmp_path / "out" / png).stat().st_size > 0
