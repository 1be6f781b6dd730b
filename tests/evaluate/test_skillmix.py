"""Skill-Mix for exact worlds: chain sampling, Skill Fraction by hand, the runners."""

from __future__ import annotations

import pytest

from skillbank.acquire.data import char_tokenizer
from skillbank.evaluate import skillmix
from skillbank.evaluate.skillmix import (
    Answer,
    CallByCall,
    all_chains,
    chain_items,
    hold_out_pairs,
    input_of,
    pairs,
    sample_chains,
    skill_fraction,
    skill_mix,
    summarize_chains,
    touches,
)
from skillbank.worlds import get_world
from skillbank.worlds.base import Example
from skillbank.worlds.strings import StringsWorld, apply_chain

PRIMS = ["rot", "shift", "dedup", "drop", "swap", "dup"]
W = StringsWorld()


def test_chains_pairs_and_held_out():
    assert len(all_chains(PRIMS, 2)) == 30 and len(all_chains(PRIMS, 4)) == 6 * 5 * 4 * 3
    assert all(len(set(c)) == len(c) for c in all_chains(PRIMS, 3))
    assert pairs(("a", "b", "c")) == [("a", "b"), ("b", "c")]
    assert touches(("a", "b", "c"), [("b", "c")]) and not touches(("a", "b", "c"), [("c", "b")])
    held = hold_out_pairs(PRIMS, 0.2, seed=0)
    assert len(held) == 6 and set(held) <= set(all_chains(PRIMS, 2))
    assert held == hold_out_pairs(PRIMS, 0.2, seed=0) and held != hold_out_pairs(PRIMS, 0.2, seed=1)
    with pytest.raises(ValueError, match="k must be"):
        all_chains(PRIMS, 7)


def test_sample_chains_seeded_cycles_and_filters():
    a = sample_chains(PRIMS, 2, 45, seed=3)
    assert a == sample_chains(PRIMS, 2, 45, seed=3) and a != sample_chains(PRIMS, 2, 45, seed=4)
    assert set(a[:30]) == set(all_chains(PRIMS, 2)) and a[30:] == a[:15]  # every chain, then again
    kept = sample_chains(PRIMS, 3, 10, seed=0, keep=lambda c: c[0] == "dup")
    assert len(kept) == 10 and all(c[0] == "dup" for c in kept)
    assert sample_chains(PRIMS, 1, 5, seed=0, keep=lambda c: False) == []


def test_chain_items_are_held_out_examples_of_their_chain():
    chains = sample_chains(PRIMS, 3, 5, seed=0)
    items = chain_items(W, chains, seed=0)
    for c, ex in zip(chains, items, strict=False):
        assert ex.task == "+".join(c) and ex.target == apply_chain(ex.task, input_of(ex))
    assert items == chain_items(W, chains, seed=0)


# chain rot, shift, swap on "abcd": rot -> bcda, shift -> cdeb, swap -> dcbe
@pytest.mark.parametrize("pred,expected", [
    ("dcbe", 1.0),          # all three steps
    (" dcbe ", 1.0),        # surrounding whitespace stripped
    ("cdeb", 2 / 3),        # stopped after rot, shift
    ("cbad", 2 / 3),        # left out shift: rot, swap
    ("cbed", 2 / 3),        # left out rot: shift, swap
    ("bcda", 1 / 3),        # rot only
    ("abcd", 0.0),          # the input itself
    ("dcb", 0.0),           # no sub-chain explains it
])
def test_skill_fraction_by_hand(pred, expected):
    assert skill_fraction(("rot", "shift", "swap"), "abcd", pred, W.apply) == pytest.approx(expected)


def test_summarize_chains_by_hand():
    chain = ("rot", "swap", "shift")  # abcd -> bcda -> cbad -> dcbe
    ex = Example("rot+swap+shift", "rot+swap+shift:abcd=", "dcbe")
    answers = [Answer("dcbe"),
               Answer("dcb", calls=[("rot", "abcd", "bcda"), ("swap", "bcda", "xy:"),
                                    ("shift", "xy:", "yz:")])]
    s = summarize_chains([chain, chain], [ex, ex], answers, W.apply)
    assert s["n"] == 2
    assert s["ratio_of_full_marks"] == 0.5 and s["skill_fraction"] == 0.5
    assert s["edit_distance"] == 0.5       # 0 and 1 (one letter missing)
    # rot right, swap wrong; shift's input is outside the alphabet, so it is not judged
    assert s["call_accuracy"] == 0.5
    assert "call_accuracy" not in summarize_chains([chain], [ex], answers[:1], W.apply)


def _stopper(drop_last: bool):
    """A runner that answers every chain right, or leaves out its last step."""
    def run(world, chains, examples):
        return [Answer(world.apply("+".join(c[:-1]) if drop_last and len(c) > 1 else "+".join(c),
                                   input_of(e)) if not (drop_last and len(c) == 1) else input_of(e))
                for c, e in zip(chains, examples, strict=False)]
    return run


def test_skill_mix_with_exact_runners():
    right = skill_mix(_stopper(False), W, PRIMS, [1, 2, 3, 4], n=12, seed=0)
    assert all(right[k]["ratio_of_full_marks"] == 1.0 and right[k]["skill_fraction"] == 1.0
               and right[k]["edit_distance"] == 0.0 for k in "1234")
    short = skill_mix(_stopper(True), W, PRIMS, [1, 3], n=12, seed=0)
    assert short["1"]["skill_fraction"] == 0.0 and short["1"]["ratio_of_full_marks"] == 0.0
    # leaving out the last step: 2 of 3 steps explain the answer; full marks only where the
    # last step happens to be the identity on its input (dedup of a string without repeats)
    assert short["3"]["ratio_of_full_marks"] < 0.5 and short["3"]["skill_fraction"] >= 2 / 3
    assert short["3"]["skill_fraction"] == pytest.approx(
        2 / 3 + short["3"]["ratio_of_full_marks"] / 3)
    none_left = skill_mix(_stopper(False), W, PRIMS, [1, 2], n=3, seed=0, keep=lambda c: len(c) > 1)
    assert none_left["1"] is None and none_left["2"]["n"] == 3


def test_skill_mix_rejects_bad_input():
    with pytest.raises(ValueError, match="chain with"):
        skill_mix(_stopper(False), get_world("lego"), PRIMS, [1], n=2)
    with pytest.raises(ValueError, match="unknown primitive"):
        skill_mix(_stopper(False), W, ["rot", "nope"], [1], n=2)


def test_call_by_call_feeds_each_output_to_the_next_skill(monkeypatch):
    tok = char_tokenizer(W.charset())
    seen = []

    def fake_greedy(model, tokenizer, prompts, budget):
        seen.extend(prompts)
        return [tokenizer.encode(model(p), add_special_tokens=False) for p in prompts]

    def perfect(prim):
        return lambda p: W.apply(prim, p.split(":", 1)[1][:-1])

    def broken_shift(p):
        return "hh"

    monkeypatch.setattr(skillmix, "greedy", fake_greedy)
    models = {p: perfect(p) for p in PRIMS}
    ex = Example("rot+shift+swap", "rot+shift+swap:abcd=", "dcbe")
    [ans] = CallByCall(models, tok)(W, [("rot", "shift", "swap")], [ex])
    assert ans.pred == "dcbe" and seen == ["rot:abcd=", "shift:bcda=", "swap:cdeb="]
    assert ans.calls == [("rot", "abcd", "bcda"), ("shift", "bcda", "cdeb"), ("swap", "cdeb", "dcbe")]
    res = skill_mix(CallByCall({**models, "shift": broken_shift}, tok), W, PRIMS, [2], n=30, seed=0)
    with_shift = sum(1 for c in all_chains(PRIMS, 2) if "shift" in c) / 30
    assert res["2"]["ratio_of_full_marks"] == pytest.approx(1 - with_shift)
    with pytest.raises(ValueError, match="no skill for primitive"):
        CallByCall({"rot": perfect("rot")}, tok)(W, [("rot", "dup")], [ex])
