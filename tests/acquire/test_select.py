"""LESS (acquire.select): preconditioning, projection, scores and top-k by hand; per-example
LoRA gradients against one backward pass per example; a tiny end-to-end selection."""

from __future__ import annotations

import math

import pytest
import torch

from skillbank.acquire.select import (
    SelectConfig,
    adam_precondition,
    less_scores,
    lora_modules,
    per_example_grads,
    project,
    rademacher,
    select,
    top_fraction,
)


def test_adam_precondition_by_hand():
    # m = v = 0: m' = 0.1·g, v' = 0.001·g²
    got = adam_precondition(torch.tensor([1.0, -2.0]), torch.zeros(2), torch.zeros(2))
    want = [0.1 / math.sqrt(0.001 + 1e-8), -0.2 / math.sqrt(0.004 + 1e-8)]
    torch.testing.assert_close(got, torch.tensor(want))
    # m = 1, v = 4, g = [0, 2]: m' = [0.9, 1.1], v' = [3.996, 4.0]
    got = adam_precondition(torch.tensor([[0.0, 2.0]]), torch.ones(2), torch.full((2,), 4.0))
    torch.testing.assert_close(got, torch.tensor([[0.9 / math.sqrt(3.996 + 1e-8), 1.1 / math.sqrt(4.0 + 1e-8)]]))


def test_rademacher_and_project():
    r = rademacher(6, 4, seed=3)
    assert r.shape == (6, 4) and set(r.abs().unique().tolist()) == {0.5}
    assert torch.equal(r, rademacher(6, 4, seed=3)) and not torch.equal(r, rademacher(6, 4, seed=4))
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    torch.testing.assert_close(project(x, torch.eye(2)), torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


def test_less_scores_by_hand():
    e = torch.eye(2)
    train = [e, e]  # two examples, two checkpoints
    # checkpoint 1: subtask 0 = {e0, e1} (mean cos 0.5, 0.5), subtask 1 = {e1} (0, 1)
    # checkpoint 2: both subtasks = {e0} (1, 0)
    targets = [[e, e[1:]], [e[:1], e[:1]]]
    # lr 1 and 0.4: ex0: s0 0.5 + 0.4 = 0.9, s1 0 + 0.4 = 0.4 -> 0.9
    #               ex1: s0 0.5 + 0   = 0.5, s1 1 + 0   = 1.0 -> 1.0
    torch.testing.assert_close(less_scores(train, targets, [1.0, 0.4]), torch.tensor([0.9, 1.0]))
    with pytest.raises(ValueError):
        less_scores(train, targets, [1.0])


def test_top_fraction():
    s = torch.tensor([0.1, 0.9, 0.5, 0.9])
    assert top_fraction(s, 0.5) == [1, 3]
    assert top_fraction(s, 0.01) == [1]  # at least one
    assert top_fraction(s, 1.0) == [1, 3, 2, 0]
    with pytest.raises(ValueError):
        top_fraction(s, 0.0)


def test_per_example_grads_match_one_backward_each():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    from skillbank.acquire.data import char_tokenizer, training_batch
    from skillbank.acquire.pretrain import tiny_config
    from skillbank.worlds import get_world

    world = get_world("strings")
    tok = char_tokenizer(world.charset())
    torch.manual_seed(0)
    model = get_peft_model(LlamaForCausalLM(tiny_config(len(tok), "tiny", tok)),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "down_proj"],
                                      init_lora_weights=False))
    exs = world.examples("rev", 3, seed=0) + world.examples("dup", 2, seed=0)  # unequal lengths
    G = torch.cat(list(per_example_grads(model, tok, exs, batch_size=4)))
    assert G.shape[0] == 5
    for i, ex in enumerate(exs):
        model.zero_grad()
        model(**training_batch(tok, [ex])).loss.backward()
        g = torch.cat([m.weight.grad.reshape(-1) for _, m in lora_modules(model)])
        torch.testing.assert_close(G[i], g, atol=1e-6, rtol=1e-4)


def test_select_end_to_end_tiny(tmp_path):
    from skillbank.acquire.pretrain import BaseRecipe, ensure_base
    from skillbank.library import Library

    with Library.open(tmp_path / "home") as lib:
        base, _ = ensure_base(lib, "t", BaseRecipe(size="tiny", steps=2, batch_size=2, pool=8))
        cfg = SelectConfig(pool_tasks=["rot", "dup"], target="rot", per_task=10, n_target=3,
                           fraction=0.25, warmup_fraction=0.2, warmup_epochs=2, batch_size=2, dim=8)
        sel = select(base, cfg)
    assert len(sel["selected"]) == 5 == sum(sel["make_up"].values())
    assert len(set(sel["selected"])) == 5 and all(0 <= i < 20 for i in sel["selected"])
    assert sel["scores"] == sorted(sel["scores"], reverse=True)
    assert len(sel["checkpoint_lrs"]) == 2 and len(sel["warmup_indices"]) == 4


def test_work_units_counts_every_progress_call(tmp_path):
    from skillbank.acquire.pretrain import BaseRecipe, ensure_base
    from skillbank.acquire.select import work_units
    from skillbank.library import Library

    cfg = SelectConfig(pool_tasks=["rot", "dup"], target="rot", per_task=40, n_target=3,
                       warmup_fraction=0.1, warmup_epochs=2, batch_size=4, dim=4)
    # warm-up: 8 examples / batch 4 = 2 steps per epoch; gradients: 80/64 -> 2 + 1 target batch
    assert work_units(cfg) == 2 * (2 + 3)
    seen = []
    with Library.open(tmp_path / "home") as lib:
        base, _ = ensure_base(lib, "t", BaseRecipe(size="tiny", steps=1, batch_size=2, pool=4))
        select(base, cfg, progress=lambda done, loss: seen.append(done))
    assert seen == list(range(1, work_units(cfg) + 1))
