"""Skill: name validation and the ΔW each kind stands for, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from skillbank.skill import Skill, SkillError, check_name, lora_delta, lora_scale

FP = "f" * 64


@pytest.mark.parametrize("name", ["a", "rev_1.2-x", "A9", "x" * 128])
def test_good_names(name):
    assert check_name(name) == name
    assert Skill(name, "delta", FP, {}).name == name


BAD_NAMES = ["", "../x", "a b", "a/b", ".", "..", "x" * 129, "a\n", "a@1", "é"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names(name):
    with pytest.raises(SkillError, match="invalid name"):
        check_name(name)
    with pytest.raises(SkillError):
        Skill(name, "delta", FP, {})


def test_unknown_kind():
    with pytest.raises(SkillError, match="unknown skill kind"):
        Skill("a", "adapter", FP, {})


# Small integer matrices so the expected ΔW is exact: r=2, in=3, out=2.
A = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
B = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
BA = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 6.0]])  # B @ A by hand


def lora_tensors():
    return {"m.q.lora_A.weight": A, "m.q.lora_B.weight": B}


def test_hand_product():
    assert torch.equal(B @ A, BA)


@pytest.mark.parametrize(
    ("config", "scale"),
    [({"lora_alpha": 8}, 4.0),  # alpha / r = 8 / 2
     ({}, 1.0),  # alpha defaults to r
     ({"lora_alpha": 8, "use_rslora": True}, 8 / math.sqrt(2)),
     ({"lora_alpha": 3, "use_rslora": False}, 1.5)],
)
def test_lora_delta_scale(config, scale):
    assert lora_scale(config, 2) == pytest.approx(scale)
    delta = lora_delta(lora_tensors(), config)
    assert list(delta) == ["m.q.weight"]
    torch.testing.assert_close(delta["m.q.weight"], scale * BA, rtol=0, atol=1e-6)
    skill = Skill("s", "lora", FP, lora_tensors(), config=config)
    torch.testing.assert_close(skill.delta()["m.q.weight"], scale * BA, rtol=0, atol=1e-6)


def test_lora_fan_in_fan_out_transposes():
    delta = lora_delta(lora_tensors(), {"lora_alpha": 2, "fan_in_fan_out": True})
    assert delta["m.q.weight"].shape == (3, 2)
    assert torch.equal(delta["m.q.weight"], BA.T)


def test_lora_delta_several_modules_and_dtype():
    tensors = {**lora_tensors(),
               "m.v.lora_A.weight": A.half(), "m.v.lora_B.weight": (2 * B).half()}
    delta = lora_delta(tensors, {"lora_alpha": 2})
    assert sorted(delta) == ["m.q.weight", "m.v.weight"]
    assert delta["m.v.weight"].dtype == torch.float32
    assert torch.equal(delta["m.v.weight"], 2 * BA)


def test_sparse_delta_by_hand():
    tensors = {"w.indices": torch.tensor([0, 4, 5], dtype=torch.int64),
               "w.values": torch.tensor([1.5, -2.0, 3.0]),
               "b.indices": torch.tensor([1]), "b.values": torch.tensor([7.0])}
    skill = Skill("s", "sparse", FP, tensors, config={"shapes": {"w": [2, 3], "b": [3]}})
    delta = skill.delta()
    assert torch.equal(delta["w"], torch.tensor([[1.5, 0.0, 0.0], [0.0, -2.0, 3.0]]))
    assert torch.equal(delta["b"], torch.tensor([0.0, 7.0, 0.0]))


def test_dense_delta_skips_head_and_router_has_none():
    skill = Skill("s", "delta", FP, {"w": torch.ones(2, dtype=torch.float16),
                                     "head.weight": torch.zeros(3)})
    assert list(skill.delta()) == ["w"] and skill.delta()["w"].dtype == torch.float32
    assert list(skill.head()) == ["weight"]
    assert skill.num_params() == 5
    with pytest.raises(SkillError, match="per input"):
        Skill("r", "router", FP, {"gate": torch.zeros(2)}).delta()


def test_manifest_shapes_and_ref():
    skill = Skill("s", "lora", FP, lora_tensors(), version=3)
    m = skill.manifest()
    assert skill.ref == "s@3"
    assert m["tensors"] == {"m.q.lora_A.weight": [[2, 3], "float32"],
                            "m.q.lora_B.weight": [[2, 2], "float32"]}
    assert Skill("s", "lora", FP, {}).ref == "s"
