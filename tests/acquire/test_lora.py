"""LoRA skills: deterministic tensors, PEFT key layout, a complete recipe, exact ΔW."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from skillbank.acquire.data import char_tokenizer
from skillbank.acquire.lora import LoraRecipe, lora_config, train_lora
from skillbank.acquire.pretrain import tiny_config
from skillbank.library import Library
from skillbank.worlds.strings import StringsWorld

RECIPE = LoraRecipe(world="strings", task="rot", rank=4, alpha=8, steps=8, lr=1e-2,
                    batch_size=8, pool=64, seed=0)


def save_random_base(path, seed: int = 0):
    """A freshly initialised tiny Llama + char tokenizer, saved as a model directory."""
    from transformers import LlamaForCausalLM

    tok = char_tokenizer(StringsWorld().charset())
    torch.manual_seed(seed)
    LlamaForCausalLM(tiny_config(len(tok), "tiny", tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    library = Library.open(root / "home")
    library.add_base("tiny", save_random_base(root / "model"), kind="causal")
    yield library
    library.close()


@pytest.fixture(scope="module")
def base(lib):
    return lib.base("tiny")


@pytest.fixture(scope="module")
def skill(base):
    return train_lora("rot", base, RECIPE)


def test_same_recipe_and_seed_same_tensors(base, skill):
    again = train_lora("rot", base, RECIPE)
    assert skill.tensors.keys() == again.tensors.keys()
    for k in skill.tensors:
        assert torch.equal(skill.tensors[k], again.tensors[k]), k
    other = train_lora("rot", base, dataclasses.replace(RECIPE, seed=1))
    assert any(not torch.equal(skill.tensors[k], other.tensors[k]) for k in skill.tensors)


def test_keys_follow_peft_layout(skill):
    keys = set(skill.tensors)
    assert "model.layers.0.self_attn.q_proj.lora_A.weight" in keys
    assert "model.layers.1.mlp.down_proj.lora_B.weight" in keys
    modules = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    assert keys == {f"model.layers.{i}.{m}.lora_{ab}.weight"
                    for i in range(2) for m in modules for ab in "AB"}
    hidden, inter = 32, 64            # pretrain.SIZES["tiny"]
    assert skill.tensors["model.layers.0.self_attn.q_proj.lora_A.weight"].shape == (4, hidden)
    assert skill.tensors["model.layers.0.self_attn.q_proj.lora_B.weight"].shape == (hidden, 4)
    assert skill.tensors["model.layers.0.mlp.down_proj.lora_A.weight"].shape == (4, inter)
    # trained: B moved away from its zero initialisation
    assert all(skill.tensors[k].abs().sum() > 0 for k in keys if "lora_B" in k)


def test_manifest_recipe_is_complete(base, skill, lib):
    stored = lib.add(skill)
    recipe = lib.get(stored.ref).recipe
    assert recipe["method"] == "lora"
    fields = {f.name for f in dataclasses.fields(LoraRecipe)}
    assert set(recipe) == fields | {"method"}
    rebuilt = LoraRecipe(**{k: v for k, v in recipe.items() if k != "method"})
    assert rebuilt == RECIPE
    assert stored.config == lora_config(RECIPE, base)
    assert stored.kind == "lora" and stored.base == base.fingerprint
    train = stored.metrics["train"]
    assert [s for s, _ in train["curve"]] == [8] and train["final_loss"] == train["curve"][-1][1]
    # the recipe is enough to make the same tensors again
    again = train_lora("rot", base, rebuilt)
    assert all(torch.equal(again.tensors[k], stored.tensors[k]) for k in stored.tensors)


def test_applying_skill_changes_output(base, skill):
    ids = torch.tensor([[1, 5, 6, 7, 8, 9, 4]])
    with torch.no_grad():
        plain = base.load_model().forward(input_ids=ids).logits
        with_skill = base.load_model([skill]).forward(input_ids=ids).logits
    assert (plain - with_skill).abs().max() > 1e-4


def test_delta_matches_peft_merge_and_unload(base, skill):
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    cfg = skill.config
    peft_model = get_peft_model(base.load_model(), LoraConfig(
        r=cfg["r"], lora_alpha=cfg["lora_alpha"], target_modules=cfg["target_modules"],
        lora_dropout=0.0, bias="none"))
    result = set_peft_model_state_dict(
        peft_model, {f"base_model.model.{k}": v for k, v in skill.tensors.items()})
    assert not result.unexpected_keys
    merged = peft_model.merge_and_unload().state_dict()
    plain = base.load_model().state_dict()
    ours = base.load_model([skill]).state_dict()
    delta = skill.delta()
    assert len(delta) == 14
    assert merged.keys() == ours.keys()
    for k in merged:
        torch.testing.assert_close(ours[k], merged[k], rtol=0, atol=1e-6)
        if k in delta:
            torch.testing.assert_close(delta[k], merged[k] - plain[k], rtol=0, atol=1e-6)
            assert delta[k].abs().max() > 0
        else:
            assert torch.equal(merged[k], plain[k]), k


def test_resume_after_interrupt_same_tensors(base, tmp_path):
    """Interrupted after its checkpoint at step 50 (LoopConfig default), train_lora resumes."""
    recipe = dataclasses.replace(RECIPE, steps=55, batch_size=4, pool=32)

    class Interrupt(Exception):
        pass

    def stop(step, loss):
        if step == 52:
            raise Interrupt

    straight = train_lora("rot", base, recipe)
    with pytest.raises(Interrupt):
        train_lora("rot", base, recipe, checkpoint_root=tmp_path, progress=stop)
    assert (tmp_path / recipe.key(base) / "state.safetensors").exists()
    resumed = train_lora("rot", base, recipe, checkpoint_root=tmp_path)
    assert resumed.metrics["train"]["resumed_from"] == 50
    assert all(torch.equal(resumed.tensors[k], straight.tensors[k]) for k in straight.tensors)
    assert not (tmp_path / recipe.key(base)).exists()       # removed once complete
