"""EFT up-scaling: the log-prob arithmetic by hand, the composed greedy decoder, shared vocab."""

from __future__ import annotations

import math

import pytest
import torch

from skillbank.acquire.data import char_tokenizer
from skillbank.acquire.lora import LoraRecipe, train_lora
from skillbank.acquire.pretrain import BaseRecipe, ensure_base, tiny_config
from skillbank.compose.logits import (
    check_shared_vocab,
    eft_greedy,
    eft_logprobs,
    eft_target_logprobs,
    upscale_eval,
)
from skillbank.evaluate.generate import greedy, target_logprobs
from skillbank.library import Library
from skillbank.skill import SkillError
from skillbank.worlds import get_world
from skillbank.worlds.strings import StringsWorld


def lp(*probs):
    return torch.log(torch.tensor(probs, dtype=torch.float64))


# 2-token vocab. large = (.5,.5), small base = (.8,.2), skill = (.2,.8):
# w=1:  p ∝ (.5·.2/.8, .5·.8/.2) = (1/8, 2)          -> (1/17, 16/17)
# w=.5: p ∝ (.5·(.25)^.5, .5·4^.5) = (.25, 1)         -> (.2, .8)
# + a second skill (.5,.5), w=1: ratio (.625, 2.5)  -> ∝ (.078125, 5)
@pytest.mark.parametrize("skills,weights,expected", [
    ([lp(.2, .8)], [1.0], (1 / 17, 16 / 17)),
    ([lp(.2, .8)], [0.5], (0.2, 0.8)),
    ([lp(.2, .8), lp(.5, .5)], [1.0, 1.0], (0.078125 / 5.078125, 5 / 5.078125)),
    ([lp(.2, .8)], [0.0], (0.5, 0.5)),
])
def test_eft_logprobs_by_hand(skills, weights, expected):
    out = eft_logprobs(lp(.5, .5), lp(.8, .2), skills, weights)
    assert torch.allclose(out.exp(), torch.tensor(expected, dtype=torch.float64), atol=1e-12)


def test_eft_renormalises_and_ignores_logit_offsets():
    g = torch.Generator().manual_seed(0)
    large, small, skill = (torch.randn(3, 5, 7, generator=g) for _ in range(3))
    out = eft_logprobs(large, small, [skill], [1.3])
    assert torch.allclose(out.exp().sum(-1), torch.ones(3, 5), atol=1e-6)
    # raw logits shifted by any per-position constant give the same distribution
    shifted = eft_logprobs(large + 4.0, small - 2.5, [skill + torch.randn(3, 5, 1, generator=g)], [1.3])
    assert torch.allclose(out, shifted, atol=1e-5)
    # by hand for one position: softmax(l_L + 1.3(l_skill - l_S)) with log-softmaxed inputs
    ls = torch.log_softmax
    manual = ls(ls(large[0, 0], -1) + 1.3 * (ls(skill[0, 0], -1) - ls(small[0, 0], -1)), -1)
    assert torch.allclose(out[0, 0], manual, atol=1e-6)


def test_eft_limits_w0_is_large_base_and_identical_bases_give_the_skill():
    g = torch.Generator().manual_seed(1)
    large, small, skill = (torch.randn(4, 9, generator=g) for _ in range(3))
    assert torch.allclose(eft_logprobs(large, small, [skill], [0.0]), torch.log_softmax(large, -1), atol=1e-6)
    assert torch.allclose(eft_logprobs(small, small, [skill], [1.0]), torch.log_softmax(skill, -1), atol=1e-6)
    # default weights are 1
    assert torch.equal(eft_logprobs(small, small, [skill]), eft_logprobs(small, small, [skill], [1.0]))


def test_eft_logprobs_rejects_bad_input():
    with pytest.raises(ValueError, match="weights"):
        eft_logprobs(lp(.5, .5), lp(.5, .5), [lp(.5, .5)], [1.0, 2.0])
    with pytest.raises(ValueError, match="shape"):
        eft_logprobs(lp(.5, .5), lp(.2, .3, .5), [lp(.5, .5)])


@pytest.fixture(scope="module")
def char_models():
    from transformers import LlamaForCausalLM

    tok = char_tokenizer(StringsWorld().charset())
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(LlamaForCausalLM(tiny_config(len(tok), "tiny", tok)).eval())
    return tok, models


PROMPTS = ["rot:abc=", "shift:abcdefgh=", "rev:ba="]


def test_eft_greedy_limits_match_plain_greedy(char_models):
    tok, (large, small, skill) = char_models
    # w = 0: the large base's own greedy answers (left padding handled like generate)
    assert eft_greedy(large, small, [skill], [0.0], tok, PROMPTS, 6) == greedy(large, tok, PROMPTS, 6)
    # identical large and small bases, w = 1: the skill's own greedy answers
    assert eft_greedy(small, small, [skill], [1.0], tok, PROMPTS, 6) == greedy(skill, tok, PROMPTS, 6)


def test_eft_greedy_composes_each_step(char_models):
    tok, (large, small, skill) = char_models
    ans = eft_greedy(large, small, [skill], [1.0], tok, PROMPTS[:1], 3)[0]
    # redo the first step by hand
    ids = torch.tensor([[tok.bos_token_id, *tok.encode(PROMPTS[0], add_special_tokens=False)]])
    with torch.no_grad():
        last = [m(input_ids=ids).logits[0, -1] for m in (large, small, skill)]
    step = torch.log_softmax(last[0], -1) + torch.log_softmax(last[2], -1) - torch.log_softmax(last[1], -1)
    assert ans[0] == int(step.argmax())


def test_eft_target_logprobs_limits(char_models):
    tok, (large, small, skill) = char_models
    exs = StringsWorld().examples("rot", 3, seed=0)
    got = eft_target_logprobs(small, small, [skill], [1.0], tok, exs)
    want = target_logprobs(skill, tok, exs)
    assert all(len(a) == len(b) for a, b in zip(got, want, strict=False))
    assert all(math.isclose(x, y, abs_tol=1e-4) for a, b in zip(got, want, strict=False) for x, y in zip(a, b, strict=False))


def test_shared_vocab_refused_when_different(char_models):
    tok, (large, *_ ) = char_models
    other = char_tokenizer("xyz:=")
    with pytest.raises(SkillError, match="do not share a vocabulary"):
        check_shared_vocab(tok, other)
    check_shared_vocab(tok, char_tokenizer(StringsWorld().charset()))


def test_pretrained_bases_share_vocab_and_upscale_end_to_end(home):
    recipe = BaseRecipe(size="tiny", steps=3, batch_size=8, pool=32, tasks=["copy"])
    with Library.open(home) as lib:
        small, _ = ensure_base(lib, "s", recipe)
        large, _ = ensure_base(lib, "l", BaseRecipe(**{**recipe.__dict__, "size": "mini"}))
        assert small.fingerprint != large.fingerprint
        check_shared_vocab(small.load_tokenizer(), large.load_tokenizer(),
                           small.load_model(), large.load_model())
        skill = lib.add(train_lora("rot", small, LoraRecipe("strings", "rot", rank=2, alpha=4, steps=2,
                                                            batch_size=4, pool=16, target_modules=["q_proj"])))
        res = upscale_eval(small, large, [skill], [1.0], get_world("strings"), "rot", n=4)
        assert set(res) == {"large_base", "small_base", "small_skill", "upscaled"}
        assert all(r["n"] == 4 and 0 <= r["exact_match"] <= 1 for r in res.values())
        with pytest.raises(SkillError, match="refusing"):  # the skill belongs to the small base
            upscale_eval(large, small, [skill], [1.0], get_world("strings"), "rot", n=2)
