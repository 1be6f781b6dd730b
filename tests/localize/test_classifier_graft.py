"""Grafting a classifier (the paper's setting) on a tiny BERT with MiniLM's tokenizer and the
shipped Debian rows: the skill row equals the skill evaluated on its own, the graft is a
classifier that evaluates to the accuracy its metrics report, and the size stays in budget."""

from __future__ import annotations

import pytest

from skillbank.acquire.classify import ClassifierRecipe, train_classifier
from skillbank.evaluate.classify import evaluate_classifier
from skillbank.library import Library
from skillbank.localize.ops import GraftRecipe, localize
from skillbank.worlds import get_world
from tinyskills import tiny_encoder


@pytest.fixture(scope="module")
def graft(tmp_path_factory):
    root = tmp_path_factory.mktemp("clfgraft")
    lib = Library.open(root / "home")
    base = lib.add_base("tinybert", tiny_encoder(root / "enc"))
    skill = lib.add(train_classifier("media-clf", base, ClassifierRecipe(
        task="media", world="debian", world_args={"shots": 16}, steps=30, batch_size=16,
        lr=1e-2, max_length=32)))
    g = localize(base, skill, GraftRecipe(sparsity=0.05, steps=6, eval_every=3, n_train=32,
                                          n_val=16, batch_size=8), n_eval=40)
    yield lib, base, skill, lib.add(g)
    lib.close()


def test_skill_row_is_the_skill_alone_and_the_graft_is_a_classifier(graft):
    lib, base, skill, g = graft
    loc = g.metrics["localization"]
    world = get_world("debian")
    alone = evaluate_classifier(base, skill, world, "media", 40, 0)
    assert loc["subjects"]["skill"]["accuracy"] == pytest.approx(alone["accuracy"])
    assert loc["subjects"]["skill"]["ece"] == pytest.approx(alone["ece"], abs=1e-9)
    again = evaluate_classifier(base, g, world, "media", 40, 0)   # the stored sparse skill
    assert again["accuracy"] == pytest.approx(loc["subjects"]["learned"]["accuracy"])
    assert g.heads()["media"]["labels"] == ["graphics", "sound", "video"]
    assert loc["size"] <= loc["k_init"] and loc["fraction"] == pytest.approx(
        loc["size"] / loc["n_eligible"])
    assert loc["subjects"]["learned"]["exact_match"] == loc["subjects"]["learned"]["accuracy"]
    for label in ("learned", "top_delta", "random"):
        assert loc["subjects"][label]["size"] == loc["size"]
    # every eligible parameter sits in the encoder blocks
    assert all(k.startswith("encoder.layer.") for k in g.tensors if not k.startswith("head."))


def test_a_graft_asked_for_more_rows_than_the_task_holds_is_found_again(graft, monkeypatch):
    """media's eval split holds 94 rows: a graft asked for 200 evaluates all 94, and a
    re-run asking for 200 again finds it (it used to look for n_eval == 200 and redo it)."""
    from skillbank.localize.jobs import ensure_graft, recipe_for

    lib, base, skill, _ = graft
    recipe = recipe_for(skill, 0.05, 0, steps=1, eval_every=1, n_train=8, n_val=8, batch_size=4)
    first, made = ensure_graft(lib, base, skill, recipe, 200)
    assert made and first.metrics["localization"]["n_eval"] == 94
    import skillbank.localize.jobs as jobs

    def no_redo(*a, **k):
        raise AssertionError("the stored graft was not found: localized again")
    monkeypatch.setattr(jobs, "localize", no_redo)
    again, made = ensure_graft(lib, base, skill, recipe, 200)
    assert not made and again.ref == first.ref
