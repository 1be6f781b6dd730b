"""repro composition: the pure pieces by hand, a quick run end to end, and its JSON schema."""

import json

import pytest
import torch

from skillbank.cli.core import Ui
from skillbank.library import Library
from skillbank.repro import available, run_repro
from skillbank.repro.composition import deviation_from_sum, holds


def test_deviation_from_sum_by_hand():
    aligned = {
        "a": [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])],  # sum [1, 1]
        "b": [torch.tensor([[2.0]]), torch.tensor([[0.0]])],
    }  # sum [2]
    assert (
        deviation_from_sum({"a": torch.tensor([[1.0, 1.0]]), "b": torch.tensor([[2.0]])}, aligned)
        == 0.0
    )
    # error [0, -1] and [0]: sqrt(1) / sqrt(1 + 1 + 4)
    got = deviation_from_sum({"a": torch.tensor([[1.0, 0.0]]), "b": torch.tensor([[2.0]])}, aligned)
    assert got == pytest.approx(1 / 6**0.5)
    assert deviation_from_sum({}, aligned) == pytest.approx(1.0)  # a missing matrix counts as 0


@pytest.mark.parametrize(
    "norm,want",
    [({"a": 0.95, "b": 1.2}, True), ({"a": 0.94, "b": 1.0}, False), ({"a": None, "b": 1.0}, False)],
)
def test_holds_rule(norm, want):
    assert holds({"methods": {"router": {"normalised": norm}}}) is want


def test_quick_run_schema(tmp_path):
    assert "composition" in available()
    lib = Library.open(tmp_path / "home")
    res, outcome = run_repro(
        "composition", lib, tmp_path / "out", Ui(quiet=True), seed=0, quick=True
    )
    saved = json.loads((tmp_path / "out" / "composition.json").read_text())
    assert set(saved) >= {"name", "paper", "claim", "figures", "holds", "seed", "wall_seconds"}
    fig = saved["figures"]
    want = {
        "linear",
        "ties-peft",
        "ties-mergekit",
        "dare_linear",
        "dare_ties",
        "magnitude_prune",
        "cat",
        "layer_swap",
        "lorahub",
        "scalearn",
        "scalearn-uniform",
        "scalearn++",
        "scalearn-uniform++",
        "router",
    }
    assert set(fig["methods"]) == want
    for entry in fig["methods"].values():
        assert set(entry["normalised"]) == set(fig["tasks"]) and entry["seconds"] >= 0
        assert ("merge_error" in entry) and entry["stored_error"] == 0.0
    for exact in ("linear", "cat"):  # exact merges: no distance from the sum of the members
        assert fig["methods"][exact]["merge_error"] == pytest.approx(0.0, abs=1e-5)
    assert fig["methods"]["ties-peft"]["merge_error"] > 0.0
    assert fig["methods"]["router"]["merge_error"] is None
    assert saved["holds"] == holds(fig)
    assert (tmp_path / "out" / "report.html").exists()

    # the demo's section, on the same (re-used) quick skills
    from skillbank.acquire.pretrain import BaseRecipe
    from skillbank.repro.composition import composition_section
    from skillbank.standard import DemoConfig, demo_skills

    cfg = DemoConfig(base=BaseRecipe(size="tiny", steps=20, pool=200), steps=6, rank=4)
    base, skills = demo_skills(lib, cfg, Ui(quiet=True))
    figures, sections = composition_section(
        lib,
        base,
        skills,
        cfg.tasks,
        tmp_path / "demo",
        Ui(quiet=True),
        cfg.router_recipe().__class__(cfg.base.world, cfg.tasks, steps=2),
        n_eval=4,
        seed=0,
    )
    assert set(figures["methods"]) == {"linear", "ties-peft", "cat", "router"}
    assert isinstance(figures["router_meets_target"], bool) and sections[0].images
    assert (tmp_path / "demo" / sections[0].images[0]).exists()
