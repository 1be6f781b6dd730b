"""ScaLearn: Σ diag(ω)ΔW by hand, the trained model equals the base with the stored delta."""

import pytest
import torch

from skillbank.acquire.data import training_batch
from skillbank.compose.scalearn import (
    VARIANTS,
    ScaLearnModel,
    ScaLearnRecipe,
    omega_key,
    scaled_delta,
    train_scalearn,
)
from skillbank.skill import Skill, SkillError
from skillbank.worlds import get_world
from tinyskills import random_lora, tiny_strings_library


def test_scaled_delta_by_hand():
    d1 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    d2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    got = scaled_delta([d1, d2], [torch.tensor([2.0, -1.0]), torch.tensor(0.5)])
    # row 0: 2·[1, 2] + 0.5·[0, 1];  row 1: −1·[3, 4] + 0.5·[1, 0]
    assert torch.equal(got, torch.tensor([[2.0, 4.5], [-2.5, -4.0]]))
    with pytest.raises(ValueError):
        scaled_delta([d1], [torch.ones(3)])


def test_omega_key_shares_across_layers():
    assert (
        omega_key("model.layers.3.self_attn.q_proj", shared=True)
        == "model.layers.*.self_attn.q_proj"
    )
    assert (
        omega_key("model.layers.3.self_attn.q_proj", shared=False)
        == "model.layers.3.self_attn.q_proj"
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    lib, base, tok = tiny_strings_library(tmp_path_factory.mktemp("scalearn"))
    return lib, base, [random_lora(lib, base, f"m{i}", seed=i, scale=0.3) for i in range(3)], tok


# 3 members, 4 modules (2 layers × q, v) of 32 outputs, 2 module types
@pytest.mark.parametrize(
    "variant,count",
    [
        ("scalearn", 3 * 32 * 4),
        ("scalearn-uniform", 3 * 4),
        ("scalearn++", 3 * 32 * 2),
        ("scalearn-uniform++", 3 * 2),
    ],
)
def test_parameter_counts_and_init(setup, variant, count):
    _, base, members, _ = setup
    model = ScaLearnModel(base.load_model(), members, variant, seed=0)
    omegas = torch.cat([p.detach().reshape(-1) for p in model.omega.values()])
    assert omegas.numel() == count
    assert omegas.mean() == pytest.approx(2 / 3, abs=2e-3) and omegas.std() < 0.01


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_equals_base_with_stored_delta(setup, variant):
    _, base, members, tok = setup
    model = ScaLearnModel(base.load_model(), members, variant, seed=0)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.omega.values():
            p.copy_(torch.randn(p.shape, generator=g))
    deltas = model.deltas()
    for name in model._A:  # Σ_k diag(ω_k) ΔW_k from the members' own ΔW
        om = model.omega_of(name).detach()
        want = sum(om[k].reshape(-1, 1) * members[k].delta()[f"{name}.weight"] for k in range(3))
        assert torch.allclose(deltas[f"{name}.weight"], want, atol=1e-5)
    batch = training_batch(tok, get_world("strings").examples("rot", 4, seed=0))
    skill = Skill("s", "delta", base.fingerprint, deltas)
    with torch.no_grad():
        got = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        want = base.load_model([skill])(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
    assert torch.allclose(got, want, atol=1e-4)


def test_train_only_omega_and_store_exact_delta(setup):
    _, base, members, _ = setup
    before = [{k: v.clone() for k, v in m.tensors.items()} for m in members]

    def train():
        return train_scalearn(
            "sl",
            base,
            members,
            "strings",
            ["rot", "shift"],
            ScaLearnRecipe("scalearn-uniform", steps=3, batch_size=4, pool=8),
        )

    s = train()
    assert s.kind == "delta" and s.lineage == [m.ref for m in members]
    assert s.recipe["method"] == "scalearn-uniform" and s.recipe["tasks"] == ["rot", "shift"]
    assert s.metrics["merge_error"] == {"max": 0.0, "mean": 0.0} and s.metrics["omega_params"] == 12
    assert set(s.tensors) == {
        f"model.layers.{i}.self_attn.{m}.weight" for i in range(2) for m in ("q_proj", "v_proj")
    }
    assert all(
        torch.equal(b[k], m.tensors[k]) for b, m in zip(before, members, strict=True) for k in b
    )
    again = train()
    assert all(torch.equal(s.tensors[k], again.tensors[k]) for k in s.tensors)
    with pytest.raises(SkillError, match="variant"):
        train_scalearn("x", base, members, "strings", ["rot"], ScaLearnRecipe("bogus"))
