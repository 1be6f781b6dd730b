"""Skill-it (acquire.curriculum): graph, mixture and counts by hand; rounds; a tiny run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from skillbank.acquire.curriculum import (
    CurriculumConfig,
    RoundSampler,
    answer_metrics,
    mixture_counts,
    natural_mixture,
    run_curriculum,
    skill_it_mixture,
    skills_graph,
)
from skillbank.worlds.base import Example


def test_skills_graph_clipped_drop_column_normalised():
    # drops: [[0.5, 0.1], [-0.2 -> 0, 1.0]]; column maxima 0.5 and 1.0
    A = skills_graph([1.0, 2.0], [[0.5, 1.9], [1.2, 1.0]])
    np.testing.assert_allclose(A, [[1.0, 0.1], [0.0, 1.0]])
    # a column nothing helps stays zero (no division by zero)
    np.testing.assert_allclose(skills_graph([1.0, 1.0], [[0.5, 1.5], [1.0, 1.2]]), [[1.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError):
        skills_graph([1.0, 2.0], [[0.5, 1.9]])


def test_skill_it_mixture_by_hand():
    A = np.array([[1.0, 0.1], [0.0, 1.0]])
    # p_0 ∝ exp(0.5·A·1) = exp([0.55, 0.5])
    p0 = skill_it_mixture(A, [])
    assert p0[0] == pytest.approx(1 / (1 + math.exp(-0.05)))
    # window 3: Σ of the last three loss vectors = [15, 18]; A·that = [16.8, 18]; ×0.5
    p = skill_it_mixture(A, [[1, 2], [3, 4], [5, 6], [7, 8]], eta=0.5, window=3)
    assert p[0] == pytest.approx(1 / (1 + math.exp(0.6)))
    assert p.sum() == pytest.approx(1.0)
    # window 1 uses only the last evaluation: A·[7, 8] = [7.8, 8]
    assert skill_it_mixture(A, [[1, 2], [7, 8]], window=1)[0] == pytest.approx(1 / (1 + math.exp(0.1)))


@pytest.mark.parametrize("p, n, want", [
    ([0.5, 0.3, 0.2], 7, [4, 2, 1]),     # floor [3, 2, 1]; the one left goes to .5
    ([1 / 3] * 3, 4, [2, 1, 1]),          # tie: the lower index
    ([0.25, 0.75], 8, [2, 6]),            # exact
    ([0.0, 1.0], 5, [0, 5]),
])
def test_mixture_counts(p, n, want):
    assert mixture_counts(p, n).tolist() == want


def test_natural_mixture():
    np.testing.assert_allclose(natural_mixture([100, 300]), [0.25, 0.75])


def _pools():
    return {t: [Example(t, f"{t}{i}", "x") for i in range(5)] for t in ("a", "b", "c")}


def test_round_sampler_counts_and_determinism():
    s = RoundSampler(_pools(), batch_size=3, round_steps=2, seed=0)
    with pytest.raises(RuntimeError):
        s.batch(0)
    s.set_round(0, counts=[4, 0, 2])
    got = s.batch(0) + s.batch(1)
    assert sorted(e.task for e in got) == ["a", "a", "a", "a", "c", "c"]
    t = RoundSampler(_pools(), batch_size=3, round_steps=2, seed=0)
    t.set_round(0, counts=[4, 0, 2])
    assert t.batch(1) == s.batch(1)
    s.set_round(1, p=[0.0, 1.0, 0.0])
    assert {e.task for e in s.batch(2) + s.batch(3)} == {"b"}


class _Oracle(torch.nn.Module):
    """Logits that put all mass on the next input token (or nothing, if ``blind``)."""

    def __init__(self, vocab: int, blind: bool = False):
        super().__init__()
        self.vocab, self.blind = vocab, blind

    def forward(self, input_ids, attention_mask=None, **_):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        if not self.blind:
            nxt = torch.roll(input_ids, -1, dims=1)
            logits.scatter_(2, nxt.unsqueeze(-1), 50.0)
        return type("Out", (), {"logits": logits})()


def test_answer_metrics_by_hand():
    from skillbank.acquire.data import char_tokenizer

    tok = char_tokenizer("abc01")
    exs = [Example("1", "ab", "0"), Example("1", "ca", "1")]
    loss, acc = answer_metrics(_Oracle(len(tok)), tok, exs)
    assert acc == 1.0 and loss < 1e-6
    loss, acc = answer_metrics(_Oracle(len(tok), blind=True), tok, exs)
    assert acc == 0.0 and loss == pytest.approx(math.log(len(tok)))  # uniform logits


def test_run_curriculum_tiny():
    from transformers import LlamaForCausalLM

    from skillbank.acquire.data import char_tokenizer
    from skillbank.acquire.pretrain import tiny_config
    from skillbank.worlds import get_world

    tok = char_tokenizer(get_world("lego", k=3).charset())
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_config(len(tok), "tiny", tok))
    cfg = CurriculumConfig(world="lego", world_args={"k": 3}, method="skill-it", steps=4, round_steps=2,
                           batch_size=3, graph_steps=1, pool=8, n_eval=4)
    res = run_curriculum(model, tok, cfg)
    assert res["skills"] == ["1", "2", "3"]
    assert [s for s, _ in res["curve_accuracy"]["2"]] == [0, 2, 4]
    assert len(res["mixtures"]) == 2 and all(sum(p) == pytest.approx(1) for p in res["mixtures"])
    assert np.asarray(res["graph"]).shape == (3, 3) and res["graph_steps"] == 3
    assert res["examples_seen"] == 12
    assert res["mean_accuracy"] == pytest.approx(np.mean(list(res["accuracy"].values())))
    with pytest.raises(ValueError):
        run_curriculum(model, tok, CurriculumConfig(method="bogus"))


def test_lego_ordered_option_keeps_chain_order():
    """``LegoWorld(ordered=True)`` (the curriculum's LEGO setting): clause i defines variable
    i, the answer resolves by hand, and the default (shuffled) world is unchanged."""
    from skillbank.worlds import LegoWorld, get_world

    w = get_world("lego", k=3, ordered=True)
    for task in w.tasks():
        for ex in w.examples(task, 20, seed=1):
            clauses = ex.prompt.split("Input: ")[1].split(" . Output:")[0].split(" , ")
            lhs = [c.split(" = ")[0] for c in clauses]
            assert clauses[0].endswith(("val 0", "val 1"))
            for prev, c in zip(lhs, clauses[1:], strict=False):
                assert c.split()[-1] == prev  # each clause reads its predecessor
            value = int(clauses[0][-1])
            for c in clauses[1: int(task)]:
                value = 1 - value if " = not " in c else value
            assert ex.prompt.endswith(f"Output: {lhs[int(task) - 1]} = val ") and ex.target == str(value)
    assert LegoWorld().examples("3", 5, seed=2) == LegoWorld(ordered=False).examples("3", 5, seed=2)
