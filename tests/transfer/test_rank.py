"""Ranking candidates on a tiny base: feature rows, score/ranking shape, τ against scipy, verify."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from skillbank.acquire.data import encode_target
from skillbank.acquire.lora import LoraRecipe, train_lora
from skillbank.acquire.pretrain import BaseRecipe, ensure_base
from skillbank.cli import app
from skillbank.library import Library
from skillbank.run import get_executor
from skillbank.skill import SkillError
from skillbank.transfer.jobs import verify_on
from skillbank.transfer.rank import agreement, ranked, score_candidates, target_features
from skillbank.worlds import get_world


def _recipe(task: str, **kw) -> LoraRecipe:
    return LoraRecipe(world="strings", task=task, rank=2, alpha=4, steps=2, batch_size=8, pool=32,
                      **kw)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    home = tmp_path_factory.mktemp("transfer") / "home"
    torch.set_num_threads(1)
    lib = Library.open(home)
    recipe = BaseRecipe(size="tiny", steps=4, batch_size=8, pool=32)
    base, _ = ensure_base(lib, "strings-tiny", recipe)
    skills = [lib.add(train_lora(f"strings-{t}", base, _recipe(t)))
              for t in ("rot", "shift", "swap")]
    return home, lib, base, skills


def test_target_features_rows_labels_and_probs(tiny):
    _, _, base, skills = tiny
    tok = base.load_tokenizer()
    examples = get_world("strings").examples("rot+shift", 5, seed=0)
    model = base.load_model([skills[0]])
    tf = target_features(model, tok, examples, "answer")
    want = np.concatenate([encode_target(tok, e.target) for e in examples])   # target + </s>
    assert tf.features.shape == (len(want), model.config.hidden_size)
    assert tf.features.dtype == np.float64
    np.testing.assert_array_equal(tf.labels, want)
    assert tf.probs.shape == (len(want), model.config.vocab_size)
    np.testing.assert_allclose(tf.probs.sum(axis=1), 1.0, atol=1e-9)
    first = target_features(model, tok, examples, "first")
    assert first.features.shape[0] == 5
    np.testing.assert_array_equal(first.labels, [encode_target(tok, e.target)[0] for e in examples])
    # the first-position row is the same hidden state as the answer-position row it came from
    np.testing.assert_allclose(first.features[0], tf.features[0], atol=1e-5)
    with pytest.raises(ValueError, match="positions"):
        target_features(model, tok, examples, "middle")


def test_score_candidates_shape_and_ranking(tiny):
    _, _, base, skills = tiny
    res = score_candidates(base, skills, "strings", "rot+shift", n=12, seed=0)
    refs = [s.ref for s in skills]
    assert set(res["scores"]) == {"base", *refs}
    assert set(res["ranking"]) == {"logme", "tmi", "leep", "hscore", "hscore-shrunk"}
    for est, order in res["ranking"].items():
        assert sorted(order) == sorted(refs)
        vals = [res["scores"][r][est] for r in order]
        assert vals == sorted(vals, reverse=True)
    assert res["seconds"]["total"] >= res["seconds"]["features"] > 0
    with pytest.raises(ValueError, match="unknown estimator"):
        score_candidates(base, skills, "strings", "rot", estimators=["nce"])


def test_ranked_puts_missing_last():
    assert ranked(["a", "b", "c", "d"], [0.1, None, 0.5, 0.1]) == ["c", "a", "d", "b"]


def test_agreement_by_hand_and_against_scipy():
    scores, acc = [3.0, 2.0, 1.0, 0.0], [0.9, 0.5, 0.7, 0.1]
    a = agreement(scores, acc)
    assert a["kendall_tau"] == pytest.approx(4 / 6)   # 5 concordant, 1 discordant pair of 6
    assert a["kendall_tau"] == pytest.approx(stats.kendalltau(scores, acc).statistic)
    assert a["weighted_tau"] == pytest.approx(stats.weightedtau(scores, acc).statistic)
    assert a["top1"] is True and a["n"] == 4
    b = agreement([0.0, 1.0, 2.0, 3.0], acc)           # exactly reversed scores
    assert b["kendall_tau"] == pytest.approx(-4 / 6) and b["top1"] is False
    assert agreement([1.0, 2.0, 3.0], [0.5, 0.5, 0.5])["kendall_tau"] is None   # undefined
    assert agreement([1.0, 2.0, 3.0], [0.2, 0.9, 0.9])["top1"] is True          # tied best
    with pytest.raises(ValueError):
        agreement([1.0], [1.0])


def test_train_lora_init_from_a_skill(tiny):
    _, _, base, skills = tiny
    src = skills[0]
    frozen = train_lora("copy-of-rot", base, _recipe("rot+shift", lr=0.0), init=src.tensors)
    for k, v in src.tensors.items():
        torch.testing.assert_close(frozen.tensors[k], v)   # lr 0: still the initial tensors
    assert len(frozen.recipe["init"]) == 64
    with pytest.raises(SkillError, match="rank"):
        train_lora("x", base, LoraRecipe(world="strings", task="rot", rank=4, alpha=8, steps=1,
                                         batch_size=8, pool=32), init=src.tensors)


def test_verify_reports_every_candidate_and_scratch(tiny):
    home, _, base, skills = tiny
    seen = []
    with get_executor() as ex:
        res = verify_on(ex, home, base, skills[:2], "strings", "rot+shift", steps=2,
                        n_eval=4, progress=lambda done, total: seen.append((done, total)))
    assert set(res) == {skills[0].ref, skills[1].ref, "scratch"}
    for row in res.values():
        assert 0.0 <= row["exact_match"] <= 1.0 and row["train_seconds"] > 0
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_cli_transfer_json(tiny):
    home, _, _, skills = tiny
    r = CliRunner().invoke(app, ["--home", str(home), "transfer", "rot+shift", "--candidates",
                                 ",".join(s.ref for s in skills), "--n", "8", "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    data = json.loads(r.stdout)
    assert data["estimator"] == "logme" and len(data["ranking"]) == 3
    assert data["ranking"] == data["rankings"]["logme"] and "verified" not in data
    r = CliRunner().invoke(app, ["--home", str(home), "transfer", "rot+shift", "--candidates",
                                 ",".join(s.ref for s in skills), "--n", "8", "--estimator",
                                 "leep", "--verify", "--steps", "1", "--n-eval", "2", "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    data = json.loads(r.stdout)
    assert set(data["verified"]) == {*(s.ref for s in skills), "scratch"}
    assert set(data["agreement"]) == {"logme", "tmi", "leep", "hscore", "hscore-shrunk"}
    assert data["seconds"]["score_over_verify"] > 0


def test_cli_transfer_bad_estimator_is_one_line_error(tiny, monkeypatch, capsys):
    from skillbank.cli.core import main

    monkeypatch.setattr(sys, "argv", ["skillbank", "--home", str(tiny[0]), "transfer", "rot",
                                      "--candidates", "strings-rot", "--estimator", "nce"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown estimator 'nce'") and len(err.splitlines()) == 1
