"""Greedy decoding and target log-probabilities, against hand computations."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from skillbank.acquire.data import char_tokenizer, encode_prompt, encode_target
from skillbank.acquire.pretrain import tiny_config
from skillbank.evaluate.generate import generation_records, greedy, target_logprobs
from skillbank.worlds.base import Example
from skillbank.worlds.strings import StringsWorld

TOK = char_tokenizer(StringsWorld().charset())
PROMPTS = ["rot:abcdefg=", "rev:ab=", "sort:hgfedcb=", "dup:a="]   # lengths differ: left padding


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    m = LlamaForCausalLM(tiny_config(len(TOK), "tiny", TOK))
    m.generation_config.pad_token_id = TOK.pad_token_id
    return m.eval()


class EosAs:
    """The tokenizer, with another token playing ``</s>``."""

    def __init__(self, tok, eos: int):
        self._tok, self.eos_token_id = tok, eos

    def __getattr__(self, name):
        return getattr(self._tok, name)


@torch.no_grad()
def manual_greedy(model, prompt: str, eos: int, max_new: int) -> list[int]:
    """One prompt at a time, no padding, no cache: argmax of the full forward pass."""
    ids = encode_prompt(TOK, prompt)
    answer: list[int] = []
    for _ in range(max_new):
        nxt = int(model(input_ids=torch.tensor([ids + answer])).logits[0, -1].argmax())
        if nxt == eos:
            break
        answer.append(nxt)
    return answer


def test_greedy_matches_manual_decoding_and_stops_at_eos(model):
    max_new = 12
    free = [manual_greedy(model, p, eos=-1, max_new=max_new) for p in PROMPTS]
    # make a token the model emits part-way through the first answer play </s>
    eos = free[0][3]
    cut = [row[: row.index(eos)] if eos in row else row for row in free]
    assert len(cut[0]) <= 3
    tok = EosAs(TOK, eos)
    got = greedy(model, tok, PROMPTS, max_new_tokens=max_new)
    assert got == cut
    assert got == [manual_greedy(model, p, eos=eos, max_new=max_new) for p in PROMPTS]
    assert all(eos not in row and len(row) <= max_new for row in got)
    # batching does not change answers
    assert greedy(model, tok, PROMPTS, max_new_tokens=max_new, batch_size=3) == got


class Scripted(torch.nn.Module):
    """``generate`` continues every prompt with a fixed script (then pads)."""

    def __init__(self, scripts: list[list[int]]):
        super().__init__()
        self.scripts = scripts

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        assert kwargs["eos_token_id"] == TOK.eos_token_id and not kwargs["do_sample"]
        width = max(len(s) for s in self.scripts)
        new = torch.full((input_ids.shape[0], width), TOK.pad_token_id)
        for i, s in enumerate(self.scripts[: input_ids.shape[0]]):
            new[i, : len(s)] = torch.tensor(s)
        return torch.cat([input_ids, new], dim=1)


def test_greedy_cuts_at_first_eos():
    a, b, eos = TOK.convert_tokens_to_ids(["a", "b"]) + [TOK.eos_token_id]
    # as in generate(): rows that ended are padded, a row without </s> runs to max_new_tokens
    model = Scripted([[a, b, eos, a, a], [eos], [b, a, b, a, b]])
    assert greedy(model, TOK, ["x", "y", "z"], max_new_tokens=5) == [[a, b], [], [b, a, b, a, b]]


class FixedLogits(torch.nn.Module):
    """Logits 0 everywhere except ``value`` on the token at the next position."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, input_ids, attention_mask, **kwargs):
        logits = torch.zeros(*input_ids.shape, len(TOK))
        logits[:, :-1].scatter_(-1, input_ids[:, 1:].unsqueeze(-1), self.value)
        return SimpleNamespace(logits=logits)


def test_target_logprobs_by_hand():
    examples = [Example("rev", "rev:abc=", "cba"), Example("dup", "dup:ab=", "abab")]
    v = len(TOK)
    uniform = target_logprobs(FixedLogits(0.0), TOK, examples)
    # one value per token of target + </s>, each log(1/V)
    assert [len(x) for x in uniform] == [4, 5]
    assert all(x == pytest.approx(-math.log(v)) for row in uniform for x in row)
    peaked = target_logprobs(FixedLogits(3.0), TOK, examples)
    # log(e^3 / (e^3 + V - 1)); padding of the shorter example must not leak in
    expected = 3.0 - math.log(math.exp(3.0) + v - 1)
    assert all(x == pytest.approx(expected, abs=1e-6) for row in peaked for x in row)


@torch.no_grad()
def test_target_logprobs_match_manual_log_softmax(model):
    examples = StringsWorld().examples("rev+sort", 5, seed=0) + [Example("dup", "dup:a=", "aa")]
    got = target_logprobs(model, TOK, examples, batch_size=4)
    for ex, row in zip(examples, got, strict=True):
        p, t = encode_prompt(TOK, ex.prompt), encode_target(TOK, ex.target)
        logits = model(input_ids=torch.tensor([p + t])).logits[0]
        logp = torch.log_softmax(logits, dim=-1)
        want = [logp[len(p) - 1 + j, tok_id].item() for j, tok_id in enumerate(t)]
        assert row == pytest.approx(want, abs=1e-5)


def test_generation_records(model):
    examples = [Example("rev", "rev:abc=", "cba"), Example("rot", "rot:ab=", "ba")]
    records = generation_records(model, TOK, examples, max_new_tokens=5)
    answers = greedy(model, TOK, [e.prompt for e in examples], 5)
    logps = target_logprobs(model, TOK, examples)
    assert [r["pred_tokens"] for r in records] == answers
    decoded = [TOK.decode(a, skip_special_tokens=True) for a in answers]
    assert [r["pred"] for r in records] == decoded
    assert [r["target"] for r in records] == ["cba", "ba"]
    assert records[0]["target_tokens"] == TOK.encode("cba", add_special_tokens=False)
    assert [r["target_logprobs"] for r in records] == logps
