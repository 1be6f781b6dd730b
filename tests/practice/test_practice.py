"""Practice: B-STaR's balance score and monitors by hand, the learned evaluator, the
proposer's band, rounds stored as versions with lineage (from scripted attempts), a round
with nothing accepted, re-use of a stored practice, and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from skillbank.practice import loop
from skillbank.practice.attempts import balance_score, monitors
from skillbank.practice.evaluator import LearnedEvaluator
from skillbank.practice.loop import PracticeRecipe, practise, propose
from skillbank.worlds import get_world


def test_balance_score_and_monitors_by_hand():
    correct = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=bool)
    accepted = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=bool)
    # per input: min(c/n*,1)·c/n with n* = 2: (1·2/3, 0, 1·2/2) -> mean = (2/3 + 0 + 1)/3
    assert balance_score(correct, accepted, n_star=2) == pytest.approx((2 / 3 + 1) / 3)
    m = monitors([["a", "a", "b", "c"], ["x"] * 4, ["y"] * 4], correct, accepted, n_star=2)
    assert m["pass_at_k"] == pytest.approx(2 / 3) and m["pass_rate"] == pytest.approx(6 / 12)
    assert m["precision"] == pytest.approx(4 / 6) and m["recall"] == pytest.approx(4 / 6)
    assert m["distinct_answers"] == pytest.approx(np.mean([3, 1, 1]) / 4)
    assert m["distinct_correct"] == pytest.approx(np.mean([1, 0, 1])) and m["accepted"] == 6


def test_the_learned_evaluator_learns_and_refuses_one_class():
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefgh"), 6)) for _ in range(300)]
    prompts = [f"rev:{w}=" for w in words]
    answers = [w[::-1] if i % 2 else w + w for i, w in enumerate(words)]   # wrong: twice as long
    correct = [i % 2 == 1 for i in range(300)]
    ev = LearnedEvaluator()
    ev.fit(prompts[:200], answers[:200], correct[:200])
    assert (ev.accept(prompts[200:], answers[200:]) == np.array(correct[200:])).mean() > 0.9
    with pytest.raises(ValueError, match="both correct and wrong"):
        LearnedEvaluator().fit(prompts[:3], answers[:3], [False] * 3)


def _scripted(right: set[str] | None = None, every: int = 2):
    """sample_answers that answers a task in ``right`` (all if None) correctly on every
    ``every``-th input (all K attempts alike), and wrongly otherwise."""
    def fake(model, tok, prompts, k, temperature, max_new, seed, batch_size=1024):
        out = []
        for i, p in enumerate(prompts):
            task, rest = p.split(":", 1)
            good = (right is None or task in right) and i % every == 0
            out.append([_answer(task, rest.rstrip("=")) if good else "zz"] * k)
        return out

    return fake


def _answer(task, s):
    from skillbank.worlds.strings import PRIMITIVES

    for t in task.split("+"):
        s = PRIMITIVES[t](s)
    return s


def test_rounds_are_versions_with_lineage_and_are_reused(tmp_path, monkeypatch):
    from tests.tinyskills import tiny_strings_library

    lib, base, _ = tiny_strings_library(tmp_path)
    monkeypatch.setattr(loop, "sample_answers", _scripted())
    recipe = PracticeRecipe(tasks=("rev",), rounds=2, inputs=6, samples=2, steps=1, n_eval=2,
                            batch_size=2)
    hist = practise(lib, "p", base, recipe)
    assert [r["stored"] for r in hist] == ["p@1", "p@2"]
    assert all(r["accepted"] == 3 * 2 and r["train_examples"] == 3 for r in hist)  # 3 inputs right, K = 2
    assert lib.get("p@2").lineage == ["p@1"] and lib.get("p@1").lineage == []
    assert lib.get("p@2").recipe["round"] == 2 and lib.get("p@2").metrics["practice"]["pass_at_k"] == 0.5
    again = practise(lib, "p", base, recipe)
    assert [r["stored"] for r in again] == ["p@1", "p@2"] and len(lib.versions("p")) == 2


def test_a_round_with_nothing_accepted_stores_nothing(tmp_path, monkeypatch):
    from tests.tinyskills import tiny_strings_library

    lib, base, _ = tiny_strings_library(tmp_path)
    monkeypatch.setattr(loop, "sample_answers", _scripted(right=set()))
    hist = practise(lib, "q", base, PracticeRecipe(tasks=("rev",), rounds=3, inputs=4, samples=2,
                                                   steps=1, n_eval=2))
    assert len(hist) == 1 and hist[0]["stored"] is None and hist[0]["accepted"] == 0
    from skillbank.library import LibraryError

    with pytest.raises(LibraryError):
        lib.versions("q")


def test_the_proposer_keeps_the_band(monkeypatch):
    monkeypatch.setattr(loop, "sample_answers", _scripted(right={"rev", "sort"}, every=2))
    world = get_world("strings")
    got = propose(None, None, world, PracticeRecipe(propose=True, depth=1, band=(0.2, 0.8)), 0)
    assert set(got) == {"rev", "sort"} and all(r == pytest.approx(0.5) for r in got.values())
    with pytest.raises(ValueError, match="no task's pass rate lies in the band"):
        propose(None, None, world, PracticeRecipe(propose=True, depth=1, band=(0.9, 1.0)), 0)


@pytest.mark.parametrize("bad, match", [
    ({"tasks": ("rev",), "samples": 0}, "samples must be"),
    ({"tasks": ("rev",), "band": (0.9, 0.1)}, "band"),
    ({}, "give the tasks"),
    ({"tasks": ("rev",), "evaluator": "oracle"}, "unknown evaluator"),
    ({"tasks": ("rev",), "temperature": 0.0}, "positive"),
])
def test_bad_recipes_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        PracticeRecipe(**bad)
