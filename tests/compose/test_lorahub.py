"""LoRAHub: the objective by hand, the search on a toy with a known optimum, the stored skill."""

import numpy as np
import pytest
import torch

from skillbank.acquire.data import training_batch
from skillbank.compose.lorahub import lorahub, objective, search
from skillbank.skill import SkillError
from skillbank.worlds import get_world
from tinyskills import random_lora, tiny_strings_library


def test_objective_by_hand():
    assert objective(2.0, [1.0, -0.5, 0.0]) == pytest.approx(2.0 + 0.05 * 1.5 / 3)
    assert objective(0.3, [0.0, 0.0]) == pytest.approx(0.3)
    assert objective(1.0, [-1.5], reg=0.1) == pytest.approx(1.15)


def test_search_finds_known_optimum_and_is_deterministic():
    target = np.array([1.0, -0.5])
    loss = lambda w: float(((w - target) ** 2).sum())  # noqa: E731 — one clear best setting
    w, best, history = search(loss, 2, steps=60, seed=0)
    assert np.abs(w - target).max() < 0.1
    assert history[0] == pytest.approx(loss(np.zeros(2)))  # starts at w = 0
    assert best == min(history) == pytest.approx(loss(w))
    w2, _, history2 = search(loss, 2, steps=60, seed=0)
    assert np.array_equal(w, w2) and history == history2


def test_search_respects_bounds():
    w, _, _ = search(lambda w: float(((w - 3.0) ** 2).sum()), 1, steps=30, seed=1)
    assert -1.5 <= w[0] <= 1.5 and w[0] > 1.2  # the optimum at 3 lies outside; pinned near 1.5
    with pytest.raises(SkillError):
        search(lambda w: 0.0, 0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    lib, base, tok = tiny_strings_library(tmp_path_factory.mktemp("lorahub"))
    return lib, base, [random_lora(lib, base, f"m{i}", seed=i) for i in range(2)], tok


def test_lorahub_skill_objective_by_hand(setup):
    _, base, members, tok = setup
    s = lorahub("hub", base, members, "strings", "rot", examples=3, steps=5, seed=0)
    w = s.recipe["weights"]
    assert s.kind == "delta" and s.lineage == [m.ref for m in members] and len(w) == 2
    assert s.recipe["method"] == "lorahub" and s.recipe["task"] == "rot"
    assert s.metrics["merge_error"]["max"] == 0.0
    for p, dw in s.delta().items():  # stored ΔW = Σ w_i ΔW_i
        want = w[0] * members[0].delta()[p] + w[1] * members[1].delta()[p]
        assert torch.allclose(dw, want, atol=1e-5)
    shots = get_world("strings").examples("rot", 3, seed=0, split="train")
    with torch.no_grad():
        ce = float(base.load_model([s])(**training_batch(tok, shots)).loss)
    assert s.metrics["lorahub"]["ce"] == pytest.approx(ce, rel=1e-4)
    assert s.metrics["lorahub"]["objective"] == pytest.approx(
        ce + 0.05 * (abs(w[0]) + abs(w[1])) / 2, rel=1e-4
    )
    with torch.no_grad():
        ce0 = float(base.load_model()(**training_batch(tok, shots)).loss)
    assert s.metrics["lorahub"]["objective_at_start"] == pytest.approx(ce0, rel=1e-4)
    assert s.metrics["lorahub"]["objective"] <= s.metrics["lorahub"]["objective_at_start"]
    again = lorahub("hub", base, members, "strings", "rot", examples=3, steps=5, seed=0)
    assert again.recipe["weights"] == w


def test_cli_lorahub(setup, capsys):
    import json

    from skillbank.cli.core import app

    lib, *_ = setup
    home = ["--home", str(lib.home)]
    app(
        [
            *home,
            "compose",
            "hub-cli",
            "--from",
            "m0,m1",
            "--method",
            "lorahub",
            "--world",
            "strings",
            "--task",
            "rot",
            "--examples",
            "2",
            "--steps",
            "3",
            "--json",
        ],
        standalone_mode=False,
    )
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["kind"] == "delta" and manifest["recipe"]["method"] == "lorahub"
    with pytest.raises(SkillError, match="--task"):
        app(
            [*home, "compose", "x", "--from", "m0,m1", "--method", "lorahub"], standalone_mode=False
        )
    with pytest.raises(SkillError, match="unknown method"):
        app([*home, "compose", "x", "--from", "m0,m1", "--method", "bogus"], standalone_mode=False)
