"""Grafting: the maths by hand, sparse skills from masks, mask training, and the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from skillbank.acquire.data import Sampler, char_tokenizer
from skillbank.acquire.lora import LoraRecipe, train_lora
from skillbank.acquire.pretrain import tiny_config
from skillbank.cli import app
from skillbank.library import Library
from skillbank.localize import graft
from skillbank.localize.ops import (
    GraftRecipe,
    Scorer,
    eligible_deltas,
    lm_loss,
    localize,
    overlap_skills,
    train_mask,
)
from skillbank.skill import Skill, SkillError
from skillbank.worlds import get_world
from skillbank.worlds.strings import StringsWorld


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# -- pure maths ----------------------------------------------------------------------
def test_gamma_and_rounding_by_hand():
    s = torch.tensor([0.0, 12.0, 12.0, 10.0])
    gb = torch.tensor([True, False, True, False])
    b = 10.0
    want = [1 - sig(-10), sig(2), 1 - sig(2), 0.5]
    got = graft.gamma(s, gb, b)
    assert torch.allclose(got, torch.tensor(want), atol=1e-7)
    # kept iff γ > 1/2: the base entry with S < b stays, the non-base entry past b joins,
    # the base entry past b leaves, and S == b exactly (γ = 1/2) is out
    assert graft.round_mask(s, gb, b).tolist() == [True, True, False, False]
    assert torch.allclose(torch.sigmoid(graft.keep_logit(s, gb, b)), got, atol=1e-7)


def test_update_rule_by_hand_and_equals_autograd():
    s = torch.tensor([0.5, 9.0, 11.0, 10.0])
    gb = torch.tensor([1.0, 0.0, 1.0, 0.0])
    delta = torch.tensor([0.2, -0.1, 0.3, 0.05])
    c = torch.tensor([1.0, 2.0, -1.0, 4.0])  # L(θ) = Σ c⊙θ, so ∇_θL = c
    lr, b = 3.0, 10.0
    new = graft.update(s, gb, c, delta, lr, b)
    for i in range(4):
        sg = sig(float(s[i]) - b)
        hand = float(s[i]) - lr * (1 - 2 * float(gb[i])) * float(c[i] * delta[i]) * sg * (1 - sg)
        assert new[i].item() == pytest.approx(hand, rel=1e-6)
    # the same step through autograd: S − lr·∂L/∂S at θ = θ_pre + γ(S)⊙Δ
    sv = s.clone().requires_grad_(True)
    theta = torch.ones(4) + graft.gamma(sv, gb, b) * delta
    (c * theta).sum().backward()
    assert torch.allclose(new, s - lr * sv.grad, atol=1e-6)


def test_budget_rounding_keeps_the_k_most_confident():
    s = {"a": torch.tensor([0.5, 30.0, 12.0]), "b": torch.tensor([0.2, 15.0])}
    gb = {"a": torch.tensor([True, False, False]), "b": torch.tensor([True, False])}
    # logits (1 − 2γ_base)(S − b): a = [9.5, 20, 2], b = [9.8, 5]; all five have γ > 1/2
    free = {p: graft.round_mask(s[p], gb[p], 10.0) for p in s}
    assert graft.mask_size(free) == 5
    two = graft.budget_masks(s, gb, 10.0, 2)  # the two largest logits: 20 and 9.8
    assert two["a"].tolist() == [False, True, False] and two["b"].tolist() == [True, False]
    many = graft.budget_masks(s, gb, 10.0, 10)  # under budget: plain rounding
    assert all(torch.equal(many[p], free[p]) for p in s)
    s["a"][2] = 8.0  # γ < 1/2 now: out even though the budget has room
    assert graft.budget_masks(s, gb, 10.0, 10)["a"].tolist() == [True, True, False]


def test_top_mask_selects_exactly_the_largest():
    deltas = {"x": torch.tensor([[0.1, -0.9], [0.3, 0.0]]), "y": torch.tensor([0.5, -0.2, 0.8])}
    m = graft.top_mask(deltas, 3)
    assert m["x"].tolist() == [[False, True], [False, False]]
    assert m["y"].tolist() == [True, False, True]
    assert graft.mask_size(graft.top_mask(deltas, 0)) == 0
    assert graft.mask_size(graft.top_mask(deltas, 99)) == 7


def test_random_mask_size_and_seed():
    shapes = {"x": (4, 5), "y": (7,)}
    a, b = graft.random_mask(shapes, 6, seed=1), graft.random_mask(shapes, 6, seed=1)
    assert graft.mask_size(a) == 6 and all(torch.equal(a[p], b[p]) for p in shapes)
    assert a["x"].shape == (4, 5) and a["y"].shape == (7,)
    c = graft.random_mask(shapes, 6, seed=2)
    assert not all(torch.equal(a[p], c[p]) for p in shapes)


def test_overlap_by_hand():
    a = {"p": torch.tensor([0, 1, 2, 3, 7, 8])}
    b = {"p": torch.tensor([2, 3]), "q": torch.tensor([0, 5])}
    empty: dict = {}
    assert graft.intersection_size(a, b) == 2
    assert graft.overlap(a, b) == pytest.approx(2 / 4)   # |a ∩ b| / |b|
    assert graft.overlap(b, a) == pytest.approx(2 / 6)
    assert graft.overlap_matrix([a, b, empty]) == [[1.0, 0.5, None], [2 / 6, 1.0, None],
                                                   [0.0, 0.0, None]]


def test_relative_gain_by_hand():
    assert graft.relative_gain(0.8, 0.2, 1.0) == pytest.approx(0.75)
    assert graft.relative_gain(0.2, 0.2, 1.0) == 0.0
    assert graft.relative_gain(-1.5, -3.0, -1.0) == pytest.approx(0.75)  # log-probs work too
    assert graft.relative_gain(0.5, 0.4, 0.4) is None


def test_sparse_skill_reproduces_delta_on_kept_entries():
    torch.manual_seed(0)
    deltas = {"model.layers.0.mlp.up_proj.weight": torch.randn(6, 4),
              "model.layers.1.self_attn.q_proj.weight": torch.randn(4, 4)}
    mask = graft.top_mask(deltas, 7)
    mask["model.layers.1.self_attn.q_proj.weight"][:] = False  # one tensor with nothing kept
    mask["model.layers.0.mlp.up_proj.weight"][0, 0] = True
    tensors, config = graft.mask_to_sparse(mask, deltas)
    assert set(tensors) == {"model.layers.0.mlp.up_proj.weight.indices",
                            "model.layers.0.mlp.up_proj.weight.values"}
    assert tensors["model.layers.0.mlp.up_proj.weight.indices"].dtype == torch.int64
    skill = Skill(name="g", kind="sparse", base="f" * 64, tensors=tensors, config=config)
    out = skill.delta()
    p = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(out[p], torch.where(mask[p], deltas[p], torch.zeros(())))
    assert torch.equal(out[p][mask[p]], deltas[p][mask[p]])
    assert int((out[p][~mask[p]] != 0).sum()) == 0
    assert graft.index_sets(tensors)[p].numel() == graft.mask_size(mask)


def test_eligibility_excludes_embeddings_head_and_final_norm():
    names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
             "model.layers.0.input_layernorm.weight", "model.layers.1.mlp.down_proj.weight",
             "model.layers.0.self_attn.q_proj.weight"]
    assert graft.eligible_names(names, ("model.layers.",)) == ["model.layers.0.input_layernorm.weight",
                                           "model.layers.0.self_attn.q_proj.weight",
                                           "model.layers.1.mlp.down_proj.weight"]
    assert graft.is_eligible("lm_head.weight", prefixes=("lm_head.",))


# -- on a tiny model -----------------------------------------------------------------
@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from transformers import LlamaForCausalLM

    root = tmp_path_factory.mktemp("graft")
    tok = char_tokenizer(StringsWorld().charset())
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_config(len(tok), "tiny", tok)).save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    library = Library.open(root / "home")
    base = library.add_base("tiny", root / "model", kind="causal")
    recipe = LoraRecipe(world="strings", task="rot", rank=4, alpha=8, steps=40, lr=2e-2,
                        batch_size=32, pool=256, seed=0)
    skill = library.add(train_lora("rot", base, recipe))
    yield library, base, skill
    library.close()


def test_eligible_deltas_on_a_lora(setup):
    _, base, skill = setup
    model = base.load_model()
    params = dict(model.named_parameters())
    deltas, n = eligible_deltas(skill, params, ("model.layers.",))
    assert n == sum(v.numel() for k, v in params.items() if k.startswith("model.layers."))
    assert set(deltas) == set(skill.delta()) and all(k.startswith("model.layers.") for k in deltas)
    with pytest.raises(SkillError, match="no eligible"):
        eligible_deltas(skill, params, ("lm_head.",))


def test_mask_training_lowers_the_loss(setup):
    _, base, skill = setup
    tokenizer, model = base.load_tokenizer(), base.load_model()
    params = dict(model.named_parameters())
    deltas, n = eligible_deltas(skill, params, ("model.layers.",))
    theta_pre = {p: params[p].detach().clone() for p in deltas}
    examples = get_world("strings").examples("rot", 96, seed=0, split="train")
    train_ex, val_ex = examples[:64], examples[64:]
    recipe = GraftRecipe(sparsity=0.02, steps=30, lr=1e6, eval_every=5, rebase_every=10)
    k = round(recipe.sparsity * n)
    score = Scorer(model, tokenizer, train_ex)
    res = train_mask(model, theta_pre, deltas, k, recipe, Sampler({"rot": train_ex}, 16, 0),
                     lm_loss(model, tokenizer), score, Scorer(model, tokenizer, val_ex))
    assert graft.mask_size(res["init_mask"]) == k and graft.mask_size(res["mask"]) <= k
    init_loss = score(graft.grafted(theta_pre, deltas, res["init_mask"]))["loss"]
    best_loss = score(graft.grafted(theta_pre, deltas, res["mask"]))["loss"]
    assert res["best_step"] > 0
    assert best_loss < init_loss - 1e-3


def test_localize_end_to_end_and_cli(setup):
    library, base, skill = setup
    g = localize(base, skill, GraftRecipe(sparsity=0.02, steps=10, n_train=64, n_val=32),
                 n_eval=16)
    m = g.metrics["localization"]
    assert g.kind == "sparse" and g.lineage == [skill.ref] and g.name == "rot-graft"
    assert m["size"] <= m["k_init"] and m["fraction"] == m["size"] / m["n_eligible"]
    assert set(m["subjects"]) == {"base", "skill", "learned", "top_delta", "random"}
    assert m["subjects"]["top_delta"]["size"] == m["subjects"]["random"]["size"] == m["size"]
    d = g.delta()
    full = skill.delta()
    for p, v in d.items():  # exactly the skill's Δ where kept, zero elsewhere
        kept = v != 0
        assert torch.equal(v[kept], full[p][kept])

    runner = CliRunner()
    home = str(library.home)

    def run(*args):
        r = runner.invoke(app, ["--home", home, *args])
        assert r.exit_code == 0, (r.output, r.exception)
        return json.loads(r.stdout)

    common = ["--steps", "5", "--n", "8", "--n-train", "32", "--n-val", "16", "--json"]
    a = run("localize", "rot", "--sparsity", "0.02", "--name", "ga", *common)
    b = run("localize", "rot", "--sparsity", "0.005", "--name", "gb", "--no-budget", *common)
    assert a["kind"] == "sparse" and a["lineage"] == [skill.ref]
    assert a["recipe"]["source"] == skill.ref and b["recipe"]["budget"] is False
    assert "relative_gain" in a["metrics"]["localization"]["subjects"]["learned"]
    ov = run("overlap", "ga,gb", "--json")
    assert ov["skills"] == ["ga@1", "gb@1"] and len(ov["matrix"]) == 2
    assert ov["matrix"][0][0] == 1.0 and ov["matrix"][1][1] == 1.0
    sa, sb = (graft.index_sets(library.get(r).tensors) for r in ("ga", "gb"))
    assert ov["matrix"][0][1] == pytest.approx(graft.overlap(sa, sb))
    assert ov["sizes"] == [graft.set_size(sa), graft.set_size(sb)]
    r = runner.invoke(app, ["--home", home, "overlap", "ga,rot"])
    assert r.exit_code != 0 and "sparse" in str(r.exception)
    with pytest.raises(SkillError, match="sparse"):
        overlap_skills([library.get("ga"), skill])
