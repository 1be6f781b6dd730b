"""Evaluation suites: hand-checkable models, and one stored result row per subject × task."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from skillbank.acquire.data import char_tokenizer, encode_target
from skillbank.acquire.lora import LoraRecipe, lora_config
from skillbank.acquire.pretrain import tiny_config
from skillbank.evaluate.suites import eval_matrix, evaluate_model
from skillbank.library import Library
from skillbank.skill import Skill
from skillbank.worlds.strings import StringsWorld

WORLD = StringsWorld()
TOK = char_tokenizer(WORLD.charset())
METRIC_KEYS = {"n"} | {f"{m}{s}" for m in ("exact_match", "edit_distance", "token_accuracy",
                                           "mean_logprob") for s in ("", "_stderr")}


class Oracle(torch.nn.Module):
    """Answers ``task`` correctly (or not at all, with ``silent``); its logits put ``value``
    on the next token of whatever sequence it is given, 0 on every other token."""

    def __init__(self, task: str, silent: bool = False, value: float = 10.0):
        super().__init__()
        self.task, self.silent, self.value = task, silent, value

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            prompt = TOK.decode(ids[mask.bool()][1:])               # drop <s>
            s = prompt.removeprefix(f"{self.task}:").removesuffix("=")
            rows.append([TOK.eos_token_id] if self.silent else
                        encode_target(TOK, WORLD.apply(self.task, s)))
        width = max(map(len, rows))
        new = torch.full((len(rows), width), TOK.pad_token_id)
        for i, r in enumerate(rows):
            new[i, : len(r)] = torch.tensor(r)
        return torch.cat([input_ids, new], dim=1)

    def forward(self, input_ids, attention_mask, **kwargs):
        logits = torch.zeros(*input_ids.shape, len(TOK))
        logits[:, :-1].scatter_(-1, input_ids[:, 1:].unsqueeze(-1), self.value)
        return SimpleNamespace(logits=logits)


def test_evaluate_model_perfect_answers():
    m = evaluate_model(Oracle("rev+sort"), TOK, WORLD, "rev+sort", n=12, seed=0)
    assert set(m) == METRIC_KEYS
    assert m["n"] == 12
    assert (m["exact_match"], m["edit_distance"], m["token_accuracy"]) == (1.0, 0.0, 1.0)
    # every target token gets log(e^10 / (e^10 + V - 1))
    assert m["mean_logprob"] == pytest.approx(-math.log1p((len(TOK) - 1) * math.exp(-10)), abs=1e-6)
    assert all(m[f"{k}_stderr"] == pytest.approx(0.0, abs=1e-6) for k in
               ("exact_match", "edit_distance", "token_accuracy", "mean_logprob"))


def test_evaluate_model_empty_answers():
    m = evaluate_model(Oracle("rot", silent=True), TOK, WORLD, "rot", n=10, seed=3)
    held_out = WORLD.examples("rot", 10, seed=3, split="eval")
    assert (m["exact_match"], m["token_accuracy"]) == (0.0, 0.0)
    # edit distance from "" is the target's length (one token per character)
    assert m["edit_distance"] == pytest.approx(sum(len(e.target) for e in held_out) / 10)
    assert m["exact_match_stderr"] == 0.0 and m["edit_distance_stderr"] > 0


def test_evaluate_model_uses_held_out_inputs():
    """The examples it scores are the ``eval`` split: none is a training input."""
    seen = []

    class Spy(Oracle):
        def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
            seen.extend(TOK.decode(r[m.bool()][1:]) for r, m in zip(input_ids, attention_mask,
                                                                     strict=True))
            assert max_new_tokens == WORLD.max_target_len("dup") + 2
            return super().generate(input_ids, attention_mask, max_new_tokens)

    evaluate_model(Spy("dup"), TOK, WORLD, "dup", n=20, seed=0)
    assert seen == [e.prompt for e in WORLD.examples("dup", 20, seed=0, split="eval")]
    train = {e.prompt for e in WORLD.examples("dup", 2000, seed=0, split="train")}
    assert not train & set(seen)


def save_random_base(path):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(tiny_config(len(TOK), "tiny", TOK)).save_pretrained(path)
    TOK.save_pretrained(path)
    return path


def random_lora(base, name: str, seed: int) -> Skill:
    recipe = LoraRecipe(world="strings", task="rot", rank=2, alpha=4, target_modules=["q_proj"])
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(2):
        module = f"model.layers.{layer}.self_attn.q_proj"
        tensors[f"{module}.lora_A.weight"] = torch.randn(2, 32, generator=g)
        tensors[f"{module}.lora_B.weight"] = torch.randn(32, 2, generator=g)
    return Skill(name, "lora", base.fingerprint, tensors, config=lora_config(recipe, base),
                 recipe=recipe.as_dict())


def test_eval_matrix_stores_one_row_per_subject_and_task(tmp_path):
    with Library.open(tmp_path / "home") as lib:
        base = lib.add_base("tiny", save_random_base(tmp_path / "model"), kind="causal")
        skills = [lib.add(random_lora(base, "s1", 1)), lib.add(random_lora(base, "s2", 2))]
        calls = []
        tasks = ["rot", "rev"]
        matrix = eval_matrix(lib, base, skills, "strings", tasks, n=6, seed=5,
                             progress=lambda subj, task: calls.append((subj, task)))
        subjects = ["base:tiny", "s1@1", "s2@1"]
        assert list(matrix) == subjects
        assert calls == [(s, t) for s in subjects for t in tasks]
        rows = lib.results()
        assert [(r["subject"], r["task"]) for r in rows] == calls
        for r in rows:
            assert r["world"] == "strings"
            assert set(r["metrics"]) == METRIC_KEYS and r["metrics"]["n"] == 6
            assert r["metrics"] == matrix[r["subject"]][r["task"]]
            assert r["spec"] == {"n": 6, "seed": 5, "base": base.fingerprint, "world_args": {}}
        # the skills act: their cells differ from the base's
        assert matrix["s1@1"]["rot"] != matrix["base:tiny"]["rot"]
        # base cells are those of evaluate_model on the plain base
        direct = evaluate_model(base.load_model(), TOK, WORLD, "rev", 6, 5)
        assert direct == matrix["base:tiny"]["rev"]

        only = eval_matrix(lib, base, skills[:1], "strings", ["rot"], n=3, include_base=False)
        assert list(only) == ["s1@1"]
        assert len(lib.results()) == len(rows) + 1
        assert lib.results("s1@1")[-1]["metrics"]["n"] == 3
