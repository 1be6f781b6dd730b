"""`skillbank repro skillmix --quick`: the JSON schema, the figures, the holds rule and re-use
of the stored chain skill — on a tiny base."""

from __future__ import annotations

import copy
import json

import pytest
from repro_helpers import SCHEMA, quick_run

from skillbank.repro import skillmix as rs

RUNS = ("base", "trained_k2", "call_by_call", "held_out_trained_k2", "held_out_call_by_call")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("rsm")
    lib, res, outcome = quick_run("skillmix", root)
    yield lib, root, res, outcome
    lib.close()


def test_quick_json_schema_and_figures(quick):
    lib, root, res, outcome = quick
    assert SCHEMA <= set(res) and res["name"] == "skillmix" and res["quick"] is True
    assert json.loads((root / "out" / "skillmix.json").read_text())["holds"] == res["holds"]
    assert (root / "out" / "report.html").exists() and (root / "out" / "skillmix_rfm.png").exists()
    f = res["figures"]
    prims = f["primitives"]
    assert len(prims) == 4 and len(f["held_out_pairs"]) == 3  # ceil(20% of 12 ordered pairs)
    assert f["train_tasks"] == 4 + 12 - 3
    for name in RUNS:
        assert set(f[name]) == {"1", "2", "3", "4"}
        for k, m in f[name].items():
            if name.startswith("held_out") and k == "1":
                assert m is None  # a single step holds no pair
                continue
            assert m["n"] == 4 and 0 <= m["ratio_of_full_marks"] <= m["skill_fraction"] <= 1
            assert ("call_accuracy" in m) == name.endswith("call_by_call")
    assert set(f["eft"]["per_skill"]) == set(prims[:2])  # quick: EFT on two skills
    for r in f["eft"]["per_skill"].values():
        assert set(r) == {"large_base", "small_base", "small_skill", "upscaled"}
    assert res["holds"] == rs.holds_rule(f)
    assert len(outcome.table[1]) == len(RUNS)


def test_chain_skill_stored_and_found_by_recipe(quick):
    """A second run re-uses the chain LoRA: run() looks it up by (name, base, recipe)."""
    lib, _, res, _ = quick
    [row] = lib.versions(rs.CHAIN_SKILL)
    skill = lib.get(f"{row.name}@{row.version}")
    assert skill.ref == res["figures"]["chain_skill"]
    assert lib.find(rs.CHAIN_SKILL, skill.base, skill.recipe) == skill.ref
    tasks = skill.recipe["task"].split(",")
    assert len(tasks) == res["figures"]["train_tasks"]
    held = {"+".join(p) for p in res["figures"]["held_out_pairs"]}
    assert not held & set(tasks) and set(res["figures"]["primitives"]) <= set(tasks)


def _figures(a3, a4, base3, base4, c2):
    def m(x):
        return {"ratio_of_full_marks": x}
    return {"trained_k2": {"3": m(a3), "4": m(a4)}, "base": {"3": m(base3), "4": m(base4)},
            "held_out_trained_k2": {"2": None if c2 is None else m(c2)}}


@pytest.mark.parametrize("args,holds", [
    ((0.30, 0.10, 0.0, 0.0, 0.20), True),
    ((0.30, 0.04, 0.0, 0.0, 0.20), False),   # k = 4 not 0.05 above the base
    ((0.30, 0.10, 0.26, 0.0, 0.20), False),  # k = 3 not 0.05 above the base
    ((0.30, 0.10, 0.0, 0.0, 0.04), False),   # held-out pairs below 0.05
    ((0.30, 0.10, 0.0, 0.0, None), False),
    ((0.05, 0.05, 0.0, 0.0, 0.05), True),    # the margins are inclusive
])
def test_holds_rule_by_hand(args, holds):
    assert rs.holds_rule(copy.deepcopy(_figures(*args))) is holds
