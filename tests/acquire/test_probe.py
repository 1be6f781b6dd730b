"""The probe beside every classifier, tokenize-once batches, the validation slice, and
`skillbank train` on the shipped Debian data with the probe and early stopping."""

from __future__ import annotations

import hashlib
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from skillbank.acquire.classify import Encoded, encode_texts, split_validation
from skillbank.acquire.probe import embed, fit_probe
from skillbank.cli import app
from skillbank.library import Library
from skillbank.skill import SkillError
from skillbank.worlds import get_world
from tinyskills import tiny_encoder


def test_fit_probe_by_hand():
    # 1-D, separable at 0: every held-out point on the right side → accuracy 1
    x = np.array([[-3.0], [-2.0], [-1.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 0, 1, 1, 1])
    got = fit_probe(x, y, np.array([[-0.5], [0.7], [4.0], [-9.0]]), np.array([0, 1, 1, 0]))
    assert got == {"accuracy": 1.0, "accuracy_stderr": 0.0}
    # a held-out row the other way round: 3 of 4 right, stderr sqrt(.75·.25/4)
    got = fit_probe(x, y, np.array([[-0.5], [0.7], [4.0], [-9.0]]), np.array([0, 1, 1, 1]))
    assert got["accuracy"] == 0.75
    assert got["accuracy_stderr"] == pytest.approx(np.sqrt(0.75 * 0.25 / 4))
    with pytest.raises(SkillError, match="two labels"):
        fit_probe(x[:3], y[:3], x, y)


def test_validation_slice_and_tokenize_once(tmp_path):
    pool = get_world("debian").examples("media", 0, seed=0, split="train")
    train, val = split_validation(pool)
    assert len(train) + len(val) == len(pool) and not {e.prompt for e in train} & {e.prompt for e in val}
    assert all(int(hashlib.sha256(e.prompt.encode()).hexdigest(), 16) % 9 == 0 for e in val)
    assert 0.08 < len(val) / len(pool) < 0.14
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_encoder(tmp_path / "enc"))
    texts = [e.prompt for e in pool[:7]]
    once, direct = Encoded(tok, texts, 16).batch(texts), encode_texts(tok, texts, 16)
    for k in ("input_ids", "attention_mask"):
        assert torch.equal(once[k], direct[k])


def test_cli_train_scores_the_skill_beside_the_probe(tmp_path):
    home = tmp_path / "home"
    with Library.open(home) as lib:
        base = lib.add_base("tinybert", tiny_encoder(tmp_path / "enc"))
        feats = embed(base, ["a text", "another, longer text"], 16)
        assert feats.shape == (2, 32)
    runner = CliRunner()
    r = runner.invoke(app, ["--home", str(home), "train", "m", "--base", "tinybert", "--world",
                            "debian", "--task", "media", "--steps", "30", "--val-every", "10",
                            "--max-length", "32", "--n", "40", "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)
    held = row["held_out"]
    assert held["probe"]["eval_rows"] == 40 and held["probe"]["train_rows"] == 934
    assert 0 <= held["skill"]["accuracy"] <= 1 and 0 <= held["probe"]["accuracy"] <= 1
    train = row["metrics"]["train"]
    assert [s for s, _ in train["validation"]][:2] == [10, 20] and train["best_step"] in (10, 20, 30)
    with Library.open(home) as lib:   # both stored as results, on the same 40 rows
        subjects = {r["subject"] for r in lib.results()}
        assert {"m@1", "probe:tinybert"} <= subjects
    r = runner.invoke(app, ["--home", str(home), "train", "f", "--base", "tinybert", "--world",
                            "debian", "--task", "net", "--shots", "16", "--steps", "5",
                            "--no-probe", "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)
    assert row["recipe"]["world_args"]["shots"] == 16 and "held_out" not in row
    assert "validation" not in row["metrics"]["train"]   # 64 rows: too few to hold any out


def test_cli_full_fine_tune_is_an_exact_delta_of_the_encoder_blocks(tmp_path):
    home = tmp_path / "home"
    with Library.open(home) as lib:
        base = lib.add_base("tinybert", tiny_encoder(tmp_path / "enc"))
        before = {k: v.clone() for k, v in base.load_model().state_dict().items()}
    r = CliRunner().invoke(app, ["--home", str(home), "train", "full", "--base", "tinybert",
                                 "--world", "debian", "--task", "media", "--shots", "16",
                                 "--full", "--steps", "3", "--no-probe", "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)
    assert row["kind"] == "delta" and row["recipe"]["method"] == "full-classifier"
    assert row["recipe"]["lr"] == 1e-4
    with Library.open(home) as lib:
        skill = lib.get("full")
        delta = skill.delta()
        assert set(delta) == {k for k in before if k.startswith("encoder.layer.")}
        merged = base.load_model([skill]).state_dict()
        for k, d in delta.items():   # base + ΔW is the fine-tuned weight
            assert torch.allclose(merged[k], before[k] + d, atol=1e-6)
        assert any(float(d.abs().max()) > 0 for d in delta.values())
    r = CliRunner().invoke(app, ["--home", str(home), "train", "x", "--base", "tinybert",
                                 "--task", "rot", "--full"])
    assert r.exit_code != 0
