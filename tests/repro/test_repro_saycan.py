"""`skillbank repro saycan --quick`: the JSON's shape, and the rule applied to figures by hand."""

from __future__ import annotations

import copy

from repro_helpers import SCHEMA

from skillbank.cli.core import Ui
from skillbank.library import Library
from skillbank.repro import run_repro
from skillbank.repro.saycan import KS, LIBRARIES, SCORES, holds_rule


def test_saycan_quick(tmp_path):
    with Library.open(tmp_path / "home") as lib:
        res, _ = run_repro("saycan", lib, tmp_path / "out", Ui(True), seed=0, quick=True)
        f = res["figures"]
        assert SCHEMA <= set(res) and res["name"] == "saycan"
        assert set(f["by_k"]) == {str(k) for k in KS}
        for k in KS:
            cell = f["by_k"][str(k)]
            assert set(cell) == {*LIBRARIES, "named", "trained_k2", "tasks"}
            assert all(set(cell[lib]) == set(SCORES) for lib in LIBRARIES)
        assert len(f["distil"]) == len(KS)                    # quick distils whatever it planned
        for d in f["distil"]:
            assert lib.get(d["chain_skill"]).kind == "chain"
        assert res["holds"] == holds_rule(f)


def _figures(em, k2=0.1, distil=((0.5, 0.48),)):
    """Figures where every library/score has exact match ``em[lib][score]`` at both k."""
    by = {str(k): {lib: {sc: {"exact_match": em[lib][sc]} for sc in SCORES} for lib in LIBRARIES}
          for k in KS}
    for k in KS:
        by[str(k)]["trained_k2"] = {"exact_match": k2}
    return {"by_k": by, "distil": [{"chain": c, "distilled": d} for c, d in distil]}


def test_the_rule_by_hand():
    em = {"library": {"both": 0.4, "usefulness": 0.4, "affordance": 0.1},
          "twins": {"both": 0.35, "usefulness": 0.25, "affordance": 0.1}}
    assert holds_rule(_figures(em))
    tie = copy.deepcopy(em)
    tie["twins"]["usefulness"] = 0.35                     # usefulness alone as good: fails (a)
    assert not holds_rule(_figures(tie))
    assert not holds_rule(_figures(em, k2=0.4))           # the k ≤ 2 LoRA as good: fails (b)
    assert not holds_rule(_figures(em, distil=((0.5, 0.44),)))   # distilled 6 points below: (c)
    assert not holds_rule(_figures(em, distil=()))        # nothing distilled: (c) unshown
