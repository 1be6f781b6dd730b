"""Tokenizer, answer-only training batches and the deterministic sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skillbank.acquire.data import Sampler, char_tokenizer, encode_prompt, training_batch
from skillbank.worlds.base import Example
from skillbank.worlds.strings import StringsWorld


@pytest.fixture(scope="module")
def strings_tok():
    return char_tokenizer(StringsWorld().charset())


def test_char_tokenizer_one_token_per_char(strings_tok):
    charset = StringsWorld().charset()
    ids = {}
    for ch in charset:
        enc = strings_tok.encode(ch, add_special_tokens=False)
        assert len(enc) == 1, (ch, enc)
        assert enc[0] != strings_tok.unk_token_id
        assert strings_tok.decode(enc) == ch
        ids[ch] = enc[0]
    assert len(set(ids.values())) == len(charset)        # distinct ids
    # 4 specials + one id per character, nothing else
    assert len(strings_tok) == 4 + len(charset)
    whole = strings_tok.encode(charset, add_special_tokens=False)
    assert whole == [ids[c] for c in charset]
    assert strings_tok.decode(whole) == charset


def test_char_tokenizer_round_trips_world_examples(strings_tok):
    for task in ["rot", "rev+sort", "dup"]:
        for ex in StringsWorld().examples(task, 20, seed=3):
            for text in (ex.prompt, ex.target):
                ids = strings_tok.encode(text, add_special_tokens=False)
                assert len(ids) == len(text)
                assert strings_tok.decode(ids) == text


def test_char_tokenizer_specials_and_unknown():
    tok = char_tokenizer("ab:=")
    # specials first, then the sorted characters
    assert tok.get_vocab() == {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3,
                               ":": 4, "=": 5, "a": 6, "b": 7}
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok.encode("aZb", add_special_tokens=False) == [6, 3, 7]
    assert tok.decode([1, 6, 7, 2, 0], skip_special_tokens=True) == "ab"


def test_training_batch_by_hand():
    tok = char_tokenizer("ab:=")   # <pad>=0 <s>=1 </s>=2 <unk>=3 :=4 ==5 a=6 b=7
    batch = training_batch(tok, [Example("t", "a=", "b"), Example("t", "ab=", "ba")])
    # <s> a = | b </s>  (right-padded to width 7)
    # <s> a b = | b a </s>
    assert batch["input_ids"].tolist() == [[1, 6, 5, 7, 2, 0, 0],
                                           [1, 6, 7, 5, 7, 6, 2]]
    assert batch["labels"].tolist() == [[-100, -100, -100, 7, 2, -100, -100],
                                        [-100, -100, -100, -100, 7, 6, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0, 0],
                                                [1, 1, 1, 1, 1, 1, 1]]
    assert all(v.dtype == torch.long for v in batch.values())


def test_training_batch_labels_only_on_answer(strings_tok):
    examples = StringsWorld().examples("rev+sort", 16, seed=1)
    batch = training_batch(strings_tok, examples)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    for i, ex in enumerate(examples):
        p = len(encode_prompt(strings_tok, ex.prompt))          # <s> + prompt
        t = len(ex.target) + 1                                  # target + </s>
        assert mask[i].tolist() == [1] * (p + t) + [0] * (ids.shape[1] - p - t)
        assert (labels[i, :p] == -100).all()                    # prompt
        assert (labels[i, p + t:] == -100).all()                # padding
        assert (ids[i, p + t:] == strings_tok.pad_token_id).all()
        answer = labels[i, p: p + t].tolist()
        expected = [*strings_tok.encode(ex.target, add_special_tokens=False),
                    strings_tok.eos_token_id]
        assert answer == expected
        assert ids[i, p: p + t].tolist() == expected


def _pools():
    a = [Example("a", f"a:{i}=", str(i)) for i in range(50)]
    b = [Example("b", f"b:{i}=", str(i)) for i in range(30)]
    return {"b": b, "a": a}


def test_sampler_depends_only_on_seed_and_step():
    s1, s2 = Sampler(_pools(), 16, seed=7), Sampler(_pools(), 16, seed=7)
    forward = [s1.batch(k) for k in range(5)]
    backward = [s2.batch(k) for k in reversed(range(5))][::-1]
    assert forward == backward                           # order of calls does not matter
    assert s1.batch(3) == forward[3]                     # nor does repeating a call
    assert all(len(b) == 16 for b in forward)
    assert forward[0] != forward[1]
    assert Sampler(_pools(), 16, seed=8).batch(0) != forward[0]


def test_sampler_task_weights():
    s = Sampler(_pools(), 64, seed=0, weights={"a": 3.0, "b": 1.0})
    assert s.tasks == ["a", "b"]
    np.testing.assert_allclose(s.p, [0.75, 0.25])
    draws = [ex.task for k in range(200) for ex in s.batch(k)]
    frac_a = draws.count("a") / len(draws)            # 12 800 draws: stderr ≈ 0.004
    assert abs(frac_a - 0.75) < 0.02
    # default: equal weights; a zero weight never draws that task
    np.testing.assert_allclose(Sampler(_pools(), 8, seed=0).p, [0.5, 0.5])
    only_b = Sampler(_pools(), 64, seed=0, weights={"a": 0.0})
    assert {ex.task for k in range(20) for ex in only_b.batch(k)} == {"b"}
