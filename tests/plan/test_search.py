"""Beam search by usefulness × affordance, on toy skills whose outputs and confidences are fixed."""

import math

import numpy as np
import pytest

from skillbank.plan.search import Candidate, beam_search, best, fit_of

# three "skills": upper-case, reverse, double
FUNCS = [str.upper, lambda s: s[::-1], lambda s: s + s]


def exact_step(conf=(-0.1, -0.2, -0.3)):
    def step(i, inputs):
        return [FUNCS[i](x) for x in inputs], [conf[i]] * len(inputs)
    return step


def flat_use(p):
    return lambda cur, tgt: np.tile(np.asarray(p, dtype=float), (len(cur), 1))


def test_fit_and_best_order():
    assert fit_of(["a", "b ", "c"], ["a", "b", "x"]) == pytest.approx(2 / 3)
    a = Candidate((0, 1), ("x",), -1.0, 1.0)
    b = Candidate((0,), ("x",), -5.0, 1.0)      # same fit, shorter: wins
    c = Candidate((2,), ("y",), 0.0, 0.5)
    assert best([a, b, c]) is b
    assert best([a, Candidate((1, 0), ("x",), -0.5, 1.0)]).plan == (1, 0)  # same length: score


def test_scores_by_hand_and_the_plan_found():
    inputs, targets = ["ab", "cd"], ["BABA", "DCDC"]   # reverse, upper, double in some order
    use = flat_use([0.5, 0.25, 0.25])
    top, kept, calls = beam_search(3, inputs, targets, exact_step(), use, depth=3, beam=9)
    assert top.fit == 1.0 and len(top.plan) == 3
    assert [FUNCS[i] for i in top.plan][0] in FUNCS
    # score of plan (0, 1, 2): Σ_steps [log u + log a] = log .5 + log .25 + log .25 - .1 - .2 - .3
    want = math.log(0.5) + 2 * math.log(0.25) - 0.6
    got = {c.plan: c.score for c in kept}
    assert got[(0, 1, 2)] == pytest.approx(want)
    # each skill runs on every kept candidate's outputs: 1 candidate, then 3, then the 6 of
    # the 9 two-step plans whose outputs differ (RU = UR, DU = UD, DR = RD)
    assert calls == 3 * 2 * (1 + 3 + 6)
    assert len([c for c in kept if len(c.plan) == 2]) == 6


def test_weights_select_what_drives_the_beam():
    inputs, targets = ["ab"], ["ba"]
    # usefulness says "reverse"; affordance prefers "upper" (most confident)
    use = flat_use([0.1, 0.8, 0.1])
    only_aff, *_ = beam_search(3, inputs, targets, exact_step(), None, depth=1, beam=1, score="affordance")
    only_use, *_ = beam_search(3, inputs, targets, exact_step(), use, depth=1, beam=1, score="usefulness")
    both, *_ = beam_search(3, inputs, targets, exact_step(), use, depth=1, beam=1, score="both")
    assert only_aff.plan == (0,) and only_aff.fit == 0.0
    assert only_use.plan == (1,) and only_use.fit == 1.0
    assert both.plan == (1,)   # log .8 - .2 > log .1 - .1


def test_duplicate_outputs_share_one_beam_slot():
    # "upper" of upper-case input changes nothing: plans (0,) and (0, 0) make the same strings
    inputs, targets = ["AB"], ["ABAB"]
    top, kept, _ = beam_search(3, inputs, targets, exact_step(), flat_use([1 / 3] * 3), depth=2, beam=3)
    by_depth = [c.outputs for c in kept if len(c.plan) == 1]
    assert len(by_depth) == len(set(by_depth))
    assert top.plan == (2,)   # the shortest plan that fits


def test_bad_settings():
    step = exact_step()
    with pytest.raises(ValueError, match="unknown plan score"):
        beam_search(3, ["a"], ["A"], step, None, 1, 1, score="magic")
    with pytest.raises(ValueError, match="needs a usefulness"):
        beam_search(3, ["a"], ["A"], step, None, 1, 1, score="both")
    with pytest.raises(ValueError, match="at least one example"):
        beam_search(3, [], [], step, None, 1, 1, score="affordance")
    with pytest.raises(ValueError, match="at least 1"):
        beam_search(3, ["a"], ["A"], step, None, 0, 1, score="affordance")
