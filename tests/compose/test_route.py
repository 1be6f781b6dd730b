"""Routing (PSEC): exact member recovery with one-hot α, router-only training, storage."""

import pytest
import torch

from skillbank.acquire.data import training_batch
from skillbank.acquire.lora import LoraRecipe, train_lora
from skillbank.compose.ops import MergeSpec, merge_skills
from skillbank.compose.route import (
    RoutedModel,
    Router,
    RouterRecipe,
    distil_weights,
    load_routed,
    member_factors,
    train_router,
)
from skillbank.evaluate.suites import eval_matrix
from skillbank.skill import SkillError
from skillbank.worlds import get_world
from tinyskills import tiny_strings_library

TASKS = ["rot", "shift"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    lib, base, tok = tiny_strings_library(tmp_path_factory.mktemp("route"))
    members = [lib.add(train_lora(f"s-{t}", base, LoraRecipe("strings", t, rank=4, alpha=8,
                                                                steps=8, batch_size=8, pool=64)))
               for t in TASKS]
    return lib, base, members, tok


def _batch(tok):
    return training_batch(tok, get_world("strings").examples("rot", 4, seed=0))


def test_member_factors_reproduce_delta(setup):
    _, _, members, _ = setup
    skill = members[0]
    for module, (a, b) in member_factors(skill).items():
        assert torch.allclose(b @ a, skill.delta()[f"{module}.weight"], atol=1e-6)
    dense = merge_skills("d", [skill], MergeSpec("linear"))  # a delta skill: SVD factors
    for module, (a, b) in member_factors(dense).items():
        assert torch.allclose(b @ a, dense.delta()[f"{module}.weight"], atol=1e-5)


@pytest.mark.parametrize("which", [0, 1])
def test_one_hot_alpha_equals_member_alone(setup, which):
    _, base, members, tok = setup
    routed = RoutedModel(base.load_model(), members, Router(base.load_model().config.hidden_size, 2))
    b = _batch(tok)
    routed._alpha = torch.nn.functional.one_hot(torch.full((4,), which), 2).float()
    got = routed.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    want = base.load_model([members[which]])(input_ids=b["input_ids"],
                                             attention_mask=b["attention_mask"]).logits
    assert torch.allclose(got, want, atol=1e-5)
    routed._alpha = torch.zeros(4, 2)
    plain = base.load_model()(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    assert torch.allclose(routed.model(input_ids=b["input_ids"],
                                       attention_mask=b["attention_mask"]).logits, plain, atol=1e-5)


def test_router_starts_at_base_and_only_router_trains(setup):
    lib, base, members, tok = setup
    before = {k: v.clone() for k, v in members[0].tensors.items()}
    r = train_router("r", base, members, RouterRecipe("strings", TASKS, steps=6, batch_size=8,
                                                      pool=32, width=8))
    assert r.kind == "router" and r.lineage == [m.ref for m in members]
    assert r.config["members"] == [m.ref for m in members]
    assert set(r.metrics["mean_alpha"]) == set(TASKS)
    assert all(torch.equal(before[k], members[0].tensors[k]) for k in before)
    assert any(v.abs().sum() > 0 for k, v in r.tensors.items() if k.startswith("router.net.2"))
    stored = lib.add(r)
    routed = load_routed(base, lib.get(stored.ref), members)
    b = _batch(tok)
    prompt = b["attention_mask"].bool() & (b["labels"] == -100)
    a1 = routed.alpha(b["input_ids"], b["attention_mask"], prompt)
    assert a1.shape == (4, 2)
    # evaluation goes through the same path as static skills and stores results
    matrix = eval_matrix(lib, base, [lib.get(stored.ref)], "strings", TASKS, n=4, include_base=False)
    assert set(matrix[stored.ref]) == set(TASKS)
    with pytest.raises(SkillError):
        load_routed(base, stored, members[::-1])


def test_zero_head_means_base_behaviour(setup):
    _, base, members, tok = setup
    routed = RoutedModel(base.load_model(), members, Router(base.load_model().config.hidden_size, 2))
    b = _batch(tok)
    out = routed(**b).logits
    plain = base.load_model()(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    assert torch.allclose(out, plain, atol=1e-6)


def test_distil_weights_average_alpha():
    from skillbank.skill import Skill

    r = Skill("r", "router", "fp", {}, metrics={"mean_alpha": {"a": [1.0, 0.0], "b": [0.2, 0.8]}})
    assert distil_weights(r) == pytest.approx([0.6, 0.4])


def test_prompt_only_context_equals_the_full_sequence_context(setup):
    """train_router looks the context up from prompt-only passes: the same states the full
    (prompt + answer) sequence has at the prompt's tokens, for a causal base."""
    from skillbank.compose.route import prompt_contexts

    _, base, members, tok = setup
    routed = RoutedModel(base.load_model(), members, Router(base.load_model().config.hidden_size, 2))
    examples = get_world("strings").examples("rot", 6, seed=3)
    b = training_batch(tok, examples)
    prompt = b["attention_mask"].bool() & (b["labels"] == -100)
    full = routed.context(b["input_ids"], b["attention_mask"], prompt)
    cached = prompt_contexts(routed, tok, examples, chunk=4)  # two chunks, other paddings
    assert torch.allclose(torch.stack([cached[ex.prompt] for ex in examples]), full, atol=1e-5)
    # and a mixed alpha adds exactly Σ_i α_i ΔW_i x (members side by side in one GEMM)
    alpha = torch.tensor([[0.3, -1.2]] * 6)
    routed._alpha = alpha
    got = routed.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    routed._alpha = None
    mixed = merge_skills("mix", members, MergeSpec("linear", weights=[0.3, -1.2]))
    want = base.load_model([mixed])(input_ids=b["input_ids"],
                                    attention_mask=b["attention_mask"]).logits
    assert torch.allclose(got, want, atol=1e-4)


def test_dense_is_cheaper_by_hand():
    from skillbank.routed import dense_is_cheaper

    # factor pairs cost r·(in + out) per member and input, dense ΔW in·out
    assert not dense_is_cheaper(8, 64, 64)        # 1,024 < 4,096
    assert not dense_is_cheaper(8, 16, 16)        # 256 = 256: a tie keeps the factors
    assert dense_is_cheaper(9, 16, 16)            # 288 > 256
    assert dense_is_cheaper(384, 384, 1536)       # a full-rank member of an FFN layer
    assert dense_is_cheaper(16, 16, 64)           # full rank (min(in, out)) always is


def test_routing_by_dense_deltas_equals_routing_by_factors(setup):
    """A LoRA member and a full-rank (merged) member per input: the dense form the router
    picks for full-rank members gives what the factor form gives, and both add exactly
    α_1(x)·ΔW_1 + α_2(x)·ΔW_2 to every changed layer (per row of the batch)."""
    _, base, members, tok = setup
    full = merge_skills("full", members, MergeSpec("linear", weights=[0.7, 0.4]))  # delta kind
    pair = [members[0], full]
    hidden = base.load_model().config.hidden_size
    dense = RoutedModel(base.load_model(), pair, Router(hidden, 2))
    assert dense._W and not dense._A               # a full-rank member: every layer dense
    factored = RoutedModel(base.load_model(), pair, Router(hidden, 2), form="factors")
    assert factored._A and not factored._W
    with pytest.raises(SkillError, match="dense or factors"):
        RoutedModel(base.load_model(), pair, Router(hidden, 2), form="svd")
    b = _batch(tok)
    alpha = torch.tensor([[0.3, -1.2], [1.0, 0.0], [0.0, 1.0], [-0.5, 2.0]])
    got = {}
    for label, m in (("dense", dense), ("factors", factored)):
        m._alpha = alpha
        got[label] = m.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        m._alpha = None
    assert torch.allclose(got["dense"], got["factors"], atol=1e-5)
    for row in range(4):
        w = alpha[row].tolist()
        mixed = merge_skills("mix", pair, MergeSpec("linear", weights=w))
        want = base.load_model([mixed])(input_ids=b["input_ids"][row: row + 1],
                                        attention_mask=b["attention_mask"][row: row + 1]).logits
        assert torch.allclose(got["dense"][row: row + 1], want, atol=1e-4)
