"""Transfer for classifiers on an encoder (tiny BERT, MiniLM's tokenizer, Debian rows): one
feature row per text (its mean-pooled embedding), LEEP from the candidate's own head and
undefined for the headless base, and verification fine-tunes that start from each
candidate's LoRA factors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from skillbank.acquire.classify import ClassifierRecipe, encode_texts, mean_pool, train_classifier
from skillbank.cli import app
from skillbank.library import Library
from skillbank.transfer.classify import classifier_features, target_rows
from skillbank.transfer.estimators import estimate
from skillbank.transfer.rank import score_candidates
from skillbank.worlds import get_world
from tinyskills import tiny_encoder


@pytest.fixture(scope="module")
def lib_skills(tmp_path_factory):
    root = tmp_path_factory.mktemp("xfer")
    lib = Library.open(root / "home")
    base = lib.add_base("tinybert", tiny_encoder(root / "enc"))
    skills = [lib.add(train_classifier(f"{t}-clf", base, ClassifierRecipe(
        task=t, world="debian", world_args={"shots": 16}, steps=10, batch_size=16, lr=1e-2,
        max_length=32))) for t in ("media", "net")]
    yield root, lib, base, skills
    lib.close()


def test_features_and_leep_by_hand(lib_skills):
    _, _, base, skills = lib_skills
    world = get_world("debian")
    texts, y = target_rows(world, "writing", 12, 0)
    assert y.tolist() == [world.labels("writing").index(e.target)
                          for e in world.examples("writing", 12, 0, "train")]
    a = skills[0]
    tf = classifier_features(base, a, texts, y)
    model = base.load_model([a]).eval()
    enc = encode_texts(base.load_tokenizer(), texts, 32)
    with torch.no_grad():
        pooled = mean_pool(model(**enc).last_hidden_state, enc["attention_mask"])
        probs = torch.softmax((pooled @ a.tensors["head.weight"].T + a.tensors["head.bias"]).double(), -1)
    assert np.allclose(tf.features, pooled.double().numpy(), atol=1e-6)
    assert np.allclose(tf.probs, probs.numpy(), atol=1e-6) and tf.probs.shape == (12, 3)
    scored = score_candidates(base, skills, "debian", "writing", n=12)
    assert scored["scores"]["base"]["leep"] is None
    assert scored["scores"][a.ref]["leep"] == pytest.approx(estimate("leep", tf.features, y, tf.probs))
    assert scored["rows"] == 12 and sorted(scored["ranking"]["logme"]) == sorted(s.ref for s in skills)


def test_cli_transfer_verify_on_classifiers(lib_skills):
    root, _, _, skills = lib_skills
    r = CliRunner().invoke(app, ["--home", str(root / "home"), "transfer", "writing",
                                 "--candidates", "media-clf,net-clf", "--n", "16", "--verify",
                                 "--steps", "3", "--n-eval", "10", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["world"] == "debian"   # from the candidates' recipes
    assert set(res["verified"]) == {"media-clf@1", "net-clf@1", "scratch"}
    for v in res["verified"].values():
        assert 0.0 <= v["accuracy"] <= 1.0 and v["exact_match"] == v["accuracy"]
    assert set(res["agreement"]) == {"logme", "tmi", "leep", "hscore", "hscore-shrunk"}
